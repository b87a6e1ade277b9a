"""The CLI's ci profile end to end (the real pipeline on the embedded digits set), and what it writes."""
import subprocess
import sys

import pytest

from icsnn_core import pipeline
from icsnn_core.cli import main
from icsnn_core.results import KEY_COLUMNS, RESULT_COLUMNS, merge_rows, read_rows

T_GRID = ["1", "2", "4", "8", "16", "32", "64"]


def test_ci_profile_writes_every_method_reading_and_T(ci_run):
    rows = read_rows(ci_run / "results.csv")
    assert set(rows[0]) == set(RESULT_COLUMNS)
    by_method = {}
    for r in rows:
        by_method.setdefault((r["ann"], r["method"]), set()).add(r["variant"])
        rho = int(r["rho"]) if r["method"] == "cos" else 0
        assert int(r["latency"]) == int(r["T"]) + rho and r["dataset"] == "digits"
        assert (r["levels"] == "4") == (r["ann"] == "qcfs")
        assert (r["threshold_values"] == "lambda") == (r["ann"] == "qcfs")
        assert 0.0 <= float(r["accuracy"]) <= 100.0 and float(r["ann_accuracy"]) > 90.0
        assert r["git_commit"] and r["device"].startswith("cpu") and r["torch_version"]
        assert (r["epochs"], r["recipe"]) == ("30", "paper")  # how the ANN was trained: the ci profile's recipe
    paper = {"snn", "i-snn", "c-snn", "ic-snn"}
    assert set(by_method) == {("relu", m) for m in (*paper, "opi", "cos")} | {("qcfs", m) for m in (*paper, "qcfs", "cos")}
    assert by_method[("relu", "cos")] == {"cos[rho=4,iterations=1,shift=authors]", "cos[rho=4,iterations=2,shift=authors]",
                                          "cos[rho=4,iterations=1,shift=threshold]"}
    ic = by_method[("relu", "ic-snn")]
    for reading in ("compensation=printed", "compensation=potential", "residual=raw", "residual=clip", "residual=fired",
                    "granularity=layer", "granularity=channel", "granularity=neuron", "init=weight", "calib_images=64"):
        assert any(reading in v for v in ic), reading
    for ann, method in by_method:
        for variant in by_method[(ann, method)]:
            assert sorted((r["T"] for r in rows if (r["ann"], r["variant"]) == (ann, variant)), key=int) == T_GRID
    assert len({tuple(r[k] for k in KEY_COLUMNS) for r in rows}) == len(rows)  # one row per measured point


def test_curves_end_at_the_reported_accuracy(ci_run):
    rows = read_rows(ci_run / "results.csv")
    curves = read_rows(ci_run / "curves.csv")
    last = {(c["ann"], c["variant"], c["T"]): (c["accuracy"], c["latency"]) for c in curves if c["t"] == c["T"]}
    assert all(last[(r["ann"], r["variant"], r["T"])] == (r["accuracy"], r["latency"]) for r in rows)
    n_points = sum(int(r["T"]) for r in rows)
    assert len(curves) == n_points


def test_plain_snn_gets_better_with_T_and_rerun_skips_measured_points(ci_run, monkeypatch):
    rows = {(r["ann"], r["variant"], int(r["T"])): float(r["accuracy"]) for r in read_rows(ci_run / "results.csv")}
    assert rows[("relu", "snn", 64)] > rows[("relu", "snn", 1)] + 50
    # QCFS's point: near its ANN at very low T, where plain conversion of the same ANN is far below it (the gap's size
    # varies with the machine's summation order: 48.8 points with 2 threads, 53.8 with 1 on the same machine)
    ann = {r["ann"]: float(r["ann_accuracy"]) for r in read_rows(ci_run / "results.csv")}
    assert rows[("qcfs", "qcfs", 2)] >= ann["qcfs"] - 3 and rows[("qcfs", "qcfs", 2)] > rows[("qcfs", "snn", 2)] + 30
    before = (ci_run / "results.csv").read_bytes()

    def no_simulation(*a, **k):
        raise AssertionError("a rerun must not simulate points that are already measured")

    monkeypatch.setattr(pipeline, "accuracy_curve", no_simulation)
    assert main(["reproduce", "--profile", "ci", "--out", str(ci_run), "--quiet"]) == 0
    assert (ci_run / "results.csv").read_bytes() == before


def test_failed_run_keeps_earlier_results(tmp_path):
    path = tmp_path / "results.csv"
    merge_rows(path, [{"variant": "snn", "T": 1, "accuracy": 50.0}], RESULT_COLUMNS, KEY_COLUMNS)
    before = path.read_bytes()

    class Boom:
        def __str__(self):
            raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        merge_rows(path, [{"variant": "snn", "T": 2, "accuracy": Boom()}], RESULT_COLUMNS, KEY_COLUMNS)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temp file left behind


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["reproduce", "--profile", "cpu", "--out", str(tmp_path), "--quiet"]) == 2
    assert "Fix:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reproduce", "--profile", "tiny", "--out", str(tmp_path)])


def test_evaluate_refuses_bad_options(ci_run, tmp_path, capsys):
    ckpt = next((ci_run / "checkpoints").glob("*relu*.pt"))
    for bad, message in ((["--T", "0"], "positive integer"), (["--dataset", "fashion-mnist"], "--dataset digits"), (["--quantile", "1.5"], "(0, 1]"),
                         (["--methods", "x-snn"], "unknown method 'x-snn'"),
                         (["--methods", "qcfs"], "QCFS-trained ANN")):
        assert main(["evaluate", "--checkpoint", str(ckpt), "--out", str(tmp_path), "--quiet", *bad]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "results.csv").exists()


def test_evaluate_subcommand_on_the_trained_checkpoint(ci_run, tmp_path):
    ckpt = next((ci_run / "checkpoints").glob("*relu*.pt"))
    assert main(["evaluate", "--checkpoint", str(ckpt), "--out", str(tmp_path), "--quiet", "--methods", "snn", "ic-snn",
                 "--T", "4", "8", "--compensation", "potential", "--residual", "clip"]) == 0
    rows = read_rows(tmp_path / "results.csv")
    assert [(r["method"], r["T"]) for r in rows] == [("snn", "4"), ("snn", "8"), ("ic-snn", "4"), ("ic-snn", "8")]
    assert rows[2]["compensation"] == "potential" and rows[2]["residual"] == "clip" and rows[0]["compensation"] == ""


def test_help_of_every_subcommand():
    for args in ([], ["reproduce"], ["train"], ["evaluate"]):
        out = subprocess.run([sys.executable, "-m", "icsnn_core.cli", *args, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "usage: icsnn" in out.stdout


def _merge_many(path, start: int) -> None:
    for i in range(start, start + 40):
        row = {c: "" for c in RESULT_COLUMNS}
        row.update(profile="ci", variant=f"v{i}", T=1, accuracy=50.0)
        merge_rows(path, [row], RESULT_COLUMNS, KEY_COLUMNS)


def test_two_processes_merging_into_one_folder_keep_every_row(tmp_path):
    """One process per trained ANN may share a results folder (tools/full_gpu.sh): the folder lock keeps
    one process's read-modify-write from overwriting the other's rows."""
    import multiprocessing as mp

    path = tmp_path / "results.csv"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_merge_many, args=(path, s)) for s in (0, 1000)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert all(p.exitcode == 0 for p in procs)
    assert sorted(r["variant"] for r in read_rows(path)) == sorted(f"v{i}" for s in (0, 1000) for i in range(s, s + 40))
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # the lock leaves no file behind


def test_reproduce_selects_models_by_activation_and_names_a_bad_choice(tmp_path):
    from icsnn_core.errors import ConfigError
    from icsnn_core.profiles import get_profile

    with pytest.raises(ConfigError, match=r"digits-cnn/relu, digits-cnn/qcfs.*--activation \['qcfs'\]"):
        pipeline.reproduce(get_profile("ci"), tmp_path, archs=["vgg16"], activations=["qcfs"], progress=False)
    assert not (tmp_path / "results.csv").exists()


def test_a_run_cut_short_at_its_first_method_has_the_spike_figures(ci_run, tmp_path, monkeypatch, capsys):
    import shutil

    shutil.copytree(ci_run / "checkpoints", tmp_path / "checkpoints")  # reuse the trained ANNs

    def cut_short(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "accuracy_curve", cut_short)
    assert main(["reproduce", "--profile", "ci", "--out", str(tmp_path), "--quiet"]) == 130  # Ctrl-C: one line
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("icsnn: warning: ")]  # the printed IC-SNN's v(0)
    assert len(lines) == 1 and "interrupted" in lines[0] and "run the same command again" in lines[0], err
    assert not read_rows(tmp_path / "results.csv")  # no method finished...
    for name in ("first_spike.csv", "layer_outputs.csv"):  # ...but Figs. 6-7 were measured right after conversion
        rows = read_rows(tmp_path / name)
        assert {r["arch"] for r in rows} == {"digits-cnn"}
        assert {r["method"] for r in rows} == {"snn", "ic-snn"}


def test_stage_times_count_a_nested_stage_once(tmp_path, monkeypatch):
    """Stage seconds from a hand-driven clock: an inner stage's time is taken out of the outer one's, and the
    total row (written after every stage) is the wall time since the start."""
    clock = {"now": 100.0}
    monkeypatch.setattr(pipeline.time, "perf_counter", lambda: clock["now"])
    times = pipeline.StageTimes(tmp_path / "stage_times.csv", "cpu")
    clock["now"] = 101.0
    with times.stage("outer"):
        clock["now"] = 103.0
        with times.stage("inner"):
            clock["now"] = 107.0
        assert [(r["stage"], r["seconds"]) for r in read_rows(tmp_path / "stage_times.csv")] == \
            [("inner", "4.0"), ("total", "7.0")]  # written as soon as a stage ends
        clock["now"] = 110.0
    with times.stage("last"):
        clock["now"] = 110.5
    rows = read_rows(tmp_path / "stage_times.csv")
    assert [(r["stage"], float(r["seconds"])) for r in rows] == \
        [("inner", 4.0), ("outer", 5.0), ("last", 0.5), ("total", 10.5)]
    assert all(r["device"].startswith("cpu") and r["git_commit"] for r in rows)


def test_the_gpu_profile_runs_end_to_end_on_the_cpu_at_a_tiny_size(tmp_path):
    """`icsnn reproduce --profile full` as configured (its recipe, methods, readings and conversion), shrunk to
    width 1/16, one epoch, T = 1, 2 and a made-up 10-class image folder: every model, method and T has its row,
    Figs. 6-7 are measured, and the stage-time file accounts for the run."""
    from dataclasses import replace

    import numpy as np
    from PIL import Image

    from icsnn_core.data import CIFAR10_CLASSES
    from icsnn_core.profiles import get_profile

    rng = np.random.default_rng(0)
    for part, n in (("train", 6), ("test", 2)):
        for label, cls in enumerate(CIFAR10_CLASSES):
            (tmp_path / "data" / part / cls).mkdir(parents=True)
            for k in range(n):  # each class a colour, plus noise: learnable, not trivial
                a = np.clip(rng.normal(25 * label, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(a, "RGB").save(tmp_path / "data" / part / cls / f"{k}.png")
    full = get_profile("full")
    tiny = replace(full, models=tuple(replace(m, width=1 / 16) for m in full.models), T_grid=(1, 2),
                   train=replace(full.train, epochs=1), eval_batch_size=10)
    out = tmp_path / "out"
    pipeline.reproduce(tiny, out, data_root=str(tmp_path / "data"), device="cpu", progress=False, log=lambda s: None)
    rows = read_rows(out / "results.csv")
    got = sorted((r["arch"], r["ann"], r["variant"], r["T"]) for r in rows)
    expected = sorted((m.arch, m.activation, method.label, str(T)) for m in tiny.models
                      for method in tiny.methods[m.activation] for T in tiny.T_grid)
    assert got == expected
    assert {r["n_test"] for r in rows} == {"20"} and {r["profile"] for r in rows} == {"full"}
    assert {r["arch"] for r in read_rows(out / "first_spike.csv")} == {"vgg16", "resnet20"}
    stages = {r["stage"]: float(r["seconds"]) for r in read_rows(out / "stage_times.csv")}
    assert set(stages) == {"load data", "total"} | {f"{w} {m.arch} {m.activation}" for m in tiny.models
                                                      for w in ("train", "methods")} | \
        {"spike measurements vgg16", "spike measurements resnet20"}
    assert sum(v for k, v in stages.items() if k != "total") <= stages["total"] + 0.05


def test_a_width_override_runs_beside_the_profiles_own_width(tmp_path):
    """``reproduce(width=W)`` (``--width``) builds the chosen models at width W, and its rows, checkpoint, stage
    times and Figs. 6-7 measurements carry W: a second width in the same folder adds its own and replaces none of
    the first's. A width that is not a positive number is refused before any work."""
    from dataclasses import replace

    from icsnn_core.errors import ConfigError
    from icsnn_core.methods import Method
    from icsnn_core.profiles import get_profile

    ci = get_profile("ci")
    tiny = replace(ci, models=ci.models[:1], T_grid=(1, 2), methods={"relu": (Method.make("snn"),)}, n_test=50,
                   threshold_images=64)
    for width in (0.5, 0.25):
        pipeline.reproduce(tiny, tmp_path, width=width, epochs=1, device="cpu", progress=False, log=lambda s: None)
    rows = read_rows(tmp_path / "results.csv")
    assert sorted((r["width"], r["T"]) for r in rows) == [("0.25", "1"), ("0.25", "2"), ("0.5", "1"), ("0.5", "2")]
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.pt")) == [
        "digits-digits-cnn-w0.25-nobn-relu-e1-s0.pt", "digits-digits-cnn-w0.5-nobn-relu-e1-s0.pt"]
    for figure in ("first_spike.csv", "layer_outputs.csv"):
        assert {r["width"] for r in read_rows(tmp_path / figure)} == {"0.5", "0.25"}
    assert {p.name for p in tmp_path.glob("stage_times*.csv")} == {"stage_times-w0.5.csv", "stage_times-w0.25.csv"}
    macs = {r["width"]: float(r["ann_macs_per_image"]) for r in read_rows(tmp_path / "energy.csv")}
    assert macs["0.5"] > 3 * macs["0.25"]  # the networks really are of those widths: about width squared
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="width must be a positive number"):
            pipeline.reproduce(tiny, tmp_path / "bad", width=bad, device="cpu", progress=False, log=lambda s: None)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("command", ["reproduce", "evaluate"])
@pytest.mark.parametrize("name, content, message", [
    ("out-is-a-file", b"not a folder\n", "is a file, not a folder"),
    ("results.csv", b"profile,variant,T,accuracy\n\xff\xfe,snn,1,50\n", "is not UTF-8 text"),
    ("results.csv", b"profile,variant,T,accuracy,my_notes\nci,snn,1,50,keep me\n", "columns icsnn does not write (my_notes)"),
    ("curves.csv", b"", "has no header line"),
    ("results.csv", b'profile,variant\n"ci,snn\n', "not a readable CSV file"),
])
def test_an_output_a_merge_would_damage_is_refused_before_any_work(ci_run, tmp_path, capsys, command, name, content,
                                                                   message):
    """Each bad output gets exit code 2 and one line naming the problem and the fix, before training or
    simulating anything, and the file is left exactly as it was."""
    out = tmp_path / "out"
    if name == "out-is-a-file":
        target = out
    else:
        out.mkdir()
        target = out / name
    target.write_bytes(content)
    args = (["reproduce", "--profile", "ci"] if command == "reproduce" else
            ["evaluate", "--checkpoint", str(next((ci_run / "checkpoints").glob("*relu*.pt"))), "--T", "1"])
    assert main([*args, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Fix:" in err and "Traceback" not in err
    assert target.read_bytes() == content
    if out.is_dir():
        assert [p.name for p in out.iterdir()] == [name]  # nothing trained, measured or written


def test_rows_from_another_training_are_measured_again_and_the_rest_skipped(tmp_path):
    """A rerun skips the points its results.csv holds for this ANN, and measures again those that came from another
    training of it (another ANN accuracy): the issue's stale ci rows, 30 points off, were skipped silently."""
    import csv

    import torch

    from icsnn_core.data import load_digits
    from icsnn_core.methods import Method
    from icsnn_core.models import build_model
    from icsnn_core.pipeline import Conversion, evaluate_methods

    data = load_digits(seed=0)
    torch.manual_seed(0)
    model = build_model("digits-cnn", 10, 1, width=0.25)
    run = dict(conversion=Conversion(threshold_images=64), out_dir=tmp_path, base={"arch": "digits-cnn"},
               n_test=64, progress=False, energy=False)
    first = evaluate_methods(model, data, [Method("snn")], [2, 4], **run)
    path = tmp_path / "results.csv"
    rows = list(csv.DictReader(path.open()))
    for r in rows:  # T = 2 as if from another training, T = 4 from this one with a number changed by hand
        r.update(ann_accuracy="12.5", accuracy="1.0") if r["T"] == "2" else r.update(accuracy="2.0")
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    logs: list[str] = []
    evaluate_methods(model, data, [Method("snn")], [2, 4], **run, log=logs.append)
    after = {r["T"]: r for r in read_rows(path)}
    assert float(after["2"]["accuracy"]) == first[0]["accuracy"] and after["2"]["ann_accuracy"] != "12.5"
    assert after["4"]["accuracy"] == "2.0"  # same training: skipped, and said so
    assert any("measured 1 points again" in m and "12.5% there" in m for m in logs), logs
    assert any("skipped 1 points" in m for m in logs), logs


def test_a_warm_recipe_trains_the_relu_twin_first_and_starts_qcfs_from_it(tmp_path):
    """`reproduce --activation qcfs` under a recipe that starts warm (the fast one does): the ReLU twin is trained
    (or loaded) first, inside the QCFS ANN's training stage, and the QCFS checkpoint records which twin it began
    from; a rerun after the twin changed refuses to mix the two."""
    from dataclasses import replace

    import torch

    from icsnn_core.errors import CheckpointError
    from icsnn_core.methods import Method
    from icsnn_core.profiles import get_profile
    from icsnn_core.train import load_checkpoint, load_model, weights_digest

    ci = get_profile("ci")
    warm = replace(ci, train=replace(ci.train, epochs=2, warm_start=True), T_grid=(2,),
                   methods={"relu": (), "qcfs": (Method.make("qcfs"),)})
    pipeline.reproduce(warm, tmp_path, activations=["qcfs"], progress=False, log=lambda s: None)
    ckpts = tmp_path / "checkpoints"
    relu, qcfs = ckpts / "digits-digits-cnn-w1-nobn-relu-e2-s0.pt", ckpts / "digits-digits-cnn-w1-nobn-qcfs4-e2-s0.pt"
    twin, _ = load_model(relu)
    assert load_checkpoint(qcfs)["init"] == weights_digest(twin)
    assert [(r["ann"], r["variant"], r["T"]) for r in read_rows(tmp_path / "results.csv")] == [("qcfs", "qcfs", "2")]
    stages = [r["stage"] for r in read_rows(tmp_path / "stage_times-qcfs.csv")]  # a process of its own
    assert stages == ["load data", "train digits-cnn relu", "train digits-cnn qcfs", "methods digits-cnn qcfs", "total"]
    relu.unlink()  # the twin retrained (here: the same seed, so the same weights) is accepted ...
    pipeline.reproduce(warm, tmp_path, activations=["qcfs"], progress=False, log=lambda s: None)
    twin = load_checkpoint(relu)
    twin["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in twin["model"].items()}
    torch.save(twin, relu)  # ... one with other weights is not
    with pytest.raises(CheckpointError, match="started from another model"):
        pipeline.reproduce(warm, tmp_path, activations=["qcfs"], progress=False, log=lambda s: None)


def test_a_second_process_training_the_same_checkpoint_waits_for_the_first(tmp_path):
    """`exclusive` (the pipeline holds it around each training): the second comer enters only once the first
    has left, whatever the timing; another file's lock does not wait."""
    import threading
    import time

    from icsnn_core.files import exclusive

    order, inside = [], threading.Event()

    def first():
        with exclusive(tmp_path / "twin.pt"):
            inside.set()
            time.sleep(0.3)
            order.append("first done")

    t = threading.Thread(target=first)
    t.start()
    inside.wait()
    with exclusive(tmp_path / "other.pt"):
        order.append("other file")
    with exclusive(tmp_path / "twin.pt"):
        order.append("second in")
    t.join()
    assert order == ["other file", "first done", "second in"]


def test_each_process_of_a_split_run_names_its_own_stage_times():
    assert pipeline.stage_times_name(None, None) == "stage_times.csv"
    assert pipeline.stage_times_name(["vgg16"], ["qcfs"]) == "stage_times-vgg16-qcfs.csv"
    assert pipeline.stage_times_name(None, ["relu"]) == "stage_times-relu.csv"
