"""Several processes through torch.distributed: torchrun with 2 CPU processes (gloo) against one process.

Both sides of each comparison run a small entry script (written into tmp_path) that takes its profile and
recipes from this file, so that they run the same configuration.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from icsnn_core import distributed
from icsnn_core.data import load_dataset
from icsnn_core.errors import ConfigError
from icsnn_core.methods import Method
from icsnn_core.pipeline import Conversion, checkpoint_path, divide_jobs, evaluate_methods
from icsnn_core.profiles import ModelChoice, Profile
from icsnn_core.results import KEY_COLUMNS, read_rows
from icsnn_core.train import ModelSpec, TrainConfig, load_checkpoint, train

ENTRY = """\
import sys
sys.path.insert(0, {tests!r})
import test_distributed as here
from icsnn_core import distributed
from icsnn_core.data import load_dataset
from icsnn_core.pipeline import reproduce
from icsnn_core.train import load_model, train

what, out = sys.argv[1], sys.argv[2]  # reproduce OUT_DIR, or a recipe of this file and a CHECKPOINT
if what == "reproduce":
    reproduce(here.tiny_profile(), out, device="cpu", progress=False)
else:
    model = train(here.tiny_spec(bn=what == "bn_recipe"), load_dataset("digits"), getattr(here, what)(), out,
                  device="cpu", progress=False)
    saved = load_model(out)[0].state_dict()
    same = all(v.equal(saved[k]) for k, v in model.state_dict().items())
    assert same, f"rank {{distributed.rank()}} returned other weights than the checkpoint's"
distributed.shutdown()
"""


def tiny_recipe() -> TrainConfig:
    """8 epochs (about 95% on the digits) with an EMA of the weights."""
    return TrainConfig(epochs=8, batch_size=64, milestones=(6,), augment=False, ema=0.9)


def ddp_recipe() -> TrainConfig:
    """A recipe for comparing DDP with one process. The batch of 63 is odd, so the ranks' slices differ in size
    (32 and 31) and weighting them matters; the random crops (by 4 pixels on 8x8 images) ruin the digits but
    check that the ranks draw the same ones; a small lr keeps the net near its start, where the order of
    the sums changes the weights by about 1e-7 rather than being amplified as the net leaves the plateau
    where it starts (with lr 0.1 and no crops, by up to 0.1)."""
    return TrainConfig(epochs=6, lr=0.02, batch_size=63, milestones=(4,), augment=True, ema=0.9)


def bn_recipe() -> TrainConfig:
    """With batch norm (on each rank's own slice), 2 epochs."""
    return TrainConfig(epochs=2, batch_size=64, milestones=(1,), augment=False, ema=0.9)


def tiny_profile() -> Profile:
    """The ci profile cut down to seconds: one ReLU ANN, T = 1, 4, 16, a handful of methods (T-dependent ones and
    one-simulation ones), 200 test images."""
    ic = Method.make("ic-snn", calib_images=64)
    methods = (ic, ic.with_options(compensation="potential", residual="clip"), Method.make("i-snn", calib_images=64),
               Method.make("c-snn"), Method.make("snn"), Method.make("opi"), Method.make("cos"))
    return Profile(name="tiny", description="test", dataset="digits", models=(ModelChoice("digits-cnn"),),
                   train=tiny_recipe(),
                   T_grid=(1, 4, 16), methods={"relu": methods}, threshold_images=256, n_test=200)


def tiny_spec(bn: bool = False) -> ModelSpec:
    data = load_dataset("digits")
    return ModelSpec("digits-cnn", bn=bn, num_classes=data.num_classes, in_channels=data.in_channels,
                     mean=data.mean, std=data.std)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(tmp_path: Path, what: str, out: Path, processes: int) -> str:
    """Run the entry script alone (``processes`` = 1) or under torchrun, with one thread per process: torchrun's
    default, and on 2 busy cores several threads per process are many times slower."""
    script = tmp_path / "entry.py"
    script.write_text(ENTRY.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    launch = [] if processes == 1 else ["-m", "torch.distributed.run", f"--nproc_per_node={processes}",
                                         f"--master_port={_free_port()}"]
    done = subprocess.run([sys.executable, *launch, str(script), what, str(out)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def _points(path: Path, extra: tuple[str, ...] = ()) -> dict[tuple[str, ...], str]:
    rows = read_rows(path)
    points = {tuple(r[k] for k in KEY_COLUMNS + extra): r["accuracy"] for r in rows}
    assert len(points) == len(rows), f"duplicated points in {path}"
    return points


def test_torchrun_results_equal_one_process_exactly(tmp_path):
    """Both runs start from the same trained checkpoint, so evaluation alone differs: divided among 2 ranks,
    every point is measured once, with the same accuracy as in one process."""
    profile = tiny_profile()
    data = load_dataset("digits")
    cfg = replace(profile.train, seed=profile.seed)
    spec = tiny_spec()
    trained = tmp_path / "trained.pt"
    _run(tmp_path, "tiny_recipe", trained, 1)
    single, several = tmp_path / "single", tmp_path / "torchrun"
    for out in (single, several):
        path = checkpoint_path(out, data.name, spec, cfg)
        path.parent.mkdir(parents=True)
        shutil.copy(trained, path)
    _run(tmp_path, "reproduce", single, 1)
    log = _run(tmp_path, "reproduce", several, 2)

    expected = _points(single / "results.csv")
    assert len(expected) == len(profile.methods["relu"]) * len(profile.T_grid)
    assert min(float(r["ann_accuracy"]) for r in read_rows(single / "results.csv")) > 90  # a trained ANN
    assert _points(several / "results.csv") == expected
    assert _points(several / "curves.csv", ("t",)) == _points(single / "curves.csv", ("t",))
    # each point was measured by one rank, and each rank measured some (a method's line: "  label (N s): T=1 x%, ...")
    measured = [(rank, label, T) for rank, label, Ts in re.findall(r"\[rank (\d)\]   (\S+) \(\d+ s\): (.*)", log)
                for T in re.findall(r"T=(\d+)", Ts)]
    assert len(measured) == len({m[1:] for m in measured}) == len(expected)
    assert {m[0] for m in measured} == {"0", "1"}
    for name in ("first_spike.csv", "layer_outputs.csv", "rate_coding.npz"):  # rank 0's, as one process writes them
        assert (several / name).exists()
    assert read_rows(several / "first_spike.csv") == read_rows(single / "first_spike.csv")


def test_torchrun_training_writes_one_checkpoint_close_to_one_process(tmp_path):
    """DDP averages the gradients of the ranks' slices of each global batch: the weights follow one process's,
    up to the order of the sums. Rank 0 alone writes the checkpoint and its log."""
    single, several = tmp_path / "single" / "ann.pt", tmp_path / "torchrun" / "ann.pt"
    _run(tmp_path, "ddp_recipe", single, 1)
    _run(tmp_path, "ddp_recipe", several, 2)
    epochs = ddp_recipe().epochs
    a, b = load_checkpoint(single), load_checkpoint(several)
    assert b["epoch"] == epochs and [h["epoch"] for h in b["history"]] == list(range(1, epochs + 1))
    for key in ("model", "ema"):
        for name, w in a[key].items():
            assert torch.allclose(w.float(), b[key][name].float(), rtol=0, atol=1e-5), (key, name)  # ~1e-7 here
    log = read_rows(f"{several}.log.csv")
    assert [int(r["epoch"]) for r in log] == list(range(1, epochs + 1))
    single_log = read_rows(f"{single}.log.csv")
    assert [float(r["train_accuracy"]) for r in log] == pytest.approx(
        [float(r["train_accuracy"]) for r in single_log], abs=1.0)  # over the whole batches, not one rank's slice
    assert sorted(p.name for p in several.parent.iterdir()) == ["ann.pt", "ann.pt.log.csv"]  # no temporary left


def test_torchrun_ranks_return_the_saved_weights_with_batch_norm(tmp_path):
    """Batch norm's running statistics last saw each rank's own slice: every rank returns rank 0's, the ones
    saved, so every rank evaluates the same ANN (the entry script checks it on each rank)."""
    _run(tmp_path, "bn_recipe", tmp_path / "ann.pt", 2)
    assert load_checkpoint(tmp_path / "ann.pt")["epoch"] == bn_recipe().epochs


def test_shard_takes_every_nth_item_and_the_ranks_together_take_all(monkeypatch):
    items = list(range(10))
    shares = []
    for r in range(3):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        monkeypatch.setattr(distributed, "world_size", lambda: 3)
        shares.append(distributed.shard(items))
    assert shares == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]


def test_jobs_are_divided_once_and_evenly():
    methods = tiny_profile().methods["relu"]
    T_grid = [1, 2, 4, 8, 16, 32, 64]
    assert divide_jobs(methods, T_grid, 1) == [dict.fromkeys(T_grid, 0)] * len(methods)
    owners = divide_jobs(methods, T_grid, 2)
    load = [0, 0]
    for m, owner in zip(methods, owners):
        assert sorted(owner) == T_grid  # every point has one owner
        if m.depends_on_T:
            for T, r in owner.items():
                load[r] += T
        else:  # one simulation serves every T: one rank measures them all
            assert len(set(owner.values())) == 1
            load[owner[1]] += max(T_grid)
    assert abs(load[0] - load[1]) <= max(T_grid)
    assert distributed.assign([5, 1, 1, 1, 1, 1], 2) == [0, 1, 1, 1, 1, 1]


def test_single_process_defaults(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert not distributed.requested() and distributed.init("cpu") == "cpu"
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    distributed.barrier()  # returns at once
    distributed.shutdown()  # nothing to leave
    assert distributed.shard("abc") == ["a", "b", "c"]
    x = torch.arange(5)
    assert distributed.batch_slice(x) is x
    assert distributed.all_sum(1.5, 3) == (1.5, 3)
    model = nn.Linear(2, 2)
    assert distributed.data_parallel(model) is model
    distributed.broadcast_([x])
    assert x.tolist() == [0, 1, 2, 3, 4]


def test_a_rank_refuses_another_ranks_gpu_and_a_rank_outside_the_world(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ConfigError, match="Fix: pass --device cuda"):
        distributed.init("cuda:0")
    with pytest.raises(ConfigError, match="rank 2 of 2"):
        evaluate_methods(nn.Identity(), None, [], [1], conversion=Conversion(), out_dir=tmp_path, base={},
                         rank=2, world=2)


def test_a_checkpoint_resumes_when_the_data_statistics_differ_in_the_last_bits(tmp_path):
    """The digits' std computed on another number of threads (torchrun: one per process) differs in its last
    bits; the checkpoint is the same recipe and resumes."""
    data = load_dataset("digits")
    spec = tiny_spec()
    cfg = TrainConfig(epochs=2, batch_size=256, augment=False)
    path = tmp_path / "ann.pt"
    train(replace(spec, std=tuple(s * (1 + 1e-15) for s in spec.std)), data, cfg, path, progress=False,
          stop_after=1)
    train(spec, data, cfg, path, progress=False)
    assert load_checkpoint(path)["epoch"] == 2
