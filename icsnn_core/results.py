"""Tidy result files: one row per measured point, provenance in every row, atomic writes.

``results.csv``: one row per (model, method with its options, T) with accuracy at t = T.
``curves.csv``: the accuracy at every t <= T of the same runs (same key columns plus ``t``; ``latency``
there is t plus any pre-simulation steps).
``energy.csv``: the operations and estimated energy per image at every t <= T of the same simulations
(:mod:`icsnn_core.energy`); ``energy_layers.csv``: the same per source layer, at t = T only.
"""
from __future__ import annotations

import csv
import io
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import torch

from .errors import ConfigError
from .files import atomic_write_text, locked

RESULT_COLUMNS = (
    "profile", "dataset", "data_source", "arch", "width", "bn", "ann", "levels", "epochs", "recipe", "method", "variant",
    "init", "compensation", "residual", "granularity", "calib_images", "rho", "iterations", "shift",
    "threshold_quantile", "threshold_values", "threshold_images", "coding",
    "T", "latency", "accuracy", "ann_accuracy", "n_test", "seed",
    "device", "git_commit", "torch_version", "icsnn_version", "python_version", "timestamp",
)
KEY_COLUMNS = ("profile", "dataset", "arch", "width", "bn", "ann", "levels", "epochs", "recipe", "variant", "threshold_quantile",
               "threshold_values", "threshold_images", "coding", "T", "n_test", "seed")
CURVE_COLUMNS = KEY_COLUMNS[:10] + ("method",) + KEY_COLUMNS[10:] + ("latency", "t", "accuracy", "ann_accuracy")
PROVENANCE_COLUMNS = ("device", "git_commit", "torch_version", "icsnn_version", "python_version", "timestamp")
_OPS = ("spikes_per_image", "firing_rate", "sops_per_image", "macs_per_image", "presim_sops_per_image",
        "presim_macs_per_image", "energy_per_image_uj")
_COSTS = ("e_mac_pj", "e_ac_pj")
ENERGY_COLUMNS = CURVE_COLUMNS + _OPS + ("ann_macs_per_image", "ann_energy_per_image_uj", "energy_ratio") + _COSTS \
    + PROVENANCE_COLUMNS
ENERGY_LAYER_COLUMNS = CURVE_COLUMNS[:-2] + ("layer", "layer_name", "neurons", "synapses") + _OPS + _COSTS \
    + PROVENANCE_COLUMNS


def git_commit() -> str:
    """The commit of the checkout this package runs from (``-dirty`` if the package's code has uncommitted
    changes; regenerated result files elsewhere in the checkout do not count). Where there is no git
    checkout, or where the checkout's history is not the code's (a copy of the tree sent to a GPU machine),
    ``$ICSNN_GIT_COMMIT`` names it."""
    if os.environ.get("ICSNN_GIT_COMMIT"):
        return os.environ["ICSNN_GIT_COMMIT"]
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except Exception:  # noqa: BLE001 - not a git checkout (installed wheel, copied tree) or git missing
        return "unknown"


def device_name(device: str | torch.device) -> str:
    d = torch.device(device)
    if d.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(d)}"
    return f"cpu:{platform.processor() or platform.machine()}:{torch.get_num_threads()}threads"


def provenance(device: str | torch.device) -> dict[str, str]:
    from . import __version__

    return {"device": device_name(device), "git_commit": git_commit(), "torch_version": torch.__version__,
            "icsnn_version": __version__, "python_version": sys.version.split()[0],
            "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def _fmt(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(round(v, 6))
    return str(v)


def key_of(row: dict[str, object]) -> tuple[str, ...]:
    return tuple(_fmt(row.get(k)) for k in KEY_COLUMNS)


def read_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: str | os.PathLike, rows: Iterable[dict[str, object]], columns: tuple[str, ...]) -> None:
    """Write ``rows`` as CSV atomically: a crash leaves the previous file intact."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(r.get(k)) for k in columns})
    atomic_write_text(buf.getvalue(), Path(path))


def check_table(path: str | os.PathLike, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """Refuse, before any work, a CSV that a merge into ``path`` would damage: one that is not UTF-8 text, has no
    header, or has columns that are not ``columns`` (a merge writes ``columns`` only, so they would be lost).
    Return its rows (none when it does not exist yet)."""
    path = Path(path)
    if not path.exists():
        return []
    what = f"{path} exists but"
    fix = "Fix: pass another --out, or move the file away"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, strict=True)
            rows = list(reader)
            header = reader.fieldnames
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} is not UTF-8 text ({e.reason} at byte {e.start}). {fix}") from e
    except csv.Error as e:
        raise ConfigError(f"{what} is not a readable CSV file ({e}). {fix}") from e
    if not header:
        raise ConfigError(f"{what} is empty: it has no header line. {fix}")
    extra = [c for c in header if c not in columns]
    if extra:
        raise ConfigError(f"{what} has columns icsnn does not write ({', '.join(extra[:5])}"
                          f"{', ...' if len(extra) > 5 else ''}): merging would drop them. {fix}")
    return rows


def check_out_dir(out: str | os.PathLike) -> Path:
    """Make sure ``out`` is (or can become) a writable folder before any work starts; return it."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder. Fix: pass a folder (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".icsnn-write-test-")
        probe.close()
    except OSError as e:
        raise ConfigError(f"--out {out} is not a writable folder ({e.strerror}). Fix: pass a folder you can write "
                          "to") from e
    return out


def merge_rows(path: str | os.PathLike, new: list[dict[str, object]], columns: tuple[str, ...],
               key: tuple[str, ...]) -> None:
    """Add ``new`` to the CSV at ``path``, replacing earlier rows with the same key.

    The read-modify-write holds an exclusive lock on the CSV's folder, so processes that share an output
    folder (say one per trained ANN on the same GPU) never drop each other's rows."""
    def k(r: dict[str, object]) -> tuple[str, ...]:
        return tuple(_fmt(r.get(c)) for c in key)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path.parent):
        replaced = {k(r) for r in new}
        # read once, refusing a file whose columns the write would drop
        kept = [r for r in check_table(path, columns) if k(r) not in replaced]
        write_rows(path, [*kept, *new], columns)
