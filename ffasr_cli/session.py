"""A learning session: the agent, the store and the profile's files, kept consistent.

``replay`` and ``listen`` both go through here, so a correction is handled one way only:

1. ``hear`` — transcribe with caching (the learned glossary as prompt) and time it.
2. ``teach`` — check and learn the label: its loss from the cache, accumulated; the correction is
   spilled to disk and recorded as pending *before* this returns, so a crash cannot lose it.
3. When ``accumulation_steps`` corrections are pending, the update runs; its checkpoint is saved
   atomically (naming the corrections it applied), then the store is told. On the next start,
   the newest readable checkpoint is loaded and whatever is still pending is accumulated again.

With ``background=True`` (``ffasr listen``), step 2 records and spills the correction at once and
leaves the rest to a learner thread (``LearnerThread``): the gradient, the update, its checkpoint.
Decoding goes on meanwhile with a copy of the model that takes the new weights only when an update
is saved (``Reader.adopt``); what the thread finished is read with ``Session.finished()``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Config
from .corrections import learned_terms
from .errors import CorrectionRejected
from .state import UNREADABLE, Checkpoint, ProfileFiles, Unreadable
from .store import Store

if TYPE_CHECKING:  # torch and whisper: open() imports them once the state dir is ours
    from .agent import ASRAgent
    from .learner import Example, UpdateResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Heard:
    text: str
    cache_id: str | None  # None when nothing was said
    audio: str
    seconds: float
    doubtful: tuple[str, ...] = ()  # shown terms where a wrong term is likeliest (guard.doubtful_terms): where to look


@dataclass(frozen=True)
class Taught:
    label: str
    source: str  # accepted | typed | spoken
    loss: float | None  # None when accepted or rejected
    rejected: str | None  # why the label was refused, if it was
    pending: int  # corrections waiting for the next update
    update: UpdateResult | None  # the update this correction completed, if any
    terms: tuple[str, ...]  # words of the label the model got wrong


LEARNER_NICENESS = 10  # of 19: decoding, at 0, gets ~10x the CPU time of an update when both want it


class LearnerThread:
    """The learner on a thread of its own: jobs run one at a time, in the order given.

    What a job returns (an update, a refusal) and what it raises are handed back through
    ``finished()``, to the thread that talks to the user.
    """

    def __init__(self, learner):
        self.learner = learner
        self.jobs: queue.Queue = queue.Queue()
        self.results: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="ffasr-learner", daemon=True)
        self.thread.start()

    def submit(self, job: Callable[[], object]) -> None:
        self.jobs.put(job)

    @property
    def busy(self) -> bool:
        return self.jobs.unfinished_tasks > 0

    def finished(self) -> list:
        """What the jobs finished since the last call (results and exceptions), oldest first."""
        done = []
        while not self.results.empty():
            done.append(self.results.get())
        return done

    def stop(self, finish: bool) -> None:
        """End the thread: after the jobs given so far (``finish``), or now, undoing a running update."""
        if not finish:
            self._drop_waiting()
            self.learner.abandon.set()
        self.jobs.put(None)
        self.thread.join()

    def _drop_waiting(self) -> None:
        while True:
            try:
                self.jobs.get_nowait()
            except queue.Empty:
                return
            self.jobs.task_done()

    def _run(self) -> None:
        from .learner import UpdateAbandoned

        _yield_the_cpu()
        while (job := self.jobs.get()) is not None:
            try:
                result = job()
            except UpdateAbandoned:  # undone: its corrections stay pending on disk
                result = None
            except BaseException as error:  # handed to the user's thread, which reports it
                result = error
            if result is not None:
                self.results.put(result)
            self.jobs.task_done()
        self.jobs.task_done()


def _yield_the_cpu() -> None:
    """Lower this thread's priority (and that of the threads it starts: torch's workers): on a busy
    machine an update may take longer, but what the user says is decoded first."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LEARNER_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not allowed: the update just competes as usual
        pass


def _accepts(heard: Heard, label: str | None) -> bool:
    """Whether ``label`` says the transcript was right: no label, or the very same words."""
    return label is None or label.strip() == heard.text.strip()


class Session:
    def __init__(self, agent: ASRAgent, store: Store, files: ProfileFiles, profile: str, command: str, background: bool = False):
        self.agent, self.store, self.files, self.profile = agent, store, files, profile
        self.cache_identity = {**agent.identity(), "mode": agent.config.training.mode}
        self.store.ensure_profile(profile, self.cache_identity["model"], agent.config.training.mode)
        self.session_id = store.start_session(profile, command)
        self.learn_weights = True  # False: a baseline that only fills the glossary (--no-learn)
        self._resume()
        self.learner_thread: LearnerThread | None = None
        self.queued: dict[int, Example] = {}  # given to the learner thread, not learned yet, by id(): in order, safe across threads
        if background:
            agent.reader.read_apart()
            self.learner_thread = LearnerThread(agent.learner)
            # A batch already complete when restored (an update Ctrl-C undid, a smaller
            # accumulation_steps) runs now, not after the next correction: finished() reports it.
            self.learner_thread.submit(self._step_if_ready)

    @classmethod
    def open(cls, state_dir: Path, profile: str, config: Config, command: str, *, lock_timeout: float = 0.0, seed: int = 0,
             background: bool = False) -> Session:  # fmt: skip
        store = Store.open(Path(state_dir), lock_timeout=lock_timeout)  # first: a busy state dir is refused before torch loads
        try:
            from .agent import ASRAgent

            files = ProfileFiles(Path(state_dir), profile)
            return cls(ASRAgent(config=config, seed=seed), store, files, profile, command, background)
        except BaseException:
            store.close()
            raise

    def _resume(self) -> None:
        """Continue where the last process on this profile stopped: the learner of the newest
        readable checkpoint, the canaries accepted since, and the corrections still pending."""
        agent, learner, files = self.agent, self.agent.learner, self.files
        files.remove_temp_files()  # left by a process killed mid-write; we hold the lock
        checkpoint, unreadable = files.latest_checkpoint(agent.identity())
        step = checkpoint.step if checkpoint else 0
        reason = self._set_aside(unreadable, step) if unreadable else f"the checkpoints after step {step} are gone"
        self._store_back_to(step, reason)
        since = 0.0
        if checkpoint is not None:
            # Corrections the checkpoint applied whose files were not moved yet (a stop right after saving).
            files.keep_examples(checkpoint.applied)
            self.store.mark_applied(self.profile, checkpoint.applied, [], checkpoint.step)
            if checkpoint.adapter_only:
                learner.load_adapter_state(checkpoint.adapter, checkpoint.step)
                self._misheard_from_store()
            else:
                learner.load_state_dict(files.learner_state(checkpoint, self.cache_identity, agent.device))
            self._record_if_unrecorded(checkpoint)
            since = checkpoint.created_at
        self._restore_canaries(since)
        self._restore_pending()
        learner.vocabulary_is(t.term for t in self.store.terms(self.profile))
        agent.publish()
        self.refresh_glossary()

    def _misheard_from_store(self) -> None:
        """For a checkpoint that holds the adapter alone: the words earlier corrections replaced, and put back, from the store."""
        for done in self.store.interactions(self.profile):
            if done.teaches:
                self.agent.learner.note_misheard(done.hypothesis, done.label, learned_terms(done.hypothesis, done.label, self.agent.tokenizer))
                self.agent.learner.note_fixed_back(done.hypothesis, done.label)

    def _restore_canaries(self, since: float) -> None:
        """The transcripts accepted after the checkpoint (``since``) are canaries again, in order."""
        accepted = [row.cache_id for row in self.store.interactions(self.profile) if row.status == "accepted" and row.created_at > since]
        for entry, _ in self.files.read_examples(accepted, self.cache_identity, self.agent.device).values():
            self.agent.learner.keep_canary(entry)

    def _set_aside(self, unreadable: list[Unreadable], step: int) -> str:
        """Move checkpoints that cannot be read out of the way; returns what to tell the store.

        They are never overwritten (the next update would reuse their step numbers) nor deleted.
        """
        for bad in unreadable:
            moved = self.files.set_aside(bad.path)
            log.warning("adapter checkpoint %s is unreadable (%s); moved to %s, going on from step %d", bad.path.name, bad.reason, moved, step)
        return f"checkpoint {unreadable[0].path.name} could not be read (moved to {unreadable[0].path.parent / UNREADABLE})"

    def _store_back_to(self, step: int, reason: str) -> None:
        """The store recorded updates after ``step`` whose checkpoints are gone (unreadable, or a
        rollback stopped half-way): undo them there too. Their corrections are not in the adapter:
        those still spilled in pending/ are learned again, the others are recorded as rolled back."""
        if any(row.step > step for row in self.store.checkpoints(self.profile)):
            self.store.roll_back_to(self.profile, step, reason, still_pending={path.stem for path in self.files.pending_paths()})

    def _record_if_unrecorded(self, checkpoint: Checkpoint) -> None:
        """A process stopped between saving a checkpoint and recording it: record the update now."""
        if any(row.step == checkpoint.step for row in self.store.checkpoints(self.profile)):
            return
        self.store.record_checkpoint(self.profile, checkpoint.step, checkpoint.path)
        self.store.record_update(self.profile, step=checkpoint.step, loss=None, n_interactions=len(checkpoint.applied), status="applied",
                                 reason="recorded at the next start: the process stopped before it could")  # fmt: skip

    def _restore_pending(self) -> None:
        """Accumulate the spilled corrections again; a row whose spill is unreadable or gone is rejected."""
        agent, files = self.agent, self.files
        confirmed = {row.cache_id for row in self.store.pending(self.profile) if row.source == "accepted"}
        entries, unreadable = files.pending(self.cache_identity, agent.device)
        for bad in unreadable:
            log.warning("pending correction %s is unreadable (%s); moved to %s", bad.path.name, bad.reason, files.set_aside(bad.path))
        for entry, label in entries:
            try:
                agent.restore_pending(entry, label, confirms=entry.cache_id in confirmed)
            except CorrectionRejected as error:  # the rules changed since: keep the row, drop the spill
                log.warning("pending correction %s no longer accepted: %s", entry.cache_id, error)
                self.store.set_status([entry.cache_id], "rejected", str(error))
                files.drop_pending([entry.cache_id])
        spilled = {path.stem for path in files.pending_paths()}
        gone = [row.cache_id for row in self.store.pending(self.profile) if row.cache_id not in spilled]
        self.store.set_status(gone, "rejected", "its cached copy on disk was missing or unreadable: nothing was learned from it")

    def refresh_glossary(self) -> None:
        self.agent.reader.glossary = self.store.glossary(self.profile)  # the prompt takes what it has room for

    # ---------------------------------------------------------------- the loop

    def hear(self, audio, name: str | None = None) -> Heard:
        started = time.perf_counter()
        text, cache_id = self.agent.infer(audio, cache_logits=True)
        entry = self.agent.cache.get(cache_id) if cache_id else None
        doubtful = tuple(w for window in entry.windows for w in window.doubtful) if entry else ()
        return Heard(text, cache_id, name or (str(audio) if isinstance(audio, (str, Path)) else "<array>"), time.perf_counter() - started, doubtful)

    def hear_correction(self, audio, heard: Heard) -> str:
        """The label a spoken correction gives; CorrectionRejected (saying what was heard) when it gives none.

        A correction heard as the very words of the transcript gives none: the user said it was
        wrong and was misheard the same way again ("No, I meant Cilium" heard as "…Silium"), and
        taking it as an accepted transcript would keep the mistake as a canary. Unless it was
        spelled out: then the transcript already holds the word the user spelled.
        """
        from .corrections import holds_spelling, parse_spoken_correction

        spoken = self.agent.reader.transcribe_correction(audio, heard.text)
        try:
            label = parse_spoken_correction(spoken, heard.text, self._attempt(heard), self.agent.reader.glossary).label
        except CorrectionRejected as error:
            raise CorrectionRejected(f"{error} (heard {spoken!r})") from None
        if label.strip() == heard.text.strip() and not holds_spelling(spoken):
            raise CorrectionRejected(f"The correction was heard as the same words (heard {spoken!r}): type it, or spell it out.")
        return label

    def read_correction(self, text: str, heard: Heard) -> str:
        """The label a typed correction gives; CorrectionRejected when it gives none."""
        from .corrections import typed_correction

        return typed_correction(text, heard.text, self._attempt(heard)).label

    def _attempt(self, heard: Heard) -> str | None:
        """The adapter's own words, where the term guard showed the base model's: they locate a corrected name."""
        return self.agent.attempt(heard.cache_id) if heard.cache_id is not None else None

    def teach(self, heard: Heard, label: str | None, source: str, refused: str | None = None) -> Taught:
        """Learn ``label`` for what was heard; ``None`` (or the same text) means it was right.

        ``refused`` is why a correction was refused before it got here (a spoken one with nothing
        in it): the interaction is recorded as rejected, nothing is learned.
        """
        if heard.cache_id is None:
            return Taught(heard.text, source, None, "nothing was heard", len(self.waiting()), None, ())
        if refused is not None:
            return self._reject(heard, label or "", source, refused)
        if _accepts(heard, label):
            if self._confirms_term(heard):
                try:
                    return self._learn(heard, heard.text, "accepted", confirms=True)
                except CorrectionRejected:  # a window decoded to the length limit cannot be scored
                    pass
            return self._accept(heard)
        if not self.learn_weights:
            terms = self._remember_terms(tuple(learned_terms(heard.text, label, self.agent.tokenizer)))
            self._record(heard, label, source, "rejected", reason="not learned (--no-learn)")
            return Taught(label, source, None, None, 0, None, terms)
        try:  # a transcript accepted when it was recorded, and heard otherwise now, rides along as it did then
            return self._learn(heard, label, source, confirms=source == "accepted")
        except CorrectionRejected as error:
            return self._reject(heard, label, source, str(error))

    def learns_from(self, heard: Heard, label: str | None) -> bool:
        """Whether teaching ``label`` would accumulate a loss (a correction, or a confirmed sentence riding along)."""
        if heard.cache_id is None or not self.learn_weights:
            return False
        if _accepts(heard, label):
            return self._confirms_term(heard)
        return True

    def _confirms_term(self, heard: Heard) -> bool:
        """An accepted transcript writing a learned term is one more sentence of it: learn from it.

        Kept only as a canary, it would teach nothing, and the better the model got at a term, the
        fewer of its sentences it would learn from.
        """
        learn = self.learn_weights and self.agent.config.training.learn_confirmed
        return learn and self.agent.reader.writes_taught_term(heard.text)

    def _learn(self, heard: Heard, label: str, source: str, confirms: bool = False) -> Taught:
        """Check ``label``, spill it and record it pending, then learn it: its loss from the cache,
        accumulated, and the update when enough are pending (in the learner thread, if there is one).

        Raises ``CorrectionRejected`` (nothing learned or recorded) for a label the agent refuses.
        """
        started = time.perf_counter()
        example = self.agent.example(heard.cache_id, label, confirms)
        if self.learner_thread is not None:  # on disk before this returns: Ctrl-C now loses nothing
            self._keep_pending(heard, example, source, loss=None, started=started)
            self.queued[id(example)] = example
            self.learner_thread.submit(lambda: self._learn_example(example))
            return Taught(example.label, source, None, None, len(self.waiting()), None, self._remember_terms(example.terms))
        loss = self._accumulate(example)
        self._keep_pending(heard, example, source, loss=loss, started=started)
        terms = self._remember_terms(example.terms)
        update = self._step_if_ready()
        return Taught(example.label, source, loss, None, len(self.waiting()), update, terms)

    def _keep_pending(self, heard: Heard, example: Example, source: str, loss: float | None, started: float) -> None:
        self.files.spill(example.entry, example.label, self.cache_identity)
        self._record(heard, example.label, source, "pending", loss=loss, update_ms=1000 * (time.perf_counter() - started))

    def _learn_example(self, example: Example) -> UpdateResult | str | None:
        """In the learner thread: accumulate ``example`` and update when the batch is complete;
        returns the update, or why the example was refused after all."""
        try:
            self._accumulate(example)
        except CorrectionRejected as error:
            self.store.set_status([example.cache_id], "rejected", str(error))
            self.files.drop_pending([example.cache_id])
            return f"refused: {error}"
        return self._step_if_ready()

    def _accumulate(self, example: Example) -> float:
        """The example's gradient, accumulated; what it taught is the reader's at once (the guard, the glossary reading)."""
        try:
            loss = self.agent.learner.learn(example)
        finally:
            self.queued.pop(id(example), None)
        self.agent.publish()
        return loss

    def waiting(self) -> list[Example]:
        """Corrections and confirmed sentences waiting for the next update: learned, then queued."""
        return [*self.agent.learner.pending, *self.queued.values()]

    def finished(self) -> list:
        """What the learner thread finished since the last call: updates, refusals (text), errors."""
        return self.learner_thread.finished() if self.learner_thread else []

    def _remember_terms(self, terms: tuple[str, ...]) -> tuple[str, ...]:
        """Keep ``terms`` in the profile's glossary (the store counts them); return them."""
        if terms:
            self.store.add_terms(self.profile, list(terms))
            self.refresh_glossary()
        return terms

    def step_now(self) -> UpdateResult | None:
        """Update on whatever is pending, even fewer than ``accumulation_steps`` corrections (in the
        learner thread, if there is one: its result then comes from ``finished()``)."""
        if self.learner_thread is not None:
            self.learner_thread.submit(lambda: self._step_if_ready(force=True))
            return None
        return self._step_if_ready(force=True)

    def _accept(self, heard: Heard) -> Taught:
        entry = self.agent.cache.get(heard.cache_id)
        self.agent.cache.discard([heard.cache_id])
        self._record(heard, heard.text, "accepted", "accepted")
        self._on_learner(lambda: self._keep_canary(entry))
        return Taught(heard.text, "accepted", None, None, len(self.waiting()), None, ())

    def _keep_canary(self, entry) -> None:
        """A canary, saved so that the next process checks updates against it too."""
        if self.agent.learner.keep_canary(entry):
            self.files.save_example(entry, entry.text, self.cache_identity)

    def _on_learner(self, job: Callable[[], object]) -> None:
        """Run ``job`` where the learner runs: here, or queued to the learner thread."""
        if self.learner_thread is None:
            job()
        else:
            self.learner_thread.submit(job)

    def _reject(self, heard: Heard, label: str, source: str, reason: str) -> Taught:
        self._record(heard, label, source, "rejected", reason=reason)
        return Taught(label, source, None, reason, len(self.waiting()), None, ())

    def _record(self, heard: Heard, label: str, source: str, status: str, **extra) -> None:
        self.store.add_interaction(
            self.session_id, self.profile, cache_id=heard.cache_id, audio=heard.audio, hypothesis=heard.text,
            label=label, source=source, status=status, infer_ms=1000 * heard.seconds, **extra,
        )  # fmt: skip

    def _step_if_ready(self, force: bool = False) -> UpdateResult | None:
        """Run the update if the batch is complete; save it, record it, and only then let the reader
        decode with it (so that what is decoded is always what is on disk)."""
        if not self.agent.learner.step_if_ready(force):
            return None
        update = self.agent.last_update
        ids = list(update.corrections)
        status = "rolled_back" if update.rolled_back else "applied"
        if not update.rolled_back:  # the whole learner, then the store, then the files (a stop in between is mended at the next start)
            state = self.agent.learner.state_dict()
            self.files.save_examples(state["examples"], self.cache_identity)
            path = self.files.save_checkpoint(state, self.agent.identity(), ids)
            self.store.record_checkpoint(self.profile, update.step, path)
        self.store.record_update(
            self.profile, step=update.step, loss=update.loss, n_interactions=len(ids), status=status, reason=update.undone,
            duration_ms=1000 * update.seconds, canary_before=update.canary_before, canary_after=update.canary_after,
        )  # fmt: skip
        if update.rolled_back:
            self.store.set_status(ids, status)
            self.files.drop_pending(ids)
        else:  # the corrections are replayed in later updates: their cache entries move to examples/
            self.store.mark_applied(self.profile, ids, list(update.terms), update.step)
            self.files.keep_examples(ids)
        self.agent.publish()
        self.refresh_glossary()
        return update

    def close(self, finish_learning: bool = True) -> None:
        """End the session. The learner thread first finishes what it was given, or, without
        ``finish_learning`` (Ctrl-C), undoes a running update: either way every correction is on disk."""
        try:
            if self.learner_thread is not None:
                self.learner_thread.stop(finish=finish_learning)
            self.store.end_session(self.session_id)
        finally:
            self.store.close()

