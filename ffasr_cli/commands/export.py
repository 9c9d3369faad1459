"""``ffasr export``: take what a profile learned elsewhere — a merged Whisper checkpoint or a dataset."""

from __future__ import annotations

import csv
import dataclasses
import io
import shutil
from pathlib import Path
from typing import Annotated

import typer

from ..errors import FfasrError
from ..paths import atomic_write_bytes
from ..store import Store
from .common import (
    ConfigFile, Device, ModeOption, ModelName, Profile, StateDir, build_config, printable, reports_errors, state_dir,
)  # fmt: skip


def export_merged(root: Path, profile: str, settings, target: Path) -> int:
    """Write an openai-whisper checkpoint with the profile's decoder LoRA folded into the weights.

    It carries what the adapter writes, not the term guard nor the glossary's reading: those need
    the base model beside the adapter, which a plain Whisper checkpoint cannot hold.
    """
    import torch

    from ..agent import ASRAgent
    from ..lora import merge_into_base
    from ..state import ProfileFiles

    if settings.training.mode == "logits":
        raise FfasrError("a logits-mode head adapter cannot be merged into a plain Whisper checkpoint; train in encoder mode to export")
    agent = ASRAgent(config=settings)
    checkpoint, _ = ProfileFiles(root, profile).latest_checkpoint(agent.identity())  # the newest it can read
    if checkpoint is None:
        raise FfasrError(f"profile {profile!r} has no adapter checkpoint to export")
    agent.learner.load_adapter_state(checkpoint.adapter, checkpoint.step)
    merge_into_base(agent.model)
    state = {name: tensor.half() for name, tensor in agent.model.state_dict().items() if name != "alignment_heads"}
    buffer = io.BytesIO()
    torch.save({"dims": dataclasses.asdict(agent.model.dims), "model_state_dict": state}, buffer)
    atomic_write_bytes(target, buffer.getvalue())
    return checkpoint.step


TAUGHT = ("applied", "pending", "accepted")  # what a dataset holds: learned from, or accepted as heard


def _why_left_out(audio: str | None) -> str | None:
    """Why a taught utterance cannot be in the dataset, or None when its audio is on disk."""
    if not audio or audio.startswith("microphone:"):
        return "recorded without --save-audio"
    if audio == "<array>":
        return "taught from audio in memory (no file)"
    if not Path(audio).is_file():
        return "audio file no longer on disk"
    return None


def export_dataset(root: Path, profile: str, target: Path) -> tuple[int, dict[str, int]]:
    """The profile's taught dialogs in the Hugging Face "audiofolder" layout (audio + metadata.csv).

    Returns how many were written, and how many could not be, by reason.
    """
    with Store.open(root, readonly=True) as store:
        taught = [r for r in store.interactions(profile) if r.status in TAUGHT]
    rows, left_out = [], {}
    for row in taught:
        if reason := _why_left_out(row.audio):
            left_out[reason] = left_out.get(reason, 0) + 1
        else:
            rows.append(row)
    if not rows:
        note = _left_out_note(left_out)
        raise FfasrError(f"profile {profile!r} has no taught dialogs with audio on disk{note} (record with --save-audio)")
    (target / "data").mkdir(parents=True, exist_ok=True)
    with open(target / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "transcription", "hypothesis", "source"])
        for index, row in enumerate(rows):
            name = f"data/{index:05d}{Path(row.audio).suffix}"
            shutil.copyfile(row.audio, target / name)
            writer.writerow([name, row.label, row.hypothesis, row.source])
    return len(rows), left_out


def _left_out_note(left_out: dict[str, int]) -> str:
    """"; 3 not included: 2 recorded without --save-audio, 1 audio file no longer on disk" (empty when none were)."""
    if not left_out:
        return ""
    reasons = ", ".join(f"{count} {reason}" for reason, count in left_out.items()) if len(left_out) > 1 else next(iter(left_out))
    return f"; {sum(left_out.values())} not included: {reasons}"


@reports_errors
def export(
    merged: Annotated[Path | None, typer.Option("--merged", help="Write an openai-whisper checkpoint (.pt) with the adapter merged in: the weights only, without the term guard or the glossary.")] = None,
    dataset: Annotated[Path | None, typer.Option("--dataset", help="Write the corrected dialogs as an audiofolder dataset in this dir.")] = None,
    state: StateDir = None,
    config: ConfigFile = None,
    model: ModelName = None,
    mode: ModeOption = None,
    device: Device = None,
    profile: Profile = "default",
) -> None:
    """Export a profile: a merged model that whisper.load_model() reads, and/or its dataset."""
    if not merged and not dataset:
        raise FfasrError("nothing to export: give --merged FILE.pt and/or --dataset DIR")
    root = state_dir(state)
    if dataset:
        written, left_out = export_dataset(root, profile, dataset)
        typer.echo(f"dataset: {written} dialogs written to {printable(dataset)}{_left_out_note(left_out)}")
    if merged:
        step = export_merged(root, profile, build_config(config, model, mode, device, None), merged)
        typer.echo(f"merged model (adapter step {step}) written to {printable(merged)}")
