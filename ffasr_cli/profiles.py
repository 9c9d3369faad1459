"""Profiles that travel: what a profile learned, as one archive another machine (or a colleague) imports.

The archive is a zip of safetensors and JSON, never pickle:

    profile.json                     the model, the adapter's identity, the step, the vocabulary
    checkpoint.safetensors           the newest checkpoint: the whole learner (state.py)
    examples/<cache_id>.safetensors  the replayed corrections and canaries it names

Corrections still waiting for an update, and transcripts accepted since the last one, are not
carried (they belong to the recordings of this machine): ``ffasr replay --flush`` applies what is
pending before an export.
An import is checked before anything is written: the archive's names, sizes and format, then the
model and adapter against this machine's settings, then the learner loads into a real model.
"""

from __future__ import annotations

import json
import re
import time
import zipfile
from pathlib import Path

from .errors import FfasrError, StateError
from .paths import atomic_write_bytes
from .corrections import clean_text
from .state import ProfileFiles, checkpoint_step
from .store import TERM_SOURCES, Store

FORMAT = "ffasr-profile/1"
MAX_MEMBER_BYTES = 512 * 1024 * 1024  # one checkpoint or example; far above tiny.en's and base's
_MEMBER = re.compile(r"profile\.json|checkpoint\.safetensors|examples/[0-9a-f]{1,64}\.safetensors")


def export_profile(state_dir: Path, profile: str, target: Path, identity_of=None) -> dict:
    """Write ``profile``'s newest checkpoint, its examples and its vocabulary to ``target``; returns profile.json."""
    files = ProfileFiles(state_dir, profile)
    paths = files.checkpoint_paths()
    if not paths:
        raise FfasrError(f"profile {profile!r} has no checkpoint to export yet: teach it a few corrections first")
    newest = paths[-1]
    checkpoint = files.read_meta(newest)
    learner = json.loads(checkpoint.get("learner", '{"replay": [], "canaries": []}'))
    names = dict.fromkeys([row["cache_id"] for row in learner["replay"]] + learner["canaries"])
    with Store.open(state_dir, readonly=True) as store:
        info = store.profile(profile)
        terms = [{"term": t.term, "count": t.count, "source": t.source} for t in store.terms(profile)]
        pending = len(store.pending(profile))
    manifest = {
        "format": FORMAT, "profile": profile, "model": info.model if info else "", "mode": info.mode if info else "",
        "identity": json.loads(checkpoint["identity"]), "step": checkpoint_step(newest), "terms": terms,
        "exported_at": time.time(), "pending_not_included": pending,
    }  # fmt: skip
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr("profile.json", json.dumps(manifest, indent=1))
            archive.write(newest, "checkpoint.safetensors")
            for cache_id in names:
                example = files.examples_dir / f"{cache_id}.safetensors"
                if example.exists():
                    archive.write(example, f"examples/{cache_id}.safetensors")
        atomic_write_bytes(target, tmp.read_bytes())
    except OSError as error:
        raise FfasrError(f"cannot write {target} ({error.strerror or error})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return manifest


def read_archive(source: Path) -> tuple[dict, dict[str, bytes]]:
    """profile.json and the members of an archive, checked; FfasrError (one line) for anything else."""
    try:
        archive = zipfile.ZipFile(source)
    except (OSError, zipfile.BadZipFile) as error:
        raise FfasrError(f"{source} is not an ffasr profile archive ({getattr(error, 'strerror', None) or error})") from None
    with archive:
        members = {}
        for info in archive.infolist():
            if not _MEMBER.fullmatch(info.filename):
                raise FfasrError(f"{source} holds {info.filename[:80]!r}, which no ffasr profile has: not imported")
            if info.file_size > MAX_MEMBER_BYTES:
                raise FfasrError(f"{source}: {info.filename} is {info.file_size:,} bytes, over the limit: not imported")
            try:
                members[info.filename] = archive.read(info)
            except (zipfile.BadZipFile, OSError, ValueError) as error:
                raise FfasrError(f"{source} is damaged ({error}): not imported") from None
    try:
        manifest = json.loads(members.pop("profile.json"))
    except (KeyError, ValueError, RecursionError):
        raise FfasrError(f"{source} has no readable profile.json: not an ffasr profile archive") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise FfasrError(f"{source} is a profile of format {manifest.get('format') if isinstance(manifest, dict) else None!r}, not {FORMAT!r}")
    if "checkpoint.safetensors" not in members:
        raise FfasrError(f"{source} holds no checkpoint: not imported")
    if not _well_formed(manifest):
        raise FfasrError(f"{source}: profile.json does not describe a profile (model, mode, identity, step, terms): not imported")
    manifest["terms"] = [{**row, "term": clean_text(row["term"]).strip()} for row in manifest["terms"] if clean_text(row["term"]).strip()]
    return manifest, members


def _well_formed(manifest: dict) -> bool:
    terms = manifest.get("terms")
    fields = [isinstance(manifest.get(key), str) for key in ("profile", "model", "mode")]
    fields += [isinstance(manifest.get("identity"), dict), type(manifest.get("step")) is int, isinstance(terms, list)]
    return all(fields) and all(
        isinstance(row, dict) and isinstance(row.get("term"), str) and type(row.get("count")) is int and row.get("source") in TERM_SOURCES
        for row in terms
    )


def install_profile(state_dir: Path, name: str, manifest: dict, members: dict[str, bytes], source: Path) -> int:
    """Write a checked archive into the state dir as profile ``name`` (which must be new); returns its step."""
    files = ProfileFiles(state_dir, name)
    with Store.open(state_dir) as store:
        if store.profile(name) is not None or files.root.exists():
            raise StateError(f"profile {name!r} already exists here: import it under another name with --as NAME")
        step = int(manifest["step"])
        for member, data in members.items():
            if member.startswith("examples/"):
                atomic_write_bytes(files.examples_dir / Path(member).name, data)
        path = files.checkpoints_dir / f"step-{step:06d}.safetensors"
        atomic_write_bytes(path, members["checkpoint.safetensors"])
        store.ensure_profile(name, manifest["model"], manifest["mode"])
        store.import_terms(name, manifest["terms"], step)
        store.record_checkpoint(name, step, path)
        store.record_update(name, step=step, loss=None, n_interactions=0, status="applied", reason=f"imported from {source}")
    return step
