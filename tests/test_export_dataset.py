"""``ffasr export --dataset``: every taught utterance with its audio on disk, and a count of the others, by reason."""

from __future__ import annotations

import csv

import numpy as np
import soundfile
from typer.testing import CliRunner

from ffasr_cli.cli import app
from ffasr_cli.store import Store

runner = CliRunner()


def _taught(state, rows: list[tuple[str, str]]) -> None:
    """Interactions as listen and replay record them: (audio, status)."""
    with Store.open(state) as store:
        store.ensure_profile("default", "tiny.en", "encoder")
        session = store.start_session("default", "listen")
        for number, (audio, status) in enumerate(rows):
            store.add_interaction(session, "default", cache_id=f"c{number}", audio=audio, hypothesis="Deploy to Cuba Nates.",
                                  label="Deploy to Kubernetes.", source="typed", status=status)  # fmt: skip


def test_the_dataset_says_what_it_could_not_include_and_why(tmp_path):
    clip = tmp_path / "utt-0001.wav"
    soundfile.write(str(clip), np.zeros(1600, np.float32), 16_000)
    state = tmp_path / "state"
    _taught(state, [
        (str(clip), "applied"),
        ("microphone:2", "pending"), ("microphone:3", "accepted"),  # listen without --save-audio
        (str(tmp_path / "deleted.wav"), "applied"),
        ("microphone:5", "rejected"),  # not taught: not a dataset row, nor a missing one
    ])  # fmt: skip
    result = runner.invoke(app, ["export", "--dataset", str(tmp_path / "ds"), "--state-dir", str(state)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("; 3 not included: 2 recorded without --save-audio, 1 audio file no longer on disk")
    assert result.stdout.startswith("dataset: 1 dialogs written to ")
    with open(tmp_path / "ds" / "metadata.csv") as handle:
        assert [row["transcription"] for row in csv.DictReader(handle)] == ["Deploy to Kubernetes."]


def test_a_profile_taught_without_audio_is_one_line_saying_so(tmp_path):
    state = tmp_path / "state"
    _taught(state, [("microphone:1", "applied"), ("microphone:2", "accepted")])
    result = runner.invoke(app, ["export", "--dataset", str(tmp_path / "ds"), "--state-dir", str(state)])
    assert result.exit_code == 1
    assert "has no taught dialogs with audio on disk; 2 not included: recorded without --save-audio" in " ".join(result.output.split())
