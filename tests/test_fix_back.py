"""Fix-back, end to end through ``ffasr replay``: the user corrects a shown term back to what was said.

After learning "Kubernetes" from three sentences in which tiny.en heard "Cuba Nates", "Qberneats"
and "Qbernates", the user says the first sentence again, and this time meant the words: "Deploy
the new service to Cuba Nates tonight." One correction back, and the same words in that context
keep their own reading, while a sentence that says the term still gets it; ``vocab list`` shows
where the term was corrected back.
"""

from __future__ import annotations

import json

from conftest import TEXTS, clip
from typer.testing import CliRunner

from ffasr_cli.cli import app

runner = CliRunner()
SAID_BACK = "Deploy the new service to Cuba Nates tonight."


def replay(state, tmp_path, name: str, dialogs: list[tuple[str, str]]) -> list[dict]:
    path, report = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.json"
    path.write_text("".join(json.dumps({"audio": str(clip(c)), "correction": text}) + "\n" for c, text in dialogs))
    config = tmp_path / "config.yaml"
    config.write_text("training:\n  accumulation_steps: 1\n")
    result = runner.invoke(app, ["replay", str(path), "--flush", "--state-dir", str(state), "--config", str(config), "-o", str(report)])
    assert result.exit_code == 0, result.output
    return json.loads(report.read_text())["dialogs"]


def test_one_correction_back_keeps_the_words_in_that_context_and_the_term_where_it_is_said(tmp_path):
    state = tmp_path / "state"
    names = ("kubernetes_deploy", "kubernetes_cluster", "kubernetes_dashboard")
    replay(state, tmp_path, "teach", [(name, TEXTS[name]) for name in names])

    (shown,) = replay(state, tmp_path, "fix", [("kubernetes_deploy", SAID_BACK)])
    assert shown["hypothesis"] == TEXTS["kubernetes_deploy"] and shown["label"] == SAID_BACK  # a real fix-back

    after = replay(state, tmp_path, "after", [("kubernetes_deploy", SAID_BACK), ("kubernetes_cluster", TEXTS["kubernetes_cluster"])])
    assert after[0]["hypothesis"] == SAID_BACK and after[0]["source"] == "accepted"  # the words, where they were put back
    assert "Kubernetes" in after[1]["hypothesis"]  # the term, where it is said

    listed = runner.invoke(app, ["vocab", "list", "--state-dir", str(state)])
    assert listed.exit_code == 0 and "Kubernetes" in listed.output
    assert "Cuba Nates tonight" in " ".join(listed.output.split())
    assert "Cuba" not in [line.split()[1] for line in listed.output.splitlines() if line.startswith("│ ") and len(line.split()) > 1]  # not a term
