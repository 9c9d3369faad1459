"""The term guard's word alignment (pure text: the engine's use of it is in test_engine/test_session)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ffasr_cli.corrections import learned_terms, normalize_words, word_key
from ffasr_cli.guard import MAX_TERM_WORDS, added_terms, fixed_back, guarded_text, misheard_as, word_logprobs

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
    # ...also around a term: one term does not stand for a whole sentence (a prompted reading, tiny.en)
    ("Kneve booked a table for six people.", "Niamh, Wojcached.", ["Niamh", "Wojciech"], "Kneve booked a table for six people."),
    ("Mo go go go is making bread.", "Małgorzata is making bread.", ["Małgorzata"], "Małgorzata is making bread."),
    # a word split in two, letter for letter, does not write a term said alone (espeak-trained adapter, tiny.en)...
    ("Moved to Thursday afternoon.", "Moved to Thursday after noon.", ["after"], "Moved to Thursday afternoon."),
    # ...but words joined into a term do
    ("Back up the Postgres QL database.", "Back up the PostgreSQL database.", ["PostgreSQL"], "Back up the PostgreSQL database."),
    # letters the user spelled stand: they say the word more surely than a reading of them as the
    # word, and the correction's parser joins them (an adapter on a spoken correction, tiny.en)
    ("No, I said gozi. N-G-O-C-I.", "No, I said Ngozi. Ngozi.", ["Ngozi"], "No, I said gozi. N-G-O-C-I."),
    ("", "", [], ""),
]


@pytest.mark.parametrize("base, adapted, terms, shown", CASES)
def test_guarded_text(base, adapted, terms, shown):
    assert guarded_text(base, adapted, terms) == shown


# (shown so far, the glossary-prompted reading after its guard, terms, shown): measured on espeak speech, tiny.en
ADDED = [
    # one term, in fewer words than it replaces: added
    ("Please backup the post rescue L.A. the base before Friday.", "Please backup the PostgreSQL database before Friday.",
     ["PostgreSQL"], "Please backup the PostgreSQL database before Friday."),
    ("I have a mentor, who is Doctor Will on Tuesday.", "I have a mentor, who is Doctor Nguyen on Tuesday.",
     ["Nguyen"], "I have a mentor, who is Doctor Nguyen on Tuesday."),
    # the prompt read back as a list: several terms in one stretch
    ("Sure, she'll end me, the camera for the weekend.", "Saoirse, Nguyen, Tadeusz, Mister, Camera, for the Weekend.",
     ["Saoirse", "Nguyen", "Tadeusz"], "Sure, she'll end me, the camera for the weekend."),
    # a loop: more words than were said
    ("Nguyen one the chest ornament for the third year.", "Nguyen, Nguyen, Mister, Doctor, Doctor, Doctor, Doctor, Doctor, Doctor, Doctor.",
     ["Nguyen"], "Nguyen one the chest ornament for the third year."),
    # a term already shown is not replaced by another
    ("We should thank Xochitl for it.", "We should thank Saoirse for it.", ["Xochitl", "Saoirse"], "We should thank Xochitl for it."),
    # a reading that skipped most of what was said
    ("Kneve booked a table for six people.", "Niamh, Wojcached.", ["Niamh", "Wojciech"], "Kneve booked a table for six people."),
    # words other than terms never come from the prompted reading
    ("Reload the config now.", "Reload that config now.", ["Nginx"], "Reload the config now."),
]


@pytest.mark.parametrize("text, prompted, terms, shown", ADDED)
def test_added_terms(text, prompted, terms, shown):
    assert added_terms(text, prompted, terms) == shown


def test_word_key_ignores_case_punctuation_and_possessive():
    assert word_key("Caoimhe's,") == word_key("caoimhe") == "caoimhe"
    assert word_key("PostgreSQL.") == "postgresql"


words = st.lists(st.sampled_from(["the", "cat", "Ceph", "Seth", "safe", "sat", "on", "mat."]), max_size=8).map(" ".join)


@given(words, words)
def test_without_terms_the_base_words_are_shown(base, adapted):
    assert normalize_words(guarded_text(base, adapted, [])) == normalize_words(base)


@given(words, words)
def test_a_taught_term_is_all_the_adapter_can_show_and_it_drops_few_words_for_it(base, adapted):
    text = guarded_text(base, adapted, ["Ceph"])
    shown = normalize_words(text)
    if "ceph" not in shown:
        assert shown == normalize_words(base)
    terms_shown = sum(word_key(w) == "ceph" for w in text.split())
    assert len(text.split()) >= len(base.split()) - (MAX_TERM_WORDS - 1) * terms_shown


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


def test_a_term_does_not_override_base_words_the_base_model_was_sure_of():
    sure_base = [-0.07, -0.01, -0.02, -0.01, -0.05]  # "Seth": a word it knows, heard clearly
    unsure_base = [-1.4, -0.01, -0.02, -0.01, -0.05]  # "Seth" for a name it does not know
    adapted_confidence = [-0.5, -0.1, -0.1, -0.1, -0.1]
    base, adapted = "Seth is fixing the bike.", "Ceph is fixing the bike."

    def shown(base_confidence):
        return guarded_text(base, adapted, ["Ceph"], adapted_confidence, -1.0, base_confidence, base_sure_logprob=-0.3)

    assert shown(sure_base) == base
    assert shown(unsure_base) == adapted
    assert shown(None) == adapted  # nothing known of the base model's confidence: the term stands
    # where word counts agree, each adapted word stands for its own base word, not the whole span
    base, adapted = "Granny Bake to Pie for us.", "Gráinne baked a pie for us."
    granny = [-0.15, -1.48, -0.14, -0.54, -0.19, -0.6]
    assert guarded_text(base, adapted, ["Gráinne"], [-0.34, -0.06, -0.39, -0.17, -0.02, -0.01], -1.0, granny, -0.3) == "Granny Bake to pie for us."
    # a name heard as two words ("Yana Check"): the two stand for it together
    base, adapted = "Yana Check is my favorite.", "Janáček is my favorite."
    assert guarded_text(base, adapted, ["Janáček"], [-0.3, -0.1, -0.1, -0.1], -1.0, [-0.2, -1.7, -0.1, -0.1, -0.1], -0.3) == adapted


def test_a_near_miss_of_a_taught_term_is_the_term():
    base, adapted = "My cousin's beak-n-f lives near the lake.", "My cousin's Bigniew lives near the lake."
    assert guarded_text(base, adapted, ["Zbigniew"]) == "My cousin's Zbigniew lives near the lake."
    assert guarded_text("Play the Devorjak.", "Play the Dvořá.", ["Dvořák"]) == "Play the Dvořák."  # accents aside
    # two letters off, or a short term: not a near miss
    assert guarded_text("The games were held in Sochi.", "The games were held in Xochi.", ["Xochitl"]) == "The games were held in Sochi."
    assert guarded_text("The chef is here.", "The Cepf is here.", ["Ceph"]) == "The chef is here."
    # the word itself is a taught term: kept as it is, never bent to another term one letter away
    assert guarded_text("Call Tibo.", "Call Thibault.", ["Thiba-Ult", "Thibault"]) == "Call Thibault."


def test_in_a_stretch_of_as_many_words_only_the_term_is_taken_from_the_adapter():
    base, adapted = "Send the invoice to Zbigmyath before Friday.", "Cen Cian voiced his Bigniew before Friday."
    assert guarded_text(base, adapted, ["Zbigniew"]) == "Send the invoice to Zbigniew before Friday."
    # a different number of words: the adapter's reading of the stretch, as a whole
    assert guarded_text("Yana Check is here.", "Janáček is here.", ["Janáček"]) == "Janáček is here."


def test_misheard_as_records_the_words_a_term_replaced():
    def misheard(hypothesis, label):
        return misheard_as(hypothesis, label, learned_terms(hypothesis, label))

    assert misheard("Valero backs up the cluster.", "Velero backs up the cluster.") == {"velero": {"valero"}}
    # a name heard as two words, with a function word beside it: the function word says nothing
    assert misheard("I saw Ty get at the bakery.", "I saw Tadhg at the bakery.") == {"tadhg": {"ty", "get"}}
    assert misheard("Send it to Valero.", "Send it to Valero.") == {}  # no correction, nothing learned


def test_a_term_may_replace_the_very_words_a_correction_of_it_replaced():
    """"Valero" is a word the base model knows and writes surely; the user said it was Velero."""
    base, adapted = "Valero backs up the cluster.", "Velero backs up the cluster."
    base_confidence, adapted_confidence = [-0.16, -0.02, -0.01, -0.01, -0.02], [-1.6, -0.01, -0.01, -0.01, -0.01]

    def shown(misheard, misheard_min_logprob=-2.0):
        return guarded_text(base, adapted, ["Velero"], adapted_confidence, -1.25, base_confidence, -0.3, misheard, misheard_min_logprob)

    assert shown({}) == base  # sure base word, unsure term: both tests refuse it
    assert shown({"velero": {"valero"}}) == adapted
    assert shown({"velero": {"valero"}}, misheard_min_logprob=-1.5) == base  # the adapter must still be this sure
    assert shown({"velero": {"valero"}}, misheard_min_logprob=None) == base  # the rule off
    assert shown({"ceph": {"valero"}}) == base  # what a correction of another term replaced does not count
    # a sound-alike the user never corrected keeps the base model's sure word
    seth = guarded_text("Seth is fixing the bike.", "Ceph is fixing the bike.", ["Ceph"], [-0.5] * 5, -1.25, [-0.07] * 5, -0.3,
                        {"ceph": {"seff"}}, -2.0)  # fmt: skip
    assert seth == "Seth is fixing the bike."


@pytest.mark.parametrize(
    "base, confidence, misheard, text, is_open",
    [
        ("Seth is fixing the bike", [-0.01, -0.02, -0.1, -0.01, -0.05], {}, "Seth is fixing the bike", False),  # all sure
        ("Deploy to Cuba Nates tonight", [-0.1, -0.01, -0.9, -1.4, -0.05], {}, "Deploy to Cuba Nates tonight", True),  # unsure words
        ("Deploy to Cuba Nates tonight", [-0.1, -0.01, -0.9, -1.4, -0.05], {}, "Deploy to Kubernetes tonight", False),  # written already
        ("Ask Valero about it", [-0.1, -0.05, -0.1, -0.1], {"velero": {"valero"}}, "Ask Valero about it", True),  # misheard, though sure
        ("Ask Valero about it", None, {}, "Ask Valero about it", True),  # no confidence: every word is open
        ("", [], {}, "", False),
    ],
)
def test_a_window_is_open_to_terms_only_where_the_guard_could_show_one(base, confidence, misheard, text, is_open):
    from ffasr_cli.guard import open_to_terms

    assert open_to_terms(base, confidence, -0.3, misheard, text, ["Kubernetes", "Velero"]) is is_open


def test_fixed_back_records_the_words_put_back_where_a_term_was_shown_and_their_context():

    assert fixed_back("Ceph is fixing the bike.", "Seth is fixing the bike.", ["Ceph"]) == {"ceph": {"seth": {"is"}}}
    assert fixed_back("We flew to Kubernetes last spring.", "We flew to Cuba last spring.", ["Kubernetes"]) == {"kubernetes": {"cuba": {"to", "last"}}}
    assert fixed_back("Restart Ceph now.", "Restart Ceph now please.", ["Ceph"]) == {}  # the term stays: nothing put back
    assert fixed_back("Seth is fixing it.", "Ceph is fixing it.", ["Ceph"]) == {}  # a correction to the term, not away from it
    # the base model's own spelling of the sound counts too: it is what the guard meets again
    shown, said, base = "Niamh Smith teaches piano.", "Neve Smith teaches piano.", "Neeves Smith teaches piano."
    assert fixed_back(shown, said, ["Niamh"], base) == {"niamh": {"neve": {"smith"}, "neeves": {"smith"}}}
    assert fixed_back("Ask Niamh now.", "Ask Neve now.", ["Niamh"], "Ask, Neve now.") == {"niamh": {"neve": {"ask", "now"}}}
    # a title is the same word either way: the context of "Win" is the title before it
    assert fixed_back("Dr. Nguyen is away.", "Doctor Win is away.", ["Nguyen"]) == {"nguyen": {"win": {"doctor", "is"}}}


def test_a_term_is_not_shown_again_over_the_words_it_was_fixed_back_to():
    fixed = {"ceph": {"seth": {"is"}}}
    assert guarded_text("Seth is fixing the car.", "Ceph is fixing the car.", ["Ceph"], fixed=fixed) == "Seth is fixing the car."
    assert guarded_text("Seth will call you.", "Ceph will call you.", ["Ceph"], fixed=fixed) == "Seth will call you."
    # other words the base model wrote for the term are still open to it
    assert guarded_text("Restart Seff now.", "Restart Ceph now.", ["Ceph"], fixed=fixed) == "Restart Ceph now."
    # the sentence corrected back, read again: the base model's spelling of it was put back too
    fixed = fixed_back("Niamh Smith teaches piano.", "Neve Smith teaches piano.", ["Niamh"], "Neeves Smith teaches piano.")
    shown = guarded_text("Neeves Smith teaches piano.", "Niamh Smith teaches piano.", ["Niamh"], misheard={"niamh": {"neve"}}, fixed=fixed)
    assert shown == "Neeves Smith teaches piano."
    # a title beside the words is their context, however it is written
    fixed = fixed_back("Dr. Nguyen is away.", "Doctor Win is away.", ["Nguyen"])
    shown = guarded_text("My dentist, Dr. Win, has moved.", "My dentist, Dr. Nguyen, has moved.", ["Nguyen"],
                         misheard={"nguyen": {"win"}}, misheard_min_logprob=-2.0, fixed=fixed)  # fmt: skip
    assert shown == "My dentist, Dr. Win, has moved."


def test_where_the_term_was_misheard_as_the_same_words_the_fix_back_holds_only_in_its_context():
    misheard, fixed = {"ceph": {"seth"}}, {"ceph": {"seth": {"is"}}}

    def shown(base, adapted):
        return guarded_text(base, adapted, ["Ceph"], misheard=misheard, misheard_min_logprob=-2.0, fixed=fixed)

    assert shown("Seth is fixing the car.", "Ceph is fixing the car.") == "Seth is fixing the car."  # as fixed back
    assert shown("Restart Seth on the cluster.", "Restart Ceph on the cluster.") == "Restart Ceph on the cluster."  # as corrected

    # "We booked a ten-day holiday", corrected back from Tendai: any article is the same context
    misheard, fixed = {"tendai": {"ten-day"}}, fixed_back("We booked a Tendai holiday.", "We booked a ten-day holiday.", ["Tendai"])
    assert guarded_text("The ten-day forecast shows rain.", "The Tendai forecast shows rain.", ["Tendai"],
                        misheard=misheard, misheard_min_logprob=-2.0, fixed=fixed) == "The ten-day forecast shows rain."  # fmt: skip
    assert guarded_text("Ask ten-day about the rota.", "Ask Tendai about the rota.", ["Tendai"],
                        misheard=misheard, misheard_min_logprob=-2.0, fixed=fixed) == "Ask Tendai about the rota."  # fmt: skip


def test_a_term_shown_over_words_the_base_model_was_sure_of_is_doubtful():
    from ffasr_cli.guard import doubtful_terms

    sure, unsure = [-0.01, -0.02, -0.05, -0.1], [-0.01, -1.5, -0.05, -0.1]
    assert doubtful_terms("Ask Valero about it", sure, -0.3, "Ask Velero about it", ["Velero"]) == ("Velero",)
    assert doubtful_terms("Ask Valero about it", unsure, -0.3, "Ask Velero about it", ["Velero"]) == ()  # a guess replaced
    assert doubtful_terms("Ask Valero about it", sure, -0.3, "Ask Valero about it", ["Velero"]) == ()  # no term shown
    assert doubtful_terms("Ask Valero about it", None, -0.3, "Ask Velero about it", ["Velero"]) == ()


def test_a_term_shown_over_a_word_it_was_corrected_back_to_is_doubtful():
    from ffasr_cli.guard import doubtful_terms

    unsure = [-0.1, -0.9, -0.9, -0.01, -0.01]
    fixed = {"niamh": {"neve": {"smith"}}}  # "Neve Smith teaches piano", corrected back from Niamh
    assert doubtful_terms("My cousin Neve has started", unsure, -0.3, "My cousin Niamh has started", ["Niamh"], fixed) == ("Niamh",)
    assert doubtful_terms("My cousin Neve has started", None, -0.3, "My cousin Niamh has started", ["Niamh"], fixed) == ("Niamh",)
    assert doubtful_terms("My cousin Eve has started", unsure, -0.3, "My cousin Niamh has started", ["Niamh"], fixed) == ()  # never put back
