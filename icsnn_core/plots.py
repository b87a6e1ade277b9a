"""The book's figures: one colour per method on every page, text readable at the page's width, legends outside
the data, the ANN's accuracy as a reference line.

Needs matplotlib (the ``notebooks`` extra). Every function takes rows of a results file (``report.load_results``)
and returns a matplotlib figure; nothing here measures anything.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

from . import report

# Okabe-Ito colours (readable with the common colour-vision deficiencies), one per method, on every page
METHOD_COLORS = {
    "ann": "#000000", "snn": "#7F7F7F", "i-snn": "#E69F00", "c-snn": "#56B4E9", "ic-snn": "#D55E00",
    "ic-snn-best": "#CC79A7", "opi": "#009E73", "qcfs": "#0072B2", "cos": "#6A3D9A",
}
ANN_NAMES = {"relu": "ReLU", "qcfs": "QCFS"}
FONT_SIZE = 13  # points, on figures drawn 10 inches wide at 100 dpi: about 14 px on the book's column
WIDTH = 10.0  # inches: the book's content column at 100 dpi, so figures are shown close to their own size


def _ann_order(anns: pd.Series) -> pd.Series:
    return anns.map({"relu": 0, "qcfs": 1}).fillna(2)


def style() -> None:
    """The book's figure style: white grid, large text, 100 dpi."""
    plt.rcParams.update({
        "figure.dpi": 100, "savefig.dpi": 100, "font.size": FONT_SIZE, "axes.titlesize": FONT_SIZE + 1,
        "axes.labelsize": FONT_SIZE, "xtick.labelsize": FONT_SIZE - 1, "ytick.labelsize": FONT_SIZE - 1,
        "legend.fontsize": FONT_SIZE - 1, "axes.grid": True, "grid.alpha": 0.35, "axes.spines.top": False,
        "axes.spines.right": False, "figure.facecolor": "white", "lines.linewidth": 2, "lines.markersize": 6,
    })


def color(variant: str) -> str:
    """The colour of a variant label's method (``ic-snn[...]`` -> IC-SNN's)."""
    return METHOD_COLORS.get(variant.split("[")[0], "#333333")


def _log2_axis(ax, values: Sequence[int]) -> None:
    """A log-2 x axis with integer ticks at the powers of two the values span (at most 9 of them)."""
    ax.set_xscale("log", base=2)
    lo, hi = int(min(values)), int(max(values))
    ticks = [2 ** k for k in range(0, 12) if lo <= 2 ** k <= hi] or [lo]
    while len(ticks) > 9:
        ticks = ticks[::2]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(t) for t in ticks])


def _grid(n: int, ncols: int, height: float):
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(WIDTH, height * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _finish(fig, handles, labels, ncol: int, foot: str | None = None) -> None:
    """Lay the panels out above one legend for the whole figure (and a provenance line under it)."""
    seen = dict(zip(labels, handles))
    y0 = 0.0
    if foot:
        text = fig.text(0.5, 0.005, foot, ha="center", va="bottom", fontsize=FONT_SIZE - 3, color="#444444")
        y0 = text.get_window_extent(fig.canvas.get_renderer()).height / fig.bbox.height + 0.01
    legend = fig.legend(seen.values(), seen.keys(), loc="lower center", ncol=min(ncol, len(seen)), frameon=False,
                        bbox_to_anchor=(0.5, y0))
    height = legend.get_window_extent(fig.canvas.get_renderer()).height / fig.bbox.height
    fig.tight_layout(rect=(0, min(y0 + height + 0.01, 0.6), 1, 1))


def accuracy_figure(rows: pd.DataFrame, series: dict[tuple[str, str], tuple[str, str, str]], *,
                    panels: Sequence[tuple[str, str | None]], x: str = "latency", ncols: int = 2,
                    height: float = 4.2, xlabel: str = "latency (time steps, T + pre-simulation)",
                    provenance: str | None = None, ncol_legend: int = 2):
    """Accuracy against ``x``, one panel per (arch, ann) of ``panels`` (ann None: both ANNs in one panel).

    ``series`` maps (ann, variant) to (name shown, colour, line style); the ANN's accuracy is drawn as a dashed
    reference line per ANN of the panel. ``provenance``: a line printed under the figure."""
    fig, axes = _grid(len(panels), ncols, height)
    handles, labels = [], []
    for ax, (arch, ann) in zip(axes, panels):
        sub = rows[(rows["arch"] == arch) & ((rows["ann"] == ann) if ann else True)]
        for (s_ann, variant), (name, col, ls) in series.items():
            g = sub[(sub["ann"] == s_ann) & (sub["variant"] == variant)].sort_values(x)
            if len(g):
                (h,) = ax.plot(g[x], g["accuracy"], color=col, ls=ls, marker="o", label=name)
                handles.append(h)
                labels.append(name)
        anns = sub[["ann", "ann_accuracy"]].drop_duplicates("ann").sort_values("ann", key=_ann_order)
        for a, acc in anns.itertuples(index=False):
            name = f"{ANN_NAMES.get(a, a)} ANN"
            h = ax.axhline(acc, color=METHOD_COLORS["ann"], ls={"relu": "--", "qcfs": ":"}.get(a, "-."), lw=1.3,
                           label=name)
            handles.append(h)
            labels.append(name)
        _log2_axis(ax, sub[x])
        ax.set_ylim(0, 100)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        ann_text = f", {ANN_NAMES.get(ann, ann)} ANN" if ann else ""
        accs = ", ".join(f"{ANN_NAMES.get(a, a)} {v:.2f}%" for a, v in anns.itertuples(index=False))
        ax.set_title(f"{arch}{ann_text}\n(ANN accuracy: {accs})" if accs else arch)
    _finish(fig, handles, labels, ncol=ncol_legend, foot=provenance)
    return fig


def fig5_series(results: pd.DataFrame) -> dict[tuple[str, str], tuple[str, str, str]]:
    """Figure 5's lines: the paper's four methods as printed and the peers, on each ANN they apply to."""
    names = report.variant_names(results)
    shown = [report.printed_variant(results, m) for m in ("snn", "i-snn", "c-snn", "ic-snn")]
    shown += ["opi", "qcfs", report.cos_variant(results)]
    return {(ann, v): (names.get(v, v), color(v), "-") for ann in ("relu", "qcfs") for v in shown
            if ((results["ann"] == ann) & (results["variant"] == v)).any()}


def fig5_panels(results: pd.DataFrame) -> list[tuple[str, str]]:
    """(arch, ann) panels in reading order: each architecture's ReLU ANN on the left, its QCFS ANN on the right."""
    return [(a, ann) for a in results["arch"].unique() for ann in ("relu", "qcfs")
            if ((results["arch"] == a) & (results["ann"] == ann)).any()]


def comparison_series(results: pd.DataFrame) -> tuple[dict[tuple[str, str], tuple[str, str, str]], str]:
    """The comparison's lines (and the best IC-SNN reading's label): plain conversion, IC-SNN as printed and at
    its best reading (chosen after the fact by its mean loss on the test set), OPI and COS on the ReLU ANN;
    QCFS, IC-SNN and COS on the QCFS ANN (dashed)."""
    relu = results[(results["method"] == "ic-snn") & (results["ann"] == "relu")]
    best = relu.groupby("variant")["loss"].mean().idxmin()
    printed = report.printed_variant(results, "ic-snn")
    cos = report.cos_variant(results)
    cos_name = report.cos_name(cos)
    best_name = "IC-SNN, best reading" + report.variant_name(best, report.printed_calib_images(results, "ic-snn"))[6:]
    series = {("relu", "snn"): ("plain conversion", METHOD_COLORS["snn"], "-"),
              ("relu", printed): ("IC-SNN as printed", METHOD_COLORS["ic-snn"], "-"),
              ("relu", best): (best_name, METHOD_COLORS["ic-snn-best"], "-"),
              ("relu", "opi"): ("OPI", METHOD_COLORS["opi"], "-"),
              ("relu", cos): (f"{cos_name}, ReLU ANN", METHOD_COLORS["cos"], "-"),
              ("qcfs", "qcfs"): ("QCFS, QCFS ANN", METHOD_COLORS["qcfs"], "--"),
              ("qcfs", printed): ("IC-SNN as printed, QCFS ANN", METHOD_COLORS["ic-snn"], "--"),
              ("qcfs", cos): (f"{cos_name}, QCFS ANN", METHOD_COLORS["cos"], "--")}
    return series, best


def provenance_line(results: pd.DataFrame, path: str) -> str:
    """``results/full/results.csv · NVIDIA H100 · commits 51f5348, 05ef033`` for a figure's foot."""
    devices = ", ".join(sorted({str(d).replace("cuda:", "") for d in results["device"]}))
    commits = ", ".join(sorted({str(c)[:7] for c in results["git_commit"]}))
    return f"{path} · {results['profile'].iloc[0]} profile · {devices} · commit {commits}"


def comparison_figure(results: pd.DataFrame, *, provenance: str | None = None):
    """IC-SNN against its peers by latency, one panel per architecture (the intro's headline figure)."""
    series, _ = comparison_series(results)
    return accuracy_figure(results, series, panels=[(a, None) for a in results["arch"].unique()],
                           height=4.6, provenance=provenance)


def first_spike_figure(fs: pd.DataFrame, names: dict[str, str]):
    """Figure 6: mean first-spike step per IF layer, one panel per (arch, T), a line per method."""
    panels = list(fs[["arch", "T"]].drop_duplicates().itertuples(index=False))
    fig, axes = _grid(len(panels), 2, 3.8)
    handles, labels = [], []
    styles = _variant_styles(fs["variant"].unique())
    for ax, (arch, T) in zip(axes, panels):
        cell = fs[(fs["arch"] == arch) & (fs["T"] == T)]
        for variant, g in cell.groupby("variant", sort=False):
            (h,) = ax.plot(g["layer"], g["mean_first_spike"], marker="o", color=color(variant), ls=styles[variant],
                           label=names.get(variant, variant))
            handles.append(h)
            labels.append(names.get(variant, variant))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("IF layer")
        ax.set_ylabel("mean first-spike step")
        ax.set_title(f"{arch}, T = {T}")
    _finish(fig, handles, labels, ncol=3)
    return fig


def _variant_styles(variants) -> dict[str, str]:
    """Line styles that tell apart two readings of one method (same colour): solid, dashed, dotted, ..."""
    seen: dict[str, int] = {}
    out = {}
    for v in variants:
        m = v.split("[")[0]
        out[v] = ("-", "--", ":", "-.")[seen.get(m, 0) % 4]
        seen[m] = seen.get(m, 0) + 1
    return out


def layer_output_figure(lo: pd.DataFrame, arch: str, names: dict[str, str]):
    """Figure 7 for one architecture: decoded SNN output against the ANN activation, neuron by neuron; a row per
    T, a column per layer."""
    sub = lo[lo["arch"] == arch]
    Ts, layers = sorted(sub["T"].unique()), sorted(sub["layer"].unique())
    fig, axes = plt.subplots(len(Ts), len(layers), figsize=(WIDTH, 2.9 * len(Ts)), squeeze=False, sharex="col")
    styles = _variant_styles(sub["variant"].unique())
    handles, labels = [], []
    for i, T in enumerate(Ts):
        for j, layer in enumerate(layers):
            ax = axes[i, j]
            cell = sub[(sub["T"] == T) & (sub["layer"] == layer)]
            first = cell[cell["variant"] == cell["variant"].iloc[0]]
            (h,) = ax.plot(first["neuron"], first["ann_value"], color=METHOD_COLORS["ann"], lw=2.2, label="ANN")
            handles.append(h)
            labels.append("ANN")
            for variant, g in cell.groupby("variant", sort=False):
                (h,) = ax.plot(g["neuron"], g["snn_value"], lw=1.3, color=color(variant), ls=styles[variant],
                               label=names.get(variant, variant))
                handles.append(h)
                labels.append(names.get(variant, variant))
            ax.set_title(f"layer {layer}, T = {T}")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if i == len(Ts) - 1:
                ax.set_xlabel("neuron")
            if j == 0:
                ax.set_ylabel("output")
    fig.suptitle(arch)
    _finish(fig, handles, labels, ncol=2)
    return fig


def rate_coding_figure(image, coded, Ts):
    """Figure 3: the image and its rate-coded reconstructions, side by side."""
    show = lambda a: a.transpose(1, 2, 0).squeeze() if a.shape[0] in (1, 3) else a  # noqa: E731
    cmap = "gray" if image.shape[0] == 1 else None
    fig, axes = plt.subplots(1, len(Ts) + 1, figsize=(WIDTH, WIDTH / (len(Ts) + 1) + 0.6))
    axes[0].imshow(show(image), cmap=cmap, vmin=0, vmax=1)
    axes[0].set_title("original")
    for ax, T, c in zip(axes[1:], Ts, coded):
        ax.imshow(show(c), cmap=cmap, vmin=0, vmax=1)
        ax.set_title(f"T = {int(T)}")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig


HEADLINE_ALT = ("Two panels, VGG16 and ResNet20 at full width on CIFAR-10: test accuracy against latency in time "
                "steps (log scale), with dashed lines at the ReLU and QCFS ANNs' accuracies. IC-SNN as printed stays "
                "at chance at every latency; plain conversion rises slowly; IC-SNN's best reading and OPI lie "
                "close together; QCFS and COS on the QCFS-trained ANN reach their ANN's accuracy within a few steps.")


def write_headline(results_dir, path) -> None:
    """The intro's headline figure (:func:`comparison_figure` of the ``full`` profile), saved as a PNG."""
    style()
    results = report.load_results(results_dir)
    fig = comparison_figure(results, provenance=provenance_line(results, "results/full/results.csv"))
    fig.savefig(path)
    plt.close(fig)


__all__ = ["METHOD_COLORS", "accuracy_figure", "color", "comparison_figure", "first_spike_figure", "fig5_panels",
           "fig5_series", "layer_output_figure", "rate_coding_figure", "style", "write_headline"]


def series_rows(results: pd.DataFrame, series: dict[tuple[str, str], tuple[str, str, str]]) -> pd.DataFrame:
    """The rows a figure's ``series`` draws, with the name each is shown under (column ``shown``)."""
    keys = list(zip(results["ann"], results["variant"]))
    rows = results[[k in series for k in keys]].copy()
    rows["shown"] = [series[k][0] for k in zip(rows["ann"], rows["variant"])]
    return rows


def _network_panels(frame: pd.DataFrame, height: float) -> tuple[plt.Figure, list[tuple[plt.Axes, str, str, pd.DataFrame]]]:
    """A figure with one panel per (network, ANN) of ``frame``, two to a row (ReLU before QCFS), and for each panel
    its axes, network, ANN and rows; panels left over in the last row are removed."""
    keys = frame[["arch", "ann"]].drop_duplicates().sort_values(
        ["arch", "ann"], key=lambda c: _ann_order(c) if c.name == "ann" else c)
    cols = min(2, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH, height * rows), squeeze=False)
    for ax in list(axes.flat)[len(keys):]:
        ax.remove()
    return fig, [(ax, arch, ann, frame[(frame["arch"] == arch) & (frame["ann"] == ann)])
                 for ax, (arch, ann) in zip(axes.flat, keys.itertuples(index=False))]


def energy_tradeoff_figure(trade: pd.DataFrame) -> plt.Figure:
    """Accuracy against estimated energy per image (log scale), one panel per (network, ANN), one line per method
    with a marker at each T; the ANN is the black star."""
    fig, panels = _network_panels(trade, 4.2)
    for ax, arch, ann, part in panels:
        for method, g in part.groupby("method", sort=False):
            g = g.sort_values("T")
            ax.plot(g["energy_per_image_uj"], g["accuracy"], "o-", color=METHOD_COLORS.get(method, "#333333"),
                    label=report.METHOD_NAMES.get(method, method))
        ax.plot(part["ann_energy_per_image_uj"].iloc[0], part["ann_accuracy"].iloc[0], "*", color=METHOD_COLORS["ann"],
                ms=16, label="ANN")
        ax.set(xscale="log", title=f"{arch}, {ANN_NAMES.get(ann, ann)} ANN", xlabel="estimated energy per image (µJ)",
               ylabel="test accuracy (%)")
    handles = {l: h for ax in fig.axes for h, l in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(4, len(handles)), frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.08 if len(fig.axes) <= 2 else 0.05, 1, 1))
    return fig


def firing_rate_figure(rates: pd.DataFrame) -> plt.Figure:
    """Firing rate (spikes per neuron per step) of each IF layer, one panel per (network, ANN), one line per method."""
    fig, panels = _network_panels(rates, 3.8)
    for ax, arch, ann, part in panels:
        for method, g in part.groupby("method", sort=False):
            ax.plot(g["layer"], g["firing_rate"], "o-", color=METHOD_COLORS.get(method, "#333333"),
                    label=report.METHOD_NAMES.get(method, method))
        ax.set(title=f"{arch}, {ANN_NAMES.get(ann, ann)} ANN, T = {int(part['T'].iloc[0])}", xlabel="IF layer",
               ylabel="spikes per neuron per step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    fig.tight_layout()
    return fig
