"""Where does a QCFS ANN's deficit against its ReLU twin come from: the weights it learned, or the L levels it
is read with? A diagnosis, run by hand on trained checkpoints (a minute each on a CPU); nothing is chosen from it.

Each QCFS checkpoint is scored on the profile's test images with its published activation (L levels), with
more levels (the same weights and lambdas), and with the floor off (lambda * clip(z / lambda, 0, 1), the
activation its SNN approaches as T grows); its ReLU twin (the same name with ``relu`` for ``qcfs<L>``) beside
it. Every model is batch-norm folded first, as the profiles measure it. One tidy row per (checkpoint,
reading) goes to ``--out``, each with its deficit against the ReLU twin and that deficit's paired standard
error (from the images one model gets right and the other wrong). A rerun replaces the rows of the checkpoints it
reads at that number of test images and keeps the others (checkpoints are not all committed, so a file's other
rows may not be reproducible here):

    python benchmarks/qcfs_levels.py --data-root ../shared/data/cifar10-jpeg.tar.xz --n-test 2000 \\
        --checkpoints results/cpu/checkpoints/cifar10-vgg16-w0.25-bn-qcfs4-e15-fast-s0.pt

``--n-test 10000`` reads every test image (``--out benchmarks/results/qcfs-levels-cpu-all.csv``): a tighter
standard error than the profile's 2,000. Checkpoints named otherwise, as the recipe study's, take their twins by
``--twins`` (one per checkpoint, in order).
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from icsnn_core.convert import convert  # noqa: E402
from icsnn_core.data import load_dataset  # noqa: E402
from icsnn_core.errors import ConfigError  # noqa: E402
from icsnn_core.neuron import neurons  # noqa: E402
from icsnn_core.results import merge_rows, provenance  # noqa: E402
from icsnn_core.simulate import ann_correct  # noqa: E402
from icsnn_core.train import load_model  # noqa: E402

COLUMNS = ("checkpoint", "arch", "width", "trained_levels", "reading", "levels", "accuracy", "gap_to_relu", "gap_se",
           "n_test", "seed", "device", "git_commit", "torch_version", "timestamp")
MORE_LEVELS = (8, 16, 64)
KEY = ("checkpoint", "reading", "levels", "n_test")  # a rerun replaces its own rows, keeps the rest


def relu_twin(path: Path) -> Path:
    """The ReLU checkpoint trained beside a QCFS one: ``...-qcfs4-...`` -> ``...-relu-...``."""
    twin = path.with_name(re.sub(r"-qcfs\d+-", "-relu-", path.name))
    if twin == path:
        raise ConfigError(f"{path.name} does not name a QCFS checkpoint (no '-qcfs<L>-' in it). Fix: pass the "
                          "QCFS checkpoints written by icsnn reproduce or icsnn train --activation qcfs")
    return twin


def paired_gap(twin: torch.Tensor, other: torch.Tensor) -> tuple[float, float]:
    """The twin's accuracy minus the other's, in points, and its paired standard error: per image the difference
    is 1, 0 or -1, so its standard error is sqrt(var / n) over the n images."""
    d = twin.float() - other.float()
    return 100 * float(d.mean()), 100 * math.sqrt(float(d.var(correction=0)) / len(d))


def readings(path: Path, test, batch_size: int, twin_path: Path | None = None) -> list[dict[str, object]]:
    """The rows of one QCFS checkpoint: its ReLU twin (``twin_path``, or by default the profile's name for it,
    if present), L levels, more levels, the floor off."""
    model, ckpt = load_model(path)
    model = convert(model)
    qcfs = [n for _, n in neurons(model) if n.activation == "qcfs"]
    if not qcfs:
        raise ConfigError(f"{path} holds a {ckpt['spec']['activation']} ANN, not a QCFS one. Fix: pass its QCFS twin")
    trained = qcfs[0].levels
    base = {"checkpoint": path.name, "arch": ckpt["spec"]["arch"], "width": ckpt["spec"]["width"],
            "trained_levels": trained, "n_test": len(test), "seed": ckpt["train"].get("seed", "")}
    rows, twin = [], None

    def row(reading: str, levels: object, right: torch.Tensor) -> dict[str, object]:
        gap, se = paired_gap(twin, right) if twin is not None and right is not twin else ("", "")
        return {**base, "reading": reading, "levels": levels, "accuracy": 100.0 * int(right.sum()) / len(right),
                "gap_to_relu": gap, "gap_se": se}

    twin_path = twin_path or relu_twin(path)
    if twin_path.exists():
        relu, _ = load_model(twin_path)
        twin = ann_correct(convert(relu), test, batch_size=batch_size)
        rows.append(row("relu twin", "", twin))
    for levels in (trained, *MORE_LEVELS):
        for n in qcfs:
            n.levels = levels
        reading = "published" if levels == trained else "more levels"
        rows.append(row(reading, levels, ann_correct(model, test, batch_size=batch_size)))
    for n in qcfs:
        n.quantised = False
    rows.append(row("floor off", "", ann_correct(model, test, batch_size=batch_size)))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoints", nargs="+", required=True, type=Path, help="QCFS checkpoints (their ReLU twins beside them, or --twins)")
    ap.add_argument("--twins", nargs="+", type=Path,
                    help="their ReLU twins, one per checkpoint in the same order, where the names are not the "
                         "profile's (e.g. the recipe study's checkpoints)")
    ap.add_argument("--data-root", required=True, help="the dataset the checkpoints were trained on")
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--n-test", type=int, default=2000, help="the first N test images, as the profile measures (default 2000)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "qcfs-levels-cpu.csv")
    args = ap.parse_args(argv)
    if args.twins and len(args.twins) != len(args.checkpoints):
        raise SystemExit(f"{len(args.twins)} --twins for {len(args.checkpoints)} --checkpoints. Fix: pass one ReLU "
                         "twin per QCFS checkpoint, in the same order")
    twins = args.twins or [None] * len(args.checkpoints)
    missing = [str(p) for p in [*args.checkpoints, *(args.twins or [])] if not p.exists()]
    if missing:
        raise SystemExit(f"no such checkpoint: {', '.join(missing)}. Fix: train them first (icsnn reproduce) or "
                         "correct the paths")
    test = load_dataset(args.dataset, args.data_root).test.subset(args.n_test)
    prov = provenance("cpu")  # once: it asks git for the commit
    rows = []
    for path, twin in zip(args.checkpoints, twins):
        for r in readings(path, test, args.batch_size, twin):
            rows.append({**r, **prov})
            print(f"{r['checkpoint']}: {r['reading']} {r['levels']} {r['accuracy']:.2f}%")
    merge_rows(args.out, rows, COLUMNS, KEY)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
