"""A learning session: the agent, the store and the profile's files, kept consistent.

``replay`` and ``listen`` both go through here, so a correction is handled one way only:

1. ``hear`` — transcribe with caching (the learned glossary as prompt) and time it.
2. ``teach`` — check and learn the label: its loss from the cache, accumulated; the correction is
   spilled to disk and recorded as pending *before* this returns, so a crash cannot lose it.
3. When ``accumulation_steps`` corrections are pending, the update runs; its checkpoint is saved
   atomically (naming the corrections it applied), then the store is told. On the next start,
   the newest readable checkpoint is loaded and whatever is still pending is accumulated again.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from .agent import ASRAgent, UpdateResult
from .config import Config
from .corrections import learned_terms
from .errors import CorrectionRejected
from .state import UNREADABLE, Checkpoint, ProfileFiles, Unreadable
from .store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Heard:
    text: str
    cache_id: str | None  # None when nothing was said
    audio: str
    seconds: float


@dataclass(frozen=True)
class Taught:
    label: str
    source: str  # accepted | typed | spoken
    loss: float | None  # None when accepted or rejected
    rejected: str | None  # why the label was refused, if it was
    pending: int  # corrections waiting for the next update
    update: UpdateResult | None  # the update this correction completed, if any
    terms: tuple[str, ...]  # words of the label the model got wrong


def _accepts(heard: Heard, label: str | None) -> bool:
    """Whether ``label`` says the transcript was right: no label, or the very same words."""
    return label is None or label.strip() == heard.text.strip()


class Session:
    def __init__(self, agent: ASRAgent, store: Store, files: ProfileFiles, profile: str, command: str):
        self.agent, self.store, self.files, self.profile = agent, store, files, profile
        self.cache_identity = {**agent.identity(), "mode": agent.config.training.mode}
        self.store.ensure_profile(profile, self.cache_identity["model"], agent.config.training.mode)
        self.session_id = store.start_session(profile, command)
        self.learn_weights = True  # False: a baseline that only fills the glossary (--no-learn)
        self._resume()

    @classmethod
    def open(cls, state_dir: Path, profile: str, config: Config, command: str, *, lock_timeout: float = 0.0, seed: int = 0) -> Session:
        store = Store.open(Path(state_dir), lock_timeout=lock_timeout)
        try:
            files = ProfileFiles(Path(state_dir), profile)
            return cls(ASRAgent(config=config, seed=seed), store, files, profile, command)
        except BaseException:
            store.close()
            raise

    def _resume(self) -> None:
        agent, files = self.agent, self.files
        files.remove_temp_files()  # left by a process killed mid-write; we hold the lock
        checkpoint, unreadable = files.latest_checkpoint(agent.identity())
        if unreadable:
            self._set_aside_checkpoints(checkpoint, unreadable)
        applied: list[str] = []
        if checkpoint is not None:
            agent.load_adapter_state(checkpoint.tensors, checkpoint.step)
            applied = json.loads(checkpoint.meta.get("applied", "[]"))
            self._record_if_unrecorded(checkpoint, len(applied))
        # Corrections the newest checkpoint already holds (a crash before the store heard of it).
        self.store.set_status(applied, "applied")
        files.drop_pending(applied)
        self._restore_pending()
        agent.taught_terms.update(t.term for t in self.store.terms(self.profile))  # for the term guard
        for done in self.store.interactions(self.profile):  # the words earlier corrections replaced, for the guard too
            if done.source != "accepted" and done.status != "rejected" and done.hypothesis and done.label:
                agent.note_misheard(done.hypothesis, done.label, learned_terms(done.hypothesis, done.label))
        self.refresh_glossary()

    def _set_aside_checkpoints(self, kept: Checkpoint | None, unreadable: list[Unreadable]) -> None:
        """Move checkpoints that cannot be read out of the way, and tell the store what that undid.

        They are never overwritten (the next update would reuse their step numbers) nor deleted.
        The corrections applied after the checkpoint that is loaded are not in the adapter any
        more: those whose spilled copy is still on disk go back to pending and are learned again;
        the others are recorded as rolled back, with the reason.
        """
        kept_step, since = (kept.step, float(kept.meta.get("created_at", 0))) if kept else (0, 0.0)
        for bad in unreadable:
            moved = self.files.set_aside(bad.path)
            log.warning("adapter checkpoint %s is unreadable (%s); moved to %s, going on from step %d", bad.path.name, bad.reason, moved, kept_step)
        reason = f"checkpoint {unreadable[0].path.name} could not be read (moved to {unreadable[0].path.parent / UNREADABLE})"
        lost = [row.cache_id for row in self.store.interactions(self.profile) if row.status == "applied" and row.created_at > since]
        spilled = {path.stem for path in self.files.pending_paths()}
        self.store.set_status([i for i in lost if i in spilled], "pending")
        self.store.set_status([i for i in lost if i not in spilled], "rolled_back", reason)
        self.store.forget_checkpoints_after(self.profile, kept_step)
        self.store.record_update(self.profile, step=kept_step, loss=None, n_interactions=len(lost), status="rolled_back", reason=reason)

    def _record_if_unrecorded(self, checkpoint: Checkpoint, corrections: int) -> None:
        """A process stopped between saving a checkpoint and recording it: record the update now."""
        if any(row.step == checkpoint.step for row in self.store.checkpoints(self.profile)):
            return
        self.store.record_checkpoint(self.profile, checkpoint.step, checkpoint.path)
        self.store.record_update(self.profile, step=checkpoint.step, loss=None, n_interactions=corrections, status="applied",
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
        self.agent.glossary = self.store.glossary(self.profile)  # the prompt takes what it has room for

    # ---------------------------------------------------------------- the loop

    def hear(self, audio, name: str | None = None) -> Heard:
        started = time.perf_counter()
        text, cache_id = self.agent.infer(audio, cache_logits=True)
        return Heard(text, cache_id, name or (str(audio) if isinstance(audio, (str, Path)) else "<array>"), time.perf_counter() - started)

    def hear_correction(self, audio, heard: Heard) -> str:
        """The label a spoken correction gives; CorrectionRejected (saying what was heard) when it gives none.

        A correction heard as the very words of the transcript gives none: the user said it was
        wrong and was misheard the same way again ("No, I meant Cilium" heard as "…Silium"), and
        taking it as an accepted transcript would keep the mistake as a canary. Unless it was
        spelled out: then the transcript already holds the word the user spelled.
        """
        from .corrections import holds_spelling, parse_spoken_correction

        spoken = self.agent.transcribe_correction(audio, heard.text)
        try:
            label = parse_spoken_correction(spoken, heard.text, self._attempt(heard), self.agent.glossary).label
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
            return Taught(heard.text, source, None, "nothing was heard", len(self.agent.pending), None, ())
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
            terms = self._remember_terms(tuple(learned_terms(heard.text, label)))
            self._record(heard, label, source, "rejected", reason="not learned (--no-learn)")
            return Taught(label, source, None, None, 0, None, terms)
        try:
            return self._learn(heard, label, source)
        except CorrectionRejected as error:
            return self._reject(heard, label, source, str(error))

    def will_update(self, heard: Heard, label: str | None) -> bool:
        """Whether teaching ``label`` now would run an update (it takes a moment: say so first)."""
        return self.learns_from(heard, label) and self.agent.ready_with(correction=not _accepts(heard, label))

    def learns_from(self, heard: Heard, label: str | None) -> bool:
        """Whether teaching ``label`` would accumulate a loss (and so may run an update)."""
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
        return learn and self.agent.holds_taught_term(heard.text)

    def _learn(self, heard: Heard, label: str, source: str, confirms: bool = False) -> Taught:
        """Accumulate ``label``'s loss from the cache, spill it, record it pending; update when enough are.

        Raises ``CorrectionRejected`` (nothing learned or recorded) for a label the agent refuses.
        """
        started = time.perf_counter()
        loss = self.agent.compute_loss_from_cache(heard.cache_id, label, confirms=confirms)
        entry = self.agent.pending[-1]
        self.files.spill(self.agent.cache.get(heard.cache_id), entry.label, self.cache_identity)
        self._record(heard, entry.label, source, "pending", loss=float(loss), update_ms=1000 * (time.perf_counter() - started))
        terms = self._remember_terms(entry.terms)
        update = self._step_if_ready()
        return Taught(entry.label, source, float(loss), None, len(self.agent.pending), update, terms)

    def _remember_terms(self, terms: tuple[str, ...]) -> tuple[str, ...]:
        """Keep ``terms`` in the profile's glossary (the store counts them); return them."""
        if terms:
            self.store.add_terms(self.profile, list(terms))
            self.refresh_glossary()
        return terms

    def step_now(self) -> UpdateResult | None:
        """Update on whatever is pending, even fewer than ``accumulation_steps`` corrections."""
        return self._step_if_ready(force=True)

    def _accept(self, heard: Heard) -> Taught:
        self.agent.accept(heard.cache_id)
        self._record(heard, heard.text, "accepted", "accepted")
        return Taught(heard.text, "accepted", None, None, len(self.agent.pending), None, ())

    def _reject(self, heard: Heard, label: str, source: str, reason: str) -> Taught:
        self._record(heard, label, source, "rejected", reason=reason)
        return Taught(label, source, None, reason, len(self.agent.pending), None, ())

    def _record(self, heard: Heard, label: str, source: str, status: str, **extra) -> None:
        self.store.add_interaction(
            self.session_id, self.profile, cache_id=heard.cache_id, audio=heard.audio, hypothesis=heard.text,
            label=label, source=source, status=status, infer_ms=1000 * heard.seconds, **extra,
        )  # fmt: skip

    def _step_if_ready(self, force: bool = False) -> UpdateResult | None:
        if not self.agent.step_if_ready(force):
            return None
        update = self.agent.last_update
        ids = list(update.corrections)
        if update.rolled_back:
            status = "rolled_back"
        else:
            status = "applied"
            path = self.files.save_checkpoint(update.step, self.agent.adapter_state(), self.agent.identity(), ids)
            self.store.record_checkpoint(self.profile, update.step, path)
        self.store.record_update(
            self.profile, step=update.step, loss=update.loss, n_interactions=len(ids), status=status, reason=update.undone,
            duration_ms=1000 * update.seconds, canary_before=update.canary_before, canary_after=update.canary_after,
        )  # fmt: skip
        self.store.set_status(ids, status)
        self.files.drop_pending(ids)
        self.refresh_glossary()
        return update

    def close(self) -> None:
        try:
            self.store.end_session(self.session_id)
        finally:
            self.store.close()

