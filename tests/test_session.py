"""A learning session over a real state dir: what is learned or pending survives a restart."""

from __future__ import annotations

import dataclasses

import pytest

from conftest import TEXTS, clip
from ffasr_cli.config import load_config
from ffasr_cli.session import Session
from ffasr_cli.store import Store

FIX = {name: TEXTS[name] for name in ("kubernetes_deploy", "kubernetes_cluster")}


def open_session(state, glossary: bool = False, **training) -> Session:
    return Session.open(state, "default", load_config(None, glossary=glossary, **training), "test")


def taught_kubernetes(state) -> Session:
    """A closed session that learned Kubernetes from FIX in one update, without the glossary (both sentences corrected)."""
    session = open_session(state, accumulation_steps=2)
    try:
        for name, label in FIX.items():
            session.teach(session.hear(clip(name)), label, "typed")
        assert session.agent.learner.steps == 1
    finally:
        session.close()
    return session


def test_pending_corrections_resume_after_restart(tmp_path):
    session = open_session(tmp_path, accumulation_steps=3)
    try:
        for name, label in FIX.items():
            taught = session.teach(session.hear(clip(name)), label, "typed")
            assert taught.update is None and taught.rejected is None
        assert taught.pending == 2
    finally:
        session.close()
    assert len(list((tmp_path / "profiles/default/pending").glob("*.safetensors"))) == 2

    session = open_session(tmp_path, accumulation_steps=3)  # a new process would do the same
    try:
        assert [e.label for e in session.agent.learner.pending] == list(FIX.values())
        assert all(p.grad is not None for p in session.agent.learner.params)  # accumulation resumed
        heard = session.hear(clip("kubernetes_dashboard"))
        taught = session.teach(heard, TEXTS["kubernetes_dashboard"], "typed")
        assert taught.update is not None and not taught.update.rolled_back
    finally:
        session.close()
    with Store.open(tmp_path, readonly=True) as store:
        assert {i.status for i in store.interactions("default")} == {"applied"}
        assert store.integrity_ok()
    assert not list((tmp_path / "profiles/default/pending").glob("*"))


def test_a_batch_complete_when_restored_updates_as_listen_opens(tmp_path):
    session = open_session(tmp_path, accumulation_steps=3)
    try:
        for name, label in FIX.items():
            session.teach(session.hear(clip(name)), label, "typed")
    finally:
        session.close()
    # two pending where two now make a batch (as after an update Ctrl-C undid): no correction needed to run it
    session = Session.open(tmp_path, "default", load_config(None, accumulation_steps=2), "test", background=True)
    try:
        session.learner_thread.jobs.join()
        [update] = session.finished()
        assert update.step == 1 and not update.rolled_back and not session.waiting()
    finally:
        session.close()
    with Store.open(tmp_path, readonly=True) as store:
        assert {i.status for i in store.interactions("default")} == {"applied"}


@pytest.mark.parametrize("glossary", [False, True], ids=["weights-only", "with-glossary"])
def test_a_learned_term_stays_learned_after_restart(tmp_path, glossary):
    session = taught_kubernetes(tmp_path)
    misheard = session.agent.learner.misheard
    assert misheard.keys() == {"kubernetes"} and misheard["kubernetes"]  # what the base model wrote for it

    session = open_session(tmp_path, glossary=glossary, accumulation_steps=2)
    try:
        assert session.agent.learner.steps == 1  # the checkpoint was loaded
        assert [t.term for t in session.store.terms("default")] == ["Kubernetes"]
        assert session.agent.learner.misheard == misheard  # the term guard's evidence, rebuilt from the store
        assert session.agent.reader.glossary_prompt() == ("Glossary: Kubernetes." if glossary else None)  # learned, still prompted
        heard = session.hear(clip("kubernetes_dashboard"))  # a sentence never corrected
        assert "Kubernetes" in heard.text
        session.store.remove_term("default", "Kubernetes")  # `ffasr vocab remove Kubernetes`
    finally:
        session.close()

    session = open_session(tmp_path, glossary=glossary, accumulation_steps=2)
    try:  # the adapter still has the word; the term guard no longer lets it write it
        assert "Kubernetes" not in session.hear(clip("kubernetes_dashboard")).text
    finally:
        session.close()


def test_the_glossary_prompts_the_base_reading_and_never_the_adapter(tmp_path):
    session = open_session(tmp_path, glossary=True, accumulation_steps=2)
    try:
        name = "kubernetes_deploy"
        taught = session.teach(session.hear(clip(name)), TEXTS[name], "typed")
        assert taught.terms == ("Kubernetes",) and taught.update is None
        assert session.agent.reader.glossary_prompt() == "Glossary: Kubernetes."
        heard = session.hear(clip("kubernetes_cluster"))
        assert "Kubernetes" in heard.text  # the prompted reading alone fixes it: nothing to correct
        entry = session.agent.cache.get(heard.cache_id)
        assert "Kubernetes" not in session.agent.tokenizer.decode(list(entry.windows[0].tokens))  # the cached, unprompted reading
        session.store.add_terms("default", ["Xochitl"], source="user")
        update = session.step_now()  # the update on the one pending correction
        assert update is not None and not update.rolled_back
        session.refresh_glossary()
        assert set(session.agent.reader.glossary) == {"Kubernetes", "Xochitl"}  # applied terms stay prompted
    finally:
        session.close()


def test_a_term_the_weights_write_in_accepted_sentences_leaves_the_glossary_prompt_until_taught_again(tmp_path):
    def prompted(session) -> str | None:
        return session.agent.reader.glossary_reading_prompt()

    taught_kubernetes(tmp_path)
    session = open_session(tmp_path, glossary=True, accumulation_steps=2)
    try:
        assert prompted(session) == "Glossary: Kubernetes."
        heard = session.hear(clip("kubernetes_dashboard"))  # a sentence never corrected
        assert "Kubernetes" in heard.text
        session.teach(heard, None, "accepted")
        assert prompted(session) == "Glossary: Kubernetes."  # once is not yet reliably
        session.teach(session.hear(clip("kubernetes_dashboard")), None, "accepted")
        assert prompted(session) is None and session.agent.reader.glossary_prompt() == "Glossary: Kubernetes."  # spoken corrections keep it
    finally:
        session.close()

    session = open_session(tmp_path, glossary=True, accumulation_steps=2)
    try:
        assert prompted(session) is None  # the accepted sentences were kept, and count again after a restart
        learner = session.agent.learner
        again = dataclasses.replace(learner.pending[0], terms=("Kubernetes",), confirms=False)  # a correction teaching it again
        learner.note_written(again)
        session.agent.publish()
        assert prompted(session) == "Glossary: Kubernetes."
    finally:
        session.close()


def test_a_full_prompt_keeps_the_names_before_common_words(tmp_path):
    session = open_session(tmp_path, glossary=True, glossary_max_terms=4)
    try:
        store = session.store
        store.add_terms("default", ["nice", "Niamh", "six"])
        session.refresh_glossary()
        assert session.agent.reader.glossary_prompt() == "Glossary: Niamh, nice, six."  # room for all: as the glossary has them
        for _ in range(2):  # common words a mishearing voice corrected more often than the names
            store.add_terms("default", ["nice", "six", "another", "morning"])
        store.add_terms("default", ["Memcached", "kubectl"])
        session.refresh_glossary()
        assert session.agent.reader.glossary[:4] == ["nice", "six", "another", "morning"]  # most used first
        assert session.agent.reader.prompt_terms() == ["nice", "Memcached", "kubectl", "Niamh"]  # glossary order, names first in
        assert len(session.agent.reader.glossary) == 7  # nothing forgotten: `ffasr vocab list` shows all of it
    finally:
        session.close()


@pytest.mark.parametrize("learn_confirmed", [True, False], ids=["learned-from", "canary-only"])
def test_an_accepted_transcript_holding_a_learned_term_is_learned_from(tmp_path, learn_confirmed):
    def start() -> Session:
        return open_session(tmp_path, glossary=True, accumulation_steps=3, learn_confirmed=learn_confirmed)

    session = start()
    try:
        session.teach(session.hear(clip("kubernetes_deploy")), TEXTS["kubernetes_deploy"], "typed")
        weather = session.teach(session.hear(clip("weather")), None, "accepted")
        assert weather.loss is None and weather.pending == 1  # no learned term in it: a canary
        heard = session.hear(clip("kubernetes_cluster"))
        assert "Kubernetes" in heard.text  # the glossary prompt wrote it; the user confirms it
        assert session.learns_from(heard, None) is learn_confirmed
        taught = session.teach(heard, None, "accepted")
        assert taught.source == "accepted" and (taught.loss is not None) is learn_confirmed
        assert taught.pending == (2 if learn_confirmed else 1)
        assert len(session.agent.learner.canaries) == (1 if learn_confirmed else 2)
    finally:
        session.close()
    with Store.open(tmp_path, readonly=True) as store:
        statuses = {row.hypothesis: row.status for row in store.interactions("default")}
    assert statuses[heard.text] == ("pending" if learn_confirmed else "accepted")

    session = start()  # a confirmed sentence survives a restart like a correction
    try:
        assert [(e.label, e.confirms) for e in session.agent.learner.pending] == [(TEXTS["kubernetes_deploy"], False)] + (
            [(heard.text, True)] if learn_confirmed else []
        )
    finally:
        session.close()


def test_a_spoken_correction_with_nothing_in_it_is_recorded_as_rejected(tmp_path):
    import json

    import numpy as np
    import soundfile

    from ffasr_cli.commands.replay import run_replay
    from ffasr_cli.dialogs import read_dialogs

    soundfile.write(tmp_path / "quiet.wav", np.zeros(16_000, np.float32), 16_000)  # the user said nothing
    dialogs = tmp_path / "dialogs.jsonl"
    dialogs.write_text(json.dumps({"audio": str(clip("kubernetes_deploy")), "correction_audio": str(tmp_path / "quiet.wav")}) + "\n")
    session = open_session(tmp_path / "state")
    try:
        report = run_replay(session, list(read_dialogs(dialogs)), [], source=dialogs)
    finally:
        session.close()
    assert report["summary"]["skipped"] == 0 and report["summary"]["rejected"] == 1
    assert "empty" in report["dialogs"][0]["rejected"] and "heard ''" in report["dialogs"][0]["rejected"]
    with Store.open(tmp_path / "state", readonly=True) as store:
        (row,) = store.interactions("default")
    assert (row.status, row.source, row.hypothesis) == ("rejected", "spoken", report["dialogs"][0]["hypothesis"])


def test_a_spoken_correction_typed_over_is_taught_only_where_it_was_heard_as_the_typed_words(tmp_path):
    import json

    from ffasr_cli.commands.replay import run_replay
    from ffasr_cli.dialogs import read_dialogs

    session = open_session(tmp_path / "probe")
    try:
        spoken = session.hear_correction(clip("spelled_zbigniew"), session.hear(clip("kubernetes_deploy")))
    finally:
        session.close()
    assert "Zbigniew" in spoken
    said = {"audio": str(clip("kubernetes_deploy")), "correction_audio": str(clip("spelled_zbigniew"))}
    dialogs = tmp_path / "dialogs.jsonl"
    dialogs.write_text(
        json.dumps(said | {"correction": spoken.lower().rstrip(".")}) + "\n"  # heard as the typed words: the spoken one
        + json.dumps(said | {"correction": FIX["kubernetes_deploy"]}) + "\n"  # heard otherwise: the user typed what was said
    )
    session = open_session(tmp_path / "state")
    try:
        run_replay(session, list(read_dialogs(dialogs)), [], source=dialogs)
        taught = [(row.source, row.label) for row in session.store.interactions("default")]
    finally:
        session.close()
    assert taught == [("spoken", spoken), ("typed", FIX["kubernetes_deploy"])]


def test_a_spoken_correction_heard_as_the_transcript_is_refused_not_kept_as_a_canary(tmp_path):
    from ffasr_cli.errors import CorrectionRejected

    session = open_session(tmp_path)
    try:
        heard = session.hear(clip("kubernetes_deploy"))
        with pytest.raises(CorrectionRejected, match="same words"):  # said again, misheard again
            session.hear_correction(clip("kubernetes_deploy"), heard)
        assert not session.agent.learner.canaries and not session.agent.learner.pending
    finally:
        session.close()


def test_a_spelling_the_prompt_hid_is_read_without_it(tmp_path):
    from ffasr_cli.audio import load_audio
    from ffasr_cli.corrections import holds_spelling

    session = open_session(tmp_path)
    heard_before = "Speaking of is fixing the roof on Sunday."  # how tiny.en hears "Zbigniew is fixing …"
    try:
        agent = session.agent
        assert not holds_spelling(agent.reader.text(load_audio(clip("spelled_zbigniew")), heard_before))  # why the second reading exists
        spoken = agent.reader.transcribe_correction(clip("spelled_zbigniew"), heard_before)
        assert holds_spelling(spoken)
        heard = session.hear(clip("kubernetes_deploy"))
        label = session.hear_correction(clip("spelled_zbigniew"), dataclasses.replace(heard, text=heard_before))
    finally:
        session.close()
    assert label == "Zbigniew is fixing the roof on Sunday."


def test_a_replayed_accepted_row_rides_along_as_it_did_when_recorded(tmp_path):
    """``listen --save-audio`` writes what the user accepted; heard otherwise at replay, it is learned as that
    text and rides along with the next batch, as a confirmed sentence did when it was recorded."""
    import json

    from ffasr_cli.dialogs import read_dialogs

    rows = tmp_path / "dialogs.jsonl"
    rows.write_text(json.dumps({"audio": str(clip("weather")), "accepted": "The weather is fine today, let's go for a walk."}) + "\n")
    (dialog,) = read_dialogs(rows)
    session = open_session(tmp_path / "state", accumulation_steps=2)
    try:
        taught = session.teach(session.hear(dialog.audio), dialog.accepted, "accepted")
        assert taught.source == "accepted" and taught.rejected is None and taught.loss is not None
        assert [e.confirms for e in session.agent.learner.pending] == [True]  # riding along, not one of the N corrections
    finally:
        session.close()
