"""The term guard: the adapter may change a transcript only by writing a term it was taught.

An adapter trained on a few corrections learns their rare words, and with them a pull towards
their sounds: on sentences that never held a term it sometimes rewrites an ordinary word at the
same place ("Press star" → "Przor", "She finished" → "Cucumber finished", measured in
benchmarks/results/tuning.md). So each window is decoded twice, with the adapter and without it
(same encoder output, same options), and the two transcripts are aligned word by word: where
they differ, the adapted words are kept only if they write a learned term; everywhere else the
base model's words stand. The base model never got worse by learning, so that is the safe answer.

A learned term written, whole, where a sound-alike was said ("Seth is fixing" → "Ceph is
fixing") is a harder case: the adapter writes a word it was taught. There the adapter's own
confidence decides: on the dev slices every such insertion but one had a term token picked with
log-probability below −1 (p < 0.37), and no term in a hibari test sentence did
(benchmarks/results/tuning.md). So a term overrides the base model only if each of its tokens
was picked with at least ``min_logprob``.

Both decodes share the encoder's output: in full mode with ``freeze_encoder: false`` the "base"
decode therefore runs the trained encoder, and only the decoder's adapter is switched off.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from difflib import SequenceMatcher

from .corrections import word_key


def word_logprobs(pieces: Sequence[str], logprobs: Sequence[float]) -> list[float]:
    """The lowest token log-probability of each word (a word starts at a token that starts with a space)."""
    words: list[float] = []
    for piece, logprob in zip(pieces, logprobs):
        if not words or piece.startswith(" "):
            words.append(logprob)
        else:
            words[-1] = min(words[-1], logprob)
    return words


def guarded_text(
    base: str, adapted: str, terms: Iterable[str], confidence: Sequence[float] | None = None, min_logprob: float = -math.inf
) -> str:
    """``adapted`` where it agrees with ``base`` or confidently writes one of ``terms``; ``base`` elsewhere.

    ``confidence``: the log-probability of each word of ``adapted`` (``word_logprobs``); None
    (beam search, or words that do not line up with the tokens) trusts every word.
    """
    term_keys = {word_key(t) for t in terms}
    base_words, adapted_words = base.split(), adapted.split()
    adapted_keys = [word_key(w) for w in adapted_words]
    if confidence is not None and len(confidence) != len(adapted_words):
        confidence = None
    matcher = SequenceMatcher(None, [word_key(w) for w in base_words], adapted_keys, autojunk=False)
    kept: list[str] = []
    for op, b1, b2, a1, a2 in matcher.get_opcodes():
        writes_term = any(
            adapted_keys[i] in term_keys and (confidence is None or confidence[i] >= min_logprob) for i in range(a1, a2)
        )
        kept += adapted_words[a1:a2] if op == "equal" or writes_term else base_words[b1:b2]
    return " ".join(kept)
