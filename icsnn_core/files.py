"""Atomic file writes: write a temporary file beside the target, then rename it over the target; and a lock
for processes that would write the same file."""
from __future__ import annotations

import fcntl
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, ContextManager, IO, Iterator

import torch


def _atomic(path: Path, mode: str, write: Callable[[IO[Any]], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({"newline": ""} if "b" not in mode else {})) as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; give them the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` that never leaves a half-written file at ``path``."""
    _atomic(Path(path), "wb", lambda f: torch.save(obj, f))


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` atomically."""
    _atomic(Path(path), "wb", lambda f: f.write(data))


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new content, never a mix."""
    _atomic(Path(path), "w", lambda f: f.write(text))


@contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Run the block holding an exclusive ``flock`` on ``path``: a folder, or a file (created empty if missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY if path.is_dir() else os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the descriptor closes
        yield
    finally:
        os.close(fd)


def exclusive(path: str | os.PathLike) -> ContextManager[None]:
    """Hold a lock on ``<path>.lock`` (left in place, empty), so processes that would write ``path`` take turns:
    the second one to come waits, then finds the first one's file finished."""
    return locked(f"{path}.lock")
