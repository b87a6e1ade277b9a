"""Measurements behind Figures 3, 6 and 7, written as tidy files next to results.csv by ``icsnn reproduce``.

Computing them in the run and only plotting them in the notebooks lets the book be re-rendered from
stored files without a model or a dataset at hand.

- ``rate_coding.npz`` (Fig. 3): one test image and its rate-coded reconstructions.
- ``first_spike.csv`` (Fig. 6): mean first-spike step per IF layer, per method and T.
- ``layer_outputs.csv`` (Fig. 7): ANN activation and decoded SNN output of chosen neurons, per method and T.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
from torch import nn

from .data import Dataset
from .files import atomic_write_bytes
from .measure import first_spike_times, layer_outputs, rate_coded_images
from .methods import Method
from .results import merge_rows, provenance, read_rows

FIGURE_METHODS = (Method.make("snn"), Method.make("ic-snn"), Method.make("ic-snn", residual="clip"))
FIG3_T = (32, 128, 1024)
FIG6_T = (8, 32)
FIG7_T = (8, 16, 32)
FIG7_LAYERS = (1, 3)
FIG7_NEURONS = 120


def write_rate_coding(data: Dataset, out: Path, *, index: int = 0, Ts: Sequence[int] = FIG3_T, seed: int = 0) -> Path:
    """Fig. 3: test image ``index`` and its reconstructions from T Bernoulli spikes per pixel."""
    x = data.test.images(slice(index, index + 1))
    recon = rate_coded_images(x, Ts, seed=seed)
    buf = io.BytesIO()
    np.savez_compressed(buf, image=x[0].numpy(), Ts=np.array(Ts), coded=np.stack([r[0].numpy() for r in recon]),
                        label=int(data.test.y[index]))
    path = out / "rate_coding.npz"
    atomic_write_bytes(buf.getvalue(), path)
    return path


def write_spike_measurements(model: nn.Module, data: Dataset, out: Path, base: dict[str, object], *,
                             methods: Sequence[Method] = FIGURE_METHODS, n_images: int = 256,
                             device: str = "cpu", batch_size: int = 256, max_fold: int | None = None, seed: int = 0,
                             coding: str = "direct") -> None:
    """Figs. 6 and 7 on a converted model whose thresholds are set: first-spike times and layer outputs."""
    sim = dict(batch_size=batch_size, max_fold=max_fold, device=device, coding=coding, seed=seed)
    prov = provenance(device)
    base = {**{k: base.get(k) for k in ("profile", "dataset", "arch", "width", "bn", "epochs", "recipe")},
            "device": prov["device"], "git_commit": prov["git_commit"]}
    images = data.test.subset(n_images)
    image_shape = tuple(data.train.x.shape[1:])
    first, outputs = [], []
    x = data.test.images(slice(0, 1), device)
    for method in methods:
        for T in sorted(set(FIG6_T) | set(FIG7_T)):
            method.apply(model, T, data.train, image_shape=image_shape, check=False, **sim)  # figures, not advice
            if T in FIG6_T:
                for fs in first_spike_times(model, images, T, batch_size=batch_size, max_fold=max_fold,
                                            coding=coding, device=device, seed=seed):
                    first.append({**base, "method": method.name, "variant": method.label, "T": T, "layer": fs.layer,
                                  "layer_name": fs.name, "mean_first_spike": round(fs.mean_first_spike, 4),
                                  "silent_fraction": round(fs.silent_fraction, 4), "n_images": len(images)})
            if T in FIG7_T:
                for layer, (ann, snn) in layer_outputs(model, x, T, FIG7_LAYERS, coding=coding,
                                                      max_fold=max_fold, seed=seed).items():
                    a, s = ann.flatten()[:FIG7_NEURONS].cpu(), snn.flatten()[:FIG7_NEURONS].cpu()
                    outputs += [{**base, "method": method.name, "variant": method.label, "T": T, "layer": layer,
                                 "neuron": i, "ann_value": round(float(a[i]), 5), "snn_value": round(float(s[i]), 5)}
                                for i in range(len(a))]
    merge_rows(out / "first_spike.csv", first, tuple(first[0]), ("arch", "width", "variant", "T", "layer"))
    merge_rows(out / "layer_outputs.csv", outputs, tuple(outputs[0]),
               ("arch", "width", "variant", "T", "layer", "neuron"))


def has_spike_measurements(out: Path, arch: str, width: float) -> bool:
    return any(r["arch"] == arch and float(r["width"]) == width for r in read_rows(out / "first_spike.csv"))
