"""A clean glossary: a correction teaches the names and rare words it fixed, never everyday words (Whisper's tokenizer says which)."""

from __future__ import annotations

import pytest
import whisper.tokenizer

from ffasr_cli.corrections import is_common_word, learned_terms


@pytest.fixture(scope="module")
def tokenizer():
    return whisper.tokenizer.get_tokenizer(False, language="en", task="transcribe")  # tiny.en's


@pytest.mark.parametrize(
    ("word", "initial", "common"),
    [
        ("build", False, True), ("ask", False, True),
        ("Ask", False, False), ("Ask", True, True),  # a capital is a name's, unless it begins a sentence
        ("Xochitl", True, False), ("Kubernetes", False, False), ("nginx", False, False),  # several tokens: rare
        ("ASK", True, False), ("e-mail", False, False),  # not a lowercase word of letters
    ],
)  # fmt: skip
def test_is_common_word(tokenizer, word, initial, common):
    assert is_common_word(word, tokenizer, sentence_initial=initial) is common


@pytest.mark.parametrize(
    ("heard", "label", "terms"),
    [
        ("Us Sochi to bill the image.", "Ask Xochitl to build the image.", ["Xochitl"]),
        ("okay. tall sochi", 'Okay. Tell Xochitl. "Build it."', ["Xochitl"]),  # after a full stop, and after a quote
        ("we said", "we said Tell", ["Tell"]),  # capitalized inside a sentence: a name
        ("Deploy with Cubanites tonight", "Deploy with Kubernetes tonight", ["Kubernetes"]),
        ("it is at 3", "it's at three on the dot", []),
    ],
)
def test_a_whole_sentence_correction_teaches_only_names_and_rare_words(tokenizer, heard, label, terms):
    assert learned_terms(heard, label, tokenizer) == terms


def test_without_a_tokenizer_every_word_the_model_got_wrong_is_a_term():
    assert learned_terms("Us Sochi to bill the image.", "Ask Xochitl to build the image.") == ["Ask", "Xochitl", "build"]
