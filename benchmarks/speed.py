"""Speed benchmarks of the SNN simulation, run by hand (not a test): `python benchmarks/speed.py --help`.

1. efficiency = T x (ANN forward time) / (SNN simulation time), VGG16 and ResNet20, T = 8, 32, 128, at the
   benchmark's batch size and against the ANN's floor (its fastest time per image over several batch sizes); the
   speed-up of running the layers before the first neurons once per window (``simulate(stem_once=True)``, the
   default) and of the IF update fused over each window by torch.compile (``simulate(fused=True)``), same outputs;
   on a CPU, the simulation with glibc's default malloc against freed memory kept for reuse
   (``icsnn_core.simulate.reuse_freed_memory``, which this script and the ``icsnn`` command call on start);
2. the same converted network with SpikingJelly's multi-step IF neurons: spike counts compared, then speed;
3. calibration cost (IC-SNN's Algorithm 3, COS's pre-simulation) against one ANN training epoch, and IC-SNN
   accuracy against the number of calibration images (needs a trained checkpoint and its dataset);
4. peak memory of a T = 256 evaluation of VGG16 for several chunk sizes and test-set sizes.
Prints a table and writes a tidy CSV (one row per measurement) with device and commit; the benchmarks run replace
their own rows in it and leave the others' (``--skip``) as they were.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from icsnn_core.convert import convert  # noqa: E402
from icsnn_core.data import load_dataset  # noqa: E402
from icsnn_core.methods import Method  # noqa: E402
from icsnn_core.models import build_model  # noqa: E402
from icsnn_core.neuron import neurons, reset, set_mode  # noqa: E402
from icsnn_core.results import provenance, read_rows, write_rows  # noqa: E402
from icsnn_core.simulate import accuracy_curve, default_max_fold, reuse_freed_memory, simulate  # noqa: E402
from icsnn_core.train import TrainConfig, load_model  # noqa: E402


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fold_choices(batch: int, T: int, device: str) -> list[int]:
    """The folds the benchmarks compare: one step per pass, the default, and all T steps at once."""
    return list(dict.fromkeys((batch, default_max_fold(device), batch * T)))


def random_snn(arch: str, width: float, device: str, seed: int = 0) -> nn.Module:
    """A converted model with random weights and thresholds at each layer's max activation on random images."""
    torch.manual_seed(seed)
    model = convert(build_model(arch, 10, 3, width=width, bn=True)).to(device).eval()
    x = torch.rand(64, 3, 32, 32, device=device)
    acts = {}
    hooks = [n.register_forward_hook(lambda m, i, o, k=k: acts.__setitem__(k, float(o.max()))) for k, (_, n) in
             enumerate(neurons(model))]
    set_mode(model, "ann")
    with torch.inference_mode():
        model(x)
    for h in hooks:
        h.remove()
    for k, (_, n) in enumerate(neurons(model)):
        n.set_threshold(max(acts[k], 1e-3) * 0.5)  # half the max: plenty of spikes everywhere
    return model


def ann_floor(model: nn.Module, arch: str, width: float, batches, device: str, repeats: int):
    """The ANN's time per image at each batch size: its fastest is the floor an SNN step is held to."""
    rows = []
    set_mode(model, "ann")
    for b in batches:
        x = torch.rand(b, 3, 32, 32, device=device)
        t = timed(lambda: model(x), device, repeats)
        rows.append(dict(benchmark="ann-floor", arch=arch, width=width, batch=b, ann_ms=round(t * 1e3, 3),
                         value=round(t / b * 1e3, 4), unit="ANN ms per image"))
        print(f"ANN {arch} w{width} batch={b}: {t*1e3:.1f} ms, {t/b*1e3:.3f} ms per image", flush=True)
    return rows


def efficiency(archs, Ts, batch, device, repeats, floor_batches=()):
    """T x ANN time / SNN time at ``batch``; with ``floor_batches``, also against the ANN's fastest time per image
    over those batch sizes (``floor_value``), which no choice of batch size for the ANN can beat."""
    rows = []
    for arch, width in archs:
        model = random_snn(arch, width, device)
        x = torch.rand(batch, 3, 32, 32, device=device)
        with torch.inference_mode():
            floor_rows = ann_floor(model, arch, width, floor_batches, device, repeats)
            rows += floor_rows
            set_mode(model, "ann")
            ann = timed(lambda: model(x), device, repeats)
            # ms per image; the batch's own timing counts too, so the floor is never above it (timings are noisy)
            floor = min([r["value"] for r in floor_rows] + [ann / batch * 1e3]) if floor_rows else None
            for T in Ts:
                for fold in fold_choices(batch, T, device):
                    def run():
                        reset(model)
                        simulate(model, x, T, max_fold=fold)
                    snn = timed(run, device, max(1, repeats // 2))
                    floor_value = None if floor is None else round(T * floor * batch / (snn * 1e3), 3)
                    rows.append(dict(benchmark="efficiency", arch=arch, width=width, T=T, batch=batch,
                                     max_fold=fold, ann_ms=round(ann * 1e3, 3), snn_ms=round(snn * 1e3, 3),
                                     value=round(T * ann / snn, 3), unit="T x ANN time / SNN time",
                                     floor_value=floor_value))
                    print(f"efficiency {arch} w{width} T={T} batch={batch} max_fold={fold}: ANN {ann*1e3:.1f} ms, "
                          f"SNN {snn*1e3:.1f} ms, efficiency {T*ann/snn:.2f}, against the ANN floor {floor_value}",
                          flush=True)
    return rows


def side_by_side(benchmark, option, archs, Ts, batch, device, repeats, fold_of, unit):
    """``simulate(option=True)`` against ``option=False`` on the same batch, timed alternately (the same machine load
    for both) after checking that both give the same outputs; ``value`` is the off time over the on time."""
    rows = []
    for arch, width in archs:
        model = random_snn(arch, width, device)
        x = torch.rand(batch, 3, 32, 32, device=device)
        with torch.inference_mode():
            for T in Ts:
                fold = fold_of(T)
                runs = {}
                for on in (False, True):
                    def run(on=on):
                        reset(model)
                        return simulate(model, x, T, max_fold=fold, **{option: on})
                    runs[on] = run
                if not torch.equal(runs[False](), runs[True]()):  # also a compile, outside the timing
                    raise SystemExit(f"{option}=True changed the output of {arch} at T={T}")
                times = {False: [], True: []}
                for _ in range(max(1, repeats)):
                    for on, run in runs.items():
                        sync(device)
                        t0 = time.perf_counter()
                        run()
                        sync(device)
                        times[on].append(time.perf_counter() - t0)
                off, on = statistics.median(times[False]), statistics.median(times[True])
                rows.append(dict(benchmark=benchmark, arch=arch, width=width, T=T, batch=batch, max_fold=fold,
                                 snn_ms=round(off * 1e3, 3), **{f"{option}_ms": round(on * 1e3, 3)},
                                 value=round(off / on, 3), unit=unit))
                print(f"{benchmark} {arch} w{width} T={T} batch={batch}: off {off*1e3:.1f} ms, on {on*1e3:.1f} ms, "
                      f"speed-up {off/on:.2f}x", flush=True)
    return rows


def fused_if(archs, Ts, batch, device, repeats):
    """The IF update fused over each window by torch.compile (simulate(fused=True)) against the in-place loop."""
    return side_by_side("fused-if", "fused", archs, Ts, batch, device, repeats,
                        lambda T: batch * min(T, 32),  # windows of up to 32 steps
                        "in-place loop time / fused window time (same outputs)")


def stem_once(archs, Ts, batch, device, repeats):
    """The layers before the first IF neurons once per window (the default under direct coding) against at every
    step, at the default fold."""
    return side_by_side("stem-once", "stem_once", archs, Ts, batch, device, repeats,
                        lambda T: default_max_fold(device),
                        "time with the first layers at every step / once per window (same outputs)")


FREED_MEMORY_CHILD = """
import hashlib, json, sys, torch
sys.path.insert(0, {root!r})
sys.path.insert(0, {bench!r})
from icsnn_core.neuron import reset
from icsnn_core.simulate import reuse_freed_memory, simulate
from speed import fold_choices, random_snn, timed
if {on!r}:
    reuse_freed_memory()
device, batch, rows = {device!r}, {batch}, []
for arch, width in {archs!r}:
    model = random_snn(arch, width, device)
    x = torch.rand(batch, 3, 32, 32, device=device)
    with torch.inference_mode():
        for T in {Ts!r}:
            for fold in fold_choices(batch, T, device):
                def run():
                    reset(model)
                    return simulate(model, x, T, max_fold=fold)
                digest = hashlib.sha256(run().cpu().numpy().tobytes()).hexdigest()
                rows.append(dict(arch=arch, width=width, T=T, max_fold=fold, ms=timed(run, device, {repeats}) * 1e3,
                                 digest=digest))
print(json.dumps(rows))
"""


def freed_memory(archs, Ts, batch, device, repeats, rounds=3):
    """The simulation with glibc's default malloc against :func:`reuse_freed_memory`, at each T and fold. The policy
    is set for a whole process, so each is timed in fresh processes, alternated ``rounds`` times (the same machine
    load for both), after checking that their outputs are the same bytes; ``value`` is default time over reused."""
    runs = {False: [], True: []}
    for _ in range(rounds):
        for on in (False, True):
            code = FREED_MEMORY_CHILD.format(root=str(ROOT), bench=str(ROOT / "benchmarks"), on=on, archs=archs,
                                             device=device, batch=batch, Ts=tuple(Ts), repeats=max(1, repeats // 2))
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            runs[on].append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows = []
    for k, first in enumerate(runs[False][0]):
        digests = {r[k]["digest"] for on in runs for r in runs[on]}
        if len(digests) != 1:
            raise SystemExit(f"reusing freed memory changed the output of {first['arch']} at T={first['T']}")
        off = statistics.median(r[k]["ms"] for r in runs[False])
        on = statistics.median(r[k]["ms"] for r in runs[True])
        rows.append(dict(benchmark="freed-memory", arch=first["arch"], width=first["width"], T=first["T"],
                         batch=batch, max_fold=first["max_fold"], snn_ms=round(off, 3), reused_ms=round(on, 3),
                         value=round(off / on, 3), unit="time with glibc's default malloc / with freed memory reused "
                                                         "(same outputs)"))
        print(f"freed-memory {first['arch']} w{first['width']} T={first['T']} max_fold={first['max_fold']}: default "
              f"{off:.1f} ms, reused {on:.1f} ms, speed-up {off/on:.2f}x", flush=True)
    return rows


class SJNeuron(nn.Module):
    """SpikingJelly's multi-step IF node in place of an IFNeuron (same threshold; output spikes x V_th)."""

    def __init__(self, threshold: float, steps: int) -> None:
        super().__init__()
        from spikingjelly.activation_based import neuron

        self.node = neuron.IFNode(v_threshold=threshold, v_reset=None, step_mode="m")
        self.threshold, self.steps = threshold, steps

    def forward(self, z):
        s = self.node(z.reshape(self.steps, -1, *z.shape[1:]))
        return (s * self.threshold).reshape(z.shape)


def spikingjelly(archs, T, batch, device, repeats):
    try:
        from spikingjelly.activation_based import functional
    except ImportError:
        print("spikingjelly not installed: pip install --no-deps spikingjelly loguru", flush=True)
        return []
    from importlib.metadata import version

    backend = f"spikingjelly {version('spikingjelly')}, IFNode step_mode='m'"
    rows = []
    for arch, width in archs:
        ours = random_snn(arch, width, device)
        theirs = random_snn(arch, width, device)
        for (name, n) in list(neurons(theirs)):
            theirs.set_submodule(name, SJNeuron(float(n.threshold), T))
        x = torch.rand(batch, 3, 32, 32, device=device)
        with torch.inference_mode():
            reset(ours)
            out_ours = simulate(ours, x, T, max_fold=batch * T)
            functional.reset_net(theirs)
            out_theirs = theirs(x.unsqueeze(0).expand(T, *x.shape).reshape(T * batch, *x.shape[1:])).view(T, batch, -1)
            same = torch.equal(out_ours, out_theirs)

            def run_ours():  # the same single pass over all T steps as SpikingJelly's multi-step mode
                reset(ours)
                simulate(ours, x, T, max_fold=batch * T)

            def run_theirs():
                functional.reset_net(theirs)
                theirs(x.unsqueeze(0).expand(T, *x.shape).reshape(T * batch, *x.shape[1:]))

            t_ours = timed(run_ours, device, repeats)
            t_theirs = timed(run_theirs, device, repeats)
        rows.append(dict(benchmark="spikingjelly", arch=arch, width=width, T=T, batch=batch,
                         ann_ms=None, snn_ms=round(t_ours * 1e3, 3), sj_ms=round(t_theirs * 1e3, 3),
                         identical_outputs=same, value=round(t_theirs / t_ours, 3),
                         unit=f"SpikingJelly time / icsnn time ({backend})"))
        print(f"spikingjelly {arch} w{width} T={T}: identical outputs {same}; icsnn {t_ours*1e3:.1f} ms, "
              f"SpikingJelly {t_theirs*1e3:.1f} ms, ratio {t_theirs/t_ours:.2f}", flush=True)
    return rows


def calibration(checkpoint, data_root, device, T, sizes, n_test, residuals=("raw", "clip")):
    model, ckpt = load_model(checkpoint)
    data = load_dataset(ckpt["dataset"], data_root)
    model = convert(model).to(device)
    from icsnn_core.convert import balance_thresholds

    balance_thresholds(model, data.train, images=1000, device=device)
    rows = []
    # one ANN training epoch, estimated from 20 timed SGD steps of the paper's recipe
    cfg = TrainConfig()
    train_model, _ = load_model(checkpoint)
    train_model.to(device).train()
    opt = torch.optim.SGD(train_model.parameters(), lr=1e-3, momentum=0.9)
    xb = data.train.images(slice(0, cfg.batch_size), device)
    yb = data.train.y[:cfg.batch_size].to(device)

    def step():
        loss = nn.functional.cross_entropy(train_model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    epoch = timed(step, device, 20) * (len(data.train) / cfg.batch_size)
    print(f"one ANN training epoch: {epoch:.1f} s (estimated from 20 steps)", flush=True)
    test = data.test.subset(n_test)
    sim = dict(batch_size=256, device=device)
    for residual, n in ((r, n) for r in residuals for n in sizes):  # as printed, and the bounded reading
        method = Method.make("ic-snn", calib_images=n, residual=residual)
        t0 = time.perf_counter()
        method.apply(model, T, data.train, image_shape=tuple(data.train.x.shape[1:]), **sim)
        sync(device)
        t_cal = time.perf_counter() - t0
        acc = float(accuracy_curve(model, test, T, batch_size=256, device=device)[-1])
        rows.append(dict(benchmark="calibration", arch=ckpt["spec"]["arch"], width=ckpt["spec"]["width"], T=T,
                         method="ic-snn", variant=method.label, calib_images=n, seconds=round(t_cal, 3), epoch_seconds=round(epoch, 2),
                         value=round(t_cal / epoch, 4), unit="calibration time / training epoch", accuracy=acc,
                         n_test=len(test)))
        print(f"IC-SNN (residual={residual}) calibration with {n} images at T={T}: {t_cal:.1f} s ({t_cal/epoch:.3f} epochs), "
              f"accuracy {acc:.2f}% on {len(test)} test images", flush=True)
    # COS calibrates per input during inference: its cost is the rho extra steps of every simulation
    x = test.images(slice(0, 256), device)
    with torch.inference_mode():
        Method.make("opi").apply(model, T)
        base = timed(lambda: (reset(model), simulate(model, x, T)), device, 3)
        Method.make("cos").apply(model, T)
        cos = timed(lambda: (reset(model), simulate(model, x, T)), device, 3)
    per_image_epoch = epoch / len(data.train)
    rows.append(dict(benchmark="calibration", arch=ckpt["spec"]["arch"], width=ckpt["spec"]["width"], T=T,
                     calib_images=None, method="cos", seconds=round((cos - base) / len(x), 6),
                     epoch_seconds=round(epoch, 2), value=round((cos - base) / len(x) / per_image_epoch, 4),
                     unit="COS extra time per test image / training time per image"))
    print(f"COS (rho=4) adds {(cos-base)*1e3/len(x):.2f} ms per test image at T={T} "
          f"({(cos-base)/base*100:.0f}% of the plain simulation)", flush=True)
    return rows


MEMORY_CHILD = """
import json, os, sys, threading, time, torch
sys.path.insert(0, {root!r})
from icsnn_core.data import Split
from icsnn_core.simulate import accuracy_curve, reuse_freed_memory
reuse_freed_memory()  # as the icsnn command and the parent do
sys.path.insert(0, {bench!r})
from speed import random_snn
device, n, max_fold, width = {device!r}, {n}, {max_fold}, {width}
model = random_snn("vgg16", width, device)
split = Split(torch.rand(n, 3, 32, 32), torch.zeros(n, dtype=torch.long), 1.0)
page = os.sysconf("SC_PAGE_SIZE")
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page
baseline, peak_rss, done = rss(), [0], [False]
def sample():  # the CPU has no allocator statistics: sample the resident set every millisecond
    while not done[0]:
        peak_rss[0] = max(peak_rss[0], rss())
        time.sleep(0.001)
sampler = threading.Thread(target=sample)
sampler.start()
if device.startswith("cuda"):
    torch.cuda.reset_peak_memory_stats()
accuracy_curve(model, split, 256, batch_size=min(n, 256), max_fold=max_fold, device=device)
done[0] = True
sampler.join()
peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
        else (peak_rss[0] - baseline) / 2**20)
print(json.dumps({{"peak_mib": peak}}))
"""


def memory(device, width, settings):
    rows = []
    for n, max_fold in settings:
        code = MEMORY_CHILD.format(root=str(ROOT), bench=str(ROOT / "benchmarks"), device=device, n=n,
                                   max_fold=max_fold, width=width)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        peak = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
        rows.append(dict(benchmark="memory", arch="vgg16", width=width, T=256, n_images=n, max_fold=max_fold,
                         value=round(peak, 1), unit="MiB peak (CUDA allocated, or CPU resident-set growth)"))
        print(f"memory vgg16 w{width} T=256, {n} images, max_fold={max_fold}: peak {peak:.0f} MiB", flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, help="CSV to write (default: benchmarks/results/speed-<cpu|cuda>.csv)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--checkpoint", help="trained checkpoint for the calibration benchmark (skipped without it)")
    p.add_argument("--data-root", help="its dataset (e.g. the CIFAR-10 archive)")
    p.add_argument("--skip", nargs="*", default=[],
                   choices=["efficiency", "stem", "fused", "freed-memory", "spikingjelly", "calibration", "memory"])
    p.add_argument("--calib-test", type=int, default=2000, help="test images for the calibration-size study")
    p.add_argument("--calib-residuals", nargs="+", default=["raw", "clip"], help="IC-SNN residual readings to study")
    args = p.parse_args(argv)
    reused = reuse_freed_memory()  # as the icsnn command does; the freed-memory rows time it against the default
    cuda = args.device.startswith("cuda")
    archs = [("vgg16", 1.0), ("resnet20", 1.0)] if cuda else [("vgg16", 0.25), ("resnet20", 0.5)]
    batch = 256 if cuda else 32
    rows = []
    if "efficiency" not in args.skip:
        floor_batches = (32, 64, 128, 256, 512, 1024) if cuda else (8, 16, 32, 64, 128, 256)
        rows += efficiency(archs, (8, 32, 128), batch, args.device, args.repeats, floor_batches)
    if "stem" not in args.skip:
        rows += stem_once(archs, (8, 32, 128), batch, args.device, args.repeats)
    if "fused" not in args.skip:
        rows += fused_if(archs, (8, 32, 128), batch, args.device, args.repeats)
    if "freed-memory" not in args.skip and not cuda:
        rows += freed_memory(archs, (8, 32, 128), batch, args.device, args.repeats)
    if "spikingjelly" not in args.skip:
        rows += spikingjelly(archs, 32, batch, args.device, args.repeats)
    if "calibration" not in args.skip and args.checkpoint:
        rows += calibration(args.checkpoint, args.data_root, args.device, 16,
                            (64, 128, 256, 512, 1024, 2048, 5000, 10000), args.calib_test, tuple(args.calib_residuals))
    if "memory" not in args.skip:
        width = 1.0 if cuda else 0.25
        fold = default_max_fold(args.device)
        rows += memory(args.device, width, [(256, fold), (1024, fold), (1024, 8 * fold)])
    prov = provenance(args.device)
    rows = [{**r, "device": prov["device"], "git_commit": prov["git_commit"], "torch_version": prov["torch_version"],
             "timestamp": prov["timestamp"],
             **({} if r["benchmark"] == "freed-memory" else {"freed_memory_reused": reused})} for r in rows]
    out = args.out or ROOT / "benchmarks" / "results" / f"speed-{'cuda' if cuda else 'cpu'}.csv"
    # a benchmark run now replaces its own earlier rows; the others' (say calibration, which needs a checkpoint) stay
    ran = {r["benchmark"] for r in rows}
    rows = [r for r in read_rows(out) if r.get("benchmark") not in ran] + rows
    columns = tuple(dict.fromkeys(k for r in rows for k in r))
    write_rows(out, rows, columns)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
