"""Files of one profile in the state dir: adapter checkpoints and corrections waiting for an update.

    <state_dir>/profiles/<profile>/checkpoints/step-000012.safetensors   (the last few kept)
    <state_dir>/profiles/<profile>/pending/<cache_id>.safetensors         (corrections waiting)
    <state_dir>/profiles/<profile>/examples/<cache_id>.safetensors        (replayed corrections, canaries)
    <state_dir>/profiles/<profile>/{checkpoints,pending,examples}/unreadable/   (files set aside)

A checkpoint is the whole learner (``Learner.state_dict``): the adapter and the optimizer's
moments as tensors; the step, the replay buffer and canaries (by cache id), what was taught and
the replay sampler's state as JSON. The cache entries of replayed corrections and canaries are
kept once each in ``examples/``, as pending corrections are in ``pending/``; an entry no kept
checkpoint names is deleted after the next save.

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
from .paths import atomic_write_bytes, make_private_dir

if TYPE_CHECKING:  # torch is imported only where tensors are read or written: `ffasr rollback` stays light
    import torch

    from .cache import CacheEntry

log = logging.getLogger(__name__)

FORMAT = "ffasr-learner/1"
ADAPTER_ONLY = "ffasr-adapter/1"  # checkpoints made before the learner's state was saved: adapter weights alone
ENTRY_FORMAT = "ffasr-adapter/1"  # pending corrections and examples (their layout has not changed)
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

    @property
    def applied(self) -> list[str]:
        return json.loads(self.meta.get("applied", "[]"))

    @property
    def created_at(self) -> float:
        return float(self.meta.get("created_at", 0))

    @property
    def adapter_only(self) -> bool:
        return self.meta["format"] == ADAPTER_ONLY

    @property
    def adapter(self) -> dict[str, torch.Tensor]:
        """The adapter's tensors, by parameter name."""
        return self.tensors if self.adapter_only else adapter_tensors(self.tensors)


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
        self.examples_dir = self.root / "examples"

    # ---------------------------------------------------------------- checkpoints

    def save_checkpoint(self, state: dict, identity: dict, applied: list[str]) -> Path:
        """Save a ``Learner.state_dict()`` (its examples first, with ``save_examples``) as step ``state["steps"]``."""
        from safetensors.torch import save as save_safetensors

        tensors = {f"adapter.{name}": t for name, t in state["adapter"].items()}
        for index, moments in state["optimizer"].items():
            tensors.update({f"optimizer.{index}.{key}": t.detach().cpu().contiguous() for key, t in moments.items()})
        learner = {key: state[key] for key in ("replay", "canaries", "rng", "taught_terms", "misheard", "fixed_back", "written")}
        meta = {"format": FORMAT, "identity": json.dumps(identity, sort_keys=True), "step": str(state["steps"]),
                "applied": json.dumps(applied), "created_at": str(time.time()), "learner": json.dumps(learner)}  # fmt: skip
        path = self.checkpoints_dir / f"step-{state['steps']:06d}.safetensors"
        _write(path, save_safetensors(tensors, metadata=meta), "the adapter checkpoint", "the previous checkpoint is kept")
        for old in self.checkpoint_paths()[:-KEEP_CHECKPOINTS]:
            old.unlink(missing_ok=True)
        self._prune_examples()
        return path

    def learner_state(self, checkpoint: Checkpoint, identity: dict, device: str) -> dict:
        """What ``Learner.load_state_dict`` takes, from a checkpoint and the examples it names.

        An example file that is missing or unreadable is left out, with a warning. (A checkpoint
        with the adapter alone, ``adapter_only``, has no learner state: load its tensors as they are.)
        """
        moments: dict[int, dict] = {}
        for name, tensor in checkpoint.tensors.items():
            if name.startswith("optimizer."):
                _, index, key = name.split(".", 2)
                moments.setdefault(int(index), {})[key] = tensor.to(device)
        learner = json.loads(checkpoint.meta["learner"])
        ids = list(dict.fromkeys([row["cache_id"] for row in learner["replay"]] + learner["canaries"]))
        examples = self.read_examples(ids, identity, device)
        if missing := [i for i in ids if i not in examples]:
            log.warning("%d example(s) of what was learned could not be read (%s); the learner goes on without them",
                        len(missing), ", ".join(missing[:3]))  # fmt: skip
        return {"steps": checkpoint.step, "adapter": checkpoint.adapter, "optimizer": moments, "examples": examples, **learner}

    def checkpoint_paths(self) -> list[Path]:
        """The checkpoint files, oldest step first."""
        return sorted(p for p in self.checkpoints_dir.glob("step-*.safetensors") if _CHECKPOINT_NAME.fullmatch(p.name))

    def steps(self) -> list[int]:
        return [checkpoint_step(p) for p in self.checkpoint_paths()]

    def read_checkpoint(self, path: Path) -> Checkpoint:
        from safetensors.torch import load as load_safetensors

        data = path.read_bytes()
        meta = _metadata(data)
        if meta.get("format") not in (FORMAT, ADAPTER_ONLY):
            raise SafetensorError(f"format {meta.get('format')!r}, not {FORMAT!r}: written by another version of ffasr?")
        return Checkpoint(int(meta["step"]), path, load_safetensors(data), meta)

    @staticmethod
    def read_meta(path: Path) -> dict:
        """A checkpoint's metadata, without its tensors (no torch)."""
        with open(path, "rb") as file:
            head = file.read(8)
            return _metadata(head + file.read(int.from_bytes(head, "little")))

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
            except _UNREADABLE as error:
                unreadable.append(Unreadable(path, str(error)))
                continue
            theirs = json.loads(checkpoint.meta["identity"])
            if theirs != identity:
                raise StateError(
                    f"profile adapter {path} was trained for model {theirs.get('model')!r} with adapter {theirs.get('adapter')!r}, "
                    f"not {identity.get('model')!r} with {identity.get('adapter')!r}: use those settings, or another --profile"
                )
            if not all(t.isfinite().all() for t in checkpoint.tensors.values() if t.is_floating_point()):
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
        make_private_dir(folder)
        target, n = folder / path.name, 1
        while target.exists():  # never overwrite what an earlier start set aside
            target, n = folder / f"{path.stem}.{n}{path.suffix}", n + 1
        path.rename(target)
        return target

    # ---------------------------------------------------------------- cache entries on disk

    def spill(self, entry: CacheEntry, label: str, identity: dict) -> None:
        """Save a correction waiting for an update (``pending/``)."""
        self._save_entry(self.pending_dir, entry, label, identity, "the correction")

    def save_example(self, entry: CacheEntry, label: str, identity: dict) -> None:
        """Save a replayed correction or a canary (``examples/``)."""
        self._save_entry(self.examples_dir, entry, label, identity, "an example of what was learned")

    def save_examples(self, examples: dict[str, tuple[CacheEntry, str]], identity: dict) -> None:
        """The examples a checkpoint will name, those not on disk yet (each is written once)."""
        for cache_id, (entry, label) in examples.items():
            name = f"{cache_id}.safetensors"
            # an update's own corrections are still in pending/: keep_examples moves them once the checkpoint is saved
            if not (self.examples_dir / name).exists() and not (self.pending_dir / name).exists():
                self.save_example(entry, label, identity)

    def _save_entry(self, folder: Path, entry: CacheEntry, label: str, identity: dict, what: str) -> None:
        from safetensors.torch import save as save_safetensors

        tensors = {}
        for i, window in enumerate(entry.windows):
            for name in ("hidden", "audio_features", "mel"):
                if (value := getattr(window, name)) is not None:
                    tensors[f"{i}.{name}"] = value.detach().cpu().contiguous()
        windows = [{"tokens": list(w.tokens), "text": w.text, "no_speech_prob": w.no_speech_prob, "avg_logprob": w.avg_logprob,
                    "compression_ratio": w.compression_ratio, "base_text": w.base_text} for w in entry.windows]  # fmt: skip
        meta = {"format": ENTRY_FORMAT, "identity": json.dumps(identity, sort_keys=True), "label": label, "windows": json.dumps(windows)}
        _write(folder / f"{entry.cache_id}.safetensors", save_safetensors(tensors, metadata=meta), what, "it is not saved")

    def _read_entry(self, path: Path, identity: dict, device: str) -> tuple[CacheEntry, str] | None:
        """The entry and label in ``path``; None if it was cached for another model or mode. Raises if unreadable."""
        from safetensors.torch import load as load_safetensors

        from .cache import CacheEntry
        from .capture import WindowCapture

        data = path.read_bytes()
        meta = _metadata(data)
        if json.loads(meta["identity"]) != identity:
            return None
        tensors = {name: t.to(device) for name, t in load_safetensors(data).items()}
        windows = tuple(
            WindowCapture(tokens=tuple(w["tokens"]), text=w["text"], no_speech_prob=w["no_speech_prob"], avg_logprob=w["avg_logprob"],
                          compression_ratio=w["compression_ratio"], base_text=w.get("base_text", ""),  # none in entries saved before 2026-12-07
                          **{name: tensors.get(f"{i}.{name}") for name in ("hidden", "audio_features", "mel")})  # fmt: skip
            for i, w in enumerate(json.loads(meta["windows"]))
        )
        return CacheEntry(path.stem, windows), meta["label"]

    def pending(self, identity: dict, device: str) -> tuple[list[tuple[CacheEntry, str]], list[Unreadable]]:
        """Spilled corrections, oldest first, as cache entries with their labels; and the unreadable ones."""
        found, unreadable = [], []
        for path in sorted(self.pending_paths(), key=lambda p: p.stat().st_mtime):
            try:
                read = self._read_entry(path, identity, device)
            except _UNREADABLE as error:
                unreadable.append(Unreadable(path, str(error)))
                continue
            if read is None:
                log.warning("pending correction %s was cached for another model or mode; left as is", path.name)
                continue
            found.append(read)
        return found, unreadable

    def read_examples(self, cache_ids: list[str], identity: dict, device: str) -> dict[str, tuple[CacheEntry, str]]:
        """The examples with these ids that exist and can be read, in the order asked."""
        found = {}
        for cache_id in cache_ids:
            try:
                read = self._read_entry(self.examples_dir / f"{cache_id}.safetensors", identity, device)
            except _UNREADABLE:
                continue
            if read is not None:
                found[cache_id] = read
        return found

    def keep_examples(self, cache_ids) -> None:
        """Corrections an update applied become examples to replay: moved from ``pending/`` to ``examples/``."""
        make_private_dir(self.examples_dir)
        for cache_id in cache_ids:
            source = self.pending_dir / f"{cache_id}.safetensors"
            if source.exists():
                source.replace(self.examples_dir / source.name)

    def _prune_examples(self) -> None:
        """Delete the examples no kept checkpoint names (the replay buffer and canaries move on)."""
        named: set[str] = set()
        for path in self.checkpoint_paths():
            try:
                learner = json.loads(_metadata(path.read_bytes()).get("learner", '{"replay": [], "canaries": []}'))
            except _UNREADABLE:
                return  # cannot tell what it needs: keep everything until the next start sets it aside
            named.update(row["cache_id"] for row in learner["replay"])
            named.update(learner["canaries"])
        for path in self.examples_dir.glob("*.safetensors"):
            if path.stem not in named:
                path.unlink(missing_ok=True)

    def pending_paths(self) -> list[Path]:
        return list(self.pending_dir.glob("*.safetensors"))

    def remove_temp_files(self) -> int:
        """Delete half-written files a killed process left (call with the state dir locked)."""
        stale = [p for d in (self.checkpoints_dir, self.pending_dir, self.examples_dir) if d.is_dir() for p in d.glob(".*.tmp")]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def drop_pending(self, cache_ids) -> None:
        for cache_id in cache_ids:
            (self.pending_dir / f"{cache_id}.safetensors").unlink(missing_ok=True)


def adapter_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The adapter's tensors of a whole-learner checkpoint, by parameter name (its optimizer moments left out)."""
    return {name.removeprefix("adapter."): t for name, t in tensors.items() if name.startswith("adapter.")}


_UNREADABLE = (SafetensorError, OSError, ValueError, KeyError, TypeError)  # what a damaged file of ours raises when read


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
