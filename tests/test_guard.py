"""The term guard's word alignment (pure text: the engine's use of it is in test_engine/test_session)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ffasr_cli.corrections import normalize_words, word_key
from ffasr_cli.guard import guarded_text, word_logprobs

# (base model, adapted model, taught terms, shown): the first four were measured on tiny.en
CASES = [
    ("Press star to cancel.", "Przor to cancel.", ["Przemek"], "Press star to cancel."),
    ("She finished reading the book in two days.", "Cucumber finished reading the book in two days.", ["Ceph"],
     "She finished reading the book in two days."),
    ("Could you give this folder to Kiva?", "Could you give this folder to Caoimhe?", ["Caoimhe"],
     "Could you give this folder to Caoimhe?"),
    ("We are all going to keep us birthday dinner.", "We are all going to Caoimhe's birthday dinner.", ["Caoimhe"],
     "We are all going to Caoimhe's birthday dinner."),
    # a term and a garbled onset in one sentence: the term stays, the onset goes
    ("My sister met Kiva.", "Mysyster met Caoimhe.", ["Caoimhe"], "My sister met Caoimhe."),
    # punctuation and case alone are not a change: the adapted text stands
    ("the post office", "The post office.", [], "The post office."),
    # words the adapter dropped come back
    ("Turn left at the next light.", "Turn at the light.", ["Nginx"], "Turn left at the next light."),
    ("", "", [], ""),
]


@pytest.mark.parametrize("base, adapted, terms, shown", CASES)
def test_guarded_text(base, adapted, terms, shown):
    assert guarded_text(base, adapted, terms) == shown


def test_word_key_ignores_case_punctuation_and_possessive():
    assert word_key("Caoimhe's,") == word_key("caoimhe") == "caoimhe"
    assert word_key("PostgreSQL.") == "postgresql"


words = st.lists(st.sampled_from(["the", "cat", "Ceph", "Seth", "safe", "sat", "on", "mat."]), max_size=8).map(" ".join)


@given(words, words)
def test_without_terms_the_base_words_are_shown(base, adapted):
    assert normalize_words(guarded_text(base, adapted, [])) == normalize_words(base)


@given(words, words)
def test_a_taught_term_is_shown_and_nothing_else_of_the_adapter_is(base, adapted):
    shown = normalize_words(guarded_text(base, adapted, ["Ceph"]))
    if "ceph" in normalize_words(adapted):
        assert "ceph" in shown
    else:
        assert shown == normalize_words(base)


def test_word_logprobs_are_the_least_sure_token_of_each_word():
    pieces = [" Ask", " C", "ia", "rán", " about", " it", "."]
    assert word_logprobs(pieces, [-0.1, -0.2, -1.5, -0.3, -0.05, -0.01, -0.2]) == [-0.1, -1.5, -0.05, -0.2]


def test_an_unsure_term_does_not_override_the_base_model():
    base, adapted = "Seth is fixing the bike.", "Ceph is fixing the bike."
    unsure, sure = [-1.13, -0.1, -0.1, -0.1, -0.1], [-0.5, -0.1, -0.1, -0.1, -0.1]
    assert guarded_text(base, adapted, ["Ceph"], unsure, min_logprob=-1.0) == base
    assert guarded_text(base, adapted, ["Ceph"], sure, min_logprob=-1.0) == adapted
    assert guarded_text(base, adapted, ["Ceph"], [-5.0], min_logprob=-1.0) == adapted  # not one per word: trusted
    assert guarded_text(base, adapted, ["Ceph"], None, min_logprob=-1.0) == adapted
