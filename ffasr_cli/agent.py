"""``ASRAgent``: transcribe, cache what decoding computed, learn from corrections without the audio.

The whole online-learning surface is four calls::

    text, cache_id = agent.infer(audio)                       # decode + keep what an update needs
    loss = agent.compute_loss_from_cache(cache_id, fixed)     # loss from the cache; backward done
    agent.step_if_ready()                                     # an update after N corrections
    agent.accept(cache_id)                                    # (optional) the transcript was right

Persistence (adapter files, pending corrections on disk, the SQLite store) lives in
``state.Workspace``; the agent only holds the model and what is in memory.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import whisper
from whisper.decoding import DecodingOptions

from .align import split_label
from .audio import is_silent, load_audio, read_windows
from .cache import CacheEntry, InteractionCache
from .capture import WindowCapture, decode_window, decode_with_base, encode
from .config import Config, load_config
from .corrections import check_correction, holds_spelling, learned_terms
from .errors import ConfigError, CorrectionRejected, FfasrError
from .evaluate import written_terms
from .guard import added_terms, guarded_text, misheard_as, word_logprobs
from .lora import disabled_adapters
from .models import load_model, resolve_device
from .modes import MODES, Target


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


@dataclass(frozen=True)
class UpdateResult:
    step: int  # optimizer updates applied so far (rolled-back ones not counted)
    loss: float  # mean loss of the corrections in the update, before it
    corrections: tuple[str, ...]  # cache ids used
    labels: tuple[tuple[str, str], ...]  # (hypothesis, label) of each correction used
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


class ASRAgent:
    def __init__(
        self,
        model_name: str | None = None,
        accumulation_steps: int | None = None,
        *,
        mode: str | None = None,
        device: str | None = None,
        config: str | Path | dict | Config | None = None,
        seed: int = 0,
        **training_options,
    ):
        """``model_name`` (default ``tiny.en``) and ``accumulation_steps`` (default 4) override the
        config, as do ``mode``, ``device`` and any ``training:``/``decoding:`` key given by name."""
        self.config = load_config(
            config, model=model_name, accumulation_steps=accumulation_steps, mode=mode, device=device, **training_options
        )
        self.device = resolve_device(self.config.device)
        self.rng = random.Random(seed)
        language = self.config.decoding.language
        if language not in whisper.tokenizer.LANGUAGES and language.lower() not in whisper.tokenizer.TO_LANGUAGE_CODE:
            raise ConfigError(f"decoding.language {language[:40]!r} is not a language Whisper knows (en, de, fr, …; or English, German, …)")
        self.model = load_model(self.config.model, self.device)
        self.tokenizer = whisper.tokenizer.get_tokenizer(
            self.model.is_multilingual, num_languages=self.model.num_languages, language=self.config.decoding.language, task="transcribe"
        )
        t = self.config.training
        sot = tuple(self.tokenizer.sot_sequence_including_notimestamps)
        self.mode = MODES[t.mode](self.model, t, sot, self.tokenizer.eot)
        if t.mode == "logits" and self.config.decoding.beam_size:
            raise FfasrError("logits mode caches the greedy path: set decoding.beam_size to null")
        with torch.random.fork_rng(devices=[]):  # seeded adapter init, without touching the caller's RNG
            torch.manual_seed(seed)
            self.params = self.mode.install()
        self.trainable = {name: p for name, p in self.model.named_parameters() if p.requires_grad}
        learning_rate = t.head_learning_rate if t.mode == "logits" else t.learning_rate
        self.optimizer = torch.optim.AdamW(self.params, lr=learning_rate, weight_decay=t.weight_decay)
        self.cache = InteractionCache(t.max_cache_size)
        self.cache_dtype = getattr(torch, t.cache_dtype)
        self.pending: list[Example] = []
        self.accumulated = 0  # pending examples whose gradients are in .grad right now
        self.replay: deque[Example] = deque(maxlen=t.replay_size)
        self.canaries: deque[Example] = deque(maxlen=t.canary_size)
        self.glossary: list[str] = []  # learned and added terms, most used first; the prompt takes what fits
        self.taught_terms: set[str] = set()  # words corrections taught: the term guard lets the adapter write only these
        self.misheard: dict[str, set[str]] = {}  # taught term (key) -> the words corrections of it replaced, for the guard
        self.steps = 0
        self.last_update: UpdateResult | None = None

    # ---------------------------------------------------------------- decoding

    def glossary_prompt(self) -> str | None:
        terms = self.prompt_terms()
        return f"Glossary: {', '.join(terms)}." if terms and self.config.decoding.glossary else None

    def prompt_terms(self) -> list[str]:
        """The glossary terms the prompt has room for (``glossary_max_terms``), in the glossary's order.

        Over the limit, names and rare words take the room first: in a voice the model mishears,
        corrections also teach the common words it got wrong ("another", "six": 17-24 terms a
        slice where 4-10 names were taught, tuning.md), and a name corrected once must not fall
        out of the prompt for them.
        """
        limit = self.config.decoding.glossary_max_terms
        if len(self.glossary) <= limit:
            return list(self.glossary)
        kept = set(sorted(self.glossary, key=self._is_common_word)[:limit])  # stable: each group keeps its order
        return [t for t in self.glossary if t in kept]

    def _is_common_word(self, term: str) -> bool:
        # a lowercase word the tokenizer has as one token is everyday English; a name is capitalized
        return term.isalpha() and term.islower() and len(self.tokenizer.encode(" " + term)) == 1

    def decoding_options(self, prompt: str | None) -> DecodingOptions:
        d = self.config.decoding
        return DecodingOptions(language=d.language, without_timestamps=True, fp16=self.device != "cpu", beam_size=d.beam_size, prompt=prompt)

    def _decode(self, audio, keep: str | None, prompt: str | None, glossary: str | None = None) -> tuple[WindowCapture, ...]:
        options = self.decoding_options(prompt)
        # A quiet 30 s window (all of a silent clip, or a pause in a long one) is skipped: Whisper
        # would only hallucinate there.
        silence = self.config.decoding.silence_dbfs
        samples = read_windows(audio, max_seconds=self.config.decoding.max_audio_seconds)
        captures = (self._decode_window(w, options, keep, glossary) for w in samples if not is_silent(w, silence))
        return tuple(c for c in captures if not self._no_speech(c))

    def _decode_window(self, samples: np.ndarray, options: DecodingOptions, keep: str | None, glossary: str | None) -> WindowCapture:
        """Decode one window; once the adapter has been updated, check it against the base model.

        Same encoder output, the decoder with the adapter and without, as one batch of two
        (``capture.decode_with_base``):
        - a repetition loop: whisper's own transcribe() treats a gzip compression ratio above 2.4
          as a failed decode, and an adapter that over-learned a word can start one on unrelated
          speech (seen: "Xxxxxxx…" after learning "Xochitl"). The base decode is the answer,
          and the cache holds it.
        - the term guard (``decoding.term_guard``, ``guard.py``): the adapted words stand only
          where they agree with the base model or write a term a correction taught, with
          confidence (``decoding.term_min_logprob``), over words the base model was unsure of
          (``decoding.base_sure_logprob``) or that a correction of the term replaced
          (``decoding.misheard_min_logprob``).
        Before the first update the adapter is the identity: one decode.

        With a ``glossary`` prompt (the term guard on), a third reading: the base model prompted
        with the learned terms. The prompt never reaches the adapter (prompt and adapter together
        wrote terms into 38 of 490 sound-alike sentences, the adapter alone into 6: tuning.md,
        tenth session). The prompted reading passes the same guard as the adapter's, against the
        unprompted base reading; a term it writes where the adapted reading has none is added
        (``guard.added_terms``), unless the prompted reading loops.
        """
        mel, features = encode(self.model, samples, options.fp16)
        guard = self.steps and self.config.decoding.term_guard
        if guard:
            capture, base = decode_with_base(self.model, mel, features, options, keep, self.cache_dtype)
        else:
            capture = base = decode_window(self.model, mel, features, options, keep, self.cache_dtype)
        text = capture.text
        if self.steps and self._loops(capture):
            if not guard:
                with disabled_adapters(self.model):
                    base = decode_window(self.model, mel, features, options, keep, self.cache_dtype)
            return base
        if guard:
            text = self._guarded(base, capture, self.taught_terms)
        if glossary:
            with disabled_adapters(self.model):
                prompted = decode_window(self.model, mel, features, dataclasses.replace(options, prompt=glossary), None, self.cache_dtype)
            if not self._loops(prompted):
                terms = self.taught_terms | set(self.glossary)  # terms the user added were never taught
                text = added_terms(text, self._guarded(base, prompted, terms), terms)
        return dataclasses.replace(capture, text=text)

    def _loops(self, capture: WindowCapture) -> bool:
        return capture.compression_ratio > self.config.decoding.compression_ratio_threshold

    def _guarded(self, base: WindowCapture, reading: WindowCapture, terms: set[str]) -> str:
        """``reading`` where it agrees with ``base`` or writes one of ``terms`` with the confidence ``guard.py`` asks."""
        d = self.config.decoding
        return guarded_text(
            base.text, reading.text, terms,
            self._word_logprobs(reading), d.term_min_logprob, self._word_logprobs(base), d.base_sure_logprob,
            self.misheard, d.misheard_min_logprob,
        )  # fmt: skip

    def _word_logprobs(self, capture: WindowCapture) -> list[float] | None:
        if not capture.token_logprobs:  # no tokens
            return None
        return word_logprobs([self.tokenizer.decode([t]) for t in capture.tokens], capture.token_logprobs)

    def infer(self, audio: str | Path | np.ndarray, cache_logits: bool = True):
        """Transcribe ``audio`` (a path, or 16 kHz float32 samples).

        With ``cache_logits`` returns ``(text, cache_id)`` and keeps what the update mode needs
        (``cache_id`` is None when nothing was said); without, returns the text alone.
        """
        keep, glossary = self.mode.keeps if cache_logits else None, self.glossary_prompt()
        if self.config.decoding.term_guard:
            captures = self._decode(audio, keep, None, glossary)
        else:  # nothing is checked: the glossary is Whisper's prompt, as is (the prompt-only baseline)
            captures = self._decode(audio, keep, glossary)
        text = " ".join(c.text for c in captures).strip()
        if not cache_logits:
            return text
        if not text:
            return text, None
        return text, self.cache.add(captures).cache_id

    def attempt(self, cache_id: str) -> str | None:
        """What the adapter itself wrote for a cached interaction, if the term guard showed other words."""
        entry = self.cache.get(cache_id)
        if entry is None:
            return None
        attempt = " ".join(self.tokenizer.decode(list(w.tokens)).strip() for w in entry.windows).strip()
        return attempt if attempt != entry.text else None

    def transcribe_correction(self, audio: str | Path | np.ndarray, hypothesis: str) -> str:
        """A spoken correction, decoded with the glossary and the hypothesis as context; not cached.

        With that prompt Whisper sometimes stops after the spoken word and drops the letters
        that follow ("No, I said Zbigniew. Z, B, I, G, N, I, E, W." came out as "No, I said
        speak nef."): a reading without a spelling is checked against one without the prompt,
        and the spelling, the surest thing a user can say about a rare word, wins.
        """
        samples = load_audio(audio, max_seconds=self.config.decoding.max_audio_seconds)
        prompt = " ".join(p for p in (self.glossary_prompt(), hypothesis) if p) or None
        in_context = self._read(samples, prompt)
        if prompt is None or holds_spelling(in_context):
            return in_context
        plain = self._read(samples, None)
        return plain if holds_spelling(plain) else in_context

    def _read(self, audio, prompt: str | None) -> str:
        return " ".join(c.text for c in self._decode(audio, None, prompt)).strip()

    def _no_speech(self, capture) -> bool:
        # whisper's own rule: likely silence and not confidently decoded
        return capture.no_speech_prob > self.config.decoding.no_speech_threshold and capture.avg_logprob < -1.0

    # ---------------------------------------------------------------- learning

    def _entry(self, cache_id: str) -> CacheEntry:
        entry = self.cache.get(cache_id)
        if entry is None:
            raise FfasrError(f"no cached interaction {cache_id!r}: never cached, already used by an update, or evicted")
        return entry

    def example(self, entry: CacheEntry, label: str) -> Example:
        """Tokenize ``label`` per window of ``entry`` (words shared out by alignment)."""
        label = " ".join(label.split())
        shares = [label.split()]
        if len(entry.windows) > 1:
            shares = split_label([w.text.split() for w in entry.windows], label.split())
        limit = self.model.dims.n_text_ctx // 2 - len(self.mode.sot_sequence)
        targets = []
        for window, words in zip(entry.windows, shares):
            tokens = tuple(self.tokenizer.encode(" " + " ".join(words))) + (self.tokenizer.eot,) if words else (self.tokenizer.eot,)
            if len(tokens) > limit:
                raise CorrectionRejected(f"correction too long for one 30 s window ({len(tokens)} tokens, at most {limit})")
            targets.append(Target(window, tokens))
        return Example(entry.cache_id, entry.text, label, tuple(targets), tuple(learned_terms(entry.text, label)))

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
        (losses.sum() / self.config.training.accumulation_steps).backward()
        return losses.tolist()

    def compute_loss_from_cache(self, cache_id: str, ground_truth_text: str, *, confirms: bool = False) -> torch.Tensor:
        """Loss of ``ground_truth_text`` from the cache (no audio), with ``loss / N`` backpropagated.

        ``confirms``: the user accepted the transcript (it writes a learned term); it rides along
        with the next batch instead of counting as one of its ``accumulation_steps`` corrections.
        Raises ``CorrectionRejected`` for a label that is not a correction of what was heard.
        """
        entry = self._entry(cache_id)
        check_correction(entry.text, ground_truth_text, min_similarity=self.config.training.min_similarity)
        example = dataclasses.replace(self.example(entry, ground_truth_text), confirms=confirms)
        self._accumulate(example)
        return torch.tensor(example.loss)

    def _accumulate(self, example: Example) -> None:
        if self.accumulated != len(self.pending):  # gradients were dropped (an interrupted update)
            self._recompute_gradients()
        try:
            (example.loss,) = self._backward([example])
        except NonFiniteLoss as error:
            raise CorrectionRejected(f"nothing was learned from this correction: {error}") from None
        self.taught_terms.update(example.terms)  # the term guard lets the adapter write these
        self.note_misheard(example.hypothesis, example.label, example.terms)
        self.pending.append(example)
        self.accumulated += 1

    def note_misheard(self, hypothesis: str, label: str, terms: Iterable[str]) -> None:
        """Remember which words of ``hypothesis`` the ``terms`` of ``label`` replaced (``guard.misheard_as``)."""
        for term, words in misheard_as(hypothesis, label, terms).items():
            self.misheard.setdefault(term, set()).update(words)

    def _recompute_gradients(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        for example in self.pending:
            self._backward([example])
        self.accumulated = len(self.pending)

    def holds_taught_term(self, text: str) -> bool:
        """Whether ``text`` writes a term that corrections taught."""
        return bool(written_terms(text, self.taught_terms))

    def accept(self, cache_id: str) -> None:
        """The transcript was right: keep it as a canary (checked before and after each update)."""
        entry = self._entry(cache_id)
        try:
            self.canaries.append(self.example(entry, entry.text))
        except CorrectionRejected:  # a window decoded to the length limit cannot be scored: no canary
            pass
        self.cache.discard([cache_id])

    def _batch_complete(self, added: int = 0, added_corrections: int = 0) -> bool:
        """Whether the pending examples (and ``added`` more, of them ``added_corrections`` corrections) make a batch.

        Corrections set the pace; confirmed sentences ride along (up to as many again). Counted
        as corrections, they added updates that taught nothing new and inserted learned terms
        into sound-alikes (tuning.md).
        """
        n = self.config.training.accumulation_steps
        corrections = sum(not e.confirms for e in self.pending) + added_corrections
        return corrections >= n or len(self.pending) + added >= 2 * n

    def ready_with(self, correction: bool) -> bool:
        """Whether one more pending example (a correction, or a confirmed sentence) completes the batch."""
        return self._batch_complete(added=1, added_corrections=int(correction))

    def step_if_ready(self, force: bool = False) -> bool:
        """After ``accumulation_steps`` corrections (or anything pending, with ``force``), run one update; True when it ran."""
        if not self.pending or not (force or self._batch_complete()):
            return False
        self.last_update = self._update()
        return True

    def _update(self) -> UpdateResult:
        """One update, all or nothing: an exception (Ctrl-C included) restores the weights.

        An update is undone, and recorded with the reason, when
        - a loss or the gradient is not finite: one optimizer step with it writes NaN into every
          weight, and a profile saved that way is lost for good;
        - a weight is not finite after the step (a learning rate far too high);
        - the canaries' loss (accepted transcripts) rose by more than ``canary_tolerance``, or is
          not finite: the update made ordinary speech worse.
        """
        t = self.config.training
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
            replayed=len(replayed),
            seconds=time.perf_counter() - started,
            canary_before=canary_before,
            canary_after=canary_after,
            undone=undone,
        )

    def _train(self, batch: list[Example], replayed: list[Example]) -> str | None:
        """The optimizer steps of one update; returns why it must be undone, or None."""
        t = self.config.training
        try:
            self._backward(replayed)  # earlier corrections, so that new ones do not push them out
            for inner in range(t.inner_steps):
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
        if after - before > self.config.training.canary_tolerance:
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

    # ---------------------------------------------------------------- adapter

    def identity(self) -> dict:
        """What an adapter file must match to be loaded into this agent."""
        t = self.config.training
        if t.mode == "logits":
            adapter = f"head/r{t.head_rank}"
        else:
            adapter = f"lora/r{t.lora_rank}/{','.join(t.lora_targets)}" + ("+encoder" if t.mode == "full" and not t.freeze_encoder else "")
        return {"model": self.config.model, "dims": vars(self.model.dims), "adapter": adapter}

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

    def restore_pending(self, entry: CacheEntry, label: str, confirms: bool = False) -> None:
        """Put a correction (or confirmed sentence) saved before a restart back into the cache and the accumulation."""
        self.cache.add(entry.windows, cache_id=entry.cache_id)
        self.compute_loss_from_cache(entry.cache_id, label, confirms=confirms)
