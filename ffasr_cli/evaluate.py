"""Scoring: WER (whisper's EnglishTextNormalizer + corpus-level jiwer), term recall, false insertions.

One code path for every number ffasr reports: ``ffasr replay --eval`` and the benchmarks both
call ``score``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import lru_cache


@lru_cache(maxsize=1)
def _normalizer():
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    return _normalizer()(text)


def written_terms(text: str, terms: Iterable[str]) -> list[str]:
    """The ``terms`` whose normalized form the normalized ``text`` holds as whole words."""
    padded = f" {normalize(text)} "  # normalized once: a session asks this of every accepted transcript, for every taught term
    return [term for term in terms if f" {normalize(term)} " in padded]


def contains_term(text: str, term: str) -> bool:
    """Whether the normalized ``text`` holds the normalized ``term`` as whole words."""
    return bool(written_terms(text, [term]))


@dataclass(frozen=True)
class Scores:
    utterances: int
    wer: float  # corpus-level, in percent
    term_recall: float | None  # percent of (utterance, term) pairs, term said, where it was written
    false_insertions: int | None  # terms written where they were not said
    forbidden: int | None  # (utterance, term) pairs where the term was not said

    def as_dict(self) -> dict:
        return asdict(self)


def score(references: list[str], hypotheses: list[str], terms: list[tuple[str, ...]] | None = None) -> Scores:
    """Score hypotheses against references.

    ``terms`` lists, per utterance, the terms to watch. A term the reference holds counts toward
    recall (was it written?); a term the reference does not hold — a sound-alike sentence — counts
    as a false insertion when the hypothesis writes it anyway.
    """
    import jiwer

    pairs = [(normalize(r), normalize(h)) for r, h in zip(references, hypotheses)]
    kept = [(r, h) for r, h in pairs if r]
    wer = 100 * jiwer.wer([r for r, _ in kept], [h for _, h in kept]) if kept else 0.0
    said, unsaid = [], []
    for reference, hypothesis, watched in zip(references, hypotheses, terms or []):
        for term in watched:
            (said if contains_term(reference, term) else unsaid).append(contains_term(hypothesis, term))
    return Scores(
        utterances=len(references),
        wer=round(wer, 2),
        term_recall=round(100 * sum(said) / len(said), 1) if said else None,
        false_insertions=sum(unsaid) if unsaid else None,
        forbidden=len(unsaid) if unsaid else None,
    )
