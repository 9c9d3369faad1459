"""Files of one profile in the state dir: adapter checkpoints and corrections waiting for an update.

    <state_dir>/profiles/<profile>/checkpoints/step-000012.safetensors   (the last few kept)
    <state_dir>/profiles/<profile>/pending/<cache_id>.safetensors         (spilled corrections)
    <state_dir>/profiles/<profile>/{checkpoints,pending}/unreadable/      (files set aside)

Every file is written atomically (temp file, fsync, rename). A checkpoint names the corrections it
applied, so a crash between saving it and updating the store never applies a correction twice.
Only safetensors are read: no pickle from disk. A file that cannot be read (damaged, or written by
a newer ffasr) is moved into ``unreadable/``, never overwritten or deleted: it may be all that is
left of what the user taught.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from safetensors import SafetensorError

from .errors import StateError
from .paths import atomic_write_bytes

if TYPE_CHECKING:  # torch is imported only where tensors are read or written: `ffasr rollback` stays light
    import torch

    from .cache import CacheEntry

log = logging.getLogger(__name__)

FORMAT = "ffasr-adapter/1"
KEEP_CHECKPOINTS = 5
UNREADABLE = "unreadable"
_CHECKPOINT_NAME = re.compile(r"step-(\d{6})\.safetensors")  # other names ("step-000002 (copy)…") are not ours
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path
    tensors: dict[str, torch.Tensor]
    meta: dict


@dataclass(frozen=True)
class Unreadable:
    """A file of ours that could not be read, and why."""

    path: Path
    reason: str


class ProfileFiles:
    def __init__(self, state_dir: Path, profile: str):
        if not _PROFILE_NAME.match(profile):
            raise StateError(f"bad profile name {profile!r}: use letters, digits, '-', '_' or '.'")
        self.root = Path(state_dir) / "profiles" / profile
        self.checkpoints_dir = self.root / "checkpoints"
        self.pending_dir = self.root / "pending"

    # ---------------------------------------------------------------- checkpoints

    def save_checkpoint(self, step: int, tensors: dict[str, torch.Tensor], identity: dict, applied: list[str]) -> Path:
        from safetensors.torch import save as save_safetensors

        meta = {"format": FORMAT, "identity": json.dumps(identity, sort_keys=True), "step": str(step),
                "applied": json.dumps(applied), "created_at": str(time.time())}  # fmt: skip
        path = self.checkpoints_dir / f"step-{step:06d}.safetensors"
        _write(path, save_safetensors(tensors, metadata=meta), "the adapter checkpoint", "the previous checkpoint is kept")
        for old in self.checkpoint_paths()[:-KEEP_CHECKPOINTS]:
            old.unlink(missing_ok=True)
        return path

    def checkpoint_paths(self) -> list[Path]:
        """The checkpoint files, oldest step first."""
        return sorted(p for p in self.checkpoints_dir.glob("step-*.safetensors") if _CHECKPOINT_NAME.fullmatch(p.name))

    def steps(self) -> list[int]:
        return [checkpoint_step(p) for p in self.checkpoint_paths()]

    def read_checkpoint(self, path: Path) -> Checkpoint:
        from safetensors.torch import load as load_safetensors

        data = path.read_bytes()
        meta = _metadata(data)
        if meta.get("format") != FORMAT:
            raise SafetensorError(f"format {meta.get('format')!r}, not {FORMAT!r}: written by another version of ffasr?")
        return Checkpoint(int(meta["step"]), path, load_safetensors(data), meta)

    def latest_checkpoint(self, identity: dict) -> tuple[Checkpoint | None, list[Unreadable]]:
        """The newest readable checkpoint, and the newer ones that could not be read (newest first).

        A checkpoint made for another model or mode is refused: loading it would silently change
        what the user's profile means. So is one whose weights are not finite: decoding with it
        would write nothing useful, and learning on top of it cannot recover.
        """
        unreadable = []
        for path in reversed(self.checkpoint_paths()):
            try:
                checkpoint = self.read_checkpoint(path)
            except (SafetensorError, OSError, ValueError, KeyError) as error:
                unreadable.append(Unreadable(path, str(error)))
                continue
            theirs = json.loads(checkpoint.meta["identity"])
            if theirs != identity:
                raise StateError(
                    f"profile adapter {path} was trained for model {theirs.get('model')!r} with adapter {theirs.get('adapter')!r}, "
                    f"not {identity.get('model')!r} with {identity.get('adapter')!r}: use those settings, or another --profile"
                )
            if not all(t.isfinite().all() for t in checkpoint.tensors.values()):
                raise StateError(
                    f"profile adapter {path} holds weights that are not finite (NaN or infinite): "
                    f"go back to the step before with `ffasr rollback --profile {self.root.name}`"
                )
            return checkpoint, unreadable
        return None, unreadable

    def discard_checkpoints_after(self, step: int) -> list[Path]:
        """Roll back: delete checkpoints newer than ``step``; returns what was deleted."""
        doomed = [p for p in self.checkpoint_paths() if checkpoint_step(p) > step]
        for path in doomed:
            path.unlink()
        return doomed

    def set_aside(self, path: Path) -> Path:
        """Move ``path`` into ``unreadable/`` beside it (call with the state dir locked); returns where it went."""
        folder = path.parent / UNREADABLE
        folder.mkdir(mode=0o700, exist_ok=True)
        target, n = folder / path.name, 1
        while target.exists():  # never overwrite what an earlier start set aside
            target, n = folder / f"{path.stem}.{n}{path.suffix}", n + 1
        path.rename(target)
        return target

    # ---------------------------------------------------------------- pending corrections

    def spill(self, entry: CacheEntry, label: str, identity: dict) -> None:
        from safetensors.torch import save as save_safetensors

        tensors = {}
        for i, window in enumerate(entry.windows):
            for name in ("hidden", "audio_features", "mel"):
                if (value := getattr(window, name)) is not None:
                    tensors[f"{i}.{name}"] = value.detach().cpu().contiguous()
        windows = [{"tokens": list(w.tokens), "text": w.text, "no_speech_prob": w.no_speech_prob, "avg_logprob": w.avg_logprob,
                    "compression_ratio": w.compression_ratio} for w in entry.windows]  # fmt: skip
        meta = {"format": FORMAT, "identity": json.dumps(identity, sort_keys=True), "label": label, "windows": json.dumps(windows)}
        _write(self.pending_dir / f"{entry.cache_id}.safetensors", save_safetensors(tensors, metadata=meta), "the correction", "it is not saved")

    def pending(self, identity: dict, device: str) -> tuple[list[tuple[CacheEntry, str]], list[Unreadable]]:
        """Spilled corrections, oldest first, as cache entries with their labels; and the unreadable ones."""
        from safetensors.torch import load as load_safetensors

        from .cache import CacheEntry
        from .capture import WindowCapture

        found, unreadable = [], []
        for path in sorted(self.pending_paths(), key=lambda p: p.stat().st_mtime):
            try:
                data = path.read_bytes()
                meta = _metadata(data)
                tensors = {name: t.to(device) for name, t in load_safetensors(data).items()}
                if json.loads(meta["identity"]) != identity:
                    log.warning("pending correction %s was cached for another model or mode; left as is", path.name)
                    continue
                windows = tuple(
                    WindowCapture(tokens=tuple(w["tokens"]), text=w["text"], no_speech_prob=w["no_speech_prob"], avg_logprob=w["avg_logprob"],
                                  compression_ratio=w["compression_ratio"],
                                  **{name: tensors.get(f"{i}.{name}") for name in ("hidden", "audio_features", "mel")})  # fmt: skip
                    for i, w in enumerate(json.loads(meta["windows"]))
                )
            except (SafetensorError, OSError, ValueError, KeyError, TypeError) as error:
                unreadable.append(Unreadable(path, str(error)))
                continue
            found.append((CacheEntry(path.stem, windows), meta["label"]))
        return found, unreadable

    def pending_paths(self) -> list[Path]:
        return list(self.pending_dir.glob("*.safetensors"))

    def remove_temp_files(self) -> int:
        """Delete half-written files a killed process left (call with the state dir locked)."""
        stale = [p for d in (self.checkpoints_dir, self.pending_dir) if d.is_dir() for p in d.glob(".*.tmp")]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def drop_pending(self, cache_ids) -> None:
        for cache_id in cache_ids:
            (self.pending_dir / f"{cache_id}.safetensors").unlink(missing_ok=True)


def checkpoint_step(path: Path) -> int:
    return int(_CHECKPOINT_NAME.fullmatch(path.name)[1])


def _write(path: Path, data: bytes, what: str, consequence: str) -> None:
    """``atomic_write_bytes``, with a failing disk (full, read-only) reported as one line."""
    try:
        atomic_write_bytes(path, data)
    except OSError as error:
        raise StateError(f"cannot save {what} to {path} ({error.strerror or error}); {consequence}") from error


def _metadata(data: bytes) -> dict:
    # safetensors: u64 header length, then a JSON header whose "__metadata__" holds our strings.
    length = int.from_bytes(data[:8], "little")
    if length <= 0 or length > len(data) - 8:
        raise SafetensorError("bad header")
    return json.loads(data[8 : 8 + length]).get("__metadata__", {})
