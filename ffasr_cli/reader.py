"""``Reader``: decoding — the readings of each window and the term guard that combines them.

Each 30 s window is encoded once and read up to three times from that encoder output, by small
``Reading`` classes wired by one ``WindowTask`` (the shape of whisper's ``DecodingTask``); adding
or dropping one is a line in ``Reader.readings``:

- ``AdaptedReading``: the decoder with the adapter (what the cache keeps for an update) and,
  once the adapter has been updated, the decoder without it, in the same batch (the base reading);
- ``GlossaryReading``: the base decoder prompted with the learned terms (``decoding.glossary``).

The term guard (``guard.py``) shows the adapted words only where they agree with the base reading
or confidently write a term a correction taught; the glossary reading adds a term only under the
same test. What the learner taught (the adapter's weights, the terms, the words each was misheard
as) reaches the reader only when the learner publishes it (``adopt``): while an update trains in
another thread, decoding goes on with the last finished one, and the new one is swapped in whole,
between two windows.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from whisper.decoding import DecodingOptions

from .audio import is_silent, load_audio, read_windows
from .cache import CacheEntry
from .capture import Window, WindowCapture, bf16_available, encode
from .config import DecodingConfig
from .corrections import holds_spelling, is_common_word
from .evaluate import written_terms
from .guard import added_terms, doubtful_terms, guarded_text, open_to_terms, word_key, word_logprobs
from .learner import Learner
from .projection import int8_available


@dataclass(frozen=True)
class Learned:
    """What the learner has taught, as the reader last adopted it."""

    steps: int = 0  # updates applied: 0 means the adapter is still the identity
    terms: frozenset[str] = frozenset()  # the terms the guard lets the adapter write
    misheard: dict[str, frozenset[str]] = field(default_factory=dict)  # term key -> words a correction of it replaced
    fixed_back: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)  # term key -> words it was corrected back to -> their contexts
    written: dict[str, int] = field(default_factory=dict)  # term key -> accepted sentences the adapter wrote it in, since its last correction


def glossary_text(terms: Iterable[str]) -> str | None:
    """Whisper's prompt for ``terms`` (None: no terms)."""
    terms = list(terms)
    return f"Glossary: {', '.join(terms)}." if terms else None


class Reader:
    def __init__(self, model, tokenizer, config: DecodingConfig, device: str, cache_dtype):
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.device, self.cache_dtype = device, cache_dtype
        self.glossary: list[str] = []  # learned and added terms, most used first; the prompt takes what fits
        self.learned = Learned()
        self.lock = threading.Lock()  # held while a window is read, and while a new adapter is swapped in
        self.apart = False  # True once the reader decodes with a copy of the model of its own
        self.readings: list[Reading] = [AdaptedReading(), GlossaryReading()]  # in this order: each amends the last one's text

    @property
    def int8(self) -> bool:
        """Whether decoding projects to the vocabulary in int8 (``decoding.int8_projection``, CPU only)."""
        return self.config.int8_projection and int8_available(torch.device(self.device))

    @property
    def bf16(self) -> bool:
        """Whether the encoder runs its products in bf16 (``decoding.bf16_encoder``, CPUs with AMX only)."""
        return self.config.bf16_encoder and bf16_available(torch.device(self.device))

    def read_apart(self) -> None:
        """Decode with a copy of the model of its own, so that a learner can train the original in
        another thread: the copy changes only in ``adopt``."""
        self.model, self.apart = copy.deepcopy(self.model), True

    def adopt(self, learner: Learner) -> None:
        """Take what ``learner`` has taught now: the terms and misheard words, and (with a model of
        its own) the adapter's weights, all at once, between two windows."""
        learned = Learned(
            learner.steps, frozenset(learner.taught_terms), {k: frozenset(v) for k, v in learner.misheard.items()},
            {k: {w: frozenset(c) for w, c in v.items()} for k, v in learner.fixed_back.items()},
            {k: len(ids) for k, ids in learner.written.items()},
        )  # fmt: skip
        with self.lock:
            if self.apart:
                ours = dict(self.model.named_parameters())
                with torch.no_grad():
                    for name, p in learner.trainable.items():
                        ours[name].copy_(p)
            self.learned = learned

    def writes_taught_term(self, text: str) -> bool:
        """Whether ``text`` writes a term that corrections taught."""
        return bool(written_terms(text, self.learned.terms))

    # ---------------------------------------------------------------- the glossary prompt

    def glossary_prompt(self, leave_out: Iterable[str] = ()) -> str | None:
        return glossary_text(self.prompt_terms(leave_out)) if self.config.glossary else None

    def glossary_reading_terms(self) -> tuple[str, ...]:
        """The terms the glossary reading is prompted with: the glossary, less the terms the weights write (``written_by_weights``)."""
        return tuple(self.prompt_terms(leave_out=self.written_by_weights())) if self.config.glossary else ()

    def glossary_reading_prompt(self) -> str | None:
        return glossary_text(self.glossary_reading_terms())

    def written_by_weights(self) -> set[str]:
        """Keys of the taught terms the glossary reading no longer prompts: the adapter itself wrote
        them in ``decoding.glossary_drop_after`` accepted sentences since their last correction."""
        after = self.config.glossary_drop_after
        return set() if after is None else {key for key, count in self.learned.written.items() if count >= after}

    def prompt_terms(self, leave_out: Iterable[str] = ()) -> list[str]:
        """The glossary terms the prompt has room for (``glossary_max_terms``), in the glossary's order.

        Over the limit, names and rare words take the room first: in a voice the model mishears,
        corrections also teach the common words it got wrong ("another", "six"), and a name
        corrected once must not fall out of the prompt for them (docs/decisions.md,
        ``decoding.glossary_max_terms``).
        """
        left_out = set(leave_out)
        glossary = [t for t in self.glossary if word_key(t) not in left_out]
        limit = self.config.glossary_max_terms
        if len(glossary) <= limit:
            return glossary
        by_rarity = sorted(glossary, key=lambda term: is_common_word(term, self.tokenizer))  # stable: each group keeps its order
        kept = set(by_rarity[:limit])
        return [t for t in glossary if t in kept]

    # ---------------------------------------------------------------- reading audio

    def options(self, prompt: str | None) -> DecodingOptions:
        d = self.config
        return DecodingOptions(language=d.language, without_timestamps=True, fp16=self.device != "cpu", beam_size=d.beam_size, prompt=prompt)

    def transcribe(self, audio: str | Path | np.ndarray, keep: str | None) -> tuple[WindowCapture, ...]:
        """The windows of ``audio`` as the user sees them, keeping ``keep`` for an update (None: nothing)."""
        if self.config.term_guard:
            return self.read(audio, keep, None, self.glossary_reading_terms())
        return self.read(audio, keep, self.glossary_prompt())  # nothing is checked: the glossary is Whisper's prompt (the prompt-only baseline)

    def read(self, audio, keep: str | None, prompt: str | None, glossary: tuple[str, ...] = ()) -> tuple[WindowCapture, ...]:
        options = self.options(prompt)
        # A quiet 30 s window (all of a silent clip, or a pause in a long one) is skipped: Whisper
        # would only hallucinate there.
        silence = self.config.silence_dbfs
        samples = read_windows(audio, max_seconds=self.config.max_audio_seconds)
        captures = (self._locked_read(w, options, keep, glossary) for w in samples if not is_silent(w, silence))
        return tuple(c for c in captures if not self._no_speech(c))

    def _locked_read(self, samples: np.ndarray, options: DecodingOptions, keep: str | None, glossary: tuple[str, ...]) -> WindowCapture:
        with self.lock:  # one adapter and one ``learned`` for the whole window
            return self._read_window(samples, options, keep, glossary)

    def _read_window(self, samples: np.ndarray, options: DecodingOptions, keep: str | None, glossary: tuple[str, ...]) -> WindowCapture:
        """Encode one window once, then let each of ``self.readings`` read it in turn (``WindowTask``)."""
        window = Window(self.model, *encode(self.model, samples, options.fp16, self.bf16), self.cache_dtype, self.int8)
        task = WindowTask(self, window, options, keep, glossary, self.learned)
        for reading in self.readings:
            if not reading.read(task):
                break
        terms = self.learned.terms | set(self.glossary)
        doubtful = doubtful_terms(task.base.text, self.word_logprobs(task.base), self.config.base_sure_logprob, task.text, terms, task.learned.fixed_back)
        return dataclasses.replace(task.capture, text=task.text, doubtful=doubtful, base_text=task.base.text)

    def loops(self, capture: WindowCapture) -> bool:
        return capture.compression_ratio > self.config.compression_ratio_threshold

    def guarded(self, base: WindowCapture, reading: WindowCapture, terms: set[str]) -> str:
        """``reading`` where it agrees with ``base`` or writes one of ``terms`` with the confidence ``guard.py`` asks."""
        d = self.config
        return guarded_text(
            base.text, reading.text, terms,
            self.word_logprobs(reading), d.term_min_logprob, self.word_logprobs(base), d.base_sure_logprob,
            self.learned.misheard, d.misheard_min_logprob, self.learned.fixed_back,
        )  # fmt: skip

    def word_logprobs(self, capture: WindowCapture) -> list[float] | None:
        if not capture.token_logprobs:  # no tokens
            return None
        return word_logprobs([self.tokenizer.decode([t]) for t in capture.tokens], capture.token_logprobs)

    def _no_speech(self, capture) -> bool:
        # whisper's own rule: likely silence and not confidently decoded
        return capture.no_speech_prob > self.config.no_speech_threshold and capture.avg_logprob < -1.0

    # ---------------------------------------------------------------- corrections

    def attempt(self, entry: CacheEntry) -> str | None:
        """What the adapter itself wrote for a cached interaction, if the term guard showed other words."""
        attempt = " ".join(self.tokenizer.decode(list(w.tokens)).strip() for w in entry.windows).strip()
        return attempt if attempt != entry.text else None

    def transcribe_correction(self, audio: str | Path | np.ndarray, hypothesis: str) -> str:
        """A spoken correction, decoded with the glossary and the hypothesis as context; not cached.

        With that prompt Whisper sometimes stops after the spoken word and drops the letters
        that follow ("No, I said Zbigniew. Z, B, I, G, N, I, E, W." came out as "No, I said
        speak nef."): a reading without a spelling is checked against one without the prompt,
        and the spelling, the surest thing a user can say about a rare word, wins.
        """
        samples = load_audio(audio, max_seconds=self.config.max_audio_seconds)
        prompt = " ".join(p for p in (self.glossary_prompt(), hypothesis) if p) or None
        in_context = self.text(samples, prompt)
        if prompt is None or holds_spelling(in_context):
            return in_context
        plain = self.text(samples, None)
        return plain if holds_spelling(plain) else in_context

    def text(self, audio, prompt: str | None) -> str:
        """``audio`` read once with ``prompt``, nothing kept."""
        return " ".join(c.text for c in self.read(audio, None, prompt)).strip()


# ---------------------------------------------------------------- the readings of one window


@dataclass
class WindowTask:
    """One window being read: its encoder output once, and what the readings so far made of it."""

    reader: Reader
    window: Window
    options: DecodingOptions
    keep: str | None  # what the cache keeps for an update (None: nothing)
    glossary: tuple[str, ...]  # the terms the glossary reading is prompted with (none: it does not read)
    learned: Learned
    capture: WindowCapture | None = None  # the adapter's reading: what the cache holds
    base: WindowCapture | None = None  # the base model's reading (the adapted one, until an update)
    text: str = ""  # what the user is shown


class Reading:
    """One way to read a window. ``read`` amends the task; False: the window's text is final."""

    def read(self, task: WindowTask) -> bool:
        raise NotImplementedError


class AdaptedReading(Reading):
    """The decoder with the adapter; once the adapter has been updated, checked against the base model.

    Same encoder output, the decoder with the adapter and without, as one batch of two
    (``capture.Window.decode_with_base``):
    - a repetition loop: whisper's own transcribe() treats a gzip compression ratio above 2.4 as a
      failed decode, and an adapter that over-learned a word can start one on unrelated speech
      (seen: "Xxxxxxx…" after learning "Xochitl"). The base decode is the answer, and the cache
      holds it.
    - the term guard (``decoding.term_guard``, ``guard.py``): the adapted words stand only where
      they agree with the base model or write a term a correction taught, with confidence
      (``decoding.term_min_logprob``), over words the base model was unsure of
      (``decoding.base_sure_logprob``) or that a correction of the term replaced
      (``decoding.misheard_min_logprob``).
    Before the first update the adapter is the identity: one decode.
    """

    def read(self, task: WindowTask) -> bool:
        reader = task.reader
        adapted = task.learned.steps > 0
        guard = adapted and reader.config.term_guard
        if guard:
            task.capture, task.base = task.window.decode_with_base(task.options, task.keep)
        else:
            task.capture = task.base = task.window.decode(task.options, task.keep)
        task.text = task.capture.text
        if adapted and reader.loops(task.capture):
            task.capture = task.base if guard else task.window.decode(task.options, task.keep, adapted=False)
            task.text = task.capture.text
            return False
        if guard:
            task.text = reader.guarded(task.base, task.capture, task.learned.terms)
        return True


class GlossaryReading(Reading):
    """With a glossary prompt (the term guard on): the base model prompted with the learned terms.

    The prompt never reaches the adapter: the two together wrote learned terms into sound-alikes
    (docs/decisions.md, ``decoding.glossary``). The prompted reading passes the same guard as the
    adapter's, against the unprompted base reading; a term it writes where the text so far has
    none is added (``guard.added_terms``), unless the prompted reading loops.

    It reads only the windows where it could add a term (``guard.open_to_terms``): where the base
    model was unsure of a word, or wrote one a correction replaced, and the text so far writes no
    term there. A window the base model heard surely, or whose misheard name the adapter already
    writes, costs no second decoder pass; nor does one whose text already writes every term of the
    prompt: the prompt leads the reading to those terms, and here the weights wrote each of them.
    Where it does read, it decodes only where it departs from the base reading
    (``capture.Window.decode_like``): the same reading, and most often the prompt changes nothing
    there, which one teacher-forced pass tells.
    """

    def read(self, task: WindowTask) -> bool:
        if len(written_terms(task.text, task.glossary)) == len(task.glossary):  # also: no prompt
            return True
        reader = task.reader
        terms = task.learned.terms | set(reader.glossary)  # terms the user added were never taught
        sure = reader.config.base_sure_logprob
        if not open_to_terms(task.base.text, reader.word_logprobs(task.base), sure, task.learned.misheard, task.text, terms):
            return True
        prompted = task.window.decode_like(dataclasses.replace(task.options, prompt=glossary_text(task.glossary)), task.base.tokens)
        if not reader.loops(prompted):
            task.text = added_terms(task.text, reader.guarded(task.base, prompted, terms), terms)
        return True
