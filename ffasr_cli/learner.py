"""``Learner``: everything an update needs, and the update itself.

It owns the corrections waiting for an update (with their gradients accumulated), the replay
buffer of earlier corrections, the canaries (accepted transcripts that guard every update), the
optimizer, the step count, and what the corrections taught (the terms, and the words each term
was misheard as, which the term guard reads). ``state_dict()`` is all of it, so that a process
started on a saved state continues exactly where the last one stopped.

The learning rules, as sentences before the code that keeps them:

- A correction's loss comes from the cache, never from the audio; its gradient (loss / N) is
  accumulated at once, and N = ``accumulation_steps`` corrections make an update.
- Confirmed sentences (accepted transcripts that write a learned term) ride along with the next
  update without counting towards N, up to as many again.
- An update mixes in up to ``replay_per_step`` earlier corrections, so that new ones do not push
  them out, and takes ``inner_steps`` optimizer steps on the same batch.
- An update is undone when a loss or the gradient is not finite, when a weight is not finite after
  a step, or when the canaries' loss rose by more than ``canary_tolerance`` (or is not finite).
- Anything that interrupts an update (Ctrl-C included) undoes it; the corrections stay pending.
- A taught term the adapter itself wrote in sentences the user accepted is counted as written by
  the weights (the glossary reading stops prompting it after ``decoding.glossary_drop_after``); a
  correction that teaches the term again starts the count over.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .align import split_label
from .cache import CacheEntry, InteractionCache
from .config import TrainingConfig
from .corrections import learned_terms
from .evaluate import written_terms
from .errors import CorrectionRejected, FfasrError
from .guard import FixedBack, fixed_back, misheard_as, word_key
from .modes import Target, UpdateMode


@dataclass
class Example:
    """A labelled interaction: waiting for an update (pending), kept for replay, or a canary."""

    cache_id: str
    hypothesis: str
    label: str
    targets: tuple[Target, ...]
    terms: tuple[str, ...] = ()  # what the label taught (``learned_terms``)
    loss: float = float("nan")
    confirms: bool = False  # an accepted transcript learned from (it holds a learned term), not a correction

    @property
    def entry(self) -> CacheEntry:
        return CacheEntry(self.cache_id, tuple(t.window for t in self.targets))


@dataclass(frozen=True)
class UpdateResult:
    step: int  # optimizer updates applied so far (rolled-back ones not counted)
    loss: float  # mean loss of the corrections in the update, before it
    corrections: tuple[str, ...]  # cache ids used
    labels: tuple[tuple[str, str], ...]  # (hypothesis, label) of each correction used
    terms: tuple[str, ...]  # what the corrections used taught (``learned_terms``)
    replayed: int
    seconds: float
    canary_before: float | None
    canary_after: float | None
    undone: str | None = None  # why the update was rolled back; None when it was applied

    @property
    def rolled_back(self) -> bool:
        return self.undone is not None


class NonFiniteLoss(ArithmeticError):
    """A loss that is NaN or infinite: its gradient would write NaN into every weight."""


class UpdateAbandoned(Exception):
    """An update stopped half-way because the session is ending (``Learner.abandon``); it was undone."""


class Learner:
    def __init__(self, mode: UpdateMode, tokenizer, config: TrainingConfig, cache: InteractionCache, params: list, seed: int = 0):
        self.mode, self.tokenizer, self.config, self.cache = mode, tokenizer, config, cache
        self.params = params
        self.trainable = {name: p for name, p in mode.model.named_parameters() if p.requires_grad}
        learning_rate = config.head_learning_rate if config.mode == "logits" else config.learning_rate
        self.optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=config.weight_decay)
        self.rng = random.Random(seed)
        self.pending: list[Example] = []
        self.accumulated = 0  # pending examples whose gradients are in .grad right now
        self.replay: deque[Example] = deque(maxlen=config.replay_size)
        self.canaries: deque[Example] = deque(maxlen=config.canary_size)
        self.taught_terms: set[str] = set()  # words corrections taught: the term guard lets the adapter write only these
        self.misheard: dict[str, set[str]] = {}  # taught term (key) -> the words corrections of it replaced, for the guard
        self.fixed_back: FixedBack = {}  # taught term (key) -> words the user corrected it back to, with their contexts
        self.written: dict[str, set[str]] = {}  # taught term (key) -> accepted sentences (cache ids) the adapter wrote it in, since its last correction
        self.steps = 0
        self.last_update: UpdateResult | None = None
        self.abandon = threading.Event()  # set from another thread: a running update stops and is undone

    # ---------------------------------------------------------------- examples

    def example(self, entry: CacheEntry, label: str, confirms: bool = False) -> Example:
        """Tokenize ``label`` per window of ``entry`` (words shared out by alignment)."""
        label = " ".join(label.split())
        shares = [label.split()]
        if len(entry.windows) > 1:
            shares = split_label([w.text.split() for w in entry.windows], label.split())
        limit = self.mode.model.dims.n_text_ctx // 2 - len(self.mode.sot_sequence)
        targets = []
        for window, words in zip(entry.windows, shares):
            tokens = tuple(self.tokenizer.encode(" " + " ".join(words))) + (self.tokenizer.eot,) if words else (self.tokenizer.eot,)
            if len(tokens) > limit:
                raise CorrectionRejected(f"correction too long for one 30 s window ({len(tokens)} tokens, at most {limit})")
            targets.append(Target(window, tokens))
        # Words put back where a taught term was shown, that corrections of the term had replaced
        # ("Cuba Nates" for Kubernetes), undo it and teach no term of their own; a new name put in
        # its place ("Grafana") is a term. (An everyday word, "Seth", never is: ``learned_terms``.)
        put_back = {w for term, words in fixed_back(entry.text, label, self.taught_terms).items() for w in words if w in self.misheard.get(term, ())}
        terms = tuple(t for t in learned_terms(entry.text, label, self.tokenizer) if word_key(t) not in put_back)
        return Example(entry.cache_id, entry.text, label, tuple(targets), terms, confirms=confirms)

    def entry(self, cache_id: str) -> CacheEntry:
        entry = self.cache.get(cache_id)
        if entry is None:
            raise FfasrError(f"no cached interaction {cache_id!r}: never cached, already used by an update, or evicted")
        return entry

    # ---------------------------------------------------------------- accumulation

    def _losses(self, examples: list[Example]) -> torch.Tensor:
        """Each example's loss (the mean over its windows), from one batched pass over the group.

        The group's cross-attention keys/values (and base logits) are kept for the rest of the
        update: an update passes the same groups again (pending corrections one by one, as they
        were accumulated; the replayed ones together; the canaries together).
        """
        per_target = self.mode.losses([t for e in examples for t in e.targets], reuse=True)
        owner = torch.tensor([row for row, e in enumerate(examples) for _ in e.targets], device=per_target.device)
        windows = torch.tensor([len(e.targets) for e in examples], device=per_target.device)
        return per_target.new_zeros(len(examples)).index_add(0, owner, per_target) / windows

    def _backward(self, examples: list[Example]) -> list[float]:
        """Backpropagate the group's losses / N (N = ``accumulation_steps``); return each example's loss."""
        if not examples:
            return []
        losses = self._losses(examples)
        if not torch.isfinite(losses).all():  # checked before backward: .grad stays clean
            raise NonFiniteLoss(f"a loss was not finite ({', '.join(f'{x:.3g}' for x in losses.tolist())})")
        (losses.sum() / self.config.accumulation_steps).backward()
        return losses.tolist()

    def learn(self, example: Example) -> float:
        """Accumulate ``example``'s gradient; it waits for the next update. Returns its loss."""
        if self.accumulated != len(self.pending):  # gradients were dropped (an interrupted update)
            self._recompute_gradients()
        try:
            (example.loss,) = self._backward([example])
        except NonFiniteLoss as error:
            raise CorrectionRejected(f"nothing was learned from this correction: {error}") from None
        self.taught_terms.update(example.terms)  # the term guard lets the adapter write these
        self.note_misheard(example.hypothesis, example.label, example.terms)
        self.note_fixed_back(example.hypothesis, example.label, example.entry.base_text)
        self.note_written(example)
        self.pending.append(example)
        self.accumulated += 1
        return example.loss

    def note_misheard(self, hypothesis: str, label: str, terms: Iterable[str]) -> None:
        """Remember which words of ``hypothesis`` the ``terms`` of ``label`` replaced (``guard.misheard_as``)."""
        for term, words in misheard_as(hypothesis, label, terms).items():
            self.misheard.setdefault(term, set()).update(words)

    def note_fixed_back(self, hypothesis: str, label: str, base: str = "") -> None:
        """Remember where ``label`` put back the words ``hypothesis`` had shown a taught term over,
        and those the base model wrote there (``base``, if known; ``guard.fixed_back``)."""
        for term, words in fixed_back(hypothesis, label, self.taught_terms, base).items():
            for word, context in words.items():
                self.fixed_back.setdefault(term, {}).setdefault(word, set()).update(context)

    def note_written(self, example: Example) -> None:
        """Count ``example`` for the taught terms the adapter's own reading wrote, if the user accepted
        it; a correction teaching a term starts its count over. (Sets of cache ids: an example learned
        again after a restart counts once.)"""
        if not example.confirms:
            for term in example.terms:
                self.written.pop(word_key(term), None)
            return
        own = " ".join(self.tokenizer.decode(list(target.window.tokens)) for target in example.targets)
        for term in written_terms(own, self.taught_terms):
            self.written.setdefault(word_key(term), set()).add(example.cache_id)

    def vocabulary_is(self, terms: Iterable[str]) -> None:
        """The profile's vocabulary decides which terms the guard lets the adapter write: a term
        removed from it (``ffasr vocab remove``) is forgotten here too, one added is let through."""
        self.taught_terms = set(terms)
        keys = {word_key(t) for t in self.taught_terms}
        self.misheard = {key: words for key, words in self.misheard.items() if key in keys}
        self.fixed_back = {key: words for key, words in self.fixed_back.items() if key in keys}
        self.written = {key: ids for key, ids in self.written.items() if key in keys}

    def _recompute_gradients(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        for example in self.pending:
            self._backward([example])
        self.accumulated = len(self.pending)

    def keep_canary(self, entry: CacheEntry) -> bool:
        """Keep an accepted transcript as a canary (checked before and after each update); False if it cannot be scored."""
        try:
            self.canaries.append(self.example(entry, entry.text))
        except CorrectionRejected:  # a window decoded to the length limit cannot be scored
            return False
        return True

    # ---------------------------------------------------------------- updates

    def _batch_complete(self, added: int = 0, added_corrections: int = 0) -> bool:
        """Whether the pending examples (and ``added`` more, of them ``added_corrections`` corrections) make a batch.

        Corrections set the pace; confirmed sentences ride along (up to as many again). Counted
        as corrections, they added updates that taught nothing new and inserted learned terms
        into sound-alikes (docs/decisions.md, ``training.learn_confirmed``).
        """
        n = self.config.accumulation_steps
        corrections = sum(not e.confirms for e in self.pending) + added_corrections
        return corrections >= n or len(self.pending) + added >= 2 * n

    def until_update(self, queued: Sequence[Example] = ()) -> tuple[int, int]:
        """How many more corrections complete the batch, and how many more examples of either kind,
        once the ``queued`` examples (given, not learned yet) are learned too; 0 when it is complete."""
        limit = 2 * self.config.accumulation_steps
        added, corrections = len(queued), sum(not e.confirms for e in queued)
        more = next(k for k in range(limit + 1) if self._batch_complete(added + k, corrections + k))
        either = next(k for k in range(limit + 1) if self._batch_complete(added + k, corrections))
        return more, either

    def step_if_ready(self, force: bool = False) -> bool:
        """After ``accumulation_steps`` corrections (or anything pending, with ``force``), run one update; True when it ran."""
        if not self.pending or not (force or self._batch_complete()):
            return False
        self.last_update = self._update()
        return True

    def _update(self) -> UpdateResult:
        """One update, all or nothing: an exception (Ctrl-C included) restores the weights."""
        t = self.config
        started = time.perf_counter()
        if self.accumulated != len(self.pending):
            self._recompute_gradients()
        batch = list(self.pending)
        replayed = self.rng.sample(list(self.replay), min(t.replay_per_step, len(self.replay)))
        snapshot = self._snapshot()
        canary_before = canary_after = None
        try:
            canary_before = self._canary_loss()
            undone = self._train(batch, replayed)
            if undone is None:
                canary_after = self._canary_loss()
                undone = self._canary_verdict(canary_before, canary_after)
        except BaseException:
            self._restore(snapshot)
            raise
        finally:
            self.mode.forget()
        if undone is not None:
            self._restore(snapshot)
        else:
            self.steps += 1
            self.replay.extend(batch)
        self.pending, self.accumulated = [], 0
        self.cache.discard(e.cache_id for e in batch)
        return UpdateResult(
            step=self.steps,
            loss=float(np.mean([e.loss for e in batch])),
            corrections=tuple(e.cache_id for e in batch),
            labels=tuple((e.hypothesis, e.label) for e in batch),
            terms=tuple(dict.fromkeys(term for e in batch for term in e.terms)),
            replayed=len(replayed),
            seconds=time.perf_counter() - started,
            canary_before=canary_before,
            canary_after=canary_after,
            undone=undone,
        )

    def _train(self, batch: list[Example], replayed: list[Example]) -> str | None:
        """The optimizer steps of one update; returns why it must be undone, or None."""
        t = self.config
        try:
            self._backward(replayed)  # earlier corrections, so that new ones do not push them out
            for inner in range(t.inner_steps):
                if self.abandon.is_set():
                    raise UpdateAbandoned("the update was stopped: the session is ending")
                if inner > 0:  # the same batch again, from the cache
                    for example in batch:
                        self._backward([example])
                    self._backward(replayed)
                norm = torch.nn.utils.clip_grad_norm_(self.params, t.grad_clip)
                if not torch.isfinite(norm):
                    return f"the gradient was not finite (norm {norm.item():.3g})"
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                if not all(torch.isfinite(p).all() for p in self.params):
                    return "a weight was not finite after the step (is training.learning_rate far too high?)"
        except NonFiniteLoss as error:
            return str(error)
        return None

    def _canary_verdict(self, before: float | None, after: float | None) -> str | None:
        """Why the canaries say undo (their loss rose too much, or is not a number), or None."""
        if before is None:
            return None
        if not (np.isfinite(before) and np.isfinite(after)):
            return f"canary loss was not finite ({before:.3f} -> {after:.3f})"
        if after - before > self.config.canary_tolerance:
            return f"canary loss rose {before:.3f} -> {after:.3f}"
        return None

    @torch.no_grad()
    def _canary_loss(self) -> float | None:
        if not self.canaries:
            return None
        return self._losses(list(self.canaries)).mean().item()

    def _snapshot(self) -> tuple[list[torch.Tensor], dict]:
        return [p.detach().clone() for p in self.params], copy.deepcopy(self.optimizer.state_dict())

    def _restore(self, snapshot) -> None:
        weights, optimizer_state = snapshot
        with torch.no_grad():
            for p, saved in zip(self.params, weights):
                p.copy_(saved)
        self.optimizer.load_state_dict(optimizer_state)
        self.optimizer.zero_grad(set_to_none=True)
        self.accumulated = 0  # gradients are gone; the pending examples are not

    # ---------------------------------------------------------------- state

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The trained tensors, by name: all that distinguishes this model from the base."""
        return {name: p.detach().float().cpu().contiguous() for name, p in self.trainable.items()}

    def load_adapter_state(self, tensors: dict[str, torch.Tensor], step: int) -> None:
        missing = set(self.trainable) ^ set(tensors)
        if missing:
            raise FfasrError(f"adapter does not fit this model (e.g. {sorted(missing)[0]})")
        with torch.no_grad():
            for name, p in self.trainable.items():
                p.copy_(tensors[name].to(p.device, p.dtype))
        self.steps = step

    def state_dict(self) -> dict:
        """Everything but the pending corrections, which are saved one by one as they come.

        The optimizer's moments are here, its settings are the config's. Replayed examples and
        canaries are named by cache id, with their cache entries and labels beside them
        (``examples``), so that a saver can keep each entry once.
        """
        return {
            "steps": self.steps,
            "adapter": self.adapter_state(),
            "optimizer": {i: {k: v.detach().clone() for k, v in m.items()} for i, m in self.optimizer.state_dict()["state"].items()},
            "rng": self.rng.getstate(),
            "replay": [{"cache_id": e.cache_id, "confirms": e.confirms, "loss": e.loss} for e in self.replay],
            "canaries": [e.cache_id for e in self.canaries],
            "examples": {e.cache_id: (e.entry, e.label) for e in (*self.replay, *self.canaries)},
            "taught_terms": sorted(self.taught_terms),
            "misheard": {term: sorted(words) for term, words in sorted(self.misheard.items())},
            "fixed_back": {term: {w: sorted(c) for w, c in sorted(words.items())} for term, words in sorted(self.fixed_back.items())},
            "written": {term: sorted(ids) for term, ids in sorted(self.written.items())},
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state``: adapter, optimizer, replay, canaries, what was taught, and the RNG.

        An example whose entry is missing from ``state["examples"]`` is left out (with fewer
        examples to replay or to check against, the next update still runs).
        """
        self.load_adapter_state(state["adapter"], state["steps"])
        self.optimizer.load_state_dict({"state": state["optimizer"], "param_groups": self.optimizer.state_dict()["param_groups"]})
        self.rng.setstate(_tuples(state["rng"]))
        examples = state["examples"]
        self.replay.clear()
        for row in state["replay"]:
            if row["cache_id"] in examples:
                entry, label = examples[row["cache_id"]]
                self.replay.append(_with_loss(self.example(entry, label, row["confirms"]), row["loss"]))
        self.canaries.clear()
        for cache_id in state["canaries"]:
            if cache_id in examples:
                self.keep_canary(examples[cache_id][0])
        self.taught_terms = set(state["taught_terms"])
        self.misheard = {term: set(words) for term, words in state["misheard"].items()}
        self.fixed_back = {term: {w: set(c) for w, c in words.items()} for term, words in state.get("fixed_back", {}).items()}  # none before fix-backs were kept
        self.written = {term: set(ids) for term, ids in state.get("written", {}).items()}  # none before written terms were counted


def _with_loss(example: Example, loss: float) -> Example:
    example.loss = loss
    return example


def _tuples(value):
    """``random.getstate()`` after a JSON round trip (lists where it had tuples)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
