"""The CLI as users run it: in-process through Typer's CliRunner, and as a real subprocess.

One replay of the shipped examples (module fixture) feeds every test: it must learn (term recall
up on the eval file), write the report, and be visible to stats, vocab and export.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ffasr_cli.cli import app

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
runner = CliRunner()


def ffasr(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ffasr_cli", *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    report = state.parent / "report.json"
    args = ["replay", str(EXAMPLES / "dialogs.jsonl"), "--eval", str(EXAMPLES / "eval.jsonl"), "--flush", "--state-dir", str(state), "-o", str(report)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return state, json.loads(report.read_text()), result


def test_version_and_help():
    assert runner.invoke(app, ["--version"]).stdout.startswith("ffasr ")
    help_text = runner.invoke(app, ["--help"]).stdout
    for command in ("listen", "replay", "stats", "export", "vocab", "rollback", "reset"):
        assert command in help_text


def test_replay_learns_the_example_terms_and_writes_the_report(replayed):
    _, report, result = replayed
    assert set(report) >= {"summary", "dialogs", "eval"}
    for dialog in report["dialogs"]:
        assert set(dialog) >= {"audio", "hypothesis", "label", "loss", "stepped"}
    summary = report["summary"]
    assert summary["corrections"] == 4 and summary["steps"] == 2 and summary["pending"] == 0
    assert f"(tiny.en on {summary['device']})" in " ".join(result.output.split())  # where it ran: cpu, or cuda on a GPU
    # Rows 3 and 5, after one correction of Xochitl and before any update: the glossary's prompted
    # reading writes the name where the base model was unsure ("Sochiedel"), so the transcript is
    # right and accepted, and, holding a learned term, learned from.
    for row in (2, 4):
        dialog = report["dialogs"][row]
        assert dialog["source"] == "accepted" and "Xochitl" in dialog["hypothesis"] and dialog["loss"] is not None
    # Row 7: the spoken, spelled correction ("No, I said Xochitl. X, O, C, H, I, T, L.") says
    # what the transcript already holds: a confirmation.
    spoken = report["dialogs"][6]
    assert "Xochitl" in spoken["hypothesis"] and spoken["label"] == spoken["hypothesis"] and spoken["source"] == "accepted"
    evaluation = report["eval"]["eval.jsonl"]
    assert {"before", "after", "metrics"} <= set(evaluation)
    before, after = evaluation["metrics"]["before"], evaluation["metrics"]["after"]
    assert before["term_recall"] == 0.0 and after["term_recall"] >= 50.0  # measured: 100 %
    assert after["wer"] < before["wer"]
    assert "evaluation" in result.output


def test_stats_reflects_the_replay_in_process_and_as_a_subprocess(replayed):
    state, _, _ = replayed
    stats = json.loads(runner.invoke(app, ["stats", "--json", "--state-dir", str(state)]).stdout)
    assert stats["updates"]["applied"] == 2 and stats["pending"] == 0
    assert {"Xochitl", "Nginx"} <= set(stats["terms"]["all"])
    assert stats["checkpoints"]["count"] == stats["checkpoints"]["kept"] == 2
    assert "2 saved, 2 kept on disk" in runner.invoke(app, ["stats", "--state-dir", str(state)]).stdout
    process = ffasr("stats", "--json", "--state-dir", state)
    assert process.returncode == 0, process.stderr
    assert json.loads(process.stdout)["updates"] == stats["updates"]


def test_vocab_add_list_remove(tmp_path):
    state = str(tmp_path)
    assert runner.invoke(app, ["vocab", "add", "Kubernetes", "Siobhan", "--state-dir", state]).exit_code == 0
    listed = runner.invoke(app, ["vocab", "list", "--state-dir", state]).stdout
    assert "Kubernetes" in listed and "Siobhan" in listed
    stats = runner.invoke(app, ["stats", "--state-dir", state]).stdout  # a profile no session has used yet
    assert "(no session yet)" in stats and "Kubernetes" in stats
    assert runner.invoke(app, ["vocab", "remove", "siobhan", "--state-dir", state]).exit_code == 0
    assert "Siobhan" not in runner.invoke(app, ["vocab", "list", "--state-dir", state]).stdout
    missing = runner.invoke(app, ["vocab", "remove", "Nobody", "--state-dir", state])
    assert missing.exit_code == 1


def test_export_merged_model_loads_in_whisper_and_hears_what_was_learned(replayed, tmp_path):
    import whisper

    from ffasr_cli.audio import load_audio
    from ffasr_cli.evaluate import contains_term

    state, report, _ = replayed
    target = tmp_path / "merged.pt"
    result = runner.invoke(app, ["export", "--merged", str(target), "--state-dir", str(state)])
    assert result.exit_code == 0, result.output
    model = whisper.load_model(str(target), device="cpu")  # openai-whisper's own loader, nothing of ours
    after = {row["audio"]: row["hypothesis"] for row in report["eval"]["eval.jsonl"]["after"]}
    for audio, hypothesis in after.items():
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(load_audio(audio)))
        text = whisper.decode(model, mel, whisper.DecodingOptions(language="en", without_timestamps=True, fp16=False)).text
        for term in ("Xochitl", "Nginx"):  # the merged model writes the learned terms where ffasr did
            assert contains_term(text, term) == contains_term(hypothesis, term), (text, hypothesis)


def test_export_dataset_writes_an_audiofolder(replayed, tmp_path):
    state, _, _ = replayed
    result = runner.invoke(app, ["export", "--dataset", str(tmp_path / "ds"), "--state-dir", str(state)])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "ds" / "metadata.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 and all((tmp_path / "ds" / row["file_name"]).is_file() for row in rows)
    assert any("Xochitl" in row["transcription"] for row in rows)


def test_export_without_a_target_is_one_line_error(tmp_path):
    process = ffasr("export", "--state-dir", tmp_path)
    assert process.returncode == 1 and "Traceback" not in process.stderr
    assert "nothing to export" in process.stderr
