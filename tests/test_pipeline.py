"""The CLI's ci profile end to end (the real pipeline on the embedded digits set), and what it writes."""
import csv
import subprocess
import sys

import pytest

from icsnn_core import pipeline
from icsnn_core.cli import main
from icsnn_core.results import KEY_COLUMNS, RESULT_COLUMNS, merge_rows, read_rows

T_GRID = ["1", "2", "4", "8", "16", "32", "64"]


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ci")
    assert main(["reproduce", "--profile", "ci", "--out", str(out), "--quiet"]) == 0
    return out


def test_ci_profile_writes_every_method_reading_and_T(ci_run):
    rows = read_rows(ci_run / "results.csv")
    assert set(rows[0]) == set(RESULT_COLUMNS)
    by_method = {}
    for r in rows:
        by_method.setdefault(r["method"], set()).add(r["variant"])
        assert r["latency"] == r["T"] and r["ann"] == "relu" and r["dataset"] == "digits"
        assert 0.0 <= float(r["accuracy"]) <= 100.0 and float(r["ann_accuracy"]) > 90.0
        assert r["git_commit"] and r["device"].startswith("cpu") and r["torch_version"]
    assert set(by_method) == {"snn", "i-snn", "c-snn", "ic-snn"}
    ic = {v for v in by_method["ic-snn"]}
    for reading in ("compensation=printed", "compensation=potential", "residual=raw", "residual=clip", "residual=fired",
                    "granularity=layer", "granularity=channel", "granularity=neuron", "init=weight", "calib_images=64"):
        assert any(reading in v for v in ic), reading
    for variant in set().union(*by_method.values()):
        assert sorted((r["T"] for r in rows if r["variant"] == variant), key=int) == T_GRID
    assert len({tuple(r[k] for k in KEY_COLUMNS) for r in rows}) == len(rows)  # one row per measured point


def test_curves_end_at_the_reported_accuracy(ci_run):
    rows = read_rows(ci_run / "results.csv")
    curves = read_rows(ci_run / "curves.csv")
    last = {(c["variant"], c["T"]): c["accuracy"] for c in curves if c["t"] == c["T"]}
    assert all(last[(r["variant"], r["T"])] == r["accuracy"] for r in rows)
    n_points = sum(int(r["T"]) for r in rows)
    assert len(curves) == n_points


def test_plain_snn_gets_better_with_T_and_rerun_skips_measured_points(ci_run, monkeypatch):
    rows = {(r["variant"], int(r["T"])): float(r["accuracy"]) for r in read_rows(ci_run / "results.csv")}
    assert rows[("snn", 64)] > rows[("snn", 1)] + 50
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
    ckpt = next((ci_run / "checkpoints").glob("*.pt"))
    for bad, message in ((["--T", "0"], "positive integer"), (["--dataset", "fashion-mnist"], "--dataset digits"), (["--quantile", "1.5"], "(0, 1]"),
                         (["--methods", "x-snn"], "unknown method 'x-snn'")):
        assert main(["evaluate", "--checkpoint", str(ckpt), "--out", str(tmp_path), "--quiet", *bad]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "results.csv").exists()


def test_evaluate_subcommand_on_the_trained_checkpoint(ci_run, tmp_path):
    ckpt = next((ci_run / "checkpoints").glob("*.pt"))
    assert main(["evaluate", "--checkpoint", str(ckpt), "--out", str(tmp_path), "--quiet", "--methods", "snn", "ic-snn",
                 "--T", "4", "8", "--compensation", "potential", "--residual", "clip"]) == 0
    rows = read_rows(tmp_path / "results.csv")
    assert [(r["method"], r["T"]) for r in rows] == [("snn", "4"), ("snn", "8"), ("ic-snn", "4"), ("ic-snn", "8")]
    assert rows[2]["compensation"] == "potential" and rows[2]["residual"] == "clip" and rows[0]["compensation"] == ""


def test_help_of_every_subcommand():
    for args in ([], ["reproduce"], ["train"], ["evaluate"]):
        out = subprocess.run([sys.executable, "-m", "icsnn_core.cli", *args, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "usage: icsnn" in out.stdout
