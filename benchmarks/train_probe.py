"""Does an ANN start to learn under the paper's recipe? The first optimiser steps of several set-ups, run by hand.

Written to settle two training choices of the CIFAR-10 runs with evidence rather than folklore:
VGG16 without batch norm (the paper's setting) and QCFS's lambda initialisation (8 in QCFS's code, 2 here).
Each set-up trains from the same seed with the paper's optimiser (SGD, lr 0.1, momentum 0.9, weight decay
5e-4, batch 128, crop + flip) for ``--steps`` steps; the training loss and every layer's lambda are logged
every ``--every`` steps into a tidy CSV with device and commit:

    python benchmarks/train_probe.py --data-root ../shared/data/cifar10-jpeg.tar.xz
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from icsnn_core.data import batches, load_dataset  # noqa: E402
from icsnn_core.neuron import neurons  # noqa: E402
from icsnn_core.results import provenance, write_rows  # noqa: E402
from icsnn_core.train import ModelSpec, TrainConfig  # noqa: E402

# name -> (batch norm, activation, lambda's starting value)
SETUPS = {
    "relu-bn": (True, "relu", 2.0),
    "relu-nobn": (False, "relu", 2.0),
    "qcfs-bn-lambda8": (True, "qcfs", 8.0),
    "qcfs-bn-lambda2": (True, "qcfs", 2.0),
}


def probe(name: str, data, arch: str, width: float, steps: int, every: int, seed: int) -> list[dict[str, object]]:
    bn, activation, lam0 = SETUPS[name]
    cfg = TrainConfig(seed=seed)
    torch.manual_seed(seed)
    spec = ModelSpec(arch, width, bn, data.num_classes, data.in_channels, data.mean, data.std, activation, 4, lam0)
    model = spec.build().train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    rows, window = [], []
    for step, (x, y) in enumerate(batches(data.train, cfg.batch_size, shuffle=True, generator=gen, augment=True), 1):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window.append(loss.item())
        if step % every == 0:
            lams = [float(n.lam) for _, n in neurons(model)] if activation == "qcfs" else []
            rows.append({"setup": name, "arch": arch, "width": width, "bn": bn, "activation": activation,
                         "init_lambda": lam0 if activation == "qcfs" else None, "step": step,
                         "mean_loss": round(sum(window) / len(window), 4),
                         "min_lambda": round(min(lams), 4) if lams else None,
                         "max_lambda": round(max(lams), 4) if lams else None})
            window = []
            print(f"{name:16s} step {step:4d}: loss {rows[-1]['mean_loss']:.3f}"
                  + (f", lambda in [{rows[-1]['min_lambda']:.3g}, {rows[-1]['max_lambda']:.3g}]" if lams else ""),
                  flush=True)
        if step == steps:
            break
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True, help="CIFAR-10 folder or archive (as for icsnn)")
    p.add_argument("--arch", default="vgg16")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--setups", nargs="+", choices=list(SETUPS), default=list(SETUPS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train-probe-cpu.csv")
    args = p.parse_args()
    data = load_dataset("cifar10", args.data_root)
    rows = []
    for name in args.setups:
        rows += probe(name, data, args.arch, args.width, args.steps, args.every, args.seed)
    prov = provenance("cpu")
    rows = [{**r, "data_source": data.source, "seed": args.seed, **prov} for r in rows]
    write_rows(args.out, rows, tuple(rows[0]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
