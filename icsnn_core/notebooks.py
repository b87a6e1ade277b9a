"""The batch runner: compute a profile's results, then execute every notebook of the manifest with papermill.

Compute first, render second: ``icsnn notebooks --profile P`` runs ``icsnn reproduce`` (resumable; checkpoints
and measured points are reused), then executes each notebook into ``results/P/notebooks/``. A notebook that
fails leaves the earlier good copy in place and makes the batch fail, naming the notebook and the cell.
Executed notebooks are published to ``book/pages/`` unless a larger profile's copy is already there, so the
book's main pages show the largest of the profiles any machine can run (ci, cpu). The GPU profile, ``full``,
whose runs depend on a lent GPU and may be partial, is published beside them into ``book/pages/full/``.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Sequence

from tqdm import tqdm

from .errors import ConfigError
from .report import PROFILE_ORDER

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
BOOK = ROOT / "book"


def manifest() -> list[dict[str, str]]:
    """The notebooks to run, in order (``notebooks/manifest.yml``)."""
    import yaml

    path = NOTEBOOKS / "manifest.yml"
    if not path.exists():
        raise ConfigError(f"{path} is missing: the notebooks live in the project's checkout. Fix: run from a clone")
    return yaml.safe_load(path.read_text())["notebooks"]


def _profile_of(notebook: Path) -> str | None:
    import nbformat

    return nbformat.read(notebook, as_version=4).metadata.get("icsnn", {}).get("profile")


SEPARATE_PAGES = ("full",)  # profiles shown in a part of the book of their own, never in place of the cpu pages


def page_for(book: str | os.PathLike, name: str, profile: str) -> Path:
    """The book page a notebook of ``profile`` is published to."""
    pages = Path(book) / "pages"
    return (pages / profile if profile in SEPARATE_PAGES else pages) / f"{name}.ipynb"


def publish(executed: Path, page: Path, profile: str) -> bool:
    """Copy an executed notebook to a book page unless the page already shows a larger profile."""
    current = _profile_of(page) if page.exists() else None
    if current in PROFILE_ORDER and PROFILE_ORDER.index(current) > PROFILE_ORDER.index(profile):
        return False
    page.parent.mkdir(parents=True, exist_ok=True)
    tmp = page.with_name(f".{page.name}.tmp")
    shutil.copyfile(executed, tmp)
    os.replace(tmp, page)
    return True


PART_TITLES = {"full": " at the paper's scale (GPU)"}  # added to the titles of pages in a part of their own


def _finish(path: Path, profile: str) -> None:
    """Stamp the profile into the executed notebook, hide papermill's injected-parameters cell in the book, and
    give pages of a part of their own (the GPU runs) titles of their own, so that search tells them apart."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.metadata["icsnn"] = {"profile": profile}
    title = next((c for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("# ")), None)
    if title is not None and profile in PART_TITLES:
        first, _, rest = title.source.partition("\n")
        if not first.endswith(PART_TITLES[profile]):
            title.source = first + PART_TITLES[profile] + ("\n" + rest if rest else "")
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    nbformat.write(nb, path)


def publish_data(results_dir: Path, book: str | os.PathLike, profile: str) -> Path:
    """Copy the profile's result files into the book (``extra/data/<profile>/``, served as ``data/<profile>/``)
    so that the pages that show them link to them; the GPU profile's headline figure goes to ``images/``.
    The folder mirrors the results: a file published before that the results no longer hold (a stage-time file
    since renamed, say) is removed, so the site never offers a download that no page's numbers came from."""
    from .report import result_files

    target = Path(book) / "extra" / "data" / profile
    target.mkdir(parents=True, exist_ok=True)
    files = result_files(results_dir)
    for f in files:
        shutil.copyfile(f, target / f.name)
    for stale in set(target.glob("*.csv")) - {target / f.name for f in files}:
        stale.unlink()
    if profile == HEADLINE_PROFILE:
        from .plots import write_headline

        (Path(book) / "images").mkdir(exist_ok=True)
        write_headline(results_dir, Path(book) / "images" / "headline.png")
    return target


HEADLINE_PROFILE = "full"  # the intro's headline figure shows the paper's scale


def notebook_source(name: str, scratch: Path) -> Path:
    """The notebook papermill executes: ``notebooks/<name>.md`` (a MyST Markdown notebook, the source people edit)
    converted by jupytext into ``scratch``, or ``notebooks/<name>.ipynb`` where there is no Markdown source."""
    md = NOTEBOOKS / f"{name}.md"
    if not md.exists():
        return NOTEBOOKS / f"{name}.ipynb"
    import jupytext
    import nbformat

    nb = jupytext.read(md)
    for i, cell in enumerate(nb.cells):  # stable ids: re-rendering a page changes only what its source changed
        cell.id = f"{name}-{i}"
    nbformat.write(nb, scratch)
    return scratch


def run_notebooks(profile: str, out: str | os.PathLike | None = None, *, data_root: str | None = None,
                  device: str = "auto", render_only: bool = False, book: str | os.PathLike | None = BOOK,
                  only: Sequence[str] | None = None, progress: bool = True,
                  log: Callable[[str], None] = tqdm.write) -> list[str]:
    """Compute ``profile`` (unless ``render_only``) and execute the notebooks; return the failures (empty if none)."""
    import papermill as pm

    from .pipeline import reproduce
    from .profiles import get_profile

    prof = get_profile(profile)
    out = Path(out) if out else ROOT / "results" / profile
    entries = [e for e in manifest() if not only or e["name"] in only]
    if only and len(entries) != len(set(only)):
        raise ConfigError(f"unknown notebook in {list(only)}; the manifest has {[e['name'] for e in manifest()]}")
    if not render_only:
        reproduce(prof, out, data_root=data_root, device=device, progress=progress, log=log)
    elif not (out / "results.csv").exists():
        raise ConfigError(f"--render-only needs existing results in {out}. Fix: run without --render-only first")
    # notebooks run from the checkout's root; give them the results folder relative to it when possible
    results_arg = os.path.relpath(out.resolve(), ROOT) if out.resolve().is_relative_to(ROOT) else str(out.resolve())
    executed = out / "notebooks"
    executed.mkdir(parents=True, exist_ok=True)
    failures = []
    if book is not None:
        publish_data(out, book, profile)
    for entry in tqdm(entries, desc=f"notebooks ({profile})", disable=not progress):
        name = entry["name"]
        target, tmp = executed / f"{name}.ipynb", executed / f".{name}.running.ipynb"
        try:
            source = notebook_source(name, executed / f".{name}.source.ipynb")
            pm.execute_notebook(source, tmp, cwd=str(ROOT), kernel_name="python3",
                                parameters={"profile": profile, "results_dir": results_arg}, progress_bar=False)
        except pm.PapermillExecutionError as e:
            failed = executed / f"{name}.failed.ipynb"
            os.replace(tmp, failed)
            failures.append(f"{name}.ipynb failed in cell {e.cell_index + 1} (execution count {e.exec_count}): "
                            f"{e.ename}: {e.evalue} (executed copy with the error: {failed})")
            log(failures[-1])
            continue
        (executed / f".{name}.source.ipynb").unlink(missing_ok=True)
        _finish(tmp, profile)
        os.replace(tmp, target)
        (executed / f"{name}.failed.ipynb").unlink(missing_ok=True)
        if book is not None:
            page = page_for(book, name, profile)
            if publish(target, page, profile):
                log(f"{name}: published to {page}")
    return failures
