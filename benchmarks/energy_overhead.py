"""What counting spikes and operations costs the simulation, run by hand (not a test):
`python benchmarks/energy_overhead.py --help`.

The same accuracy simulation (``accuracy_curve``) with and without an ``EnergyMeter``, alternated in one
process so that both see the same machine load; the median of ``--repeats`` runs each. Cases: the ci profile's
ReLU digits-cnn (trained here as the ci profile trains it, or ``--checkpoint``) on the digits test split with
plain conversion, IC-SNN and COS; and VGG16 at width 0.25 with random weights on random 32x32 images (the
cpu profile's network shape). Writes a tidy CSV (benchmarks/results/energy-overhead-<cpu|cuda>.csv) with
device and commit.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from icsnn_core.convert import balance_thresholds, convert  # noqa: E402
from icsnn_core.data import Split, load_dataset  # noqa: E402
from icsnn_core.energy import EnergyMeter  # noqa: E402
from icsnn_core.methods import Method  # noqa: E402
from icsnn_core.profiles import get_profile  # noqa: E402
from icsnn_core.results import provenance, write_rows  # noqa: E402
from icsnn_core.simulate import accuracy_curve  # noqa: E402
from icsnn_core.train import ModelSpec, load_model, train  # noqa: E402

COLUMNS = ("benchmark", "arch", "width", "method", "T", "n_images", "repeats", "off_s", "on_s", "overhead_pct", "load_1min",
           "device", "git_commit", "torch_version", "timestamp")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def side_by_side(model, split, T, device, repeats, **sim):
    """Median seconds of the simulation without and with counting, runs alternated (one warm-up each)."""
    meter = EnergyMeter(model, tuple(split.x.shape[1:]), sim.get("coding", "direct"))
    times = {False: [], True: []}
    for i in range(repeats + 1):
        for on in (False, True):
            sync(device)
            t0 = time.perf_counter()
            accuracy_curve(model, split, T, device=device, energy=meter if on else None, **sim)
            sync(device)
            if i:  # the first round warms up
                times[on].append(time.perf_counter() - t0)
    return statistics.median(times[False]), statistics.median(times[True])


def ci_model(checkpoint: str | None, device: str):
    profile = get_profile("ci")
    data = load_dataset(profile.dataset, seed=profile.seed)
    if checkpoint:
        model, _ = load_model(checkpoint)
    else:
        choice = profile.models[0]
        spec = ModelSpec(choice.arch, choice.width, choice.bn, data.num_classes, data.in_channels, data.mean,
                         data.std, choice.activation, choice.levels)
        with tempfile.TemporaryDirectory() as tmp:
            model = train(spec, data, profile.train, Path(tmp) / "ci.pt", device=device, progress=False)
    model = convert(model).to(device)
    balance_thresholds(model, data.train, quantile=profile.threshold_quantile, images=profile.threshold_images,
                       values=profile.threshold_values, device=device)
    return model, data


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, help="CSV to write (default: benchmarks/results/energy-overhead-<cpu|cuda>.csv)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--checkpoint", help="the ci profile's ReLU checkpoint (default: train it here, about a minute)")
    p.add_argument("--Ts", type=int, nargs="+", default=[8, 32])
    args = p.parse_args(argv)
    device = args.device
    rows = []

    def add(arch, width, method, T, n, off, on):
        pct = 100 * (on - off) / off
        rows.append(dict(benchmark="energy-overhead", arch=arch, width=width, method=method, T=T, n_images=n,
                         repeats=args.repeats, off_s=round(off, 4), on_s=round(on, 4), overhead_pct=round(pct, 2),
                         load_1min=round(os.getloadavg()[0], 2)))  # other work on the machine widens the spread
        print(f"{arch} w{width} {method} T={T} ({n} images): {off:.3f} s without counting, {on:.3f} s with "
              f"({pct:+.1f}%)", flush=True)

    model, data = ci_model(args.checkpoint, device)
    image_shape = tuple(data.train.x.shape[1:])
    for name in ("snn", "ic-snn", "cos"):
        method = Method.make(name, **({"calib_images": 512} if name == "ic-snn" else {}))  # as the ci profile
        for T in args.Ts:
            method.apply(model, T, data.train, image_shape=image_shape, device=device)
            off, on = side_by_side(model, data.test, T, device, args.repeats)
            add("digits-cnn", 1.0, method.label, T, len(data.test), off, on)

    torch.manual_seed(0)
    from icsnn_core.models import build_model

    vgg = convert(build_model("vgg16", 10, 3, width=0.25, bn=True)).to(device).eval()
    x = torch.rand(256, 3, 32, 32)
    rand = Split(x, torch.zeros(len(x), dtype=torch.long), 1.0)
    balance_thresholds(vgg, rand, quantile=0.99, images=256, device=device)
    Method.make("snn").apply(vgg, 8)
    for T in args.Ts:
        off, on = side_by_side(vgg, rand.subset(64), T, device, max(1, args.repeats // 2), batch_size=64)
        add("vgg16", 0.25, "snn (random weights)", T, 64, off, on)

    prov = provenance(device)
    out = args.out or ROOT / "benchmarks" / "results" / f"energy-overhead-{torch.device(device).type}.csv"
    write_rows(out, [{**r, **prov} for r in rows], COLUMNS)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
