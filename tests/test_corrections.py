"""Corrections: preambles, spelling, merge or replace, rejection, learned terms."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from ffasr_cli.corrections import (
    Correction,
    check_correction,
    clean_text,
    holds_spelling,
    join_spelling,
    known_spelling,
    learned_terms,
    normalize_words,
    parse_spoken_correction,
    spells_letters,
    strip_preamble,
    typed_correction,
)
from ffasr_cli.errors import CorrectionRejected, FfasrError

HEARD = "Deploy it with Terra form tonight."
RIGHT = "Deploy it with Terraform tonight."

# --- normalize_words ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Deploy it, NOW!", ["deploy", "it", "now"]),
        ("Don’t use state-of-the-art e-mail.", ["don't", "use", "state-of-the-art", "e-mail"]),
        ("'quoted' -dash- _under_", ["quoted", "dash", "under"]),
        ("PostgreSQL 15.2", ["postgresql", "15", "2"]),
        ("... -- !!", []),
    ],
)
def test_normalize_words(text, words):
    assert normalize_words(text) == words


# --- strip_preamble ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spoken",
    [
        "No, I meant Terraform.",
        "no I meant Terraform.",
        "No I said Terraform.",
        "I said Terraform.",
        "I said, Terraform.",
        "I meant: Terraform.",
        "What I said was Terraform.",
        "It's Terraform.",
        "it is Terraform.",
        "That's Terraform.",
        "That should be Terraform.",
        "Actually, Terraform.",
        "Sorry, it's Terraform.",
        "Nope. Terraform.",
        "NO, I MEANT Terraform.",
        "No, no, I meant, it's Terraform.",
        'I said "Terraform".',
        "Not Terra form, Terraform.",
        "not terra form but Terraform.",
        "Sorcha, I meant Terraform.",  # "No, sorry, I meant…" heard with the glossary as the prompt
        "Sorcha means I meant Terraform.",  # the same, in another voice
        "No, I send Terraform.",  # "No, I said…" heard with the hypothesis as the prompt
    ],
)
def test_strip_preamble(spoken):
    assert strip_preamble(spoken) == "Terraform."


@pytest.mark.parametrize("text", ["November rain", "Nothing works", "Itself", "Terraform", ""])
def test_strip_preamble_leaves_words_that_only_start_like_one(text):
    assert strip_preamble(text) == text


def test_strip_preamble_of_only_a_preamble_is_empty():
    assert strip_preamble("No.") == ""
    assert strip_preamble("No, I meant") == ""


def test_strip_preamble_keeps_a_preamble_that_the_hypothesis_starts_with():
    assert strip_preamble("No parking here", hypothesis="No parking hear.") == "No parking here"
    assert strip_preamble("Actually it works", hypothesis="Actually it work") == "Actually it works"
    assert strip_preamble("Well, I said it twice", hypothesis="Well, I said it nice") == "Well, I said it twice"
    assert strip_preamble("No, I sent it twice", hypothesis="No, I sent it nice") == "No, I sent it twice"
    assert strip_preamble("I sent it twice", hypothesis="I send it twice") == "I sent it twice"  # only after "No"
    # The outer "No, I meant" is a preamble; the inner "no" is the sentence.
    assert strip_preamble("No, I meant no parking here", hypothesis="No parking hear.") == (
        "no parking here"
    )


# --- join_spelling -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spoken", "joined"),
    [
        ("Xochitl, X-O-C-H-I-T-L", "Xochitl"),
        ("Sochi tell X O C H I T L", "Xochitl"),
        ("Sochi tell, X-O-C-H-I-T-L.", "Xochitl."),
        ("K-U-B-E-R-N-E-T-E-S", "Kubernetes"),
        ("k u b e r n e t e s", "Kubernetes"),
        ("x. o. c. h. i. t. l.", "Xochitl"),
        ("X, O, C, H, I, T, L", "Xochitl"),
        ("Xochitl, spelled X-O-C-H-I-T-L.", "Xochitl."),
        ("Xochitl, that's X-O-C-H-I-T-L", "Xochitl"),
        ("PostgreSQL, P-O-S-T-G-R-E-S-Q-L.", "PostgreSQL."),
        ("call x-o-c-h-i-t-l tomorrow", "call Xochitl tomorrow"),
        ("deploy with K-U-B-E-R-N-E-T-E-S", "deploy with Kubernetes"),
        ("Sochi X-O-C-H-I-T-L and Cubanites K-U-B-E-R-N-E-T-E-S", "Xochitl and Kubernetes"),
        # an adapted model writes the spelling it has learned in capitals, already joined
        ("No, I said sochitl. XOCHITL.", "No, I said Xochitl."),
        ("Nginx, NGINX", "Nginx"),
        ("Wojciech, double you, O, J, C, I, E, C, H.", "Wojciech."),  # W said by its name
        ("Wojciech. Double-u O J C I E C H", "Wojciech"),
        ("I owe you double you a favour", "I owe you double you a favour"),  # not before a spelling
        ("give it a double u I guess", "give it a double u I guess"),
        # the few words set off before the spelling, alone, are the word spelled, however unlike it they are
        ("Kiva. C, A, O, I, M, H, E.", "Caoimhe."),
        ("speak NIF. Z-B-I-G-N-I-E-W.", "Zbigniew."),
        ("No, I said TBO. THIBA-U-L-T.", "No, I said TBO. Thibault."),  # Whisper ran the first letters together
        ("T-H-IBAULT", "Thibault"),
        ("No, I said Ketchie. NKE-CHI.", "No, I said Nkechi."),  # "N, K, E, C, H, I" heard in chunks
        ("a well-known X-RAY", "a well-known X-RAY"),  # one capital and one word: not spelled
        ("I will call Sochi. X-O-C-H-I-T-L.", "I will call Xochitl."),  # similar: only the word it spells
        ("Please give it to Kiva. C, A, O, I, M, H, E.", "Please give it to Kiva. Caoimhe."),  # more than a name: left
    ],
)
def test_join_spelling(spoken, joined):
    assert join_spelling(spoken) == joined


@pytest.mark.parametrize(
    "text",
    [
        "A-B testing",
        "I am a cat",
        "T-shirt",
        "Plan B",
        "Deploy it.",
        "I work at NASA now.",
        "Put it in the HTTP header.",
        "It has a USB-C port.",
    ],
)
def test_join_spelling_leaves_ordinary_text(text):
    assert join_spelling(text) == text


# --- parse_spoken_correction -------------------------------------------------------------------


@pytest.mark.parametrize(
    "spoken",
    [
        "Terraform",
        "Terraform.",
        "No, I meant Terraform.",
        "I said Terraform",
        "It's Terraform.",
        "with Terraform",
        "With Terraform.",
        "Not Terra form, Terraform.",
        "Terraform, T-E-R-R-A-F-O-R-M.",
    ],
)
def test_spoken_short_correction_is_merged(spoken):
    correction = parse_spoken_correction(spoken, HEARD)
    assert correction.label == RIGHT
    assert correction.kind == "merge"
    assert correction.span is not None


def test_spoken_merge_reports_the_replaced_span():
    assert parse_spoken_correction("Terraform", HEARD) == Correction(RIGHT, "merge", (3, 5))


def test_spoken_spelled_name_is_merged():
    spoken = "No, I meant Sochi tell X O C H I T L."
    correction = parse_spoken_correction(spoken, "Call Sochi tomorrow.")
    assert correction == Correction("Call Xochitl tomorrow.", "merge", (1, 2))


@pytest.mark.parametrize(
    ("spoken", "heard", "label"),
    [  # what tiny.en heard of the dev speech's spelled corrections, and of the sentences they fix
        ("No, I said so cheetal. X-O-C-H-I-T-L.", "Sochi at all is bringing the projector to the workshop.",
         "Xochitl is bringing the projector to the workshop."),
        ("No, I said Kiva. C-A-O-I-M-H-E.", "Kiva booked the meeting room for Tuesday.", "Caoimhe booked the meeting room for Tuesday."),
        ("No, I said speak NIF. Z-B-I-G-N-I-E-W.", "Speaking of is fixing the roof on Sunday.", "Zbigniew is fixing the roof on Sunday."),
    ],
)
def test_a_spelled_name_merges_where_the_words_it_replaced_were_heard(spoken, heard, label):
    assert parse_spoken_correction(spoken, heard).label == label


def test_a_spelling_one_letter_off_a_taught_word_is_that_word():
    # held-out 4 replay: "J, A, C, E, K" heard as "J-I-C-E-K" after a typed correction taught "Jacek"
    spoken, heard = "No, I said Yachtsic. J-I-C-E-K.", "Yachtsic is fixing the bathroom tap today."
    assert parse_spoken_correction(spoken, heard).label == "Jicek is fixing the bathroom tap today."
    assert parse_spoken_correction(spoken, heard, known=["Sorcha", "Jacek"]).label == "Jacek is fixing the bathroom tap today."
    # exactly spelled, a taught word keeps the casing it was taught with
    assert parse_spoken_correction("No, P-O-S-T-G-R-E-S-Q-L.", "Postgres QL is down.", known=["PostgreSQL"]).label == "PostgreSQL is down."


@pytest.mark.parametrize(
    ("word", "terms", "term"),
    [
        ("Bigniew", ["Ceph", "Zbigniew"], "Zbigniew"),  # one letter dropped
        ("Jicek", ["Jacek"], "Jacek"),  # one changed
        ("Grazyna", ["Grażyna"], "Grażyna"),  # accents are not letters of their own
        ("ceph's", ["Ceph"], "Ceph"),  # exactly, whatever the length
        ("chef", ["Ceph"], None),  # one letter off a short term: an ordinary word as often as not
        ("Zbigniewski", ["Zbigniew"], None),  # three letters off
    ],
)
def test_known_spelling(word, terms, term):
    assert known_spelling(word, terms) == term


@pytest.mark.parametrize(
    ("spoken", "hypothesis", "label"),
    [
        # seen in replay: after one update tiny.en wrote the spelled letters as one word
        ("No, I said sochitl. XOCHITL.", "Sochitl is bringing the projector.", "Xochitl is bringing the projector."),
        # "No, I said Nkechi. N, K, E, C, H, I." as held-out 5's replay heard it: in capital chunks
        ("No, I said Ketchie. NKE-CHI.", "Ketchie is hosting the dinner on Friday.", "Nkechi is hosting the dinner on Friday."),
        # the spoken word unlike the name: set off alone before the spelling, it is the word spelled
        ("No, I said catchy. NKE-CHI.", "Ketchie is hosting the dinner on Friday.", "Nkechi is hosting the dinner on Friday."),
        ("No, I send Ketchie. NKE-CHI.", "Ketchie is hosting the dinner on Friday.", "Nkechi is hosting the dinner on Friday."),
    ],
)
def test_spoken_spelling_in_capitals_is_merged(spoken, hypothesis, label):
    assert holds_spelling(spoken)
    assert parse_spoken_correction(spoken, hypothesis).label == label


@pytest.mark.parametrize(
    ("spoken", "hypothesis", "label"),
    [
        # held-out 5's replay, the name already taught: said and spelled, it came out as a mishearing,
        # the name and two letters (glossary prompt), or as the name twice (no prompt)
        ("No, I send Ketchi. Nkechi, H.I.", "Nkechi is hosting the dinner on Friday.", "Nkechi is hosting the dinner on Friday."),
        ("No, I said Nkechi. Nkechi.", "Nkechi is hosting the dinner on Friday.", "Nkechi is hosting the dinner on Friday."),
        ("No, I send Ketchi. Nkechi, H.I.", "Ketchie is hosting the dinner.", "Nkechi is hosting the dinner."),
        ("No, I said Nkechi. Nkechi.", "Ketchie is hosting the dinner on Friday.", "Nkechi is hosting the dinner on Friday."),
        # two names: an ordinary merge
        ("No, I said Nkechi and Laoise.", "Nkechi and Lisa are hosting.", "Nkechi and Laoise are hosting."),
    ],
)
def test_a_correction_that_only_says_a_taught_word_is_that_word(spoken, hypothesis, label):
    assert parse_spoken_correction(spoken, hypothesis, known=["Laoise", "Nkechi", "paella"]).label == label


def test_holds_spelling_leaves_acronyms():
    assert not holds_spelling("It has a USB-C port.")
    assert not holds_spelling("No, I said USB-C.")


@pytest.mark.parametrize(
    "text, spelled",
    [("gozi. N-G-O-C-I.", True), ("Z, B, I, G", True), ("double you O J C", True), ("x. o. c.", True),
     # capitals are as likely a reading of a name (espeak-ng speech, tiny.en) as a spelling of it
     ("SHK PanFic to the feeding environment.", False), ("NKE-CHI", False), ("USB-C", False),
     ("Plan A or B.", False), ("T-Boe", False)],
)  # fmt: skip
def test_spells_letters_finds_single_letters_only(text, spelled):
    assert spells_letters(text) is spelled


def test_spoken_merge_keeps_the_hypothesis_outside_the_span():
    heard = "“Deploy   it with Terra form,” she said."
    correction = parse_spoken_correction("Terraform.", heard)
    assert correction.label == "“Deploy   it with Terraform,” she said."


def test_spoken_merge_at_the_start_keeps_the_capital():
    correction = parse_spoken_correction("terraform", "Terra form is down.")
    assert correction.label == "Terraform is down."


def test_spoken_not_x_y_merges_where_x_was_heard():
    # "Nguyen" alone matches nothing in "Call win tomorrow"; "not win" says where it goes.
    correction = parse_spoken_correction("Not win, Nguyen.", "Call win tomorrow.")
    assert correction == Correction("Call Nguyen tomorrow.", "merge", (1, 2))


@pytest.mark.parametrize(
    ("spoken", "label"),
    [
        (RIGHT, RIGHT),
        ("No, I said deploy it with Terraform tonight.", RIGHT),
        ("I meant: deploy it with Terraform tonight", "Deploy it with Terraform tonight"),
    ],
)
def test_spoken_sentence_replaces(spoken, label):
    assert parse_spoken_correction(spoken, HEARD) == Correction(label, "replace")


def test_spoken_sentence_starting_like_a_preamble_is_kept():
    correction = parse_spoken_correction("No, I meant no parking here.", "No parking hear.")
    assert correction == Correction("No parking here.", "replace")


def test_spoken_fragment_that_matches_nothing_replaces():
    correction = parse_spoken_correction("Nguyen", "Deploy it with Terra form tonight.")
    assert correction.kind == "replace"
    with pytest.raises(CorrectionRejected):
        check_correction(HEARD, correction.label)


def test_spoken_correction_into_an_empty_hypothesis_replaces():
    assert parse_spoken_correction("I said Terraform", "") == Correction("Terraform", "replace")


@pytest.mark.parametrize("spoken", ["No.", "", "   ", "No, I meant...", "Sorry."])
def test_spoken_correction_with_nothing_left_is_rejected(spoken):
    with pytest.raises(CorrectionRejected):
        parse_spoken_correction(spoken, HEARD)


# --- typed_correction --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "heard", "label", "span"),
    [
        ("Kubernetes", "Deploy with Cubanites tonight", "Deploy with Kubernetes tonight", (2, 3)),
        ("PostgreSQL", "The Postgres QL server is down.", "The PostgreSQL server is down.", (1, 3)),
        ("  Terraform ", HEARD, RIGHT, (3, 5)),
        ("Cubanites", "Deploy with Cubanites tonight", "Deploy with Cubanites tonight", (2, 3)),
    ],
)
def test_typed_fragment_is_merged(typed, heard, label, span):
    assert typed_correction(typed, heard) == Correction(label, "merge", span)


def test_typed_sentence_replaces_as_written():
    typed = "deploy it with terraform tonight"
    assert typed_correction(typed, HEARD) == Correction(typed, "replace")


def test_typed_text_is_not_interpreted():
    # What the user typed is the text: "No, I meant" stays (and the label is then judged).
    typed = "No, I meant to deploy it with Terraform."
    assert typed_correction(typed, HEARD) == Correction(typed, "replace")


@pytest.mark.parametrize("typed", ["", "   ", "...", "?!"])
def test_typed_empty_is_rejected(typed):
    with pytest.raises(CorrectionRejected):
        typed_correction(typed, HEARD)


# --- check_correction --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("heard", "label"),
    [
        ("Deploy with Cubanites tonight", "Deploy with Kubernetes tonight"),
        ("The Postgres QL server is down", "The PostgreSQL server is down"),
        ("Call Sochi tell tomorrow.", "Call Xochitl tomorrow."),
        ("Call win tomorrow.", "Call Nguyen tomorrow."),
        (HEARD, RIGHT),
        (RIGHT, RIGHT),
        ("Deploy it with Terraform tonight. Thank you for watching.", RIGHT),
        ("Is it on?", "Is it off?"),
        ("Sochi", "Xochitl"),
        ("", "Anything at all"),
        ("...", "Anything at all"),
    ],
)
def test_check_accepts_real_corrections(heard, label):
    check_correction(heard, label)


@pytest.mark.parametrize(
    ("heard", "label", "reason"),
    [
        (HEARD, "", "empty"),
        (HEARD, "   ", "empty"),
        (HEARD, "...", "empty"),
        (HEARD, "x" * 5000, "5000 characters"),
        ("Deploy it with Terraform tonight", "what's the weather tomorrow", "new request"),
        ("Send the report to the team", "Put the milk in the fridge", "new request"),
        ("The meeting is at three", "I need to buy some milk and eggs", "new request"),
    ],
)
def test_check_rejects_with_a_one_line_reason(heard, label, reason):
    with pytest.raises(CorrectionRejected) as caught:
        check_correction(heard, label)
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message
    assert isinstance(caught.value, FfasrError)


def test_check_limits_are_options():
    check_correction("a" * 20, "a" * 20, max_chars=20)
    with pytest.raises(CorrectionRejected):
        check_correction("a" * 21, "a" * 21, max_chars=20)
    check_correction("Call win", "Call Nguyen", min_similarity=0.3)
    with pytest.raises(CorrectionRejected):
        check_correction("Call win", "Call Nguyen", min_similarity=0.9)


# --- learned_terms -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("heard", "label", "terms"),
    [
        ("Deploy with Cubanites tonight", "Deploy with Kubernetes tonight", ["Kubernetes"]),
        ("The Postgres QL server is down", "The PostgreSQL server is down.", ["PostgreSQL"]),
        (HEARD, RIGHT, ["Terraform"]),
        ("call sochi and sochi", "Call Xochitl and Xochitl, XOCHITL!", ["Xochitl"]),
        ("deploy", "Deploy the Terraform and the Kubernetes", ["Terraform", "Kubernetes"]),
        ("it is at 3", "it's at three on the dot", ["dot"]),  # "three" only re-spells "3"
        ("I owe Neve $20 now.", "I owe Niamh twenty dollars now.", ["Niamh"]),  # "twenty dollars" is "$20"
        ("The stand-up starts at nine.", "The standup starts at nine.", []),
        ("We moved it to K-native.", "We moved it to Knative.", ["Knative"]),  # a name: its spelling is taught
        ("at three", "at 3", []),  # numbers alone are not terms
        ("deploy TERRAFORM", "Deploy Terraform", []),  # casing alone is not a term
        (RIGHT, RIGHT, []),
        ("", "Kubernetes", ["Kubernetes"]),
        ("Walk in, fix the tap", "Przemek fixed the tap", ["Przemek"]),  # an inflection is grammar
        ("I move the files to Memcache", "I moved the files to Memcached", ["Memcached"]),
    ],
)
def test_learned_terms(heard, label, terms):
    assert learned_terms(heard, label) == terms


# --- properties --------------------------------------------------------------------------------

words = st.text(
    alphabet=st.characters(categories=("L", "N", "P", "Zs")), min_size=1, max_size=12
).filter(lambda w: w.strip() != "")
VOCAB = "the a it with Deploy deploy Terraform terra form tonight PostgreSQL don't e-mail 3".split()
plain_word = st.builds(str.__add__, st.sampled_from(VOCAB), st.sampled_from(["", ".", ",", "!"]))
sentences = st.lists(plain_word, min_size=1, max_size=14).map(" ".join)
fast = settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])


@fast
@given(spoken=st.text(max_size=200), heard=st.text(max_size=200), attempt=st.none() | st.text(max_size=200))
def test_parse_never_fails_but_to_reject(spoken, heard, attempt):
    try:
        correction = parse_spoken_correction(spoken, heard, attempt)
    except CorrectionRejected:
        return
    assert correction.label.strip()
    assert (correction.span is None) == (correction.kind == "replace")


@fast
@given(fragment=plain_word, heard=sentences, attempt=sentences)
def test_a_merge_found_through_the_attempt_keeps_the_rest_of_what_was_heard(fragment, heard, attempt):
    correction = typed_correction(fragment, heard, attempt)
    if correction.kind == "merge":
        start, end = correction.span
        words = heard.split()
        assert correction.label.split()[:start] == words[:start]
        assert correction.label.split()[len(correction.label.split()) - (len(words) - end) :] == words[end:]


@fast
@given(typed=st.text(max_size=200), heard=st.text(max_size=200))
def test_typed_never_fails_but_to_reject(typed, heard):
    try:
        correction = typed_correction(typed, heard)
    except CorrectionRejected:
        return
    assert correction.label.strip()


@fast
@given(text=st.text(max_size=300))
def test_text_helpers_never_fail(text):
    strip_preamble(text, hypothesis=text)
    join_spelling(text)
    normalize_words(text)
    learned_terms(text, text[::-1])
    try:
        check_correction(text, text[::-1])
    except CorrectionRejected as rejected:
        assert "\n" not in str(rejected)


@fast
@given(heard=st.lists(words, min_size=2, max_size=12).map(" ".join), typed=st.text(max_size=60))
@example(heard="0 1", typed="0\x1b0")  # "\x1b0" is an escape sequence: the correction is "0"
def test_merged_label_contains_the_correction(heard, typed):
    try:
        correction = typed_correction(typed, heard)
    except CorrectionRejected:
        return
    if correction.kind == "merge":  # the typed words as taken: escape sequences and control characters removed
        label_words, typed_words = normalize_words(correction.label), normalize_words(clean_text(typed))
        n = len(typed_words)
        assert any(label_words[i : i + n] == typed_words for i in range(len(label_words) - n + 1))


@fast
@given(heard=st.lists(words, min_size=2, max_size=14), data=st.data())
def test_merging_a_span_of_the_hypothesis_changes_nothing(heard, data):
    text = " ".join(heard)
    tokens = list(re.finditer(r"\S+", text))
    start = data.draw(st.integers(0, len(tokens) - 1))
    end = data.draw(st.integers(start + 1, min(len(tokens), start + 5)))
    fragment = text[tokens[start].start() : tokens[end - 1].end()]
    assume(any(c.isalnum() for c in fragment))
    assume(2 * (end - start) <= len(tokens) + 1)
    correction = typed_correction(fragment, text)
    assert correction.kind == "merge"
    assert correction.label == text


@fast
@given(heard=sentences | st.text(max_size=200), label=sentences | st.text(max_size=200))
def test_learned_terms_are_label_words_not_heard(heard, label):
    terms = learned_terms(heard, label)
    label_words = normalize_words(label)
    keys = [normalize_words(t) for t in terms]
    assert all(len(key) == 1 for key in keys)  # each term is one word of the label
    keys = [key[0] for key in keys]
    assert set(keys) <= set(label_words)
    assert not set(keys) & set(normalize_words(heard))
    assert len(set(keys)) == len(keys)
    assert keys == sorted(keys, key=label_words.index)  # in label order


@fast
@given(text=st.text(max_size=300))
def test_nothing_is_learned_from_an_accepted_transcript(text):
    assert learned_terms(text, text) == []


@fast
@given(text=st.text(min_size=1, max_size=1000).filter(lambda t: any(c.isalpha() for c in t)))
def test_a_label_equal_to_the_hypothesis_is_accepted(text):
    check_correction(text, text)


def test_import_stays_light():
    code = "import sys, ffasr_cli.corrections; assert not {'torch', 'whisper'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "spoken, heard, attempt, label",
    [  # the term guard showed the base model's words; the adapter's own attempt locates the name
        ("No, I said Xochitl. X, O, C, H, I, T, L.", "Did you tell Sotridal about the office move?",
         "Did you tell Sochitl about the office move?", "Did you tell Xochitl about the office move?"),
        ("No, I said Zbigniew.", "Speak nef is fixing the roof.", "Bigniew is fixing the roof.", "Zbigniew is fixing the roof."),
        # no attempt, or one no closer than what was shown: the correction is the whole label, as before
        ("No, I said Xochitl.", "Did you tell Sotridal about it?", None, "Xochitl."),
        ("No, I said Xochitl.", "Did you tell Sotridal about it?", "Did you tell Sotridal about it?", "Xochitl."),
    ],
)
def test_the_adapters_attempt_locates_a_spoken_name(spoken, heard, attempt, label):
    assert parse_spoken_correction(spoken, heard, attempt).label == label


def test_the_adapters_attempt_locates_a_typed_name():
    assert typed_correction("Xochitl", "Ask Sotridal.", "Ask Sochitl.").label == "Ask Xochitl."
