"""Turn what the user typed or said into a label for what was heard, and find what was learned.

Everything here is text, with no torch, so that ``ffasr stats`` and the feedback prompt stay
fast; only ``learned_terms`` loads whisper's text normalizer (``evaluate.normalize``), and only
when a label differs from what was heard. The words "hypothesis" (what the model heard) and
"label" (what should have been heard) are used throughout.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Literal

from .errors import CorrectionRejected

# A correction of at most this many words, and at most about half the hypothesis, is a fragment
# to merge ("Terraform"); anything longer is a whole new label.
MAX_FRAGMENT_WORDS = 5
# A fragment is merged only into a span at least this similar (characters); below it, the
# fragment matches nothing and becomes the whole label (which check_correction then judges).
MERGE_MIN_SIMILARITY = 0.5
# Two words count as the same word misheard from this character similarity on
# ("cubanites"/"kubernetes" is 0.63, unrelated short words stay under 0.5).
WORD_MATCH_SIMILARITY = 0.6
# Spelled-out letters replace the spoken words before them from this similarity on.
SPELLING_MATCH_SIMILARITY = 0.5
# A run of single letters is spelling from this many letters on ("A-B testing" is not).
MIN_SPELLED_LETTERS = 3
# A correction longer than this is refused before it is read: one utterance is far shorter.
MAX_CORRECTION_CHARS = 1000

Kind = Literal["replace", "merge"]


@dataclass(frozen=True)
class Correction:
    """The label built from a correction.

    ``kind`` is "merge" when a short correction replaced the words ``span`` (start, end; end
    excluded; indices into the hypothesis' whitespace-separated words), and "replace" when the
    correction is the whole label (``span`` is None).
    """

    label: str
    kind: Kind
    span: tuple[int, int] | None = None


# --- words ------------------------------------------------------------------------------------

# A word: letters or digits, with inner apostrophes or hyphens ("don't", "state-of-the-art").
_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")
_TOKEN = re.compile(r"\S+")
_ALNUM = re.compile(r"[^\W_]")
_LEAD_PUNCT = re.compile(r"^[^\w\s]*")
# Anchored where the punctuation run starts, so a long run ("a!!!…!b") is not rescanned from each of its characters.
_TRAIL_PUNCT = re.compile(r"(?<![^\w\s])[^\w\s]*$")

# Very common English function words: never a learned term.
STOPWORDS = frozenset(
    """a an the and or but nor so yet if then than that this these those there here
    i me my mine we us our you your he him his she her it its they them their
    is am are was were be been being do does did done have has had will would shall should
    can could may might must not no yes of to in on at by for with from into onto about as
    up down out off over under again just also too very what which who whom whose when where
    why how all any some each every both few more most other such only own same it's i'm
    don't doesn't didn't isn't aren't wasn't weren't can't won't let's that's there's""".split()
)


def normalize_words(text: str) -> list[str]:
    """The words of ``text``, lowercased, without punctuation.

    Apostrophes and hyphens inside a word stay ("don't", "e-mail"); curly apostrophes become
    straight ones; everything else that is not a letter or a digit separates words.
    """
    return [_normal(word) for word in _WORD.findall(text)]


# Titles a reading writes either way ("Dr. Win", "Doctor Win"); whisper's English normalizer spells them out too.
TITLES = {"dr": "doctor", "mr": "mister", "mrs": "missus", "prof": "professor"}


def word_key(word: str) -> str:
    """How two readings' words, and a word and a learned term, are compared: normalized, without a
    possessive ("Ceph's," → "ceph"), a title spelled out ("Dr." → "doctor")."""
    key = " ".join(normalize_words(word)).removesuffix("'s")
    return TITLES.get(key, key)


def _normal(word: str) -> str:
    return word.lower().replace("’", "'")


NEAR_MISS_MIN_LETTERS = 5  # shorter terms have too many ordinary words one letter away ("Ceph", "chef")


def known_spelling(word: str, terms: Sequence[str]) -> str | None:
    """The term of ``terms`` that ``word`` writes, exactly or (for terms of five letters or more)
    one letter dropped, added or changed ("Bigniew" for "Zbigniew"); None if none.

    Letters are compared lowercase and without accents ("Grazyna" writes "Grażyna").
    """
    letters = _letters(word)
    for term in terms:
        known = _letters(term)
        if letters == known or (len(known) >= NEAR_MISS_MIN_LETTERS and _one_edit_apart(letters, known)):
            return term
    return None


def _letters(word: str) -> str:
    """The letters of ``word``, lowercase, without accents: how near two spellings are is a matter of letters."""
    return "".join(c for c in unicodedata.normalize("NFKD", word_key(word)) if c.isalnum())


def _one_edit_apart(a: str, b: str) -> bool:
    """Whether ``b`` is ``a`` with one letter dropped, added or changed."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) > len(b):
        a, b = b, a
    start = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), len(a))
    return a[start + (len(a) == len(b)) :] == b[start + 1 :]


def _squash(text: str) -> str:
    """Letters and digits only, lowercased: "Terra form" and "Terraform" squash alike."""
    return "".join(_ALNUM.findall(text)).lower()


def _similarity(a: str, b: str) -> float:
    return SequenceMatcher(None, a, b, autojunk=False).ratio()


def _has_content(text: str) -> bool:
    return _ALNUM.search(text) is not None


# --- control characters -----------------------------------------------------------------------

# Terminal escape sequences (CSI "\x1b[31m", OSC "\x1b]0;title\x07", others "\x1b(B"), in their
# 7-bit and 8-bit forms: removed whole, so "\x1b[31mrunning" reads "running", not "31mrunning".
_ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
    r"|\x1b[ -/]*[0-~]"
)
# Control characters that separate words ("\r\n", a tab): one space in their place.
_SPACING_CONTROL = re.compile(r"[\t\n\v\f\r\x1c-\x1f\x85\u2028\u2029]+")
# Any other control character (C0, DEL, C1), and lone surrogates (undecodable bytes read from a terminal).
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` as words only: terminal escape sequences and control characters removed, tabs and
    line breaks made spaces. What a correction or a term holds is learned and shown as it reads."""
    text = _ESCAPE_SEQUENCE.sub("", text)
    return CONTROL_CHARACTER.sub("", _SPACING_CONTROL.sub(" ", text))


# --- preambles --------------------------------------------------------------------------------

# "I said", "I meant", "what I actually wanted to say was": the lead-in that names a correction.
_I_SAID = (
    r"(?:what\s+)?i\s+(?:actually\s+|really\s+)?"
    r"(?:said|meant|mean|say|wanted\s+to\s+say|was\s+saying)"
    r"(?:\s+to\s+say)?(?:\s+(?:was|is))?"
)
# Spoken lead-ins that are not part of the correction, tried one layer at a time
# ("No, I meant it's Terraform" is three layers). Order matters: longer phrases first.
_PREAMBLE_PHRASES = [
    _I_SAID,
    r"i(?:'m|’m|\s+am)\s+(?:saying|sorry)",
    r"(?:it|that|this)\s+should\s+(?:have\s+been|be|say|read)",
    r"should\s+(?:have\s+been|be)",
    r"(?:the\s+)?(?:word|name|correct\s+word|right\s+word)\s+(?:is|was)",
    r"(?:it|that)(?:'s|’s|\s+is|\s+was)",
    r"spelled(?:\s+as|\s+like)?|spelt|spelling",
    r"not\s+quite|wrong|correction",
    # "No, I said" as Whisper sometimes hears it, with the hypothesis as its prompt: "No, I send Ketchie."
    r"no+[\s,.]+i\s+(?:send|sent|set|sat|sad)",
    r"no+(?:pe)?|nah",
    r"sorry|oops|oh|u+h+|u+m+|e+r+m*|h+m+|well|okay|ok|wait|actually",
]
_PREAMBLE = re.compile(
    r"\s*(?:" + "|".join(_PREAMBLE_PHRASES) + r")(?![\w'’])[\s,.:;!?…—–-]*", re.IGNORECASE
)
# One or two words before "I said" / "I meant" are a lead-in heard as other words: "No, sorry, I
# meant Fluentd." was heard "Sorcha, I meant Fluentd." with the glossary as its prompt, and
# "Sorcha means I meant Fluentd." in another voice.
_MISHEARD_LEAD_IN = re.compile(
    rf"\s*{_WORD.pattern}(?:[\s,]+{_WORD.pattern})?[,.]?\s+(?=" + _I_SAID + r"(?![\w'’]))", re.IGNORECASE
)
# "not Terra form, Terraform" / "not Terra form but Terraform": the second part is the correction,
# the first says which words were wrong.
_NOT_X_Y = re.compile(
    r"\s*not\s+(?P<wrong>[^,;:—–]+?)\s*(?:[,;:—–]\s*(?:but\s+)?|\s+but\s+)"
    r"(?:rather\s+)?(?P<right>\S.*)",
    re.IGNORECASE | re.DOTALL,
)
_QUOTES = {'"': '"', "“": "”", "'": "'", "‘": "’", "«": "»"}


def strip_preamble(text: str, *, hypothesis: str = "") -> str:
    """Remove spoken lead-ins such as "No, I meant", "I said", "it's", "actually", "sorry".

    Lead-ins are removed one at a time from the start, in any case, with or without commas; so is
    one word set off before "I said" / "I meant" (a lead-in misheard: "Sorcha, I meant…").
    "not X, Y" (or "not X but Y") keeps Y. Quotes around what is left are removed; its trailing
    punctuation is kept as spoken. When a ``hypothesis`` is given, a lead-in that the hypothesis
    itself starts with, followed by the same next word, is content and is kept ("No parking
    here" corrects "No parking hear"). Text that is only a lead-in ("No.") becomes "".
    """
    return _split_preamble(text, hypothesis)[0]


def _split_preamble(text: str, hypothesis: str) -> tuple[str, str | None]:
    """``text`` without its lead-ins, and the wrong words named by "not X, Y" (or None)."""
    hyp_words = normalize_words(hypothesis)
    wrong = None
    if (lead_in := _MISHEARD_LEAD_IN.match(text)) and not _is_content(lead_in.group(), text, hyp_words):
        text = text[lead_in.end() :]
    while True:
        if match := _NOT_X_Y.match(text):
            layer, rest = "not", match["right"]
            candidate_wrong = match["wrong"]
        elif match := _PREAMBLE.match(text):
            layer, rest = match.group(), text[match.end() :]
            candidate_wrong = None
        else:
            break
        if _is_content(layer, text, hyp_words):
            break
        text, wrong = rest, candidate_wrong or wrong
    return _unquote(text.strip()), wrong


def _is_content(layer: str, text: str, hyp_words: list[str]) -> bool:
    """Whether a lead-in is the start of the hypothesis itself, and so must be kept."""
    layer_words = [w.replace("'", "") for w in normalize_words(layer)]
    n = len(layer_words)
    if not hyp_words or [w.replace("'", "") for w in hyp_words[:n]] != layer_words:
        return False
    next_spoken = normalize_words(text)[n : n + 1]
    next_heard = hyp_words[n : n + 1]
    if not next_spoken or not next_heard:
        return next_spoken == next_heard
    return _similarity(next_spoken[0], next_heard[0]) >= WORD_MATCH_SIMILARITY


def _unquote(text: str) -> str:
    close = _QUOTES.get(text[:1])
    if close is None:
        return text
    body = text[1:]
    core = body.rstrip(".,!?;:… ")
    if core.endswith(close):
        return (core[: -len(close)] + body[len(core) :]).strip()
    return body.strip() if close != "'" else text  # a lone ' may be an elision ("'tis")


# --- spelling ---------------------------------------------------------------------------------

_LETTER = r"[^\W\d_]"
_CAPITAL = r"[^\W\d_a-z]"
# Single letters separated by hyphens, dots, commas or spaces: "X-O-C", "X O C", "x. o. c.";
# capitals run together in part, hyphens between the rest ("THIBA-U-L-T", as Whisper heard
# "T, H, I, B, A, U, L, T"); or the letters all joined in capitals ("XOCHITL"), as Whisper
# writes a spelling it knows, or in capital chunks ("NKE-CHI" for "N, K, E, C, H, I"), which
# could as well be an acronym ("USB-C").
_SPELLED = re.compile(
    rf"(?<![\w'’])(?:(?P<letters>(?:{_CAPITAL}-)*{_CAPITAL}{{2,}}(?:-{_CAPITAL}){{2,}}|(?:{_CAPITAL}-){{2,}}{_CAPITAL}{{2,}}"
    rf"|(?:{_LETTER}[\s.,\-–]+)+{_LETTER})"
    rf"|(?P<capitals>{_CAPITAL}+(?:-{_CAPITAL}+)+|{_CAPITAL}{{{MIN_SPELLED_LETTERS},}}))(?![\w'’])"
)
# "W" written as its spoken name at the start or inside a spelling: "double you O J C I E C H".
# Only before enough single letters to be a spelling with it: "double you a favour" is no "W a".
_DOUBLE_U = re.compile(
    rf"(?<![\w'’])double[\s-]?(?:you|u)(?=(?:[\s.,\-–]+{_LETTER}(?![\w'’])){{{MIN_SPELLED_LETTERS - 1}}})", re.IGNORECASE
)
# Spoken words set off from what follows by punctuation ("Kiva. C-A-O-…").
_SET_OFF = re.compile(r"[.,;:—–]\s*$")
# Words between a spoken word and its spelling that belong to neither ("Xochitl, spelled X-O-C").
_CONNECTOR = re.compile(
    r"(?:[\s,:;\-–—]+|(?<![\w'’])(?:spelled|spelt|spelling|as|like|that's|that’s|that\s+is|"
    r"it's|it’s|it\s+is|which\s+is|is)(?![\w'’]))+$",
    re.IGNORECASE,
)


def join_spelling(text: str) -> str:
    """Join spelled-out letters into one word, which replaces the spoken word(s) it spells.

    A run of at least three single letters separated by hyphens, dots, commas or spaces is a
    spelled word ("X-O-C-H-I-T-L", "X O C H I T L", "x. o. c. h."). The joined word gets a capital
    first letter and lowercase rest. If the one to three words just before the run (ignoring
    commas and words like "spelled") are loosely similar to it, the spelling replaces them:
    "Sochi tell X O C H I T L" becomes "Xochitl". If that spoken word is spelled exactly so, its
    own casing is kept ("PostgreSQL, P-O-S-T-G-R-E-S-Q-L" stays "PostgreSQL"). Otherwise the
    joined word takes the place of the letters alone.

    A word in capitals of three letters or more ("sochitl. XOCHITL"), or capitals in hyphenated
    chunks ("Ketchie. NKE-CHI"), is a spelling only when it replaces a similar spoken word before
    it; otherwise it is an acronym and stays as written ("USB-C").
    """
    return _join_spelling(text)[0]


def _join_spelling(text: str, known: Sequence[str] = ()) -> tuple[str, list[str]]:
    """``join_spelling``, and the spoken words each spelling replaced (where the word was heard).

    A spelling of one of the ``known`` words, or one letter off it (``known_spelling``), is that
    word: a letter is easily misheard ("J, A, C, E, K" came out as "J-I-C-E-K" right after
    "Jacek" had been taught), and a user spells the name they taught before.
    """
    text, spellings = _spellings(text)
    out, spelled_over, pos = [], [], 0
    for match, letters in spellings:
        word = letters[0].upper() + "".join(letters[1:]).lower()
        word = known_spelling(word, known) or word
        after = match.end()
        if "." in match.group() and text[after : after + 1] == ".":
            after += 1  # "x. o. c." ends with the last letter's dot, not a sentence's
        before = text[pos : match.start()]
        replaced = _replace_spoken(before, word)
        if replaced is None and match["capitals"]:
            continue  # an acronym ("NASA"): left in the text as it is
        if replaced is None:
            out.append(before + word)
        else:
            out.append(replaced[0])
            spelled_over.append(replaced[1])
        pos = after
    out.append(text[pos:])
    return "".join(out), spelled_over


def _spellings(text: str) -> tuple[str, list[tuple[re.Match, list[str]]]]:
    """``text`` with "double you" written as W, and its candidate spellings with their letters
    (at least ``MIN_SPELLED_LETTERS``)."""
    text = _DOUBLE_U.sub("W", text)
    found = ((match, _ALNUM.findall(match.group())) for match in _SPELLED.finditer(text))
    return text, [(match, letters) for match, letters in found if len(letters) >= MIN_SPELLED_LETTERS]


def spells_letters(text: str) -> bool:
    """Whether ``text`` holds a run of single letters ("N-G-O-C-I", "Z, B, I, G"), not counting words
    in capitals ("INF", "NKE-CHI"), which may as well be a reading of a name as an acronym."""
    return any(match["letters"] for match, _ in _spellings(text)[1])


def holds_spelling(text: str) -> bool:
    """Whether ``text`` spells a word out: ``join_spelling`` would join something in it once its
    lead-ins are gone, as ``parse_spoken_correction`` joins it ("No, I said catchy. NKE-CHI.")."""
    text = strip_preamble(text)
    return join_spelling(text) != text


def _replace_spoken(before: str, word: str) -> tuple[str, str] | None:
    """``before`` + ``word``, where ``word`` replaces the last few words of ``before`` it spells,
    and those words; None when none of them is similar enough."""
    connector = _CONNECTOR.search(before)
    head = before[: connector.start()] if connector else before
    tokens = list(_TOKEN.finditer(head))
    target = word.lower()
    best_k, best_score = 0, 0.0
    for k in range(1, min(3, len(tokens)) + 1):
        spoken = _squash(" ".join(t.group() for t in tokens[-k:]))
        score = _similarity(spoken, target) if spoken else 0.0
        if score > best_score:  # ties keep fewer words
            best_k, best_score = k, score
    if best_score < SPELLING_MATCH_SIMILARITY:
        # "Kiva. C-A-O-I-M-H-E", "speak NIF. Z-B-I-G-N-I-E-W": the few words set off before the
        # spelling, with nothing else before them, are the word it spells, however differently
        # a rare name is written from how it sounds
        if not 1 <= len(tokens) <= 3 or not _SET_OFF.search(before):
            return None
        best_k = len(tokens)
    first = tokens[-best_k]
    lead = _LEAD_PUNCT.match(first.group()).group()
    if best_k == 1:
        core = first.group()[len(lead) :]
        core = core[: len(core) - len(_TRAIL_PUNCT.search(core).group())]
        if core.lower() == target:
            word = core  # the spoken word was already right: keep its casing
    return head[: first.start()] + lead + word, head[first.start() :]


# --- merge or replace -------------------------------------------------------------------------


def parse_spoken_correction(spoken: str, hypothesis: str, attempt: str | None = None, known: Sequence[str] = ()) -> Correction:
    """The label for a correction the user said, as the model transcribed it.

    Lead-ins are stripped (``strip_preamble``) and spelled-out words joined (``join_spelling``).
    A short correction (at most five words and about half the hypothesis) is merged into the
    span of the hypothesis it is most similar to in characters; "not X, Y" merges Y where X
    was heard, and a spelled word where the words it replaced were ("so cheetal. X-O-C-H-I-T-L"
    where "Sochi at all" was heard). A longer correction, or one that matches no span, is the
    whole label; its first letter is capitalized when the hypothesis starts with a capital (the
    user spoke a sentence).
    A correction that says only one ``known`` word (``_only_term_said``) is that word, and
    confirms the hypothesis where the hypothesis already writes it.
    ``attempt``, the adapter's own reading when the term guard showed another, helps find the
    span (``_span_where``). ``known``: the words the user taught (the glossary), which a spelling
    one letter off stands for (``_join_spelling``). Raises CorrectionRejected when nothing is left
    to learn from ("No."), or the text is over ``MAX_CORRECTION_CHARS``. Control characters are
    removed first (``clean_text``).
    """
    spoken = clean_text(spoken)
    _require_length(spoken)
    text, wrong = _split_preamble(spoken, hypothesis)
    text, spelled_over = _join_spelling(text, known)
    text, more_wrong = _split_preamble(text, hypothesis)  # "it's spelled …" after joining
    # the words a spelling replaced are how the name sounded: where it was heard ("speak NIF. Z-B-I-…")
    wrong = more_wrong or wrong or (spelled_over[0] if len(spelled_over) == 1 else None)
    _require_content(text)
    term = _only_term_said(text, known)
    if term is not None:
        written = next((i for i, w in enumerate(_TOKEN.findall(hypothesis)) if word_key(w) == word_key(term)), None)
        if written is not None:  # the transcript already writes it: the correction confirms it
            return Correction(hypothesis, "merge", (written, written + 1))
        text = term
    correction = _merge_or_replace(text, hypothesis, wrong, attempt)
    if correction.kind == "replace" and hypothesis.lstrip()[:1].isupper():
        label = correction.label
        correction = Correction(label[:1].upper() + label[1:], "replace")
    return correction


def _only_term_said(text: str, known: Sequence[str]) -> str | None:
    """The taught word a correction says, when it says nothing else; None otherwise.

    A name said and then spelled is often heard as the name twice ("No, I said Nkechi.
    Nkechi.") or, with the glossary as the prompt, as a mishearing, the name, and the letters
    left over ("No, I send Ketchi. Nkechi, H.I."): one word is the term (``known_spelling``),
    every other sounds like it or is a single letter. Held-out 5's replay taught "Ketchi. Nkechi, H.I
    hosting the dinner…" from that, where the transcript already read "Nkechi is hosting…".
    """
    words = [(w, _letters(w)) for w in _WORD.findall(text)]
    terms = {known_spelling(w, known) for w, letters in words if len(letters) > 1} - {None}
    if len(terms) != 1:
        return None
    (term,) = terms
    target = _letters(term)
    # each word the term or sounds like it (a near spelling does too), or a letter of a spelling
    named = all(len(letters) == 1 or _similarity(letters, target) >= SPELLING_MATCH_SIMILARITY for _, letters in words)
    return term if named else None


def typed_correction(text: str, hypothesis: str, attempt: str | None = None) -> Correction:
    """The label for a correction the user typed.

    Typed text is taken as written: no lead-ins or spelling are interpreted. A short fragment
    ("Kubernetes") is merged into the most similar span of the hypothesis (or of ``attempt``), as
    for spoken corrections; anything else is the whole label. Raises CorrectionRejected when the text holds
    no letters or digits, or more than ``MAX_CORRECTION_CHARS``. Control characters are removed first (``clean_text``).
    """
    text = clean_text(text).strip()
    _require_length(text)
    _require_content(text)
    return _merge_or_replace(text, hypothesis, None, attempt)


def _require_content(text: str) -> None:
    if not _has_content(text):
        raise CorrectionRejected(
            "The correction is empty: type or say the words that should have been heard."
        )


def _require_length(text: str, max_chars: int = MAX_CORRECTION_CHARS) -> None:
    """Checked before anything reads the text: parsing and alignment grow faster than its length."""
    if len(text) > max_chars:
        raise CorrectionRejected(
            f"The correction is {len(text)} characters long, over the limit of {max_chars}: "
            "correct one utterance at a time."
        )


def _merge_or_replace(text: str, hypothesis: str, wrong: str | None, attempt: str | None = None) -> Correction:
    n_words = len(_TOKEN.findall(text))
    n_heard = len(_TOKEN.findall(hypothesis))
    if n_words <= MAX_FRAGMENT_WORDS and 2 * n_words <= n_heard + 1:
        span = _best_span(wrong, hypothesis) if wrong else None
        span = span or _best_span(text, hypothesis)
        if span is None and attempt:
            span = _span_where(attempt, _best_span(text, attempt), hypothesis)
        if span is not None:
            return Correction(_splice(hypothesis, span, text), "merge", span)
    return Correction(text, "replace")


def _span_where(attempt: str, span: tuple[int, int] | None, hypothesis: str) -> tuple[int, int] | None:
    """The hypothesis words that stand where ``span`` of ``attempt`` (another reading of the same audio) is.

    The term guard shows the base model's words where the adapter's attempt at a name was not yet
    the name ("Sotridal" where the adapter wrote "Sochitl"): the attempt, closer in spelling to a
    spoken "Xochitl", says which words the correction replaces.
    """
    if span is None:
        return None
    start, end = span
    covered: list[int] = []
    for op, h1, h2, a1, a2 in SequenceMatcher(None, _token_keys(hypothesis), _token_keys(attempt), autojunk=False).get_opcodes():
        if op == "equal":  # word for word: the part that overlaps the span
            covered += range(h1 + max(start, a1) - a1, h1 + min(end, a2) - a1)
        elif a1 < end and start < max(a2, a1 + 1):  # read differently, at the span: all of it
            covered += range(h1, h2)
    return (min(covered), max(covered) + 1) if covered else None


def _token_keys(text: str) -> list[str]:
    """One ``word_key`` per whitespace-separated token of ``text``."""
    return [word_key(token) for token in _TOKEN.findall(text)]


def _best_span(fragment: str, hypothesis: str) -> tuple[int, int] | None:
    """The hypothesis words (start, end) most similar to ``fragment``, or None below the floor.

    Spans of 1 to (words in fragment + 2) words are compared on squashed characters, so a split
    ("Terra form") matches its joined word. Ties go to the span whose text is the fragment
    exactly, then to the span whose word count is closest to the fragment's, then the earliest.
    """
    target = _squash(fragment)
    if not target:
        return None
    tokens = list(_TOKEN.finditer(hypothesis))
    frag_core = _strip_edges(fragment)
    frag_words = normalize_words(fragment)
    n = len(_TOKEN.findall(fragment))
    matcher = SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(target)  # seq2 is the one SequenceMatcher preprocesses: reuse it
    best, best_key = None, None
    for start in range(len(tokens)):
        for end in range(start + 1, min(len(tokens), start + n + 2) + 1):
            words = hypothesis[tokens[start].start() : tokens[end - 1].end()]
            squashed = _squash(words)
            if not squashed:
                continue
            matcher.set_seq1(squashed)
            if matcher.real_quick_ratio() < MERGE_MIN_SIMILARITY:
                continue
            score = matcher.ratio()
            if score < MERGE_MIN_SIMILARITY:
                continue
            exact = _strip_edges(words) == frag_core
            same_words = normalize_words(words) == frag_words
            key = (score, exact, same_words, -abs(end - start - n), -start)
            if best_key is None or key > best_key:
                best, best_key = (start, end), key
    return best


def _strip_edges(text: str) -> str:
    """``text`` without the punctuation at its two ends ("“Terraform.”" → "Terraform")."""
    text = text.strip()
    lead = len(_LEAD_PUNCT.match(text).group())
    trail = len(_TRAIL_PUNCT.search(text).group())
    return text[lead : len(text) - trail] if lead + trail < len(text) else ""


def _splice(hypothesis: str, span: tuple[int, int], fragment: str) -> str:
    """The hypothesis with words ``span`` replaced by ``fragment``.

    Everything outside the span is kept character for character. The fragment takes the
    punctuation before the span's first word and after its last ("tonight." stays "…tonight.")
    instead of its own. Its first word takes the hypothesis' casing when it is a function word
    heard right ("With Terraform" merges as "with Terraform"), and a capital when the span
    starts a capitalized hypothesis.
    """
    tokens = list(_TOKEN.finditer(hypothesis))
    first, last = tokens[span[0]], tokens[span[1] - 1]
    fragment = fragment.strip()
    core = fragment[len(_LEAD_PUNCT.match(fragment).group()) :]
    core = core[: len(core) - len(_TRAIL_PUNCT.search(core).group())]
    lead = _LEAD_PUNCT.match(first.group()).group()
    trail = _TRAIL_PUNCT.search(last.group()).group()
    heard_first = first.group()[len(lead) :]
    spoken_first = core.split(maxsplit=1)[0] if core.split() else ""
    same_word = _strip_edges(heard_first).lower() == spoken_first.lower()
    if same_word and spoken_first.lower() in STOPWORDS:
        core = heard_first[: len(spoken_first)] + core[len(spoken_first) :]
    elif span[0] == 0 and heard_first[:1].isupper() and core[:1].islower():
        core = core[:1].upper() + core[1:]
    return hypothesis[: first.start()] + lead + core + trail + hypothesis[last.end() :]


# --- rejection --------------------------------------------------------------------------------


def check_correction(
    hypothesis: str, label: str, *, max_chars: int = MAX_CORRECTION_CHARS, min_similarity: float = 0.3
) -> None:
    """Raise CorrectionRejected, with the reason, when ``label`` does not correct ``hypothesis``.

    A label is rejected when it holds no letters or digits, when it is longer than ``max_chars``,
    or when it shares too little with the hypothesis to be a correction of it (likely a new
    request, or a slip). Sharing is measured word by word, not on whole strings, because any two
    English sentences share about a third of their characters, and function words ("the", "is")
    are left out unless a text has no other words, because unrelated sentences share them
    too. Each word of one text counts
    as found in the other when it appears there, or when a word or two adjacent words there are
    at least 60% similar in characters ("Cubanites" for "Kubernetes", "Postgres QL" for
    "PostgreSQL"). The share of characters found is taken both ways (label in hypothesis,
    hypothesis in label) and the two combined as a harmonic mean; below ``min_similarity`` the
    label is rejected. So a misheard name in a sentence passes on the words around it, while an
    unrelated sentence fails even when some letters line up. An empty hypothesis (nothing was
    heard) accepts any non-empty label.
    """
    _require_length(label, max_chars)
    _require_content(label)
    if not _has_content(hypothesis):
        return
    similarity = word_similarity(hypothesis, label)
    if similarity < min_similarity:
        raise CorrectionRejected(
            f"The correction shares too little with what was heard ({similarity:.0%} similar): "
            "it looks like a new request, not a correction, so nothing was learned."
        )


def word_similarity(a: str, b: str) -> float:
    """How much of ``a`` and ``b`` is found in the other, word by word, from 0 to 1.

    See check_correction for the rule; exposed so that reports can show the number.
    """
    words_a, words_b = _squashed_words(a), _squashed_words(b)
    if not words_a or not words_b:
        return 1.0 if words_a == words_b else 0.0
    found_a, found_b = _found_share(words_a, words_b), _found_share(words_b, words_a)
    if found_a + found_b == 0:
        return 0.0
    return 2 * found_a * found_b / (found_a + found_b)


def _squashed_words(text: str) -> list[str]:
    """The squashed words of ``text``, without function words unless it has nothing else."""
    words = [(_normal(word), _squash(word)) for word in _WORD.findall(text)]
    content = [squashed for normal, squashed in words if normal not in STOPWORDS and squashed]
    return content or [squashed for _, squashed in words if squashed]


def _found_share(words: list[str], other: list[str]) -> float:
    """Share of the characters of ``words`` found in ``other`` (exactly, or as a close word)."""
    exact = set(other)
    candidates = list(exact | {x + y for x, y in zip(other, other[1:])})  # "postgres"+"ql"
    credit: dict[str, float] = {}
    for word in set(words) - exact:
        credit[word] = _closest(word, candidates)
    total = sum(len(w) for w in words)
    found = sum(len(w) * (1.0 if w in exact else credit[w]) for w in words)
    return found / total


def _closest(word: str, candidates: list[str]) -> float:
    """The best similarity of ``word`` to a candidate; 0 below WORD_MATCH_SIMILARITY."""
    matcher = SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(word)
    best = 0.0
    n = len(word)
    for candidate in candidates:
        m = len(candidate)
        if 2 * min(n, m) / (n + m) < max(best, WORD_MATCH_SIMILARITY):
            continue  # lengths alone rule it out: skip the costly comparison
        matcher.set_seq1(candidate)
        if matcher.quick_ratio() < max(best, WORD_MATCH_SIMILARITY):
            continue  # an upper bound of ratio(), cheaper to compute
        best = max(best, matcher.ratio())
    return best if best >= WORD_MATCH_SIMILARITY else 0.0


# --- what was learned -------------------------------------------------------------------------


def is_common_word(word: str, tokenizer, sentence_initial: bool = False) -> bool:
    """Whether ``word`` is everyday English, never a glossary term: a lowercase word of letters that
    ``tokenizer`` (Whisper's) encodes, with its leading space, as one token ("build", "ask").

    A name is capitalized, so "Build" is not common; but the capital that begins a sentence is no
    name's ("Ask Xochitl…"): with ``sentence_initial``, a capitalized word counts as its lowercase form.
    """
    if sentence_initial and word[:1].isupper() and word[1:].islower():
        word = word.lower()
    return word.isalpha() and word.islower() and len(tokenizer.encode(" " + word)) == 1


_SENTENCE_END = re.compile(r"(?:^|[.!?…][\"'”’)\]]*)\s*[\"'“‘(\[]*$")


def _begins_sentence(text: str, start: int) -> bool:
    """Whether the word at ``start`` begins a sentence: nothing but quotes before it, or a full stop, "!" or "?"."""
    return _SENTENCE_END.search(text, 0, start) is not None


def learned_terms(hypothesis: str, label: str, tokenizer=None) -> list[str]:
    """The words of the label that the model got wrong: what the glossary should remember.

    A term is a word of the label whose normalized form (``normalize_words``) is not among the
    hypothesis' words. Common function words ("the", "with"), words without letters ("3") and a
    lowercase inflection of a word that was heard ("fixed" for "fix": grammar, not vocabulary;
    "Memcached" for "Memcache" stays a term) are never terms; nor is a word the label only spells
    differently from what was heard ("standup" for "stand-up", "twenty dollars" for "$20": see
    ``_respellings``); nor, given Whisper's ``tokenizer``, an everyday word (``is_common_word``,
    "Ask" at the start of a sentence included): the glossary is for names and rare words. Terms keep
    the label's spelling ("PostgreSQL"), come in the label's order, and appear once each. A label
    equal to the hypothesis teaches no terms.
    """
    heard = set(normalize_words(hypothesis))
    matches = list(_WORD.finditer(label))
    words = [m.group() for m in matches]
    candidates, seen = [], set()
    for index, word in enumerate(words):
        key = _normal(word)
        if key in heard or key in seen or key in STOPWORDS or not any(c.isalpha() for c in word):
            continue
        if tokenizer is not None and is_common_word(word, tokenizer, _begins_sentence(label, matches[index].start())):
            continue
        if word[:1].islower() and _inflects(key, heard):
            continue
        seen.add(key)
        candidates.append(index)
    respelled = _respellings(hypothesis, words, candidates) if candidates else set()
    return [words[i] for i in candidates if i not in respelled]


RESPELLING_MAX_WORDS = 3  # "twenty five dollars" for "$25"


def _respellings(hypothesis: str, label_words: list[str], candidates: list[int]) -> set[int]:
    """Which ``candidates`` (indices into ``label_words``) only re-spell heard words: the model knew them.

    A run of label words re-spells what was heard when whisper's normalizer (the one scoring
    uses) reads it as words of the normalized hypothesis ("twenty dollars" and "$20" both read
    "$20"), or, for one lowercase word, when its letters and digits are a heard word's ("standup",
    "stand-up"; but "PostgreSQL" for "Postgres QL" is a term). A capitalized word is a name, and
    how it is written is what the user taught: "Knative" for "K-native" is a term (as for
    ``_inflects``). The normalizer is slow (about 0.1 ms a call): the hypothesis is normalized
    once, not run by run.
    """
    from .evaluate import normalize  # whisper's normalizer: loaded only when a label differs

    heard = f" {normalize(hypothesis)} "
    heard_squashed = {_squash(t) for t in hypothesis.split()}

    def respells(run: list[str]) -> bool:
        said = normalize(" ".join(run))
        return bool(said) and f" {said} " in heard or (len(run) == 1 and run[0][:1].islower() and _squash(run[0]) in heard_squashed)

    def runs_through(index: int):
        for n in range(1, RESPELLING_MAX_WORDS + 1):
            for i in range(max(0, index - n + 1), min(index, len(label_words) - n) + 1):
                yield label_words[i : i + n]

    return {index for index in candidates if any(respells(run) for run in runs_through(index))}


_INFLECTIONS = ("s", "es", "ed", "d", "ing", "'s")


def _inflects(word: str, heard: set[str]) -> bool:
    """Whether ``word`` and a heard word differ only by an English inflection ending."""
    return any(word == h + end or h == word + end for h in heard for end in _INFLECTIONS)
