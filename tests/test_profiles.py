"""A profile over many processes, rolled back, and carried to another state dir: the learner is one
state, and every process, rollback and import sees all of it (adapter, optimizer, replay, canaries,
vocabulary and the term guard's evidence)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import TEXTS, clip

from ffasr_cli.config import load_config
from ffasr_cli.session import Session
from ffasr_cli.state import ProfileFiles
from ffasr_cli.store import Store
from test_reliability import EXAMPLES, ffasr, one_error_line, write_jsonl

# Two updates of one correction each: the first teaches Kubernetes, the second Grafana.
STEP_1 = {"kubernetes_deploy": TEXTS["kubernetes_deploy"]}
STEP_2 = {"kubernetes_dashboard": "Please restart the Grafana dashboard before lunch."}


def open_session(state: Path, profile: str = "default", **training) -> Session:
    return Session.open(state, profile, load_config(None, accumulation_steps=1, **training), "test")


def teach(state: Path, *steps: dict, profile: str = "default") -> None:
    session = open_session(state, profile)
    try:
        for corrections in steps:
            for name, label in corrections.items():
                assert session.teach(session.hear(clip(name)), label, "typed").rejected is None
        session.teach(session.hear(clip("librivox_amiable")), None, "accepted")  # a canary
    finally:
        session.close()


def learner_of(state: Path, profile: str = "default") -> dict:
    """What a new process on ``state`` starts from: its learner state (cache ids aside) and vocabulary."""
    session = open_session(state, profile)
    try:
        learner = session.agent.learner
        state_dict = learner.state_dict()
        labels = {cache_id: label for cache_id, (_, label) in state_dict["examples"].items()}
        return {
            "steps": learner.steps,
            "adapter": state_dict["adapter"],
            "optimizer": state_dict["optimizer"],
            "replay": [labels[row["cache_id"]] for row in state_dict["replay"]],
            "canaries": [labels[cache_id] for cache_id in state_dict["canaries"]],
            "rng": state_dict["rng"],
            "taught_terms": learner.taught_terms,
            "misheard": learner.misheard,
            "vocabulary": [(t.term, t.count) for t in session.store.terms(profile)],
            "prompt": session.agent.reader.glossary_prompt(),
            "heard": [session.hear(clip(name)).text for name in ("kubernetes_dashboard", "librivox_ill_disposed")],
        }
    finally:
        session.close()


def assert_same_learner(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key in ("adapter", "optimizer"):
            flat = {k: v for k, v in _flat(a[key])}, {k: v for k, v in _flat(b[key])}
            assert flat[0].keys() == flat[1].keys() and all(torch.equal(flat[0][k], flat[1][k]) for k in flat[0]), key
        else:
            assert a[key] == b[key], key


def _flat(tree, prefix=""):
    for key, value in tree.items():
        yield from _flat(value, f"{prefix}{key}.") if isinstance(value, dict) else [(f"{prefix}{key}", value)]


@pytest.mark.slow
def test_teaching_in_four_processes_ends_where_one_process_does(tmp_path):
    """The shipped dialogs replayed in one process, and two at a time in four: the same learner."""
    rows = [json.loads(line) for line in (EXAMPLES / "dialogs.jsonl").read_text().splitlines()]
    for row in rows:
        row.update({k: str(EXAMPLES / row[k]) for k in ("audio", "correction_audio") if k in row})
    config = tmp_path / "c.yaml"
    config.write_text("training:\n  accumulation_steps: 2\n")

    def replay(state: Path, part: list, name: str, *flush: str) -> None:
        result = ffasr("replay", write_jsonl(tmp_path / name, part), "--state-dir", state, "--config", config, *flush, timeout=600)
        assert result.returncode == 0, result.stderr

    replay(tmp_path / "one", rows, "all.jsonl", "--flush")
    for start in range(0, len(rows), 2):
        flush = ("--flush",) if start + 2 >= len(rows) else ()
        replay(tmp_path / "four", rows[start : start + 2], f"part{start}.jsonl", *flush)

    one, four = learner_of(tmp_path / "one"), learner_of(tmp_path / "four")
    assert one["steps"] >= 2 and one["replay"] and one["canaries"]
    assert_same_learner(one, four)


@pytest.mark.slow
def test_rollback_brings_back_weights_vocabulary_and_guard_of_that_step(tmp_path):
    state = tmp_path / "state"
    teach(state, STEP_1)
    at_step_1 = learner_of(state)
    teach(state, STEP_2)
    at_step_2 = learner_of(state)
    assert (at_step_1["steps"], at_step_2["steps"]) == (1, 2)
    assert "Grafana" in at_step_2["taught_terms"] and "Grafana" not in at_step_1["taught_terms"]

    history = ffasr("history", "--state-dir", state)
    assert history.returncode == 0 and [line.split("│")[5].strip() for line in history.stdout.splitlines() if "applied" in line] == [
        "Kubernetes", "Grafana"]  # what each step taught first

    result = ffasr("rollback", "--to", "1", "--state-dir", state)
    assert result.returncode == 0 and "1 correction(s) undone" in result.stdout, result.stderr
    after = learner_of(state)  # a new process: weights, optimizer, replay, vocabulary, guard
    # the transcripts accepted since step 1 stay canaries: they are true whatever was rolled back
    assert after.pop("canaries") == at_step_1.pop("canaries") + at_step_2["canaries"][-1:]
    assert_same_learner(after, at_step_1)
    history = ffasr("history", "--state-dir", state).stdout
    assert "rolled back: user rollback to step 1" in history and "Grafana" not in history
    with Store.open(state, readonly=True) as store:
        undone = [row for row in store.interactions("default") if row.label in STEP_2.values()]
    assert [row.status for row in undone] == ["rolled_back"]


@pytest.mark.slow
def test_an_exported_profile_imported_elsewhere_transcribes_as_the_source(tmp_path):
    source, target, archive = tmp_path / "source", tmp_path / "target", tmp_path / "team.ffasr"
    teach(source, STEP_1, STEP_2)
    exported = ffasr("profile", "export", archive, "--state-dir", source)
    assert exported.returncode == 0 and "at step 2" in exported.stderr, exported.stderr
    imported = ffasr("profile", "import", archive, "--as", "team", "--state-dir", target)
    assert imported.returncode == 0 and "as profile 'team' at step 2" in imported.stderr, imported.stderr
    imported, original = learner_of(target, "team"), learner_of(source)
    # transcripts accepted since the last update stay with this machine's recordings, as pending corrections do
    assert imported.pop("canaries") == [] and original.pop("canaries")
    assert_same_learner(imported, original)  # the same adapter, optimizer, replay and vocabulary: the same transcripts

    one_error_line(ffasr("profile", "import", archive, "--as", "team", "--state-dir", target), "already exists here", "--as NAME")
    one_error_line(ffasr("profile", "import", archive, "--mode", "logits", "--state-dir", target), "was trained for model 'tiny.en'")
    assert ProfileFiles(target, "default").steps() == []  # nothing was written by the refused imports


@pytest.mark.parametrize("damage, message", [
    ("not a zip", "is not an ffasr profile archive"),
    ("foreign member", "which no ffasr profile has"),
    ("no checkpoint", "holds no checkpoint"),
    ("other format", "not 'ffasr-profile/1'"),
    ("bad terms", "does not describe a profile"),
])  # fmt: skip
def test_a_bad_archive_is_refused_in_one_line_before_anything_is_written(tmp_path, damage, message):
    archive = tmp_path / "bad.ffasr"
    manifest = {"format": "ffasr-profile/1", "profile": "p", "model": "tiny.en", "mode": "encoder", "identity": {}, "step": 1,
                "terms": [{"term": "Xochitl", "count": 1, "source": "learned"}]}  # fmt: skip
    if damage == "not a zip":
        archive.write_bytes(b"PK\x03\x04 but not really")
    else:
        manifest |= {"other format": {"format": "ffasr-profile/9"}, "bad terms": {"terms": [{"term": 3}]}}.get(damage, {})
        with zipfile.ZipFile(archive, "w") as zipped:
            zipped.writestr("profile.json", json.dumps(manifest))
            if damage != "no checkpoint":
                zipped.writestr("checkpoint.safetensors", b"")
            if damage == "foreign member":
                zipped.writestr("../../etc/cron.d/x", b"")
    one_error_line(ffasr("profile", "import", archive, "--state-dir", tmp_path / "state"), message)
    assert not (tmp_path / "state" / "profiles").exists()


def test_a_vocabulary_travels_as_a_plain_list(tmp_path):
    source, target, terms = tmp_path / "a", tmp_path / "b", tmp_path / "terms.txt"
    assert ffasr("vocab", "add", "Xochitl", "Nginx", "--state-dir", source).returncode == 0
    exported = ffasr("vocab", "export", "--state-dir", source)
    assert sorted(exported.stdout.split()) == ["Nginx", "Xochitl"]
    terms.write_text("# the team's names\n" + exported.stdout + "\n  \nKubernetes\n")
    imported = ffasr("vocab", "import", terms, "--state-dir", target)
    assert imported.returncode == 0 and "added 3 term(s)" in imported.stdout, imported.stderr
    listed = ffasr("vocab", "export", "--state-dir", target).stdout.split()
    assert sorted(listed) == ["Kubernetes", "Nginx", "Xochitl"]
    one_error_line(ffasr("vocab", "import", tmp_path / "missing.txt", "--state-dir", target), "cannot read")
