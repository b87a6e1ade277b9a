"""Tables for the notebooks and the book: this project's measurements beside the paper's, with verdicts.

Reads the tidy files written by :func:`icsnn_core.pipeline.reproduce`; needs pandas (the ``notebooks``
extra). Nothing here measures anything: every number comes from a results file or the paper's tables.
"""
from __future__ import annotations

import hashlib
import math
from importlib import resources
from pathlib import Path

import pandas as pd

from .methods import DEFAULT_CALIB_IMAGES, SHIFTS, Method, option_names

PROFILE_ORDER = ("ci", "cpu", "full")  # smallest to largest
PAPER_TO_METHOD = {"RobustNorm": "snn", "I-SNN": "i-snn", "C-SNN": "c-snn", "IC-SNN": "ic-snn"}
TOLERANCE_ABS, TOLERANCE_REL = 1.0, 0.25  # a cell reproduces if |ours - paper| <= 1 pp + 25% of the paper's loss
AMBIGUITIES = {  # option -> the readings measured one at a time (the others as printed)
    "compensation": ("printed", "potential"),
    "residual": ("raw", "clip", "fired"),
    "granularity": ("layer", "channel", "neuron"),
    "calib_images": None,  # whatever sizes the profile measured
    "init": ("data", "weight"),
}


def printed_calib_images(results: pd.DataFrame, method: str) -> int | None:
    """The calibration size ``method``'s readings were measured with: the size most of its variants share.

    A profile measures every reading with one calibration size and the printed reading once more with another
    (``calib_images`` is itself one of the ambiguous options), so the baseline is the size shared by the most
    variants, not the largest. Ties go to the size with more rows, then to the library's default."""
    if "calib_images" not in results:
        return None
    rows = results[(results["method"] == method) & results["calib_images"].notna()]
    if not len(rows):
        return None
    by_size = rows.groupby("calib_images").agg(variants=("variant", "nunique"), rows=("variant", "size"))
    by_size["default"] = by_size.index == DEFAULT_CALIB_IMAGES
    return int(by_size.sort_values(["variants", "rows", "default"], ascending=False).index[0])


def printed(results: pd.DataFrame, method: str) -> Method:
    """``method`` with every ambiguous option read as printed, at the calibration size its readings were
    measured with (:func:`printed_calib_images`)."""
    size = printed_calib_images(results, method) if "calib_images" in option_names(method) else None
    return Method.make(method, calib_images=size) if size else Method.make(method)


def printed_variant(results: pd.DataFrame, method: str) -> str:
    """The variant label of ``method`` read as printed, as it appears in ``results``."""
    return printed(results, method).label


def cos_variant(results: pd.DataFrame) -> str:
    """The COS reading a page shows: one round with the authors' shift where it was measured on every ANN that has
    COS rows, else one round with the one-threshold shift (the only reading of runs made before the option
    existed), so that a page never shows COS for some networks and not for others."""
    if "variant" not in results:
        return Method.make("cos").label
    cos = results[results["method"] == "cos"]
    anns = set(zip(cos["arch"], cos["ann"]))
    for shift in SHIFTS:
        label = Method.make("cos", shift=shift).label
        rows = cos[cos["variant"] == label]
        if len(rows) and set(zip(rows["arch"], rows["ann"])) == anns:
            return label
    return Method.make("cos").label


def cos_name(variant: str) -> str:
    """A reader's name for a COS variant: "COS", with the shift named when it is not the authors'."""
    return "COS (one-threshold shift)" if "shift=threshold" in variant else "COS"


def paper_tables() -> pd.DataFrame:
    """The paper's Tables 2-5 (accuracy loss in percentage points), one row per reported cell.

    Source: IC-SNN paper, Mathematics 2023, 11, 58, Tables 2-5, as cleaned in ``paper_tables.csv`` (copied
    into the package); T = 256 stands for the paper's "256+" column.
    """
    with resources.files("icsnn_core.paper").joinpath("paper_tables.csv").open() as f:
        wide = pd.read_csv(f, comment="#")
    cols = {c: int(c[1:].replace("plus", "")) for c in wide.columns if c.startswith("T")}
    long = wide.melt(id_vars=["table", "dataset", "arch", "method", "ann_acc"], value_vars=list(cols),
                     var_name="T", value_name="loss").dropna(subset=["loss"])
    long["T"] = long["T"].map(cols)
    return long.rename(columns={"method": "paper_method"}).reset_index(drop=True)


def load_results(results_dir: str | Path) -> pd.DataFrame:
    """``results.csv`` with the accuracy loss (ANN minus SNN accuracy, points) added."""
    df = pd.read_csv(Path(results_dir) / "results.csv", keep_default_na=True)
    df["loss"] = df["ann_accuracy"] - df["accuracy"]
    return df


def results_root() -> Path:
    """The checkout's ``results/`` folder (where `icsnn notebooks` writes), or ``./results`` outside a checkout."""
    here = Path(__file__).resolve().parents[1] / "results"
    return here if here.parent.joinpath("pyproject.toml").exists() else Path("results")


def load_benchmarks(pattern: str) -> tuple[pd.DataFrame, list[Path]]:
    """Every ``benchmarks/results`` CSV matching ``pattern`` (e.g. ``speed-*.csv``) as one frame, each row's file
    stem in its ``source`` column, and the files."""
    files = sorted((results_root().parent / "benchmarks" / "results").glob(pattern))
    frames = [pd.read_csv(f).assign(source=f.stem) for f in files]
    return (pd.concat(frames, ignore_index=True) if files else pd.DataFrame()), files


def largest_profile(results_root: str | Path = "results", *, file: str = "results.csv",
                    below: str | None = None) -> str | None:
    """The largest profile (full > cpu > ci), smaller than ``below`` if given, whose ``file`` exists under
    ``results_root``; None if none has it."""
    names = PROFILE_ORDER[:PROFILE_ORDER.index(below)] if below in PROFILE_ORDER else PROFILE_ORDER
    for name in reversed(names):
        if (Path(results_root) / name / file).exists():
            return name
    return None


def verdict(paper: float, ours: float, tol_abs: float = TOLERANCE_ABS, tol_rel: float = TOLERANCE_REL) -> str:
    """``reproduced`` if ``abs(ours - paper) <= tol_abs + tol_rel * paper``, else ``better`` or ``worse`` than the paper."""
    if paper is None or (isinstance(paper, float) and math.isnan(paper)):
        return "not reported"
    if ours is None or (isinstance(ours, float) and math.isnan(ours)):
        return "not measured"
    tol = tol_abs + tol_rel * abs(paper)
    if abs(ours - paper) <= tol:
        return "reproduced"
    return "worse than paper" if ours > paper else "better than paper"


def compare_with_paper(results: pd.DataFrame, table: int, *, variants: dict[str, str] | None = None,
                       ann: str = "relu") -> pd.DataFrame:
    """Every cell of a paper table beside this project's loss on the same dataset, arch and T, with a verdict.

    ``variants`` maps the paper's method names to the measured variant label used for them (default: the
    readings as printed). Rows of methods not implemented here say so.
    """
    paper = paper_tables()
    paper = paper[paper["table"] == table]
    chosen = {**{p: printed_variant(results, m) for p, m in PAPER_TO_METHOD.items()}, **(variants or {})}
    dataset, arch = paper["dataset"].iloc[0], paper["arch"].iloc[0]
    ours = results[(results["dataset"] == dataset) & (results["arch"] == arch) & (results["ann"] == ann)]
    rows = []
    for _, cell in paper.iterrows():
        variant = chosen.get(cell["paper_method"])
        hit = ours[(ours["variant"] == variant) & (ours["T"] == cell["T"])] if variant else ours.iloc[0:0]
        measured = float(hit["loss"].iloc[0]) if len(hit) else float("nan")
        rows.append({"paper_method": cell["paper_method"], "T": int(cell["T"]), "paper_loss": cell["loss"],
                     "our_loss": round(measured, 2) if len(hit) else None, "our_variant": variant,
                     "verdict": verdict(cell["loss"], measured) if variant else "not implemented here"})
    return pd.DataFrame(rows)


def reading_distance(results: pd.DataFrame, table: int, method: str, *, ann: str = "relu") -> pd.DataFrame:
    """For each measured reading of ``method``: the mean of ``abs(our loss - paper loss)`` over the T both report."""
    tables = paper_tables()
    paper_name = {m: p for p, m in PAPER_TO_METHOD.items()}[method]
    paper = tables[(tables["table"] == table) & (tables["paper_method"] == paper_name)].set_index("T")["loss"]
    ds, arch = tables[tables["table"] == table][["dataset", "arch"]].iloc[0]
    ours = results[(results["dataset"] == ds) & (results["arch"] == arch) & (results["ann"] == ann)
                   & (results["method"] == method)]
    rows = []
    for variant, g in ours.groupby("variant"):
        both = g.set_index("T")["loss"].reindex(paper.index).dropna()
        if len(both):
            rows.append({"variant": variant, "cells": len(both),
                         "mean_abs_diff": round(float((both - paper[both.index]).abs().mean()), 2)})
    return pd.DataFrame(rows, columns=["variant", "cells", "mean_abs_diff"]).sort_values("mean_abs_diff")


def ambiguity_table(results: pd.DataFrame, method: str = "ic-snn", *, ann: str = "relu") -> pd.DataFrame:
    """The loss of each reading of each ambiguous option, the other options as printed, by T (wide)."""
    sub = results[(results["method"] == method) & (results["ann"] == ann)]
    as_printed = printed(sub, method)
    rows = []
    for option, readings in AMBIGUITIES.items():
        values = readings or sorted(int(v) for v in sub[option].dropna().unique())
        for value in values:
            try:
                reading = as_printed.with_options(**{option: int(value) if option == "calib_images" else value})
            except Exception:  # noqa: BLE001 - a reading this method does not have
                continue
            if getattr(reading, option) is None:  # an option this method does not read (I-SNN's compensation)
                continue
            variant = reading.label
            for _, r in sub[sub["variant"] == variant].iterrows():
                rows.append({"option": option, "reading": value, "arch": r["arch"], "T": int(r["T"]), "loss": r["loss"]})
    long = pd.DataFrame(rows, columns=["option", "reading", "arch", "T", "loss"])
    return long.pivot_table(index=["arch", "option", "reading"], columns="T", values="loss", sort=False).round(2)


def provenance_table(results: pd.DataFrame) -> pd.DataFrame:
    """Where the numbers come from: one row per distinct (profile, data, model, device, commit, versions).

    Also takes the rows of a figure's file (first_spike.csv, layer_outputs.csv), which carry fewer columns."""
    cols = ["profile", "dataset", "data_source", "arch", "width", "ann", "epochs", "recipe", "n_test", "seed", "device",
            "git_commit", "torch_version", "icsnn_version"]
    return results[[c for c in cols if c in results]].drop_duplicates().reset_index(drop=True)


def width_run(profile: str, arch: str, width: float, results_dir: str | Path | None = None) -> pd.DataFrame | None:
    """The rows of ``arch`` at ``width`` from a ``--width`` run of ``profile`` (by default in
    ``results/<profile>-<arch>-w<width>``, where the README's command writes it), or None if there are none."""
    path = Path(results_dir) if results_dir else results_root() / f"{profile}-{arch}-w{width:g}"
    if not (path / "results.csv").exists():
        return None
    rows = load_results(path)
    rows = rows[(rows["profile"] == profile) & (rows["arch"] == arch) & (rows["width"] == width)]
    return rows if len(rows) else None


def load_figure_rows(results_dir: str | Path, name: str, results: pd.DataFrame) -> pd.DataFrame:
    """A figure's measurements (``first_spike.csv`` or ``layer_outputs.csv``) for the architectures in ``results``."""
    path = Path(results_dir) / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the run that wrote {Path(results_dir) / 'results.csv'} did not "
                                "reach the spike measurements. Fix: run `icsnn reproduce` for this profile again "
                                "(it resumes and measures them first)")
    rows = pd.read_csv(path)
    return rows[rows["arch"].isin(results["arch"].unique())]


def ensure_results(profile: str, results_dir: str | Path | None = None, *, data_root: str | None = None,
                   device: str = "auto", recompute: bool = False) -> Path:
    """The folder of ``profile``'s results, running ``icsnn reproduce`` first if they are missing (or asked to).

    A folder with results but without a figure's measurements (a GPU run cut short) is returned as it is:
    the pages that need those files say which one is missing."""
    from .pipeline import reproduce
    from .profiles import get_profile

    out = Path(results_dir) if results_dir else results_root() / profile
    if recompute or not (out / "results.csv").exists():
        reproduce(get_profile(profile), out, data_root=data_root, device=device, progress=False)
    return out


def select(results: pd.DataFrame, *, dataset: str | None = None, arch: str | list[str] | None = None,
           T_grid: list[int] | None = None, methods: list[str] | None = None) -> pd.DataFrame:
    """Rows of the given dataset / arch(s) / T values / methods (None keeps everything)."""
    keep = pd.Series(True, index=results.index)
    if dataset:
        keep &= results["dataset"] == dataset
    if arch:
        keep &= results["arch"].isin([arch] if isinstance(arch, str) else arch)
    if T_grid:
        keep &= results["T"].isin(T_grid)
    if methods:
        keep &= results["method"].isin(methods)
    if not keep.any():
        raise ValueError(f"no results for dataset={dataset} arch={arch} T={T_grid} methods={methods}")
    return results[keep]


def describe_profile(results: pd.DataFrame, measured: pd.DataFrame | None = None) -> str:
    """One Markdown sentence naming the profile, data, models, device and commit behind a page.

    ``measured``: the rows the page actually plots when they are not ``results`` (a figure's file); the
    device and commit are then theirs."""
    r = results.iloc[0]
    m = results if measured is None else measured
    archs = ", ".join(f"{a} (width {w:g})" for a, w in results[["arch", "width"]].drop_duplicates().itertuples(index=False))
    devices = ", ".join(sorted({str(d) for d in m["device"]}))
    commits = ", ".join(sorted({str(c)[:10] for c in m["git_commit"]}))
    return (f"This page shows the **{r['profile']}** profile: {r['dataset']} ({r['data_source']}), {archs}, "
            f"{int(r['epochs'])} training epochs, {int(r['n_test'])} test images, seed {int(r['seed'])}, "
            f"measured on `{devices}` at commit `{commits}`.")


# --- what accuracy costs (energy.csv / energy_layers.csv, written by the same simulations) ------------------------

PAGE_METHODS = ("snn", "i-snn", "c-snn", "ic-snn")  # the paper's methods, shown as printed, beside the peers


def shown_variants(results: pd.DataFrame) -> list[str]:
    """The variants a page shows: the paper's four methods as printed, OPI, QCFS and the page's COS reading."""
    return [printed_variant(results, m) for m in PAGE_METHODS] + ["opi", "qcfs", cos_variant(results)]


def load_energy(results_dir: str | Path, results: pd.DataFrame, name: str = "energy.csv") -> pd.DataFrame:
    """``energy.csv`` (or ``energy_layers.csv``) rows of the datasets and architectures in ``results``; an empty
    frame when the run did not count energy (``--no-energy``, or made before counting existed)."""
    path = Path(results_dir) / name
    if not path.exists():
        return pd.DataFrame()
    rows = pd.read_csv(path)
    return rows[rows["arch"].isin(results["arch"].unique()) & rows["dataset"].isin(results["dataset"].unique())]


def energy_missing(results_dir: str | Path) -> str:
    """What a page says when a results folder has no energy files, and how to get them."""
    return (f"`{Path(results_dir) / 'energy.csv'}` is missing: this run did not count operations (it ran with "
            "`--no-energy` or before counting existed). Fix: run `icsnn reproduce` for this profile again with the "
            "same `--out`: it measures the points that lack energy rows.")


def energy_tradeoff(energy: pd.DataFrame, variants: list[str] | None = None) -> pd.DataFrame:
    """Accuracy against energy per image: one row per (arch, ANN, variant, T) at t = T (each T's own simulation)."""
    rows = energy[energy["t"] == energy["T"]]
    if variants is not None:
        rows = rows[rows["variant"].isin(variants)]
    cols = ["arch", "ann", "method", "variant", "T", "latency", "accuracy", "ann_accuracy", "energy_per_image_uj",
            "ann_energy_per_image_uj", "energy_ratio", "sops_per_image", "macs_per_image", "firing_rate"]
    return rows[cols].sort_values(["arch", "ann", "variant", "T"]).reset_index(drop=True)


def energy_at(trade: pd.DataFrame, Ts: tuple[int, ...] = (8, 32)) -> pd.DataFrame:
    """Each method's energy per image relative to its ANN's (SNN / ANN) at the given T, wide."""
    rows = trade[trade["T"].isin(Ts)]
    return rows.pivot_table(index=["arch", "ann", "method"], columns="T", values="energy_ratio", sort=False).round(3)


def cost_to_reach(trade: pd.DataFrame, within: tuple[float, ...] = (1.0, 0.1)) -> pd.DataFrame:
    """The smallest T of the grid at which each method comes within ``within`` points of its ANN, with its latency
    and energy per image (absolute and relative to the ANN); empty cells where no T of the grid reached it.

    Only t = T readings count (an IC-SNN horizon calibrated for T is not the method at t < T), so the answer is
    as coarse as the profile's T grid."""
    out = []
    for (arch, ann, method, variant), g in trade.groupby(["arch", "ann", "method", "variant"], sort=False):
        g = g.sort_values("T")
        for w in within:
            hit = g[g["accuracy"] >= g["ann_accuracy"] - w]
            first = hit.iloc[0] if len(hit) else None
            out.append({"arch": arch, "ann": ann, "method": method, "within (points)": w,
                        "T": int(first["T"]) if first is not None else None,
                        "latency": int(first["latency"]) if first is not None else None,
                        "energy per image (uJ)": round(float(first["energy_per_image_uj"]), 4) if first is not None else None,
                        "energy / ANN's": round(float(first["energy_ratio"]), 3) if first is not None else None})
    return pd.DataFrame(out)


def cost_table(cost: pd.DataFrame) -> pd.DataFrame:
    """A :func:`cost_to_reach` frame for reading: one row per method, the latency (T, plus COS's rho) and energy
    relative to the ANN's (``E/ANN``) for each ``within`` (``±1``: within 1 point) side by side."""
    cost = cost.assign(within=[f"±{w:g}" for w in cost["within (points)"]]).rename(columns={"energy / ANN's": "E/ANN"})
    order = list(dict.fromkeys(zip(cost["arch"], cost["ann"], cost["method"])))
    wide = cost.pivot(index=["arch", "ann", "method"], columns="within", values=["latency", "E/ANN"])
    columns = [(w, v) for w in cost["within"].unique() for v in ("latency", "E/ANN")]
    return wide.swaplevel(axis=1)[columns].reindex(order)


def firing_rates(layers: pd.DataFrame, variants: list[str], T: int | None = None) -> pd.DataFrame:
    """Per-layer firing rate (spikes per neuron per step) of ``variants`` at t = T, IF layers only; T defaults to
    8, or the smallest T measured above it."""
    rows = layers[(layers["variant"].isin(variants)) & (layers["layer"] > 0) & (layers["t"] == layers["T"])]
    if T is None:
        Ts = sorted(rows["T"].unique())
        T = next((x for x in Ts if x >= 8), Ts[-1] if Ts else None)
    rows = rows[rows["T"] == T]
    return rows[["arch", "ann", "method", "variant", "T", "layer", "layer_name", "neurons", "firing_rate",
                 "sops_per_image"]].reset_index(drop=True)



# --- reading the tables: method names, short variant labels, formatted HTML --------------------------------------

METHOD_NAMES = {"snn": "plain conversion", "i-snn": "I-SNN", "c-snn": "C-SNN", "ic-snn": "IC-SNN", "opi": "OPI",
                "qcfs": "QCFS", "cos": "COS"}
HEADERS = {  # column names of the results files and of this module's frames, as a reader reads them
    "arch": "network", "ann": "ANN", "method": "method", "variant": "method (reading)", "option": "option",
    "reading": "reading", "loss": "loss (points)", "accuracy": "accuracy (%)", "ann_accuracy": "ANN accuracy (%)",
    "paper_method": "paper's method", "paper_loss": "paper's loss", "our_loss": "our loss", "our_variant": "our reading",
    "verdict": "verdict", "cells": "cells", "mean_abs_diff": "mean |ours - paper| (points)", "layer": "layer",
    "git_commit": "commit", "data_source": "data", "n_test": "test images", "icsnn_version": "icsnn",
    "torch_version": "torch", "width": "width", "epochs": "epochs", "seed": "seed", "device": "device",
    "profile": "profile", "dataset": "dataset", "latency": "latency",
}


def _label_options(label: str) -> tuple[str, dict[str, str]]:
    """``ic-snn[init=data,residual=clip]`` -> ("ic-snn", {"init": "data", "residual": "clip"})."""
    name, _, rest = label.partition("[")
    opts = dict(kv.split("=", 1) for kv in rest.rstrip("]").split(",") if "=" in kv)
    return name, opts


def variant_name(label: str, calib_images: int | None = None) -> str:
    """A reader's name for a variant label: the method's name and only the options that differ from its
    reading as printed (``calib_images``: the printed calibration size of the run), e.g.
    ``IC-SNN (residual=clip)``, ``IC-SNN as printed``, ``COS (2 rounds)``."""
    name, opts = _label_options(label)
    if name not in METHOD_NAMES:
        return label
    base = Method.make(name, **({"calib_images": calib_images} if calib_images else {})).options()
    differs = {k: v for k, v in opts.items() if str(base.get(k)) != v}
    if name == "cos":
        words = [f"{differs.pop('iterations')} rounds"] if "iterations" in differs else []
        words += ["one-threshold shift"] if differs.pop("shift", None) == "threshold" else []
        words += [f"{k}={v}" for k, v in differs.items()]
        return f"COS ({', '.join(words)})" if words else "COS"
    if not opts:
        return METHOD_NAMES[name]
    if not differs:
        return f"{METHOD_NAMES[name]} as printed"
    if differs == {"init": "weight"}:
        return f"{METHOD_NAMES[name]} (Algorithm 1)"
    return f"{METHOD_NAMES[name]} ({', '.join(f'{k}={v}' for k, v in differs.items())})"


def variant_names(results: pd.DataFrame) -> dict[str, str]:
    """Every variant label of ``results`` mapped to its reader's name (:func:`variant_name`)."""
    names = {}
    for label in results["variant"].dropna().unique():
        if not isinstance(label, str):
            continue
        method = _label_options(label)[0]
        names[label] = variant_name(label, printed_calib_images(results, method) if method in METHOD_NAMES else None)
    return names


def _cell(value: object, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and digits == 0 else f"{value:.{digits}f}"
    return str(value)


class Table:
    """A frame formatted for reading, shown as an HTML table in a scrolling container (``_repr_html_``).

    ``frame`` holds the strings shown, so that tests can read what the reader reads."""

    def __init__(self, frame: pd.DataFrame, caption: str | None = None) -> None:
        self.frame, self.caption = frame, caption

    def _repr_html_(self) -> str:
        numeric = [c for c in self.frame.columns
                   if self.frame[c].astype(str).str.fullmatch(r"-?[0-9.]+|–|nan|True|False").all()]
        uuid = hashlib.sha1(self.frame.to_csv().encode()).hexdigest()[:10]  # stable: a re-render changes nothing
        styler = (self.frame.style.set_uuid(uuid).format(escape="html").hide(axis="index")
                  .set_table_attributes('class="icsnn-table"')
                  .set_table_styles({c: [{"selector": "td, th", "props": "text-align: left"}]
                                     for c in self.frame.columns if c not in numeric}, overwrite=False))
        html = styler.to_html()
        caption = f'<p class="icsnn-caption">{self.caption}</p>' if self.caption else ""
        return f'<div class="icsnn-scroll" style="overflow-x:auto; max-width:100%">{caption}{html}</div>'

    def __repr__(self) -> str:
        return self.frame.to_string(index=False)


def table(df: pd.DataFrame, *, digits: int = 2, names: dict[str, str] | None = None, caption: str | None = None,
          headers: dict[str, str] | None = None) -> Table:
    """``df`` (a plain or pivoted frame) formatted for reading: index levels become columns, numbers are rounded
    to ``digits`` (integers stay integers), numeric column labels (T, latency, layer) are sorted and shown as
    integers, variant labels are shortened to what differs from the printed reading (``names``, default
    :func:`variant_names` of the frame), commits to 10 characters, and headers read as words (:data:`HEADERS`)."""
    frame = df.copy()
    if isinstance(frame.columns, pd.MultiIndex):  # a pivot of several values: "our loss, T=8" style headers
        frame.columns = [", ".join(str(HEADERS.get(str(p), p)) for p in col if str(p) != "") for col in frame.columns]
    elif all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in frame.columns) and len(frame.columns):
        frame = frame[sorted(frame.columns)]
        axis = HEADERS.get(str(frame.columns.name), frame.columns.name) if frame.columns.name else None
        frame.columns = [f"{axis} = {int(c)}" if axis and i == 0 else str(int(c)) for i, c in enumerate(frame.columns)]
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.name is not None:
        frame = frame.reset_index()
    if "ann" in frame:
        frame["ann"] = frame["ann"].map(lambda a: {"relu": "ReLU", "qcfs": "QCFS"}.get(a, a))
    if "variant" in frame:
        lookup = names if names is not None else variant_names(frame)
        frame["variant"] = frame["variant"].map(lambda v: lookup.get(v, v))
    for col in ("git_commit",):
        if col in frame:
            frame[col] = frame[col].astype(str).str[:10]
    for col in frame.columns:
        series = frame[col]
        if pd.api.types.is_float_dtype(series) and series.dropna().apply(float.is_integer).all() and col != "accuracy":
            frame[col] = series.map(lambda v: _cell(v, 0))
        elif pd.api.types.is_float_dtype(series):
            frame[col] = series.map(lambda v: _cell(v, digits))
        elif series.dtype == object or pd.api.types.is_string_dtype(series):  # pandas 3 keeps text as str
            frame[col] = series.map(lambda v: _cell(v, digits))
    frame = frame.rename(columns={**HEADERS, **(headers or {})})
    return Table(frame, caption)


def result_files(results_dir: str | Path) -> list[Path]:
    """The tidy files of a results folder that a page's reader may download (curves.csv, the largest, excluded:
    it is in the repository beside them)."""
    names = ("results.csv", "first_spike.csv", "layer_outputs.csv")
    found = [Path(results_dir) / n for n in names if (Path(results_dir) / n).exists()]
    return found + sorted(Path(results_dir).glob("stage_times*.csv"))  # one per process of a run split by model


def downloads(profile: str, results_dir: str | Path, page_profile: str | None = None) -> str:
    """A Markdown line of links to the profile's result files, as published into the book by `icsnn notebooks`
    (``book/extra/data/<profile>/``, copied to the site's ``data/<profile>/``). Pages of the profiles that have a
    part of their own sit one folder deeper, hence the relative prefix; ``page_profile`` is the profile of the
    page the line is shown on, when that page shows another profile's files (default: ``profile``)."""
    from .notebooks import SEPARATE_PAGES

    up = "../../" if (page_profile or profile) in SEPARATE_PAGES else "../"
    links = ", ".join(f"[{f.name}]({up}data/{profile}/{f.name})" for f in result_files(results_dir))
    return (f"Download the measurements behind this page ({profile} profile): {links}; every accuracy at every "
            f"step is in the repository's `results/{profile}/curves.csv`.")


class Page:
    """What every results page starts from: the results folder, its rows (filtered as the page's parameters ask),
    a figure's own file where the page plots one, and the reader's names of the variants."""

    def __init__(self, profile: str, results_dir: Path, results: pd.DataFrame, rows: pd.DataFrame | None) -> None:
        self.profile, self.results_dir, self.results, self.rows = profile, results_dir, results, rows
        self.names = variant_names(results)

    def table(self, df: pd.DataFrame, **kwargs: object) -> Table:
        """:func:`table` with this page's variant names."""
        return table(df, names=self.names, **kwargs)


def page(profile: str, results_dir: str | Path | None = None, *, data_root: str | None = None, device: str = "auto",
         recompute: bool = False, dataset: str | None = None, arch: str | list[str] | None = None,
         T_grid: list[int] | None = None, methods: list[str] | None = None, figure_file: str | None = None,
         show: bool = True, shown_on: str | None = None) -> Page:
    """The shared set-up of every results notebook: find (or compute) the profile's results, select the rows the
    parameters ask for, load a figure's file (``figure_file``), set the figure style and, with ``show``, print
    which run the page shows and links to its files (from a page of profile ``shown_on``, if not ``profile``'s)."""
    from .plots import style

    style()
    out = ensure_results(profile, results_dir, data_root=data_root, device=device, recompute=recompute)
    results = select(load_results(out), dataset=dataset, arch=arch, T_grid=T_grid, methods=methods)
    rows = load_figure_rows(out, figure_file, results) if figure_file else None
    if show:
        from IPython.display import Markdown, display

        display(Markdown(describe_profile(results, measured=rows) + "\n\n" + downloads(profile, out, shown_on)))
    return Page(profile, out, results, rows)


def paper_comparison(cmp: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A :func:`compare_with_paper` frame as two wide tables: losses (a row for the paper's and one for ours per
    method) and verdicts, both by T."""
    long = pd.concat([cmp.assign(source="paper", value=cmp["paper_loss"]),
                      cmp.assign(source="this project", value=cmp["our_loss"])])
    losses = long.pivot_table(index=["paper_method", "source"], columns="T", values="value", sort=False, dropna=False)
    losses = losses.reindex(pd.MultiIndex.from_product([cmp["paper_method"].unique(), ["paper", "this project"]],
                                                       names=["paper_method", "source"]))
    verdicts = cmp.pivot_table(index="paper_method", columns="T", values="verdict", aggfunc="first", sort=False)
    return losses, verdicts
