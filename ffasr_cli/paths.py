"""Where ffasr keeps files, and how it writes them so that a crash never leaves half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    """Derived files that can be rebuilt (the converted offline model)."""
    return Path(os.getenv("FFASR_CACHE") or platformdirs.user_cache_dir("ffasr"))


def default_state_dir() -> Path:
    """What was learned: the store and the adapters. ``FFASR_HOME`` overrides."""
    return Path(os.getenv("FFASR_HOME") or platformdirs.user_data_dir("ffasr"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)
