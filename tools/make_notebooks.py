# Writes the source notebooks in notebooks/ (unexecuted). Edit this file, then run it, to change them consistently.
import nbformat as nbf
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "notebooks"
PARAMS = '''profile = "ci"      # ci | cpu | full: which run to show
results_dir = None  # folder written by `icsnn reproduce` (default: results/<profile> in the checkout)
data_root = None    # dataset location, only needed if the results must be computed first
device = "auto"     # device for that computation
recompute = False   # True: run `icsnn reproduce` for this profile before plotting
dataset = None      # show only this dataset (default: the profile's)
arch = None         # show only this architecture (default: every one measured)
T_grid = None       # show only these T (default: every T measured)
methods = None      # show only these methods (default: every one measured)'''
SETUP = '''import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display
from myst_nb import glue

from icsnn_core import report

sns.set_theme(style="whitegrid", context="notebook")
results_dir = report.ensure_results(profile, results_dir, data_root=data_root, device=device, recompute=recompute)
results = report.select(report.load_results(results_dir), dataset=dataset, arch=arch, T_grid=T_grid, methods=methods)
display(Markdown(report.describe_profile(results)))'''
PROV = '''report.provenance_table(results)'''


def figure_setup(frame: str, file: str) -> str:
    """SETUP for a page that plots a figure's own file: its provenance is that file's, not results.csv's."""
    return SETUP.replace("display(Markdown(report.describe_profile(results)))",
                         f'{frame} = report.load_figure_rows(results_dir, "{file}", results)\n'
                         f"display(Markdown(report.describe_profile(results, measured={frame})))")


def nb(name, title, intro, cells, setup=SETUP, provenance=PROV):
    n = nbf.v4.new_notebook()
    n.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                  "language_info": {"name": "python"}}
    c = [nbf.v4.new_markdown_cell(f"# {title}\n\n{intro}"),
         nbf.v4.new_code_cell(PARAMS, metadata={"tags": ["parameters", "remove-cell"]}),
         nbf.v4.new_code_cell(setup, metadata={"tags": ["hide-input"]})]
    for kind, src, *tags in cells:
        meta = {"tags": tags[0]} if tags else {}
        c.append(nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src, metadata=meta))
    if provenance:
        c += [nbf.v4.new_markdown_cell("## Provenance\n\nEvery number above comes from these runs of this repository's code:"),
              nbf.v4.new_code_cell(provenance, metadata={"tags": ["hide-input"]})]
    for i, cell in enumerate(c):  # stable ids: regenerating a notebook changes only what was edited
        cell.id = f"{name}-{i}"
    n.cells = c
    nbf.write(n, OUT / f"{name}.ipynb")


nb("fig3_rate_coding", "Figure 3: rate coding of an input image",
   "Rate coding turns each pixel intensity p in [0, 1] into a spike train that fires with probability p at "
   "every step (paper Sec. 3.4). Averaging T steps recovers the image only up to a granularity of 1/T, which "
   "is the coding error that the paper's compensation targets.",
   [("code", '''data = np.load(results_dir / "rate_coding.npz")
image, coded, Ts = data["image"], data["coded"], data["Ts"]
show = lambda a: a.transpose(1, 2, 0).squeeze() if a.shape[0] in (1, 3) else a
cmap = "gray" if image.shape[0] == 1 else None
fig, axes = plt.subplots(1, len(Ts) + 1, figsize=(3 * (len(Ts) + 1), 3))
axes[0].imshow(show(image), cmap=cmap, vmin=0, vmax=1)
axes[0].set_title("original")
for ax, T, c in zip(axes[1:], Ts, coded):
    ax.imshow(show(c), cmap=cmap, vmin=0, vmax=1)
    ax.set_title(f"rate coded, T = {T}")
for ax in axes:
    ax.axis("off")
errors = {int(T): float(np.abs(c - image).mean()) for T, c in zip(Ts, coded)}
for T, e in errors.items():
    glue(f"fig3_err_{T}", e, display=False)
plt.tight_layout()
plt.show()''', ["hide-input"]),
    ("md", "The mean absolute pixel error of the reconstruction is {glue:text}`fig3_err_32:.3f` at T = 32, "
           "{glue:text}`fig3_err_128:.3f` at T = 128 and {glue:text}`fig3_err_1024:.3f` at T = 1024: it shrinks "
           "like 1/sqrt(T), the standard deviation of a mean of T Bernoulli draws.")])

nb("fig5_accuracy_vs_T", "Figure 5: accuracy against time steps",
   "Accuracy of the converted SNN after t time steps, for the paper's four variants as printed (SNN, I-SNN, "
   "C-SNN, IC-SNN) and the peers on the same trained ANNs. The x-axis is the **latency**: T plus any "
   "pre-simulation steps (COS's rho), so that methods are compared at equal cost. The dashed line is the ANN.",
   [("code", '''shown = [report.printed_variant(results, m) for m in ("snn", "i-snn", "c-snn", "ic-snn")] + ["opi", "qcfs", report.cos_variant(results)]
rows = results[results["variant"].isin(shown)]
grid = sns.relplot(data=rows, x="latency", y="accuracy", hue="method", style="method", markers=True, dashes=False,
                   row="arch", col="ann", kind="line", height=3.8, aspect=1.3)
for (a, ann), ax in grid.axes_dict.items():
    acc = rows[(rows["arch"] == a) & (rows["ann"] == ann)]["ann_accuracy"]
    if len(acc):
        ax.axhline(acc.iloc[0], ls="--", color="black", lw=1)
    ax.set_title(f"{a}, {ann.upper()} ANN ({acc.iloc[0]:.2f}%)" if len(acc) else a)
grid.set(xscale="log", ylim=(0, 100))
grid.set_axis_labels("latency (time steps)", "test accuracy (%)")
ic8 = rows[(rows["method"] == "ic-snn") & (rows["ann"] == "relu") & (rows["T"] == 8)]["accuracy"]
glue("fig5_ic8", float(ic8.iloc[0]) if len(ic8) else float("nan"), display=False)
glue("fig5_ann", float(rows[rows["ann"] == "relu"]["ann_accuracy"].iloc[0]), display=False)
plt.show()''', ["hide-input"]),
    ("md", "Left: the ReLU ANN, with the paper's methods (options as printed), OPI and COS; right: the ANN trained with "
           "QCFS, with QCFS, COS and the paper's methods on top of it. On the first architecture, the ReLU ANN reaches "
           "{glue:text}`fig5_ann:.2f`% and IC-SNN as printed reaches {glue:text}`fig5_ic8:.2f`% at T = 8. Every "
           "measured point, accuracy (%) by T (COS's latency is T + 4):"),
    ("code", '''rows.pivot_table(index=["arch", "ann", "method"], columns="T", values="accuracy", sort=False).round(2)''',
     ["hide-input"])])

nb("fig6_first_spike", "Figure 6: mean first-spike time per layer",
   "When does each layer start to fire? For every IF layer, the mean step of a neuron's first spike (over the "
   "neurons that fire within T, on test images), for plain conversion and for IC-SNN. The paper reports that "
   "the initial potential makes every layer fire earlier, most of all the deep ones.",
   [("code", '''grid = sns.relplot(data=fs, x="layer", y="mean_first_spike", hue="variant", col="T", row="arch", kind="line",
                   marker="o", height=3.5, aspect=1.4, facet_kws={"sharey": False})
grid.set_axis_labels("IF layer", "mean first-spike step")
plt.show()''', ["hide-input"]),
    ("md", "Neurons that never fire within T are left out of the mean; their share per layer:"),
    ("code", '''fs.pivot_table(index=["arch", "T", "variant"], columns="layer", values="silent_fraction", sort=False).round(3)''',
     ["hide-input"])], setup=figure_setup("fs", "first_spike.csv"), provenance="report.provenance_table(fs)")

nb("fig7_layer_outputs", "Figure 7: layer outputs, ANN against SNN",
   "The decoded output of an IF layer (spike count / T x V_th) against the ANN's activation for the same test "
   "image, for the first 120 neurons of layers 1 and 3, at T = 8, 16 and 32. The closer a method's line "
   "follows the ANN, the smaller its conversion error.",
   [("code", '''for a in results["arch"].unique():
    sub = lo[lo["arch"] == a]
    Ts, layers = sorted(sub["T"].unique()), sorted(sub["layer"].unique())
    fig, axes = plt.subplots(len(Ts), len(layers), figsize=(7 * len(layers), 2.6 * len(Ts)), squeeze=False)
    for i, T in enumerate(Ts):
        for j, layer in enumerate(layers):
            ax = axes[i, j]
            cell = sub[(sub["T"] == T) & (sub["layer"] == layer)]
            first = cell[cell["variant"] == cell["variant"].iloc[0]]
            ax.plot(first["neuron"], first["ann_value"], color="black", lw=2, label="ANN")
            for variant, g in cell.groupby("variant", sort=False):
                ax.plot(g["neuron"], g["snn_value"], lw=1, label=variant)
            ax.set_title(f"{a}: layer {layer}, T = {T}", fontsize=10)
    axes[0, -1].legend(fontsize=7, loc="upper right")
    plt.tight_layout()
plt.show()''', ["hide-input"]),
    ("md", "Mean absolute difference between the decoded SNN output and the ANN activation over those neurons:"),
    ("code", '''lo.assign(error=(lo["snn_value"] - lo["ann_value"]).abs()).pivot_table(
    index=["arch", "layer", "variant"], columns="T", values="error", sort=False).round(4)''', ["hide-input"])],
   setup=figure_setup("lo", "layer_outputs.csv"), provenance="report.provenance_table(lo)")

nb("tables", "Tables 2-5: accuracy loss against the paper",
   "Accuracy loss is the ANN's accuracy minus the SNN's, in percentage points (paper Sec. 4.3). For every "
   "cell of the paper's Tables 2-5: the paper's number, this project's number for the same dataset, "
   "architecture, method (the reading as printed) and T, and a verdict: *reproduced* when the two differ by "
   "at most 1 point plus 25% of the paper's loss, otherwise *better* or *worse than paper*. The paper's numbers "
   "are its own (source: Tables 2-5 of Mathematics 2023, 11, 58, packaged as `icsnn_core/paper/paper_tables.csv`), "
   "never ours. Widths, epochs and the JPEG copy of CIFAR-10 of the cpu profile differ from the paper's setting: "
   "read its verdicts with the provenance below.",
   [("code", '''paper = report.paper_tables()
for table in (2, 3, 4, 5):
    meta = paper[paper["table"] == table].iloc[0]
    display(Markdown(f"### Table {table}: {meta['arch']} on {meta['dataset']} (paper's ANN: {meta['ann_acc']:.2f}%)"))
    measured = results[(results["dataset"] == meta["dataset"]) & (results["arch"] == meta["arch"])]
    if len(measured):
        cmp = report.compare_with_paper(results, table)
        display(Markdown(f"This project's ReLU ANN: {measured[measured['ann'] == 'relu']['ann_accuracy'].iloc[0]:.2f}%."))
        display(cmp.pivot_table(index=["paper_method"], columns="T", values=["paper_loss", "our_loss"], sort=False))
        display(cmp.pivot_table(index=["paper_method"], columns="T", values="verdict", aggfunc="first", sort=False))
    else:
        why = ("CIFAR-100 cannot be obtained here: these runs need the user's own copy (`--data-root`)"
               if meta["dataset"] == "cifar100" else
               f"this profile ran {', '.join(results['dataset'].unique())}, not {meta['dataset']}")
        display(Markdown(f"No measured column: {why}. The paper's numbers:"))
        display(paper[paper["table"] == table].pivot_table(index="paper_method", columns="T", values="loss", sort=False))''',
     ["hide-input"]),
    ("md", "The same loss for every method and T measured in this profile, whatever the dataset:"),
    ("code", '''results.pivot_table(index=["arch", "ann", "variant"], columns="T", values="loss", sort=False).round(2)''',
     ["hide-input"])])

nb("ambiguities", "The paper's ambiguous points, measured",
   "The paper can be read more than one way on five points (see the Method page). Each reading is measured "
   "with the other options as printed. The first table gives IC-SNN's accuracy loss (points) per reading and "
   "T; where the profile ran the paper's dataset and models, the second ranks the readings by their mean "
   "distance to the paper's own losses: the reading closest to the paper is the one the authors most likely ran.",
   [("code", '''report.ambiguity_table(results, "ic-snn")''', ["hide-input"]),
    ("md", "I-SNN (Algorithm 2 without compensation), the same way:"),
    ("code", '''report.ambiguity_table(results, "i-snn")''', ["hide-input"]),
    ("code", '''for table, method in ((2, "ic-snn"), (2, "i-snn"), (4, "ic-snn"), (4, "i-snn")):
    dist = report.reading_distance(results, table, method)
    if len(dist):
        display(Markdown(f"**Table {table}, {method}**: readings by mean |our loss - paper's loss| (points)"))
        display(dist)
    else:
        display(Markdown(f"Table {table} ({method}): the paper's dataset and model were not run in this profile."))''',
     ["hide-input"])])

nb("comparison", "IC-SNN against its peers",
   "All methods on the same trained ANNs, the same data and the same T grid. OPI and the paper's methods run on "
   "the ReLU ANN; QCFS needs its own ANN (trained with the QCFS activation by the same training code), on which "
   "IC-SNN's calibration and COS also run. COS pays rho pre-simulation steps per input, so the comparison is "
   "by latency.",
   [("code", '''best_ic = (results[(results["method"] == "ic-snn") & (results["ann"] == "relu")]
           .groupby("variant")["loss"].mean().idxmin())
ic_printed = report.printed_variant(results, "ic-snn")
cos = report.cos_variant(results)
picks = {("relu", "snn"): "plain (snn)", ("relu", ic_printed): "IC-SNN as printed",
         ("relu", best_ic): "IC-SNN, best reading", ("relu", "opi"): "OPI",
         ("relu", cos): f"{report.cos_name(cos)} on ReLU",
         ("qcfs", "qcfs"): "QCFS", ("qcfs", ic_printed): "IC-SNN on QCFS",
         ("qcfs", cos): f"{report.cos_name(cos)} on QCFS"}
rows = results[[(a, v) in picks for a, v in zip(results["ann"], results["variant"])]].copy()
rows["method shown"] = [picks[(a, v)] for a, v in zip(rows["ann"], rows["variant"])]
glue("best_ic", best_ic, display=False)
grid = sns.relplot(data=rows, x="latency", y="accuracy", hue="method shown", col="arch", kind="line", marker="o",
                   height=4, aspect=1.4)
grid.set(xscale="log", ylim=(0, 100))
grid.set_axis_labels("latency (time steps, T + pre-simulation)", "test accuracy (%)")
plt.show()''', ["hide-input"]),
    ("md", "The best IC-SNN reading here is {glue:text}`best_ic`, chosen by its mean loss on the test set after "
           "the fact: an optimistic number, shown to bound what the method can do, not a tuned result. "
           "Accuracy (%) by latency:"),
    ("code", '''rows.pivot_table(index=["arch", "method shown"], columns="latency", values="accuracy", sort=False).round(2)''',
     ["hide-input"])])

nb("energy", "What accuracy costs",
   "An SNN is converted to run cheaper than its ANN. This page sets each method's accuracy against an estimate "
   "of the arithmetic energy per test image, E = MACs x E_MAC + SOPs x E_AC, counted during the same "
   "simulations that give the accuracy curves (`icsnn_core.energy`). E_MAC = 4.6 pJ and E_AC = 0.9 pJ are the "
   "45 nm figures of M. Horowitz, \"Computing's energy problem (and what we can do about it)\", ISSCC 2014, the "
   "convention of the conversion literature. **This is an estimate of arithmetic energy, not a hardware "
   "measurement**: memory traffic, membrane updates and biases are not counted.\n\n"
   "What is counted, per image: a spike costs one accumulate (a synaptic operation, SOP) on each of its outgoing "
   "synapses, counted exactly from the layer shapes (padding and stride included; average pooling folded into "
   "the next layer; the output layer counts too). Under direct coding the first layer receives the analog image "
   "at every step, so its operations are MACs at every step; under rate coding the input spikes cost SOPs. COS "
   "pays for its rho pre-simulation steps: the first layer's MACs and the SOPs into the pre-simulated neurons of "
   "those steps are counted once more, and COS is read at its latency T + rho. The ANN does one MAC per "
   "synapse per image. IC-SNN's calibration runs once before deployment and is not counted per image.",
   [("code", '''energy = report.load_energy(results_dir, results)
layers = report.load_energy(results_dir, results, "energy_layers.csv")
trade = report.energy_tradeoff(energy, report.shown_variants(results)) if len(energy) else energy
if len(trade):
    report.plot_energy_tradeoff(trade)
    plt.show()
else:
    display(Markdown(report.energy_missing(results_dir)))''', ["hide-input"]),
    ("md", "Each marker is one T of the profile's grid (read at t = T); further right costs more. The ANN's "
           "energy is its MACs x 4.6 pJ. Each method's energy per image relative to its ANN's, at T = 8 and 32:"),
    ("code", '''report.energy_at(trade, (8, 32)) if len(trade) else Markdown(report.energy_missing(results_dir))''',
     ["hide-input"]),
    ("md", "## What it takes to come close to the ANN\n\nThe smallest T of the grid at which each method comes "
           "within 1 point (and 0.1 point) of its ANN's accuracy, with the latency and the energy per image it "
           "needs there (empty where no T of the grid reached it):"),
    ("code", '''report.cost_to_reach(trade) if len(trade) else Markdown(report.energy_missing(results_dir))''',
     ["hide-input"]),
    ("md", "## Is IC-SNN's better start bought with more spikes?\n\nFiring rate (spikes per neuron per step) of "
           "each IF layer for plain conversion and IC-SNN (as printed) at a low T:"),
    ("code", '''rates = report.firing_rates(layers, [report.printed_variant(results, m) for m in ("snn", "ic-snn")]) if len(layers) else layers
if len(rates):
    report.plot_firing_rates(rates)
    plt.show()
    display(rates.pivot_table(index=["arch", "ann", "layer", "layer_name"], columns="method", values="firing_rate",
                              sort=False).round(4))
else:
    display(Markdown(report.energy_missing(results_dir)))''', ["hide-input"])],
   provenance="report.provenance_table(energy if len(energy) else results)")

nb("provenance", "Provenance of every number",
   "Each row of every table and figure in this book comes from a results file written by `icsnn reproduce`; "
   "every row of that file records the profile, the data copy, the model, the device, the git commit and the "
   "package versions. This page lists the distinct combinations behind the profile shown.",
   [("code", '''display(Markdown(f"Results folder: `{results_dir}`; {len(results)} measured points."))''', ["hide-input"])])

PERF_SETUP = '''from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from icsnn_core.report import load_benchmarks

bench, files = load_benchmarks("speed-*.csv")
display(Markdown(f"Benchmark files: {', '.join(f'`{f.name}`' for f in files) or 'none yet'}; devices: "
                 + ", ".join(f"`{d}`" for d in bench.get("device", pd.Series(dtype=str)).unique())))'''

nb("performance", "Performance",
   "How fast the simulation is, measured by `python benchmarks/speed.py` (run by hand, not in CI) on the device "
   "named in each table; GPU numbers appear only once measured on a GPU. **Efficiency** is T times the ANN's "
   "forward time over the SNN's simulation time for the same batch: the SNN cannot do less dense work than T "
   "forward passes, so 1.0 is the floor's speed (values above 1 come from cache effects of the folded batch). "
   "`max_fold` is the number of samples x steps run in one forward pass (the default is 256 on a CPU, where "
   "moderate folds stay in cache; folding all T steps at once is the second row of each pair).",
   [("md", "## Efficiency against the physical floor"),
    ("code", '''bench[bench["benchmark"] == "efficiency"][["device", "arch", "width", "batch", "T", "max_fold", "ann_ms", "snn_ms", "value"]].rename(columns={"value": "efficiency"})''', ["hide-input"]),
    ("md", "## Against SpikingJelly\n\nThe same converted network with SpikingJelly's multi-step `IFNode` (soft reset) "
           "in place of `IFNeuron`, both folding all T steps into one pass; `identical_outputs` checks that the two "
           "produce the same output at every step before they are timed."),
    ("code", '''bench[bench["benchmark"] == "spikingjelly"][["device", "arch", "width", "batch", "T", "identical_outputs", "snn_ms", "sj_ms", "value", "unit"]].rename(columns={"value": "speed-up", "snn_ms": "icsnn_ms"})''', ["hide-input"]),
    ("md", "## Calibration cost and size\n\nIC-SNN's data-based calibration (Algorithm 3) and COS's per-input "
           "pre-simulation against one ANN training epoch, and IC-SNN's accuracy against the number of calibration images."),
    ("code", '''cal = bench[bench["benchmark"] == "calibration"] if "benchmark" in bench else bench
cal if len(cal) else Markdown("Not measured yet: it needs a trained CIFAR-10 checkpoint (`--checkpoint`, `--data-root`).")''', ["hide-input"]),
    ("md", "## Memory\n\nPeak memory of a T = 256 evaluation of VGG16: bounded by `max_fold`, not by T x the number of images."),
    ("code", '''bench[bench["benchmark"] == "memory"][["device", "arch", "width", "T", "n_images", "max_fold", "value", "unit"]].rename(columns={"value": "peak"})''', ["hide-input"]),
    ("md", "## Does the ANN start to learn?\n\n`python benchmarks/train_probe.py` trains VGG16 (width 0.25) on CIFAR-10 "
           "for its first optimiser steps with the paper's recipe (SGD, lr 0.1), from the same seed, in four set-ups: "
           "with and without batch norm, and with QCFS's lambda starting at 8 (QCFS's code) or 2 (this project). "
           "Mean training loss over each window of steps (chance is ln 10 = 2.30) and the range of the layers' lambdas:"),
    ("code", '''probe, _ = load_benchmarks("train-probe-*.csv")
if len(probe):
    display(probe.pivot_table(index=["setup"], columns="step", values="mean_loss", sort=False))
    display(probe[probe["activation"] == "qcfs"].pivot_table(index=["setup"], columns="step",
                                                             values=["min_lambda", "max_lambda"], sort=False))
    display(probe[["device", "git_commit", "data_source", "seed"]].drop_duplicates())
else:
    display(Markdown("Not measured yet: run `python benchmarks/train_probe.py --data-root ...`."))''', ["hide-input"]),
    ("md", "## Which training changes pay?\n\n`python benchmarks/recipe_study.py` trains the same network from the "
           "same seed with the paper's recipe and with one change added at a time (`+nesterov-smooth` is the `fast` "
           "recipe; the two changes after it did not pay and are left out of it). Each variant trains on the first 45,000 training images and is scored on the last 5,000, "
           "which it never saw: the test set plays no part in choosing the recipe. QCFS variants compare lambda's "
           "fixed start (2) with the start from the data (each lambda at the 0.99 quantile of its layer's inputs), "
           "and train with every change (`qcfs-+ema`, beside `+ema` on ReLU), with 4 levels and with 8. "
           "The training seconds come from a shared 2-core machine running two variants side by side with other "
           "work: compare them roughly, not as a benchmark."),
    ("code", '''study, _ = load_benchmarks("recipe-study-*.csv")
if len(study):
    display(study[["variant", "activation", "arch", "width", "epochs", "val_accuracy", "final_loss", "seconds"]]
            .rename(columns={"val_accuracy": "held-out accuracy (%)", "final_loss": "last epoch's loss",
                             "seconds": "training seconds"}).style.hide(axis="index").format(precision=2))
    display(study.assign(commit=study["git_commit"].str[:7])[["device", "commit", "seed", "train_images", "val_images"]]
            .drop_duplicates().style.hide(axis="index"))
else:
    display(Markdown("Not measured yet: run `python benchmarks/recipe_study.py --data-root ...`."))''', ["hide-input"])],
   setup=PERF_SETUP, provenance=False)
