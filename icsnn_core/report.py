"""Tables for the notebooks and the book: this project's measurements beside the paper's, with verdicts.

Reads the tidy files written by :func:`icsnn_core.pipeline.reproduce`; needs pandas (the ``notebooks``
extra). Nothing here measures anything: every number comes from a results file or the paper's tables.
"""
from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import pandas as pd

from .methods import SHIFTS, Method, option_names

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


def printed(results: pd.DataFrame, method: str) -> Method:
    """``method`` with every ambiguous option read as printed, with the profile's (largest) calibration size."""
    sizes = results.loc[results["method"] == method, "calib_images"].dropna() if "calib_images" in results else []
    reads_calib = "calib_images" in option_names(method)
    return Method.make(method, calib_images=int(max(sizes))) if len(sizes) and reads_calib else Method.make(method)


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
    """Every ``benchmarks/results`` CSV matching ``pattern`` (e.g. ``speed-*.csv``) as one frame, and the files."""
    files = sorted((results_root().parent / "benchmarks" / "results").glob(pattern))
    return (pd.concat([pd.read_csv(f) for f in files], ignore_index=True) if files else pd.DataFrame()), files


def largest_profile(results_root: str | Path = "results") -> str | None:
    """The largest profile (full > cpu > ci) whose results.csv exists under ``results_root``."""
    for name in reversed(PROFILE_ORDER):
        if (Path(results_root) / name / "results.csv").exists():
            return name
    return None


def verdict(paper: float, ours: float, tol_abs: float = TOLERANCE_ABS, tol_rel: float = TOLERANCE_REL) -> str:
    """``reproduced`` if |ours - paper| <= tol_abs + tol_rel * paper, else ``better`` or ``worse`` than the paper."""
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
    """For each measured reading of ``method``: mean |our loss - paper loss| over the T both report."""
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


def plot_energy_tradeoff(trade: pd.DataFrame):
    """Accuracy against energy per image (log scale), one line per method with a marker at each T, one panel per
    (arch, ANN); the ANN is the black star."""
    import seaborn as sns

    grid = sns.relplot(data=trade, x="energy_per_image_uj", y="accuracy", hue="method", style="method", markers=True,
                       dashes=False, row="arch", col="ann", kind="line", sort=False, height=3.8, aspect=1.3,
                       facet_kws={"sharex": False})
    for (arch, ann), ax in grid.axes_dict.items():
        ref = trade[(trade["arch"] == arch) & (trade["ann"] == ann)]
        if len(ref):
            ax.plot(ref["ann_energy_per_image_uj"].iloc[0], ref["ann_accuracy"].iloc[0], "k*", ms=14, label="ANN")
            ax.set_title(f"{arch}, {ann.upper()} ANN")
    grid.set(xscale="log")
    grid.set_axis_labels("estimated energy per image (uJ)", "test accuracy (%)")
    return grid


def plot_firing_rates(rates: pd.DataFrame):
    """Firing rate per IF layer, one line per variant, one panel per (arch, ANN)."""
    import seaborn as sns

    grid = sns.relplot(data=rates, x="layer", y="firing_rate", hue="method", col="ann", row="arch", kind="line",
                       marker="o", height=3.5, aspect=1.4, facet_kws={"sharey": False, "sharex": False})
    grid.set_axis_labels("IF layer", "spikes per neuron per step")
    return grid
