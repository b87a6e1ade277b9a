"""The companion: report helpers, the notebook batch runner (real papermill runs) and the book build."""
import re
import shutil
from html.parser import HTMLParser
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from icsnn_core import notebooks as nbrun
from icsnn_core.report import compare_with_paper, paper_tables, verdict

ROOT = Path(__file__).resolve().parents[1]
FIGURE_PAGES = ("fig3_rate_coding", "fig5_accuracy_vs_T", "fig6_first_spike", "fig7_layer_outputs", "comparison")


def test_paper_tables_are_the_papers():
    p = paper_tables()
    cell = p[(p["table"] == 2) & (p["paper_method"] == "IC-SNN") & (p["T"] == 8)]
    assert float(cell["loss"].iloc[0]) == 9.95 and float(cell["ann_acc"].iloc[0]) == 92.09
    assert set(p["table"]) == {2, 3, 4, 5} and p["T"].max() == 256  # the paper's "256+" column
    t5 = p[(p["table"] == 5) & (p["paper_method"] == "IC-SNN") & (p["T"] == 128)]
    assert float(t5["loss"].iloc[0]) == 1.61  # the table's number, not the text's 1.77


@pytest.mark.parametrize("paper,ours,expected", [
    (9.95, 9.95, "reproduced"), (9.95, 9.95 + 1 + 0.25 * 9.95 - 1e-9, "reproduced"), (9.95, 14.0, "worse than paper"),
    (9.95, 5.0, "better than paper"), (0.05, 1.0, "reproduced"), (0.05, 1.2, "worse than paper"),
    (float("nan"), 3.0, "not reported"), (3.0, float("nan"), "not measured"),
])
def test_verdict(paper, ours, expected):
    assert verdict(paper, ours) == expected


def test_compare_with_paper_on_hand_made_results():
    ic = "ic-snn[init=data,compensation=printed,residual=raw,granularity=layer,calib_images=512]"
    rows = [{"dataset": "cifar10", "arch": "vgg16", "ann": "relu", "method": v.split("[")[0], "calib_images": c,
             "variant": v, "T": T, "loss": loss}
            for v, c, T, loss in ((ic, 512, 8, 10.5), (ic, 512, 16, 30.0), ("snn", None, 16, 82.0))]
    cmp = compare_with_paper(pd.DataFrame(rows), 2).set_index(["paper_method", "T"])
    assert cmp.loc[("IC-SNN", 8), "verdict"] == "reproduced" and cmp.loc[("IC-SNN", 8), "paper_loss"] == 9.95
    assert cmp.loc[("IC-SNN", 16), "verdict"] == "worse than paper"
    assert cmp.loc[("RobustNorm", 16), "verdict"] == "reproduced"  # 82.71 printed vs 82.0 measured
    assert cmp.loc[("IC-SNN", 32), "verdict"] == "not measured"
    assert cmp.loc[("RNL", 16), "verdict"] == "not implemented here"


def _readings_frame() -> pd.DataFrame:
    """A profile's IC-SNN rows as the cpu profile measures them: every reading at 128 calibration images, the
    printed reading once more at 1024, on the ReLU ANN; on the QCFS ANN the printed reading at 128 only."""
    from icsnn_core.methods import Method

    printed = Method.make("ic-snn", calib_images=128)
    readings = [printed, printed.with_options(residual="clip"), printed.with_options(residual="fired"),
                printed.with_options(granularity="channel"), printed.with_options(compensation="potential"),
                printed.with_options(calib_images=1024), printed.with_options(init="weight")]
    rows = [{"dataset": "cifar10", "arch": "vgg16", "ann": "relu", "method": "ic-snn", "variant": m.label,
             "calib_images": m.calib_images, "T": T, "loss": 10.25 + i, "accuracy": 80.0 - i, "ann_accuracy": 90.0}
            for i, m in enumerate(readings) for T in (8, 16)]
    rows += [{"dataset": "cifar10", "arch": "vgg16", "ann": "qcfs", "method": "ic-snn", "variant": printed.label,
              "calib_images": 128, "T": T, "loss": 5.0, "accuracy": 75.0, "ann_accuracy": 80.0} for T in (8, 16)]
    return pd.DataFrame(rows)


def test_the_printed_reading_is_the_calibration_size_the_readings_were_measured_with():
    from icsnn_core.report import ambiguity_table, printed_calib_images, printed_variant

    results = _readings_frame()
    assert printed_calib_images(results, "ic-snn") == 128  # not the largest size (1024)
    assert printed_variant(results, "ic-snn").endswith("calib_images=128]")
    amb = ambiguity_table(results, "ic-snn")  # every reading is there, not only the printed ones
    assert set(amb.loc["vgg16", "residual"].index) == {"raw", "clip", "fired"}
    assert set(amb.loc["vgg16", "granularity"].index) == {"layer", "channel"}
    assert set(amb.loc["vgg16", "compensation"].index) == {"printed", "potential"}
    assert set(amb.loc["vgg16", "calib_images"].index) == {128, 1024}
    assert amb.loc[("vgg16", "residual", "clip"), 8] == 11.25


def test_figure_5_keeps_ic_snn_on_the_qcfs_ann():
    from icsnn_core import plots

    series = plots.fig5_series(_readings_frame())
    assert {ann for ann, v in series if v.startswith("ic-snn")} == {"relu", "qcfs"}
    assert plots.fig5_panels(_readings_frame()) == [("vgg16", "relu"), ("vgg16", "qcfs")]  # ReLU on the left


def test_one_colour_per_method_on_every_figure():
    from icsnn_core import plots

    assert plots.color("ic-snn[init=data,residual=clip]") == plots.color("ic-snn") == plots.METHOD_COLORS["ic-snn"]
    series, _ = plots.comparison_series(_readings_frame().assign(method="ic-snn"))
    for (ann, variant), (name, colour, _) in series.items():
        if variant.startswith("ic-snn") and "best" not in name:
            assert colour == plots.METHOD_COLORS["ic-snn"]


def test_variant_names_say_only_what_differs_from_the_printed_reading():
    from icsnn_core.report import variant_names

    names = variant_names(_readings_frame())
    assert sorted(names.values()) == sorted([
        "IC-SNN as printed", "IC-SNN (residual=clip)", "IC-SNN (residual=fired)", "IC-SNN (granularity=channel)",
        "IC-SNN (compensation=potential)", "IC-SNN (calib_images=1024)", "IC-SNN (Algorithm 1)"])
    from icsnn_core.report import variant_name
    assert variant_name("cos[rho=4,iterations=2,shift=threshold]") == "COS (2 rounds, one-threshold shift)"
    assert variant_name("snn") == "plain conversion" and variant_name("opi") == "OPI"


def test_tables_are_formatted_for_reading():
    from icsnn_core.report import table

    results = _readings_frame()
    wide = results[results["ann"] == "relu"].pivot_table(index=["arch", "variant"], columns="T", values="loss", sort=False)
    wide = wide[[16, 8]]  # latency columns out of order: the table sorts them
    t = table(wide, names={v: v.split("[")[0].upper() for v in results["variant"]})
    assert list(t.frame.columns) == ["network", "method (reading)", "T = 8", "16"]
    assert t.frame.iloc[0].tolist() == ["vgg16", "IC-SNN", "10.25", "10.25"]
    html = t._repr_html_()
    assert html.startswith('<div class="icsnn-scroll" style="overflow-x:auto') and "<table" in html
    assert "<th></th>" not in html  # no index column
    ints = table(pd.DataFrame({"T": [8.0, 16.0], "accuracy": [91.234, float("nan")], "git_commit": ["a" * 40] * 2}))
    assert ints.frame.to_dict("list") == {"T": ["8", "16"], "accuracy (%)": ["91.23", "–"], "commit": ["a" * 10] * 2}


def test_a_rerun_says_which_points_it_skipped_and_why():
    from icsnn_core.pipeline import skipped_message

    old = [{"variant": "snn", "git_commit": "aaaaaaaaaaaa", "ann_accuracy": "90.5"}]
    current = {"git_commit": "bbbbbbbbbbbb", "ann_accuracy": 91.0}
    message = skipped_message(old, current, Path("results.csv"))
    assert "skipped 1 points" in message and "aaaaaaaaaa" in message and "another training" in message
    same_ann = skipped_message(old, {**current, "ann_accuracy": 90.5}, Path("results.csv"))
    assert "measured by other code" in same_ann and "another training" not in same_ann
    fresh = skipped_message(old, {"git_commit": "aaaaaaaaaaaa", "ann_accuracy": 90.5}, Path("results.csv"))
    assert "WARNING" not in fresh and "Fix" not in fresh


def test_a_figure_page_names_the_run_that_measured_its_figure(tmp_path):
    from icsnn_core.report import describe_profile, load_figure_rows, provenance_table

    results = pd.DataFrame([{"profile": "cpu", "dataset": "cifar10", "data_source": "jpeg", "arch": a, "width": 0.5,
                             "epochs": 15, "n_test": 2000, "seed": 0, "device": "cpu", "git_commit": "aaaaaaaaaaaa"}
                            for a in ("vgg16", "resnet20")])
    with pytest.raises(FileNotFoundError, match="icsnn reproduce"):
        load_figure_rows(tmp_path, "first_spike.csv", results)
    pd.DataFrame([{"arch": a, "device": "cuda:H100", "git_commit": "bbbbbbbbbbbb", "T": 8}
                  for a in ("vgg16", "digits-cnn")]).to_csv(tmp_path / "first_spike.csv", index=False)
    fs = load_figure_rows(tmp_path, "first_spike.csv", results)
    assert list(fs["arch"]) == ["vgg16"]  # only the architectures the page shows
    text = describe_profile(results, measured=fs)
    assert "`cuda:H100` at commit `bbbbbbbbbb`" in text and "aaaa" not in text
    assert "at commit `aaaaaaaaaa`" in describe_profile(results)
    assert list(provenance_table(fs).columns) == ["arch", "device", "git_commit"]


def _page(tmp_path: Path, name: str, profile: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["icsnn"] = {"profile": profile}
    path = tmp_path / f"{name}-{profile}.ipynb"
    nbformat.write(nb, path)
    return path


def test_ambiguity_table_lists_only_the_options_a_method_reads(ci_run):
    from icsnn_core.report import ambiguity_table, load_results

    results = load_results(ci_run)
    assert "compensation" not in ambiguity_table(results, "i-snn").index.get_level_values("option")
    ic = ambiguity_table(results, "ic-snn")
    assert set(ic.loc["digits-cnn", "compensation"].index) == {"printed", "potential"}
    assert set(ic.loc["digits-cnn", "residual"].index) == {"raw", "clip", "fired"}


def test_load_benchmarks_names_each_rows_file():
    """The benchmark files matching a pattern come back as one frame whose ``source`` is each row's file stem, so a
    page can tell repeated runs of one benchmark apart (the Performance page's table of speed runs)."""
    from icsnn_core.report import load_benchmarks

    frame, files = load_benchmarks("speed-cpu-repeats/freed-run*.csv")
    assert files and [f.stem for f in files] == sorted(f.stem for f in files)
    assert frame["source"].value_counts().to_dict() == {f.stem: len(pd.read_csv(f)) for f in files}


def test_publish_keeps_the_largest_profile(tmp_path):
    page = tmp_path / "book" / "pages" / "x.ipynb"
    assert nbrun.publish(_page(tmp_path, "x", "cpu"), page, "cpu")
    assert not nbrun.publish(_page(tmp_path, "x", "ci"), page, "ci")  # a ci run never hides cpu results
    assert nbrun._profile_of(page) == "cpu"
    assert nbrun.publish(_page(tmp_path, "x", "full"), page, "full")
    assert nbrun._profile_of(page) == "full"


def test_a_page_without_energy_files_falls_back_to_the_largest_smaller_profile_that_has_them(tmp_path):
    from icsnn_core.report import largest_profile

    for name, files in (("ci", ["results.csv", "energy.csv"]), ("cpu", ["results.csv", "energy.csv"]),
                        ("full", ["results.csv"])):
        (tmp_path / name).mkdir()
        for f in files:
            (tmp_path / name / f).write_text("x\n")
    assert largest_profile(tmp_path) == "full"
    assert largest_profile(tmp_path, file="energy.csv") == "cpu"
    assert largest_profile(tmp_path, file="energy.csv", below="full") == "cpu"
    assert largest_profile(tmp_path, file="energy.csv", below="cpu") == "ci"
    assert largest_profile(tmp_path, file="energy.csv", below="ci") is None
    (tmp_path / "cpu" / "energy.csv").unlink()
    assert largest_profile(tmp_path, file="energy.csv", below="full") == "ci"


def test_a_gpu_page_that_shows_cpu_files_links_them_from_its_own_folder(tmp_path):
    from icsnn_core.report import downloads

    (tmp_path / "results.csv").write_text("x\n")
    assert "(../data/cpu/results.csv)" in downloads("cpu", tmp_path)
    assert "(../../data/full/results.csv)" in downloads("full", tmp_path)
    assert "(../../data/cpu/results.csv)" in downloads("cpu", tmp_path, page_profile="full")  # pages/full/energy


def test_published_data_mirrors_the_results_folder(tmp_path):
    results, book = tmp_path / "results", tmp_path / "book"
    results.mkdir()
    for name in ("results.csv", "stage_times-vgg16-relu.csv", "curves.csv"):
        (results / name).write_text(f"{name}\n")
    target = book / "extra" / "data" / "cpu"
    target.mkdir(parents=True)
    (target / "stage_times.csv").write_text("an older run's single file\n")
    (target / "results.csv").write_text("older numbers\n")
    assert nbrun.publish_data(results, book, "cpu") == target
    assert sorted(p.name for p in target.iterdir()) == ["results.csv", "stage_times-vgg16-relu.csv"]
    assert (target / "results.csv").read_text() == "results.csv\n"  # replaced by the current file


def test_the_gpu_profile_has_pages_of_its_own(tmp_path):
    book = tmp_path / "book"
    assert nbrun.page_for(book, "tables", "cpu") == book / "pages" / "tables.ipynb"
    assert nbrun.page_for(book, "tables", "ci") == book / "pages" / "tables.ipynb"
    assert nbrun.page_for(book, "tables", "full") == book / "pages" / "full" / "tables.ipynb"


def test_a_failing_notebook_is_named_with_its_cell_and_keeps_the_good_copy(tmp_path, monkeypatch, ci_run):
    src = tmp_path / "notebooks"
    src.mkdir()
    (src / "manifest.yml").write_text("notebooks:\n  - name: good\n  - name: bad\n")
    for name, body in (("good", "x = 1"), ("bad", "raise ValueError('broken on purpose')")):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell('profile = "ci"\nresults_dir = None', metadata={"tags": ["parameters"]}),
                    nbformat.v4.new_code_cell("y = 2"), nbformat.v4.new_code_cell(body)]
        nbformat.write(nb, src / f"{name}.ipynb")
    monkeypatch.setattr(nbrun, "NOTEBOOKS", src)
    executed = ci_run / "notebooks"
    executed.mkdir(exist_ok=True)
    earlier = executed / "bad.ipynb"
    earlier.write_text("the earlier good copy")
    failures = nbrun.run_notebooks("ci", ci_run, render_only=True, book=None, progress=False, log=lambda m: None)
    assert len(failures) == 1 and failures[0].startswith("bad.ipynb failed in cell 4")  # after papermill's cell
    assert "ValueError: broken on purpose" in failures[0]
    assert earlier.read_text() == "the earlier good copy" and (executed / "bad.failed.ipynb").exists()
    assert (executed / "good.ipynb").exists()
    earlier.unlink()
    (executed / "good.ipynb").unlink()
    (executed / "bad.failed.ipynb").unlink()


def test_render_only_needs_results(tmp_path):
    with pytest.raises(Exception, match="--render-only needs existing results"):
        nbrun.run_notebooks("ci", tmp_path / "none", render_only=True, book=None, progress=False)


@pytest.fixture(scope="module")
def built_book(ci_run, tmp_path_factory):
    """Every notebook executed by papermill on the ci run, published into a copy of the book, built with -W."""
    book = tmp_path_factory.mktemp("book") / "book"
    shutil.copytree(ROOT / "book", book, ignore=shutil.ignore_patterns("_build"))
    for page in (book / "pages").glob("*.ipynb"):  # the main pages come from this ci run; pages/full/ stays
        page.unlink()
    failures = nbrun.run_notebooks("ci", ci_run, render_only=True, book=book, progress=False, log=lambda m: None)
    assert failures == []
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    build = subprocess.run([jb, "build", "-W", "-n", "--keep-going", str(book)], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return book / "_build" / "html"


def test_every_page_is_built_with_its_figures_and_tables(built_book):
    for entry in nbrun.manifest():
        html = (built_book / "pages" / f"{entry['name']}.html").read_text()
        assert "<table" in html or entry["name"] == "own_model"  # every results page ends with its provenance table
        if entry["name"] == "performance":  # benchmark files, not a profile's results
            assert "speed-cpu.csv" in html and "Efficiency against the physical floor" in html
            continue
        if entry["name"] == "own_model":  # computed when the page is executed, from no results file
            assert "ANN test accuracy:" in html and re.search(r'<img[^>]+src="[^"]+\.png"', html)
            assert "Traceback" not in html and "Error" not in html
            continue
        assert "This page shows the <strong>ci</strong> profile" in html
        if entry["name"] in FIGURE_PAGES:
            assert re.search(r'<img[^>]+src="[^"]+\.png"', html), entry["name"]
    for name in ("tables", "comparison"):  # the GPU part renders the committed full-profile pages
        assert "This page shows the <strong>full</strong> profile" in (built_book / "pages" / "full" / f"{name}.html").read_text()
    assert "At the paper" in (built_book / "gpu.html").read_text()
    tables = (built_book / "pages" / "tables.html").read_text()
    for table in ("Table 2", "Table 3", "Table 4", "Table 5"):
        assert table in tables
    assert "CIFAR-100 cannot be obtained here" in tables
    for page in ("intro", "method", "reproduce"):
        assert (built_book / f"{page}.html").exists()


def test_the_site_loads_nothing_from_other_hosts(built_book):
    # a link a reader follows (the paper's DOI) is fine; a script, style sheet, image or font fetched is not
    external = re.compile(r'src\s*=\s*["\'](?:https?:)?//|<link[^>]+href\s*=\s*["\'](?:https?:)?//'
                          r'|url\(\s*["\']?(?:https?:)?//|THEBE_JS_URL')
    for path in built_book.rglob("*.html"):
        assert not external.search(path.read_text()), path
    method = (built_book / "method.html").read_text()
    assert "_static/mathjax/tex-chtml.js" in method and (built_book / "_static/mathjax/tex-chtml.js").exists()


class _Page(HTMLParser):
    """The tables of a page, each with whether an element around it scrolls sideways, and its images."""

    SCROLLS = ("overflow-x:auto", "overflow-x: auto", "icsnn-scroll", "pst-scrollable-table-container",
               "highlight", "table-wrapper")

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, bool]] = []
        self.tables: list[bool] = []
        self.images: list[dict[str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append({k: v or "" for k, v in a.items()})
            return
        if tag in ("br", "hr", "meta", "link", "input", "col", "source", "wbr"):
            return
        marks = f"{a.get('style', '')} {a.get('class', '')}"
        if tag == "table":
            self.tables.append(any(s for _, s in self.stack) or "scroll" in marks)
        self.stack.append((tag, any(m in marks for m in self.SCROLLS)))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    return page


def test_every_table_scrolls_and_every_image_says_what_it_shows(built_book):
    generated = ("search.html", "genindex.html", "py-modindex.html")  # Sphinx's own index pages
    pages = [p for p in built_book.rglob("*.html") if "_static" not in p.parts and p.name not in generated]
    tables = 0
    for path in pages:
        page = _parse(path)
        tables += len(page.tables)
        assert all(page.tables), f"{path}: a table without a scroll container"
        for img in page.images:
            alt = img.get("alt", "").strip()
            assert len(alt) > 20 and not re.search(r"\.(png|svg|jpe?g)$|^_images/|/", alt), (path, img)
    assert tables > 20


def test_the_intro_leads_with_the_headline_figure_and_the_paper(built_book):
    html = (built_book / "intro.html").read_text()
    page = _parse(built_book / "intro.html")
    assert any(img["src"].endswith("headline.png") and "VGG16" in img["alt"] for img in page.images)
    assert (built_book / "_images" / "headline.png").exists() or (built_book / "images" / "headline.png").exists()
    assert "https://doi.org/10.3390/math11010058" in html
    found = html.index("What this project found")  # the figure follows the findings, before the rest of the page
    assert found < html.index("headline.png", found) < html.index('id="the-problem-in-one-paragraph"')


def test_the_gpu_pages_have_titles_of_their_own(built_book):
    titles = [re.search(r"<title>(.*?)</title>", p.read_text(), re.S).group(1)
              for p in (built_book / "pages").rglob("*.html")]
    assert len(titles) == len(set(titles)), sorted(titles)
    assert "(GPU)" in (built_book / "pages" / "full" / "fig5_accuracy_vs_T.html").read_text()


def test_the_result_files_are_downloadable_from_the_pages_that_show_them(built_book):
    html = (built_book / "pages" / "fig5_accuracy_vs_T.html").read_text()
    assert 'href="../data/ci/results.csv"' in html and (built_book / "data" / "ci" / "results.csv").exists()
    full = (built_book / "pages" / "full" / "comparison.html").read_text()
    assert 'href="../../data/full/results.csv"' in full and (built_book / "data" / "full" / "results.csv").exists()


def test_the_api_page_lists_the_public_functions(built_book):
    import icsnn_core

    html = (built_book / "api.html").read_text()
    missing = [n for n in icsnn_core.__all__ if n != "__version__" and f'id="icsnn_core.{n}"' not in html]
    assert not missing, missing


def test_width_run_reads_only_that_width_of_that_profile(tmp_path):
    """The Tables page's 'paper's width' section: the rows of one arch at one width of one profile, from the
    folder the README's ``--width`` command writes, and None where there is no such run."""
    from icsnn_core.report import width_run

    assert width_run("cpu", "resnet20", 1.0, tmp_path / "none") is None
    rows = [{"profile": p, "arch": a, "width": w, "variant": "snn", "T": 8, "accuracy": 80.0, "ann_accuracy": 85.5}
            for p in ("cpu", "ci") for a in ("resnet20", "vgg16") for w in (0.5, 1.0)]
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    got = width_run("cpu", "resnet20", 1.0, tmp_path)
    assert got[["profile", "arch", "width"]].drop_duplicates().values.tolist() == [["cpu", "resnet20", 1.0]]
    assert got["loss"].tolist() == [5.5]
    assert width_run("cpu", "resnet20", 2.0, tmp_path) is None
