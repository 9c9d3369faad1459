"""The hand-written text the speech benchmark is rendered from (scripts/speech/, rendered by scripts/make_speech.py)."""

import re
from pathlib import Path

from ffasr_cli.evaluate import contains_term

SPEECH = Path(__file__).resolve().parent.parent / "scripts" / "speech"


def words(sentence: str) -> set[str]:
    return set(re.findall(r"[a-z']+", sentence.lower()))


def test_each_harder_sound_alike_has_a_second_sentence_with_its_words_and_no_term():
    lines = [line.split("\t") for line in (SPEECH / "soundalikes_hard.tsv").read_text(encoding="utf-8").splitlines()]
    terms = {line[0] for line in lines}
    assert all(len(line) == 4 for line in lines)
    for term, kind, first, again in lines:
        assert kind in ("misheard", "split", "onset")
        assert again != first and words(again) & words(first)  # the sound-alike's words, in another sentence
        assert not [t for t in terms for s in (first, again) if contains_term(s, t)], (first, again)
