"""The end-to-end runs that the CLI and the notebooks share: train, convert, evaluate every method at every T.

Results are merged into ``results.csv`` / ``curves.csv`` (and, unless energy counting is off, ``energy.csv`` /
``energy_layers.csv``) after each method, so an interrupted run keeps what it measured and, run again, skips
the points it already has.
"""
from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, ContextManager, Iterator, Sequence

import torch
from torch import nn
from tqdm import tqdm

from . import distributed
from .convert import balance_thresholds, convert, thresholds_from_lambda
from .data import Dataset, load_dataset
from .energy import EnergyCosts, EnergyMeter, EnergyRecord
from .errors import ConfigError
from .files import exclusive
from .figures import has_spike_measurements, write_rate_coding, write_spike_measurements
from .methods import Method
from .neuron import ann_kind, neurons
from .profiles import Profile
from .results import (CURVE_COLUMNS, ENERGY_COLUMNS, ENERGY_LAYER_COLUMNS, KEY_COLUMNS, RESULT_COLUMNS, check_out_dir,
                      check_table, key_of, merge_rows, provenance, read_rows, write_rows)
from .simulate import accuracy_curve, ann_accuracy, validate_coding, validate_T
from .train import ModelSpec, TrainConfig, train


def resolve_device(device: str) -> str:
    """``auto`` picks CUDA when present; asking for CUDA without it is an error, not a silent fallback."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but no CUDA GPU is available. Fix: use --device cpu or auto")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ConfigError(f"unknown device {device!r}. Fix: use auto, cpu or cuda[:N]")
    return device


@dataclass(frozen=True)
class Conversion:
    """How the ANN becomes an SNN, shared by every method (threshold balancing and input coding)."""

    threshold_quantile: float = 0.99
    threshold_values: str = "positive"
    threshold_images: int = 1000
    coding: str = "direct"


def checkpoint_path(out_dir: Path, dataset: str, spec: ModelSpec, cfg: TrainConfig) -> Path:
    act = "relu" if spec.activation == "relu" else f"qcfs{spec.levels}"
    bn = "bn" if spec.bn else "nobn"
    recipe = "" if cfg.recipe == "paper" else f"-{cfg.recipe}"
    return (out_dir / "checkpoints"
            / f"{dataset}-{spec.arch}-w{spec.width:g}-{bn}-{act}-e{cfg.epochs}{recipe}-s{cfg.seed}.pt")


def evaluate_methods(model: nn.Module, data: Dataset, methods: Sequence[Method], T_grid: Sequence[int], *,
                     conversion: Conversion, out_dir: str | os.PathLike, base: dict[str, object],
                     n_test: int | None = None, batch_size: int = 256, max_fold: int | None = None, device: str = "cpu",
                     seed: int = 0, progress: bool = True, log: Callable[[str], None] = tqdm.write,
                     on_converted: Callable[[nn.Module], None] | None = None, rank: int = 0,
                     world: int = 1, energy: bool = True, costs: EnergyCosts = EnergyCosts()) -> list[dict[str, object]]:
    """Convert ``model`` and measure every method at every T; merge rows into ``out_dir``/results.csv.

    With ``energy`` the same simulations count spikes and operations (:mod:`.energy`), written to energy.csv
    (every t <= T) and energy_layers.csv (t = T), with the energy estimated at ``costs``; a point measured
    without them is measured again.

    ``base`` holds the columns shared by all rows (profile, dataset, arch, ...). Points already in
    results.csv with the same key are skipped. ``on_converted`` is called with the converted model once its
    thresholds are set, before the first method. With ``world`` > 1 this process measures only the points of
    ``rank`` (see :func:`divide_jobs`), and the ``world`` processes together measure every point once.
    """
    if not 0 <= rank < world:
        raise ConfigError(f"rank {rank} of {world} processes does not exist. Fix: pass 0 <= rank < world")
    T_grid = sorted({validate_T(T) for T in T_grid})
    validate_coding(conversion.coding)
    out = check_out_dir(out_dir)
    results_csv, curves_csv = out / "results.csv", out / "curves.csv"
    check_table(results_csv, RESULT_COLUMNS)  # before the compute, not after it
    check_table(curves_csv, CURVE_COLUMNS)
    energy_csv, layers_csv = out / "energy.csv", out / "energy_layers.csv"
    if energy:
        check_table(energy_csv, ENERGY_COLUMNS)
        check_table(layers_csv, ENERGY_LAYER_COLUMNS)
    test = data.test.subset(n_test)
    model = convert(model).to(device)
    kind = ann_kind(model)
    for method in methods:  # refuse a method/ANN mismatch before any work is done
        method.check_ann(model)
    ann_acc = ann_accuracy(model, test, batch_size=batch_size, device=device)
    if kind == "qcfs":  # QCFS's thresholds are its trained lambdas; the quantile settings do not apply
        thresholds = thresholds_from_lambda(model)
        threshold_cols = {"threshold_quantile": None, "threshold_values": "lambda", "threshold_images": None}
    else:
        thresholds = balance_thresholds(model, data.train, quantile=conversion.threshold_quantile,
                                        images=conversion.threshold_images, values=conversion.threshold_values,
                                        batch_size=batch_size, device=device, seed=seed)
        threshold_cols = {}
    log(f"{base.get('arch')} ({kind}): ANN accuracy {ann_acc:.2f}% on {len(test)} test images; thresholds "
        + ", ".join(f"{t:.3g}" for t in thresholds))
    levels = next(n for _, n in neurons(model)).levels if kind == "qcfs" else None
    common = {**base, "ann": kind, "levels": levels, **asdict(conversion), **threshold_cols,
              "ann_accuracy": round(ann_acc, 4), "n_test": len(test), "seed": seed, **provenance(device)}
    if on_converted is not None:
        on_converted(model)
    done = {key_of(r): r for r in read_rows(results_csv)}
    skipped: list[dict[str, str]] = []
    remeasured: list[dict[str, str]] = []
    image_shape = tuple(data.train.x.shape[1:])
    meter = None
    if energy:
        try:
            meter = EnergyMeter(model, image_shape, conversion.coding)
        except ConfigError as e:  # a user's model with an operation whose synapses cannot be counted: accuracy only
            log(f"{base.get('arch')}: energy not counted ({e}); accuracy is measured as usual. Pass --no-energy "
                "(energy=False) to skip the attempt")
            energy = False
    if energy:  # a point without its energy rows (a run made before counting existed) is measured again
        counted = {key_of(r) for r in read_rows(energy_csv)}
        done = {k: r for k, r in done.items() if k in counted}
        ann_ops = {"ann_macs_per_image": meter.ann_macs, "e_mac_pj": costs.e_mac_pj, "e_ac_pj": costs.e_ac_pj,
                   "ann_energy_per_image_uj": round(costs.energy_uj(meter.ann_macs, 0), 6)}
    sim = dict(batch_size=batch_size, max_fold=max_fold, device=device, coding=conversion.coding, seed=seed)
    owners = divide_jobs(methods, T_grid, world)
    all_rows: list[dict[str, object]] = []
    for method, owner in tqdm(zip(methods, owners), desc=f"methods {base.get('arch')}", total=len(methods),
                              disable=not progress):
        rows_for = {T: {**common, "method": method.name, "variant": method.label, **method.options(), "T": T,
                        "latency": method.latency(T)} for T in T_grid}
        # this rank's points already in results.csv; one measured on another training of this ANN (another ANN
        # accuracy) is not this model's number: measured again, and replaced
        held = {T: done[k] for T in T_grid if owner[T] == rank and (k := key_of(rows_for[T])) in done}
        other = [T for T, r in held.items() if not _same_ann(r, ann_acc)]
        remeasured += [held[T] for T in other]
        skipped += [r for T, r in held.items() if T not in other]
        todo = [T for T in T_grid if owner[T] == rank and (T not in held or T in other)]
        if not todo:
            continue
        rows, curves, ops, layer_ops = [], [], [], []
        started = time.perf_counter()
        # v(0) of a T-independent method is the same for every horizon: one simulation serves every T
        horizons = todo if method.depends_on_T else [max(todo)]
        for H in horizons:
            # no check against plain conversion: the run measures plain conversion on the test images itself
            method.apply(model, H, data.train, image_shape=image_shape, check=False, **sim)
            curve = accuracy_curve(model, test, H, coding=conversion.coding, batch_size=batch_size,
                                   max_fold=max_fold, device=device, seed=seed, energy=meter)
            for T in (todo if not method.depends_on_T else [H]):
                row = {**rows_for[T], "accuracy": round(float(curve[T - 1]), 4)}
                rows.append(row)
                curves += [{**row, "t": t, "latency": method.latency(t), "accuracy": round(float(curve[t - 1]), 4)}
                           for t in range(1, T + 1)]
                if meter is not None:
                    ops += energy_rows(meter.record, curves[-T:], costs, ann_ops)
                    layer_ops += [{**curves[-1], **_rounded(r), **ann_ops} for r in meter.record.layers_at(T, costs)]
        merge_rows(results_csv, rows, RESULT_COLUMNS, KEY_COLUMNS)
        merge_rows(curves_csv, curves, CURVE_COLUMNS, KEY_COLUMNS + ("t",))
        if meter is not None:
            merge_rows(energy_csv, ops, ENERGY_COLUMNS, KEY_COLUMNS + ("t",))
            merge_rows(layers_csv, layer_ops, ENERGY_LAYER_COLUMNS, KEY_COLUMNS + ("t", "layer"))
        log(f"  {method.label} ({time.perf_counter() - started:.0f} s): "
            + ", ".join(f"T={r['T']} {r['accuracy']:.2f}%" for r in rows))
        all_rows += rows
    if remeasured:
        accs = sorted({r["ann_accuracy"] for r in remeasured})
        log(f"  measured {len(remeasured)} points again: {results_csv} held them from another training of this ANN "
            f"(ANN accuracy {', '.join(accs)}% there, {ann_acc:.4g}% here), and replaced their rows")
    if skipped:
        log(skipped_message(skipped, common, results_csv))
    return all_rows


def _rounded(row: dict[str, object]) -> dict[str, object]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}


def energy_rows(record: EnergyRecord, curve_rows: Sequence[dict[str, object]], costs: EnergyCosts,
                ann_ops: dict[str, object]) -> list[dict[str, object]]:
    """energy.csv's rows: each curve row (one per t) with the operations per image over steps 1..t."""
    out = []
    for c in curve_rows:
        ops = record.totals(int(c["t"]), costs)
        ratio = ops["energy_per_image_uj"] / ann_ops["ann_energy_per_image_uj"] if ann_ops["ann_energy_per_image_uj"] else None
        out.append({**c, **_rounded(ops), **ann_ops, "energy_ratio": round(ratio, 6) if ratio is not None else None})
    return out


def _same_ann(row: dict[str, str], ann_accuracy: float) -> bool:
    """Whether a results row was measured on this training of the ANN (its ANN accuracy, as rounded in the file)."""
    try:
        return abs(float(row.get("ann_accuracy", "")) - round(ann_accuracy, 4)) < 1e-6
    except ValueError:  # no ANN accuracy recorded: nothing says it is another training
        return True


def skipped_message(skipped: Sequence[dict[str, str]], current: dict[str, object], results_csv: Path) -> str:
    """Say which points a run did not measure because ``results_csv`` already had them, and whether those rows
    came from another commit or from another training of the ANN (another ANN accuracy): then they are not what
    this code would measure, and the fix is named."""
    commits = sorted({r.get("git_commit", "")[:10] for r in skipped})
    accs = sorted({r.get("ann_accuracy", "") for r in skipped})
    variants = sorted({r["variant"] for r in skipped})
    text = (f"  skipped {len(skipped)} points of {len(variants)} variants already in {results_csv} (measured at commit "
            f"{', '.join(commits)}, ANN accuracy {', '.join(accs)}%)")
    stale = [c for c in commits if c != str(current.get("git_commit", ""))[:10]]
    if any(not _same_ann(r, float(current["ann_accuracy"])) for r in skipped):
        text += (f"; WARNING: this run's ANN scores {current['ann_accuracy']}%, so those rows come from another "
                 "training. Fix: reuse the checkpoint they came from, or delete their rows (or use a fresh --out) "
                 "to measure them again")
    elif stale:
        text += (f"; they were measured by other code (commit {', '.join(stale)}; this is "
                 f"{str(current.get('git_commit', ''))[:10]}). Fix: delete their rows, or use a fresh --out, to "
                 "measure them with this code")
    return text


def divide_jobs(methods: Sequence[Method], T_grid: Sequence[int], world: int) -> list[dict[int, int]]:
    """For each method, the rank that measures it at each T (all 0 when ``world`` is 1).

    A job is one simulation: one per (method, T), or one per method whose single simulation serves every T.
    Jobs are assigned in the methods' order, each to the rank with the fewest simulated steps so far, so the
    ranks finish at about the same time and each measures the most important methods first. The division
    depends on the methods and the T grid alone, never on the points already measured (which change while
    other ranks merge theirs), so every rank computes the same one."""
    jobs: list[tuple[int, list[int]]] = []  # (method's index, the Ts its simulation measures)
    for i, m in enumerate(methods):
        jobs += [(i, [T]) for T in T_grid] if m.depends_on_T else [(i, list(T_grid))]
    owners: list[dict[int, int]] = [{} for _ in methods]
    for (i, Ts), r in zip(jobs, distributed.assign([max(Ts) for _, Ts in jobs], world)):
        owners[i].update(dict.fromkeys(Ts, r))
    return owners


class StageTimes:
    """Wall-clock seconds per stage of a run, written as ``stage_times.csv`` (``stage``, ``seconds``, a ``total``
    row last) after every stage, so a run cut short still says where its time went. A stage run inside another
    is counted once: its seconds are taken out of the outer stage's."""

    COLUMNS = ("stage", "seconds", "device", "git_commit", "timestamp")

    def __init__(self, path: Path | None, device: str) -> None:
        self.path, self.device = path, device  # path None: time the stages, write nothing (ranks other than 0)
        self.started = time.perf_counter()
        self.rows: list[dict[str, object]] = []
        self._inner: list[float] = []  # seconds of finished inner stages, one entry per open stage

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        self._inner.append(0.0)
        try:
            yield
        finally:
            elapsed = time.perf_counter() - t0
            own = elapsed - self._inner.pop()
            if self._inner:
                self._inner[-1] += elapsed
            self.rows.append({"stage": name, "seconds": round(own, 2)})
            total = {"stage": "total", "seconds": round(time.perf_counter() - self.started, 2)}
            if self.path is not None:
                prov = provenance(self.device)  # once per write: it asks git for the commit
                write_rows(self.path, [{**r, **prov} for r in (*self.rows, total)], self.COLUMNS)


def stage_times_name(archs: Sequence[str] | None, activations: Sequence[str] | None,
                     width: float | None = None) -> str:
    """``stage_times.csv`` for a whole profile; a run restricted to some of its models (one process per ANN,
    tools/full_gpu.sh) or at another width writes its own, e.g. ``stage_times-vgg16-qcfs.csv`` or
    ``stage_times-resnet20-w1.csv``, so processes sharing a folder do not overwrite each other's."""
    chosen = [*(archs or ()), *(activations or ()), *(() if width is None else (f"w{width:g}",))]
    return f"stage_times{''.join(f'-{c}' for c in chosen)}.csv"


def reproduce(profile: Profile, out_dir: str | os.PathLike, *, data_root: str | None = None, device: str = "auto",
              download: bool = False, archs: Sequence[str] | None = None, activations: Sequence[str] | None = None,
              epochs: int | None = None, width: float | None = None, progress: bool = True,
              log: Callable[[str], None] = tqdm.write, energy: bool = True, costs: EnergyCosts = EnergyCosts()) -> Path:
    """Run a profile end to end: train (or reuse) each ANN, then every method at every T. Returns results.csv.

    ``width`` replaces the width multiplier of every chosen model (with ``archs``, e.g. the paper's ResNet20 under
    the cpu profile's schedule); its rows, checkpoints and stage times carry the width, so they never mix with the
    profile's own.

    ``energy`` / ``costs``: count operations and estimate energy (energy.csv, energy_layers.csv; see
    :func:`evaluate_methods`). ``archs`` / ``activations`` restrict the run to some of the profile's models, e.g. one process per ANN
    on one GPU (tools/full_gpu.sh); processes may share ``out_dir``, whose merges are locked, and each writes its
    own stage times (:func:`stage_times_name`).

    Under torchrun (several ranks sharing ``out_dir``) every rank trains each ANN, on its slice of each batch,
    then measures its share of the (method, T) points and merges them into the shared files; rank 0 alone
    writes the checkpoints and the figures' measurements. All rows are in when any rank returns."""
    device = distributed.init(resolve_device(device))  # under torchrun: join the other ranks, on this rank's GPU
    progress = progress and distributed.is_main()
    if distributed.world_size() > 1:
        log = _tagged(log, distributed.rank())
    if width is not None and not (math.isfinite(width) and width > 0):
        raise ConfigError(f"width must be a positive number, got {width}. Fix: e.g. --width 1 for the paper's channels")
    out = check_out_dir(out_dir)
    check_table(out / "results.csv", RESULT_COLUMNS)  # a file a merge would damage is refused before training
    check_table(out / "curves.csv", CURVE_COLUMNS)
    if energy:
        check_table(out / "energy.csv", ENERGY_COLUMNS)
        check_table(out / "energy_layers.csv", ENERGY_LAYER_COLUMNS)
    times = StageTimes(out / stage_times_name(archs, activations, width) if distributed.is_main() else None, device)
    with times.stage("load data"):
        data = load_dataset(profile.dataset, data_root, download=download, seed=profile.seed)
    cfg = replace(profile.train, seed=profile.seed)
    if epochs is not None:
        cfg = cfg.scaled_to(epochs)
    choices = [m if width is None else replace(m, width=width) for m in profile.models
               if (archs is None or m.arch in archs) and (activations is None or m.activation in activations)]
    if not choices:
        raise ConfigError(f"no model of profile {profile.name!r} ({', '.join(f'{m.arch}/{m.activation}' for m in profile.models)}) "
                          f"matches --arch {list(archs or [])} --activation {list(activations or [])}. Fix: name one of those")
    # Fig. 3 needs the data alone: written first, in seconds (by rank 0, as all the figures' measurements)
    if distributed.is_main() and not (out / "rate_coding.npz").exists():
        out.mkdir(parents=True, exist_ok=True)
        write_rate_coding(data, out, seed=profile.seed)
    conversion = Conversion(profile.threshold_quantile, profile.threshold_values, profile.threshold_images,
                            profile.coding)
    sim = dict(device=device, batch_size=profile.eval_batch_size, max_fold=profile.max_fold, seed=profile.seed,
               coding=profile.coding)
    relu_anns: dict[Path, nn.Module] = {}  # by checkpoint, trained this run: the QCFS twins' warm starts reuse them
    for choice in choices:
        spec = ModelSpec(choice.arch, choice.width, choice.bn, data.num_classes, data.in_channels, data.mean, data.std,
                         choice.activation, choice.levels)
        ckpt = checkpoint_path(out, data.name, spec, cfg)
        name = f"{spec.arch} {spec.activation}"
        with times.stage(f"train {name}"):
            init = None
            if cfg.warm_start and spec.activation == "qcfs":  # the fast recipe: from the trained ReLU twin
                twin = replace(spec, activation="relu")
                twin_ckpt = checkpoint_path(out, data.name, twin, cfg)
                if twin_ckpt not in relu_anns:
                    log(f"{spec.describe()} starts from its ReLU twin: training it {cfg.epochs} epochs on {data.name} "
                        f"(checkpoint {twin_ckpt})")
                    with times.stage(f"train {spec.arch} relu"), _one_trainer(twin_ckpt):
                        relu_anns[twin_ckpt] = train(twin, data, cfg, twin_ckpt, device=device, progress=progress)
                init = relu_anns[twin_ckpt]
            log(f"{spec.describe()}: training {cfg.epochs} epochs on {data.name}"
                f"{' from its ReLU twin' if init is not None else ''} (checkpoint {ckpt})")
            with _one_trainer(ckpt):
                model = train(spec, data, cfg, ckpt, device=device, progress=progress, init=init)
        if spec.activation == "relu":
            relu_anns[ckpt] = model
        base = {"profile": profile.name, "dataset": data.name, "data_source": data.source, "arch": spec.arch,
                "width": spec.width, "bn": spec.bn, "epochs": cfg.epochs, "recipe": cfg.recipe}

        def spike_figures(snn: nn.Module, arch: str = spec.arch, width: float = spec.width,
                          base: dict[str, object] = base) -> None:
            # the paper's Figs. 6-7 are on the ReLU ANN; they take seconds, so they come before the methods
            # and a run cut short still has them
            if not has_spike_measurements(out, arch, width):
                log(f"{arch}: measuring first-spike times and layer outputs (Figs. 6-7)")
                with times.stage(f"spike measurements {arch}"):
                    write_spike_measurements(snn, data, out, base, **sim)

        with times.stage(f"methods {name}"):
            evaluate_methods(model, data, profile.methods[choice.activation], profile.T_grid, conversion=conversion,
                             out_dir=out, base=base, n_test=profile.n_test, batch_size=profile.eval_batch_size,
                             max_fold=profile.max_fold, device=device, seed=profile.seed, progress=progress, log=log,
                             on_converted=spike_figures if choice.activation == "relu" and distributed.is_main() else None,
                             rank=distributed.rank(), world=distributed.world_size(), energy=energy, costs=costs)
    distributed.barrier()  # every rank's rows are merged before any rank returns
    return out / "results.csv"


def _one_trainer(ckpt: Path) -> ContextManager[None]:
    """One process at a time trains a checkpoint: a QCFS process (tools/full_gpu.sh runs one per ANN) waits for
    the ReLU process training its twin, then loads it. Under torchrun the ranks train it together instead."""
    return exclusive(ckpt) if distributed.world_size() == 1 else nullcontext()


def _tagged(log: Callable[[str], None], rank: int) -> Callable[[str], None]:
    return lambda message: log(f"[rank {rank}] {message}")


OUTPUT_FILES = (  # what `icsnn reproduce` writes into its folder, and what each file holds
    ("results.csv", "one row per model, method (with its readings) and T: accuracy, ANN accuracy, provenance"),
    ("curves.csv", "the accuracy at every step t <= T of the same simulations"),
    ("energy.csv", "spikes, firing rate, synaptic operations, MACs and estimated energy per image at every t <= T"),
    ("energy_layers.csv", "the same per IF layer, at t = T"),
    ("stage_times.csv", "the seconds each stage of the run took"),
    ("first_spike.csv", "Figure 6: mean first-spike step per IF layer"),
    ("layer_outputs.csv", "Figure 7: ANN activation and decoded SNN output of chosen neurons"),
    ("rate_coding.npz", "Figure 3: a test image and its rate-coded reconstructions"),
    ("checkpoints", "the trained ANNs (a rerun reuses them)"),
)


def summary(profile: Profile, out_dir: str | os.PathLike, Ts: Sequence[int] = (4, 8, 16, 32)) -> str:
    """A short text report of a finished run: the accuracy of each method as printed (and of the peers) at a few
    T, per model, then the files the run wrote and what each holds. Reads ``results.csv`` only."""
    out = Path(out_dir)
    rows = read_rows(out / "results.csv")
    shown_T = [T for T in Ts if T in profile.T_grid] or list(profile.T_grid[:4])
    lines = [f"Accuracy (%) of each method as printed, {profile.name} profile, at T = "
             f"{', '.join(map(str, shown_T))} (COS's latency is T + rho):"]
    for ann, methods in profile.methods.items():
        firsts = list({m.name: m for m in reversed(methods)}.values())[::-1]  # the first variant of each method
        by_model: dict[str, dict[tuple[str, int], str]] = {}
        ann_acc: dict[str, str] = {}
        for r in rows:
            if r["ann"] == ann:
                by_model.setdefault(r["arch"], {})[(r["variant"], int(r["T"]))] = r["accuracy"]
                ann_acc[r["arch"]] = r["ann_accuracy"]
        for arch, points in by_model.items():
            lines.append(f"  {arch}, {dict(relu='ReLU').get(ann, ann.upper())} ANN ({float(ann_acc[arch]):.2f}%)")
            lines.append("    " + f"{'method':<10}" + "".join(f"{'T=' + str(T):>9}" for T in shown_T))
            for m in firsts:
                values = [points.get((m.label, T)) for T in shown_T]
                if any(v is not None for v in values):
                    lines.append("    " + f"{m.name:<10}" + "".join(f"{float(v):9.2f}" if v else f"{'-':>9}"
                                                                       for v in values))
    lines.append(f"Files in {out}:")
    lines += [f"  {name:<18} {what}" for name, what in OUTPUT_FILES if (out / name).exists()]
    return "\n".join(lines)
