"""The term guard: the adapter may change a transcript only by writing a term it was taught.

An adapter trained on a few corrections learns their rare words, and with them a pull towards
their sounds: on sentences that never held a term it rewrites ordinary words ("Press star" →
"Przor"). So each window is also decoded without the adapter (same encoder output, same options),
and the two transcripts are aligned word by word: where they differ, the adapted words are kept
only if they write a learned term; everywhere else the base model's words stand, since learning
never changed the base model.

A learned term written, whole, where a sound-alike was said ("Seth is fixing" → "Ceph is
fixing") is a harder case, and two confidences decide it, one of each model:

- the adapter's: each token of the term was picked with log-probability at least
  ``min_logprob`` (``decoding.term_min_logprob``): terms written over sound-alikes were often
  unsure;
- the base model's: a term never replaces base words whose every token the base model picked
  with at least ``base_sure_logprob`` (``decoding.base_sure_logprob``). A rare name is what the
  base model does not know, so what it writes for one is a guess ("T-Boe"); a sound-alike is a
  word it knows, heard clearly ("Seth"). Where the two readings have as many words, each adapted
  word is checked against its own base word; otherwise against the whole stretch they differ in
  ("Yana Check" → "Janáček"), which a term may stand for only if it is short (``MAX_TERM_WORDS``
  words a term, one for any other).

What the user corrected outranks both: over the very words a correction of the term replaced
(``misheard_as``: "Valero" corrected to "Velero"), the base model's sureness does not count, and
the term needs only ``misheard_min_logprob`` (``decoding.misheard_min_logprob``). A sound-alike
the user never corrected keeps both tests. And where the user corrected a shown term back to what
was said ("Ceph is fixing the bike" → "Seth is fixing the bike", ``fixed_back``), the term is not
shown over those words again; if corrections of the term also replaced those very words (the base
model writes "Seth" for the term too), only in the context the user fixed it back in (a word
beside it the same, any article counting as "a"). Letters the user spelled ("N-G-O-C-I") are never
replaced by a term: they say the word more surely than any reading of them.

docs/guard.md states these rules for users, and docs/decisions.md gives the measurements behind
each threshold. Both decodes share the encoder's output: in full mode with ``freeze_encoder:
false`` the "base" decode therefore runs the trained encoder, and only the decoder's adapter is
switched off.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from difflib import SequenceMatcher

from .corrections import STOPWORDS, known_spelling, spells_letters, word_key


def word_logprobs(pieces: Sequence[str], logprobs: Sequence[float]) -> list[float]:
    """The lowest token log-probability of each word (a word starts at a token that starts with a space)."""
    words: list[float] = []
    for piece, logprob in zip(pieces, logprobs):
        if not words or piece.startswith(" "):
            words.append(logprob)
        else:
            words[-1] = min(words[-1], logprob)
    return words


MAX_TERM_WORDS = 4  # the most words one term was misheard as ("Mo go go go" for Małgorzata, espeak)
_EDGE = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)


def _as_term(word: str, terms: Sequence[str], term_keys: set[str]) -> str | None:
    """The taught term ``word`` writes: itself, or one letter off ("Bigniew" for "Zbigniew"); None if neither."""
    if word_key(word) in term_keys:
        return word
    term = known_spelling(word, terms)
    if term is None:
        return None
    lead, trail = _EDGE.match(word).group(1, 3)
    return lead + term + trail


def _may_stand_for(base_words: int, reading_words: int, terms: int) -> bool:
    """Whether a stretch of ``reading_words`` words, ``terms`` of them terms, can be a reading of ``base_words`` words.

    Each term stands for at most ``MAX_TERM_WORDS`` words, every other word for one. A reading
    that drops more has skipped speech: a prompted reading wrote "Niamh, Wojcached." for
    "Kneve booked a table for six people." (tiny.en, held-out slice).
    """
    return base_words <= MAX_TERM_WORDS * terms + reading_words - terms


def word_opcodes(before: Sequence[str], after: Sequence[str]) -> list[tuple[str, int, int, int, int]]:
    """difflib's opcodes turning the words ``before`` into ``after``, compared by ``word_key``."""
    return SequenceMatcher(None, [word_key(w) for w in before], [word_key(w) for w in after], autojunk=False).get_opcodes()


def misheard_as(hypothesis: str, label: str, terms: Iterable[str]) -> dict[str, set[str]]:
    """For each of ``terms`` (what the label taught: ``learned_terms``), the keys of the words it replaced in the hypothesis.

    Function words are left out: "at" in "Tadhg at" → "Ty get at" says nothing about Tadhg.
    """
    keys = {word_key(t) for t in terms}
    heard, said = hypothesis.split(), label.split()
    found: dict[str, set[str]] = {}
    for op, h1, h2, s1, s2 in word_opcodes(heard, said):
        if op == "equal":
            continue
        for term in {word_key(w) for w in said[s1:s2]} & keys:
            found.setdefault(term, set()).update(k for w in heard[h1:h2] if (k := word_key(w)) and k not in STOPWORDS)
    return found


FixedBack = dict[str, dict[str, set[str]]]  # term key -> a word the user said in its place -> the keys of the words beside it


def fixed_back(hypothesis: str, label: str, terms: Iterable[str], base: str = "") -> FixedBack:
    """For each of ``terms`` that ``hypothesis`` wrote where ``label`` says other words (the user
    corrected a learned term back: "Ceph is fixing" → "Seth is fixing"), those words' keys, each
    with the keys of the label's words beside the stretch (its context). Function words are left out.

    ``base``: the base model's reading of the same audio, if known. The words it wrote under the
    term count as put back too: the guard meets the base model's spelling of the sound, which
    need not be the user's ("Neeves Smith" for "Neve Smith").
    """
    keys = {word_key(t) for t in terms}
    heard, said = hypothesis.split(), label.split()
    said_keys = [word_key(w) for w in said]
    found: FixedBack = {}
    for op, h1, h2, s1, s2 in word_opcodes(heard, said):
        if op == "equal":
            continue
        context = {said_keys[j] for j in (s1 - 1, s2) if 0 <= j < len(said)} - {""}
        put_back = said_keys[s1:s2] + [word_key(w) for w in _beneath(heard, base.split(), h1, h2)]
        for term in {word_key(w) for w in heard[h1:h2]} & keys:
            for word in put_back:
                if word and word not in STOPWORDS and word not in keys:
                    found.setdefault(term, {}).setdefault(word, set()).update(context)
    return found


ARTICLES = frozenset({"a", "an", "the"})


def _context(keys: Iterable[str]) -> set[str]:
    """Words beside a stretch, as contexts are compared: the articles count as one. "a ten-day
    holiday" and "The ten-day forecast" put the word in the same place, one where names rarely go."""
    return {"a" if k in ARTICLES else k for k in keys}


def _beneath(heard: Sequence[str], base: Sequence[str], h1: int, h2: int) -> list[str]:
    """The words of ``base`` that ``heard[h1:h2]`` was shown over."""
    words = []
    for op, a1, a2, b1, b2 in word_opcodes(heard, base):
        lo, hi = max(a1, h1), min(a2, h2)
        if op == "equal" and lo < hi:
            words += base[b1 + lo - a1 : b1 + hi - a1]
        elif op != "equal" and (lo < hi or h1 <= a1 < h2):
            words += base[b1:b2]
    return words


def guarded_text(
    base: str,
    adapted: str,
    terms: Iterable[str],
    confidence: Sequence[float] | None = None,
    min_logprob: float = -math.inf,
    base_confidence: Sequence[float] | None = None,
    base_sure_logprob: float = math.inf,
    misheard: Mapping[str, set[str]] | None = None,
    misheard_min_logprob: float | None = None,
    fixed: Mapping[str, Mapping[str, set[str]]] | None = None,
) -> str:
    """``adapted`` where it agrees with ``base`` or confidently writes one of ``terms``; ``base`` elsewhere.

    ``confidence``: the log-probability of each word of ``adapted`` (``word_logprobs``); a term
    stands only if it is at least ``min_logprob``. ``base_confidence``: the same for ``base``; a
    term never replaces base words that are all at least ``base_sure_logprob`` (inf: never sure).
    None for either (words that do not line up with the tokens) trusts every word.
    ``misheard``: per term key, the words corrections of it replaced (``misheard_as``); over those,
    a term needs only ``misheard_min_logprob`` and the base model's sureness does not count (None:
    no such rule). ``fixed``: per term key, the words the user corrected it back to (``fixed_back``):
    never replaced by the term, unless corrections of the term replaced them too, and then only
    outside the contexts it was fixed back in.
    Where the adapter only split a base word ("afternoon" → "after noon", with "after" taught in
    another voice), the base word stands: a term inside it was not said as a word.
    Where the base reading spells single letters ("N-G-O-C-I"), it stands: the user spelled the word.
    An adapted word one letter off a taught term of five letters or more is that term, misspelled
    ("Bigniew"), and is shown as the term. Where the two readings differ in a stretch of as many
    words, the words are taken one by one: the taught terms from ``adapted``, the rest from ``base``;
    in a stretch of unequal length, ``adapted``'s words as a whole, if ``_may_stand_for`` allows.
    """
    terms = list(terms)
    term_keys = {word_key(t) for t in terms}
    base_words, adapted_words = base.split(), adapted.split()
    if confidence is not None and len(confidence) != len(adapted_words):
        confidence = None
    if base_confidence is not None and len(base_confidence) != len(base_words):
        base_confidence = None

    misheard, fixed = misheard or {}, fixed or {}

    def stands_for(b1: int, b2: int, a1: int, a2: int, i: int) -> list[int]:
        """The base words adapted word ``i`` stands for (one for one where the counts agree)."""
        return [b1 + i - a1] if b2 - b1 == a2 - a1 else list(range(b1, b2))

    def was_misheard(term: str, words: list[int]) -> bool:
        """Whether these base words are what corrections of ``term`` replaced (function words aside)."""
        known = misheard.get(word_key(term), set())
        keys = [word_key(base_words[j]) for j in words]
        return any(k in known for k in keys) and all(k in known or k in STOPWORDS for k in keys)

    def was_fixed_back(term: str, words: list[int]) -> bool:
        """Whether the user corrected ``term`` back to these base words, in a context like this one."""
        away = fixed.get(word_key(term), {})
        keys = [k for j in words if (k := word_key(base_words[j])) not in STOPWORDS]
        if not keys or not all(k in away for k in keys):
            return False
        if not was_misheard(term, words):
            return True  # the user never said these words were the term
        beside = _context(word_key(base_words[j]) for j in (min(words) - 1, max(words) + 1) if 0 <= j < len(base_words))
        return any(beside & _context(away[k]) for k in keys)

    def stands(term: str, b1: int, b2: int, a1: int, a2: int, i: int) -> bool:
        """Whether adapted word ``i``, which writes ``term``, is shown."""
        words = stands_for(b1, b2, a1, a2, i)
        if was_fixed_back(term, words):
            return False
        if misheard_min_logprob is not None and was_misheard(term, words):
            return confidence is None or confidence[i] >= misheard_min_logprob
        sure = base_confidence is not None and bool(words) and min(base_confidence[j] for j in words) >= base_sure_logprob
        return (confidence is None or confidence[i] >= min_logprob) and not sure

    base_keys, adapted_keys = [word_key(w) for w in base_words], [word_key(w) for w in adapted_words]
    matcher = SequenceMatcher(None, base_keys, adapted_keys, autojunk=False)
    kept: list[str] = []
    for op, b1, b2, a1, a2 in matcher.get_opcodes():
        if op == "equal":
            kept += adapted_words[a1:a2]
            continue
        if a2 - a1 > b2 - b1 and "".join(base_keys[b1:b2]) == "".join(adapted_keys[a1:a2]):
            kept += base_words[b1:b2]  # a base word split, letter for letter ("after noon"): no word in it was said alone
            continue
        if spells_letters(" ".join(base_words[b1:b2])):
            kept += base_words[b1:b2]  # letters the user spelled ("N-G-O-C-I"): surer than any reading of them as the word
            continue
        written = {
            i: term
            for i in range(a1, a2)
            if (term := _as_term(adapted_words[i], terms, term_keys)) is not None and stands(term, b1, b2, a1, a2, i)
        }
        if not written:
            kept += base_words[b1:b2]
        elif b2 - b1 == a2 - a1:
            kept += [written.get(i, base_words[b1 + i - a1]) for i in range(a1, a2)]
        elif _may_stand_for(b2 - b1, a2 - a1, len(written)):
            kept += [written.get(i, adapted_words[i]) for i in range(a1, a2)]
        else:
            kept += base_words[b1:b2]
    return " ".join(kept)


def doubtful_terms(
    base: str, base_confidence: Sequence[float] | None, base_sure_logprob: float, text: str, terms: Iterable[str],
    fixed: Mapping[str, Mapping[str, Iterable[str]]] | None = None,
) -> tuple[str, ...]:  # fmt: skip
    """The words of ``text`` that write a term over base words the base model was sure of, or
    over words the user once corrected that term back to (``fixed``, as in ``guarded_text``).

    Only the misheard rule shows a term over sure words (a correction said those words were the
    term); and a term stands over words it was corrected back to only outside the context of that
    correction, where the sound is the same ("Neve" for Niamh). That is where a wrong term is
    likeliest: ``listen`` marks these, one correction back away.
    """
    words = base.split()
    sure = base_confidence is not None and len(base_confidence) == len(words)
    fixed = fixed or {}
    term_keys = {word_key(t) for t in terms}
    shown = text.split()
    doubtful = []
    for op, b1, b2, t1, t2 in word_opcodes(words, shown):
        if op == "equal" or b2 == b1:
            continue
        over_sure = sure and min(base_confidence[b1:b2]) >= base_sure_logprob
        put_back = {word_key(w) for w in words[b1:b2]}
        doubtful += [w for w in shown[t1:t2] if word_key(w) in term_keys and (over_sure or put_back & set(fixed.get(word_key(w), ())))]
    return tuple(doubtful)


def open_to_terms(
    base: str, base_confidence: Sequence[float] | None, base_sure_logprob: float, misheard: Mapping[str, Iterable[str]], text: str, terms: Iterable[str]
) -> bool:
    """Whether a guarded reading could still add a term to ``text`` (``added_terms``), judged from the base reading alone.

    ``guarded_text`` shows a term only over base words the base model was unsure of, or that a
    correction of the term replaced, and ``added_terms`` only where ``text`` writes no term yet.
    So a window whose base words are all sure and none misheard, or whose every such word
    ``text`` already writes as a term, can gain nothing from another reading.
    """
    words = base.split()
    if base_confidence is None or len(base_confidence) != len(words):
        return bool(words)  # no confidence to go by: every word is open
    replaced = {k for keys in misheard.values() for k in keys}
    open_words = {i for i, w in enumerate(words) if base_confidence[i] < base_sure_logprob or word_key(w) in replaced}
    term_keys = {word_key(t) for t in terms}
    text_words = text.split()
    for op, b1, b2, t1, t2 in word_opcodes(words, text_words):
        if op == "equal":
            open_words -= {b1 + j for j in range(b2 - b1) if word_key(text_words[t1 + j]) in term_keys}
        elif any(word_key(w) in term_keys for w in text_words[t1:t2]):
            open_words -= set(range(b1, b2))
    return bool(open_words)


def added_terms(text: str, prompted: str, terms: Iterable[str]) -> str:
    """``text``, with the terms a glossary-prompted reading (already guarded) wrote where ``text`` has none.

    Where the two differ, the prompted words replace the stretch only if they write exactly one
    term, in no more words than they replace (and no fewer than ``_may_stand_for`` allows), over
    words that write none. A prompt read back as a list ("Saoirse, Nguyen, Tadeusz, Mister,
    Camera") writes several terms; one that loops ("Nguyen, Nguyen, Mister, Doctor, Doctor…")
    writes more words than were said.
    """
    term_keys = {word_key(t) for t in terms}
    words, prompted_words = text.split(), prompted.split()
    keys, prompted_keys = [word_key(w) for w in words], [word_key(w) for w in prompted_words]
    kept: list[str] = []
    for op, t1, t2, p1, p2 in SequenceMatcher(None, keys, prompted_keys, autojunk=False).get_opcodes():
        one_term = sum(k in term_keys for k in prompted_keys[p1:p2]) == 1
        fits = p2 - p1 <= t2 - t1 and _may_stand_for(t2 - t1, p2 - p1, 1)
        if op != "equal" and one_term and fits and not any(k in term_keys for k in keys[t1:t2]):
            kept += prompted_words[p1:p2]
        else:
            kept += words[t1:t2]
    return " ".join(kept)
