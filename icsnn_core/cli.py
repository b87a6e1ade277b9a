"""The ``icsnn`` command: train an ANN, convert and evaluate it, or reproduce a whole profile."""
from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .calibration import COMPENSATIONS, GRANULARITIES, RESIDUALS
from .data import Dataset, dataset_name, load_dataset
from .energy import E_AC_PJ, E_MAC_PJ, SOURCE, EnergyCosts
from .errors import ConfigError, IcsnnError
from .methods import INITS, METHODS, SHIFTS, Method, option_names
from .models import ARCHS, load_user_model
from .neuron import ACTIVATIONS, DEFAULT_INIT_LAMBDA, neurons
from .pipeline import Conversion, evaluate_methods, reproduce, resolve_device, summary
from .profiles import PROFILES, get_profile
from .simulate import CODINGS, reuse_freed_memory
from .train import (QUANT_WARMUP_MODES, RECIPES, ModelSpec, TrainConfig, check_image_shape, load_model, load_weights,
                    recipe, train)

DESCRIPTION = """\
ANN-to-SNN conversion at low latency: the IC-SNN paper (Mathematics 2023, 11, 58) and its peers
(OPI, QCFS, COS), every method through the same conversion, simulation and results code.

  icsnn reproduce --profile ci --out runs/ci        # the whole pipeline on digits, about 95 s on a CPU
  icsnn train --dataset digits --arch digits-cnn --epochs 30 --checkpoint runs/digits.pt
  icsnn evaluate --checkpoint runs/digits.pt --dataset digits --methods snn ic-snn --T 4 8 16 --out runs/eval

Your own model and data (the class is built with no arguments; its state_dict is the checkpoint):
  icsnn evaluate --model mynet.py:Net --checkpoint net_state.pt --dataset mydata.npz --T 8 16 --out runs/mine
"""
DATASET_HELP = ("digits (default, embedded), cifar10, cifar100, fashion-mnist, or your own: path/to/data.npz (arrays "
                "x_train, y_train, x_test, y_test; images [N, C, H, W] or [N, H, W] as uint8 or floats in [0, 1]) or "
                "a folder with train/<class>/ and test/<class>/ images")
MODEL_HELP = ("your own model instead of --arch: path/to/file.py:ClassName or package.module:ClassName, built with no "
              "arguments. This imports the file, so it runs your code, as `python file.py` would (default: none, the "
              "built-in --arch)")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written, and every option's default at the end of its help (unless the help names it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.required:
            return text if "required" in text else f"{text} (required)"
        if "default" in text or action.default in (None, argparse.SUPPRESS) or not action.option_strings:
            return text
        value = action.default
        shown = "off" if value is False else " ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        return f"{text} (default: {shown})"


def _data_args(p: argparse.ArgumentParser, dataset: bool = True) -> None:
    if dataset:
        p.add_argument("--dataset", default="digits", help=DATASET_HELP)
    p.add_argument("--data-root", help="folder (or CIFAR-10 JPEG archive) holding the dataset; see README "
                   "(default: none, which digits needs; CIFAR needs one or --download)")
    p.add_argument("--download", action="store_true", help="let torchvision download CIFAR (needs internet)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda[:N] (default: auto)")
    p.add_argument("--seed", type=int, default=None if not dataset else 0,
                   help="seed of weights init, shuffling, splits and sampling" + ("" if dataset else " (default: the profile's, 0)"))
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _energy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-energy", action="store_true",
                   help="do not count spikes and operations (no energy.csv / energy_layers.csv)")
    p.add_argument("--e-mac-pj", type=float, default=E_MAC_PJ,
                   help=f"energy of a multiply-accumulate in pJ (default {E_MAC_PJ}: {SOURCE})")
    p.add_argument("--e-ac-pj", type=float, default=E_AC_PJ,
                   help=f"energy of an accumulate in pJ (default {E_AC_PJ}: {SOURCE})")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="icsnn", description=DESCRIPTION,
                                     formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser = _with_formatter(sub.add_parser)

    profiles = "\n".join(f"  {p.name:5s} {p.description}" for p in PROFILES.values())
    rp = sub.add_parser("reproduce", help="run a named profile end to end (train, convert, every method at every T)",
                        description=f"Run a profile end to end and write OUT/results.csv and OUT/curves.csv.\n\n"
                                    f"profiles:\n{profiles}\n\nA rerun reuses checkpoints and skips measured points.",
                        formatter_class=HelpFormatter)
    rp.add_argument("--profile", choices=list(PROFILES), default="ci", help="named configuration (default: ci)")
    rp.add_argument("--out", required=True, type=Path, help="output folder (results, curves, checkpoints)")
    rp.add_argument("--arch", nargs="+", choices=ARCHS, help="only these architectures of the profile (default: all of them)")
    rp.add_argument("--activation", nargs="+", choices=ACTIVATIONS,
                    help="only the profile's ANNs trained with these activations (default: all of them)")
    rp.add_argument("--epochs", type=int, help="override the profile's epochs (its schedule is scaled to fit) (default: the profile's)")
    rp.add_argument("--width", type=float, help="override the width multiplier of the chosen models, e.g. --arch resnet20 "
                    "--width 1 for the paper's ResNet20 under the cpu profile's schedule; rows, checkpoints and stage "
                    "times carry the width, but the notebooks read one width per architecture: give it its own --out "
                    "(default: the profile's)")
    _energy_args(rp)
    _data_args(rp, dataset=False)

    np_ = sub.add_parser("notebooks", help="compute a profile, execute every notebook with papermill, publish to the book",
                         description="Run `reproduce` for the profile (resumable), then execute notebooks/manifest.yml's "
                                     "notebooks into OUT/notebooks and publish them to book/pages (unless the book shows a "
                                     "larger profile). Exits non-zero naming any notebook and cell that failed.")
    np_.add_argument("--profile", choices=list(PROFILES), default="ci", help="named configuration (default: ci)")
    np_.add_argument("--out", type=Path, help="results folder (default: results/<profile> in the checkout)")
    np_.add_argument("--render-only", action="store_true", help="re-execute the notebooks from existing results only")
    np_.add_argument("--no-publish", action="store_true", help="do not copy the executed notebooks into book/pages")
    np_.add_argument("--book", type=Path, help="book folder to publish into (default: the checkout's book/)")
    np_.add_argument("--only", nargs="+", help="run only these notebooks (names from notebooks/manifest.yml) (default: every one)")
    _data_args(np_, dataset=False)

    tp = sub.add_parser("train", help="train an ANN (the paper's recipe by default), resumable",
                        description="Train an ANN; the checkpoint is written atomically each epoch and a rerun resumes.")
    _data_args(tp)
    tp.add_argument("--arch", choices=ARCHS, default="digits-cnn", help="architecture")
    tp.add_argument("--model", help=MODEL_HELP)
    tp.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default 1)")
    tp.add_argument("--bn", action="store_true", help="batch norm after each conv (folded before conversion)")
    tp.add_argument("--activation", choices=ACTIVATIONS, default="relu",
                    help="relu (the paper) or qcfs (Bu et al. 2022: quantization clip-floor-shift, trainable lambda) (default: relu)")
    tp.add_argument("--levels", type=int, default=4, help="QCFS quantization levels L (default 4)")
    tp.add_argument("--init-lambda", type=float, default=DEFAULT_INIT_LAMBDA,
                    help=f"QCFS: lambda's fixed starting value, used with --lambda-quantile 0 (default "
                         f"{DEFAULT_INIT_LAMBDA:g}; QCFS's code uses 8, which collapsed behind batch norm on CIFAR-10)")
    tp.add_argument("--checkpoint", required=True, type=Path, help="checkpoint file to write / resume")
    tp.add_argument("--recipe", choices=list(RECIPES), default="paper",
                    help="paper: the paper's (SGD, step decay); fast: one-cycle, Nesterov, label smoothing, and "
                         "for QCFS a warm-up with finer levels and a start from the trained ReLU twin (--warm-from) "
                         "(benchmarks/recipe_study.py measures each) "
                         "(default: paper)")
    d = TrainConfig()
    tp.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs (default {d.epochs})")
    tp.add_argument("--lr", type=float, help=f"peak SGD learning rate (default: the recipe's, {d.lr})")
    tp.add_argument("--momentum", type=float, help=f"SGD momentum (default: the recipe's, {d.momentum})")
    tp.add_argument("--weight-decay", type=float, help=f"weight decay (default: the recipe's, {d.weight_decay})")
    tp.add_argument("--batch-size", type=int, help=f"batch size (default: the recipe's, {d.batch_size})")
    tp.add_argument("--milestones", type=int, nargs="*",
                    help="paper recipe: epochs where lr is divided by 5 (default: 70 130 190 240 scaled to --epochs)")
    tp.add_argument("--lambda-quantile", type=float,
                    help=f"QCFS: start each lambda at this quantile of its layer's inputs (default {d.lambda_quantile}); "
                         "0 starts them at --init-lambda")
    tp.add_argument("--quant-warmup", type=float,
                    help="QCFS: the fraction of the epochs trained before QCFS's L levels take over (default: the "
                         "recipe's: 0 for paper, 0.6 for fast)")
    tp.add_argument("--quant-warmup-mode", choices=QUANT_WARMUP_MODES,
                    help="QCFS warm-up: halving (levels L 2^W, ..., 2L, halved each epoch) or clip (no floor) "
                         "(default: the recipe's)")
    tp.add_argument("--warm-from", type=Path, metavar="CHECKPOINT",
                    help="QCFS under the fast recipe: start from this trained ReLU twin (the same --arch, --width "
                         "and --bn, trained first with --activation relu) (default: none; the fast recipe's QCFS run then "
                         "asks for it or --cold)")
    tp.add_argument("--cold", action="store_true", help="QCFS under the fast recipe: start from random weights, "
                                                        "not from the ReLU twin (default: the recipe's: warm for fast)")
    tp.add_argument("--no-augment", action="store_true",
                    help="no random crop + flip (they are on for CIFAR, off for digits and Fashion-MNIST)")
    tp.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")

    ep = sub.add_parser("evaluate", help="convert a trained ANN and measure methods at several T",
                        description="Convert a checkpoint's ANN to an SNN and measure each method at each T; "
                                    "rows are merged into OUT/results.csv and OUT/curves.csv.")
    _data_args(ep)
    ep.add_argument("--checkpoint", required=True, type=Path,
                    help="an icsnn checkpoint, or with --model your model's state_dict (torch.save(model.state_dict()))")
    ep.add_argument("--model", help=MODEL_HELP)
    ep.add_argument("--out", required=True, type=Path, help="output folder (results.csv, curves.csv, energy.csv)")
    ep.add_argument("--methods", nargs="+", default=["snn", "i-snn", "c-snn", "ic-snn"],
                    help=f"any of {', '.join(METHODS)} (default: the paper's four)")
    ep.add_argument("--T", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32, 64], help="horizons T")
    m = Method.make("ic-snn")
    ep.add_argument("--init", choices=INITS, default=m.init, help="Algorithm 2 (data) or 1 (weight)")
    ep.add_argument("--compensation", choices=COMPENSATIONS, default=m.compensation,
                    help="printed: V_th/2T as printed; potential: V_th/2 (half a spike of membrane potential)")
    ep.add_argument("--residual", choices=RESIDUALS, default=m.residual,
                    help="raw mean of v(T), clipped to [0, V_th], or over neurons that fired")
    ep.add_argument("--granularity", choices=GRANULARITIES, default=m.granularity, help="one v(0) per layer/channel/neuron")
    ep.add_argument("--calib-images", type=int, default=m.calib_images, help="training images for Algorithm 2")
    cos = Method.make("cos")
    ep.add_argument("--rho", type=int, default=cos.rho, help="COS: pre-simulation steps per input (latency T + rho)")
    ep.add_argument("--iterations", type=int, default=cos.iterations,
                    help="COS: rounds of offset-spike calibration (the authors' code runs 1)")
    ep.add_argument("--shift", choices=SHIFTS, default=cos.shift,
                    help="COS: move a miscounted neuron's v0 as the authors' code does, or by exactly one threshold")
    c = Conversion()
    ep.add_argument("--quantile", type=float, default=c.threshold_quantile, help="threshold p-quantile, 1 = max")
    ep.add_argument("--threshold-values", choices=("positive", "all"), default=c.threshold_values,
                    help="activations the threshold quantile is taken over: positive ones only, or all")
    ep.add_argument("--threshold-images", type=int, default=c.threshold_images,
                    help="training images whose activations set the thresholds")
    ep.add_argument("--coding", choices=CODINGS, default=c.coding, help="direct (analog input) or rate (Bernoulli)")
    ep.add_argument("--n-test", type=int, help="first N test images (default: all)")
    ep.add_argument("--batch-size", type=int, default=256, help="images per simulated batch")
    ep.add_argument("--max-fold", type=int, default=None,
                    help="images x steps per forward pass, the memory bound (default: 256 on CPU, 65536 on GPU)")
    _energy_args(ep)
    return parser


def _with_formatter(add_parser):
    """Every subcommand's help shows the defaults too (HelpFormatter)."""
    def add(*args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        return add_parser(*args, **kwargs)
    return add


def _run(args: argparse.Namespace) -> int:
    progress = not args.quiet
    if args.command == "reproduce":
        profile = get_profile(args.profile)
        if args.seed is not None:
            profile = replace(profile, seed=args.seed)
        path = reproduce(profile, args.out, data_root=args.data_root, device=args.device,
                         download=args.download, archs=args.arch, activations=args.activation, epochs=args.epochs,
                         width=args.width, progress=progress, energy=not args.no_energy, costs=EnergyCosts(args.e_mac_pj, args.e_ac_pj))
        print(summary(profile, path.parent))
        return 0
    if args.command == "notebooks":
        from .notebooks import BOOK, run_notebooks

        book = None if args.no_publish else (args.book or BOOK)
        failures = run_notebooks(args.profile, args.out, data_root=args.data_root, device=args.device,
                                 render_only=args.render_only, book=book, only=args.only, progress=progress)
        for f in failures:
            print(f"icsnn: notebook failed: {f}", file=sys.stderr)
        return 1 if failures else 0
    device = resolve_device(args.device)
    if args.command == "train":
        data = load_dataset(args.dataset, args.data_root, download=args.download, seed=args.seed)
        given = {k: getattr(args, k) for k in ("lr", "momentum", "weight_decay", "batch_size", "lambda_quantile",
                                               "quant_warmup", "quant_warmup_mode") if getattr(args, k) is not None}
        if given.get("lambda_quantile") == 0:
            given["lambda_quantile"] = None
        cfg = recipe(args.recipe, args.epochs, seed=args.seed, amp=args.amp,
                     augment=not args.no_augment and args.dataset in ("cifar10", "cifar100"), **given)
        if args.milestones is not None:
            cfg = replace(cfg, milestones=tuple(args.milestones))
        arch, activation, levels = args.arch, args.activation, args.levels
        if args.model:  # the user's class: its own activations decide ReLU or QCFS
            own = load_user_model(args.model)
            _check_fits(own, data, args.model)
            qcfs = [n for _, n in neurons(own) if n.activation == "qcfs"]
            arch, activation, levels = args.model, "qcfs" if qcfs else "relu", qcfs[0].levels if qcfs else args.levels
        spec = ModelSpec(arch, args.width, args.bn, data.num_classes, data.in_channels, data.mean, data.std,
                         activation, levels, args.init_lambda)
        if args.cold:
            cfg = replace(cfg, warm_start=False)
        init = None
        if args.warm_from is not None:
            if not (cfg.warm_start and activation == "qcfs"):
                raise ConfigError("--warm-from starts a QCFS ANN under a warm recipe (--recipe fast, without --cold) "
                                  f"from its ReLU twin; this run is {'ReLU' if activation != 'qcfs' else 'cold'}. "
                                  "Fix: drop --warm-from, or train --activation qcfs --recipe fast")
            init, _ = load_model(args.warm_from, expect=replace(spec, activation="relu"))
        train(spec, data, cfg.validate(), args.checkpoint, device=device, progress=progress, init=init)
        print(f"wrote {args.checkpoint}")
        return 0
    if args.model:
        model = load_user_model(args.model)
        ckpt = load_weights(model, args.checkpoint)
        where, _, cls = args.model.rpartition(":")
        arch, width, bn = f"{Path(where).name}:{cls}", None, any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                                                 for m in model.modules())
    else:
        model, ckpt = load_model(args.checkpoint)
        arch, width, bn = ckpt["spec"]["arch"], ckpt["spec"]["width"], ckpt["spec"]["bn"]
    if ckpt is not None and ckpt["dataset"] != dataset_name(args.dataset):
        raise ConfigError(f"checkpoint {args.checkpoint} was trained on {ckpt['dataset']}, not "
                          f"{dataset_name(args.dataset)}. Fix: pass --dataset {ckpt['dataset']}")
    data = load_dataset(args.dataset, args.data_root, download=args.download, seed=args.seed)
    if args.model:
        _check_fits(model, data, args.model)
    if ckpt is not None:
        check_image_shape(ckpt, data, args.checkpoint)
    opts = dict(init=args.init, compensation=args.compensation, residual=args.residual,
                granularity=args.granularity, calib_images=args.calib_images, rho=args.rho, iterations=args.iterations,
                shift=args.shift)
    # each method takes the options it reads (the others are shared command-line defaults, not choices)
    methods = [Method.make(name, **{k: opts[k] for k in option_names(name, args.init)}) for name in args.methods]
    base = {"profile": "custom", "dataset": data.name, "data_source": data.source, "arch": arch,
            "width": width, "bn": bn, "epochs": ckpt["epoch"] if ckpt is not None else None,
            # written before recipes had names: the paper's; a bare state_dict: trained outside icsnn, no recipe
            "recipe": ckpt["train"].get("recipe", "paper") if ckpt is not None else None}
    conversion = Conversion(args.quantile, args.threshold_values, args.threshold_images, args.coding)
    evaluate_methods(model, data, methods, args.T, conversion=conversion, out_dir=args.out, base=base,
                     n_test=args.n_test, batch_size=args.batch_size, max_fold=args.max_fold, device=device,
                     seed=args.seed, progress=progress, energy=not args.no_energy,
                     costs=EnergyCosts(args.e_mac_pj, args.e_ac_pj))
    print(f"wrote {args.out / 'results.csv'} and {args.out / 'curves.csv'}"
          + ("" if args.no_energy else f" and {args.out / 'energy.csv'}"))
    return 0


def _check_fits(model: nn.Module, data: Dataset, ref: str) -> None:
    """Refuse a user's model that does not take the dataset's inputs or has fewer outputs than it has classes."""
    x = data.train.images(slice(0, 2))
    try:
        with torch.no_grad():
            out = model.eval()(x)
    except Exception as e:  # noqa: BLE001 - the user's forward can fail in any way on inputs it does not take
        raise ConfigError(f"--model {ref}: the model does not take the dataset's inputs shaped "
                          f"{tuple(x.shape[1:])} ({type(e).__name__}: {e}). Fix: pass the model and dataset that "
                          "belong together") from e
    if not (isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[1] >= data.num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"--model {ref}: the model returns {shape} for a batch of 2, and the dataset has "
                          f"{data.num_classes} classes. Fix: return logits shaped [batch, {data.num_classes}]")


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: object = None,
                  line: str | None = None) -> None:
    print(f"icsnn: warning: {message}", file=sys.stderr)  # one line, like the errors, without the source line


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    reuse_freed_memory()  # folded simulations on the CPU: no page faults on every large tensor (same results)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return _run(args)
    except IcsnnError as e:
        print(f"icsnn: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        kept = f" in {args.out}" if getattr(args, "out", None) else ""
        print(f"icsnn: interrupted. Kept{kept}: every measured point and each model's last finished epoch "
              "(written as they finish). Fix: run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
