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


def make_private_dir(path: Path) -> None:
    """Create ``path`` and its missing parents, each readable by the user alone whatever the umask.

    Transcripts and adapters live under these: ``Path.mkdir(parents=True)`` would make the parents
    with the umask's mode (world-writable under umask 000).
    """
    path = Path(path)
    if path.is_dir():
        return
    if not path.parent.exists():  # a parent that is a file fails below, as "not a directory"
        make_private_dir(path.parent)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        if path.is_dir():  # made meanwhile by another process
            return
        raise
    os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    A new file is readable by the user alone (``mkstemp`` makes it 0600), like the folders made for it.
    """
    path = Path(path)
    make_private_dir(path.parent)
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


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a file the user named (a report); a new one is readable by the user alone.

    Not atomic, so that a pipe or a device (``/dev/stdout``) works as well as a file.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
