"""Alignment of a label with a hypothesis: per-position targets, label sharing over windows."""

from __future__ import annotations

from ffasr_cli.align import matched_label_positions, position_targets, split_label

EOT = 0


def test_position_targets_exact_when_label_is_hypothesis():
    hyp = [5, 6, 7, EOT]
    assert position_targets(hyp, list(hyp)) == hyp
    assert matched_label_positions(hyp, list(hyp)) == [True] * 4


def test_position_targets_substitution():
    hyp, label = [5, 6, 7, EOT], [5, 9, 7, EOT]
    assert position_targets(hyp, label) == [5, 9, 7, EOT]
    assert matched_label_positions(hyp, label) == [True, False, True, True]


def test_position_targets_multi_token_substitution():
    # "Cuba Nates" (2 tokens) for "Kubernetes" (3 tokens): the extra label token has no position
    hyp, label = [5, 20, 21, 7, EOT], [5, 30, 31, 32, 7, EOT]
    targets = position_targets(hyp, label)
    assert targets[:3] == [5, 30, 31] and targets[-2:] == [7, EOT]
    assert matched_label_positions(hyp, label) == [True, False, False, False, True, True]


def test_position_targets_insertion():
    hyp, label = [5, 7, EOT], [5, 6, 7, EOT]
    # the state that produced 7 should have produced the inserted 6
    assert position_targets(hyp, label) == [5, 6, EOT]
    assert matched_label_positions(hyp, label) == [True, False, True, True]


def test_position_targets_insertion_at_end():
    hyp, label = [5, 6, EOT], [5, 6, 7, EOT]
    # the state that produced end-of-text should have continued with 7
    assert position_targets(hyp, label) == [5, 6, 7]


def test_position_targets_deletion():
    hyp, label = [5, 6, 7, EOT], [5, 7, EOT]
    # the state that produced the extra 6 should have produced 7; matched positions keep theirs
    assert position_targets(hyp, label) == [5, 7, 7, EOT]
    assert matched_label_positions(hyp, label) == [True, True, True]


def test_position_targets_lengths():
    hyp, label = [1, 2, 3, 4, EOT], [9, EOT]
    targets = position_targets(hyp, label)
    assert len(targets) == len(hyp) and targets[-1] == EOT


def test_split_label_single_window_and_identity():
    windows = [["Hello", "there."], ["General", "Kenobi."]]
    assert split_label(windows, ["Hello", "there.", "General", "Kenobi."]) == windows
    assert split_label([["a", "b"]], ["a", "c", "b", "d"]) == [["a", "c", "b", "d"]]


def test_split_label_follows_the_windows():
    windows = [["Deploy", "to", "Cuba", "Nates"], ["tonight", "please."]]
    label = "Deploy to Kubernetes tonight, please.".split()
    assert split_label(windows, label) == [["Deploy", "to", "Kubernetes"], ["tonight,", "please."]]


def test_split_label_insertion_goes_to_the_window_before():
    windows = [["one", "two"], ["three", "four"]]
    assert split_label(windows, ["one", "two", "extra", "three", "four"]) == [["one", "two", "extra"], ["three", "four"]]
    assert split_label(windows, ["zero", "one", "two", "three", "four"]) == [["zero", "one", "two"], ["three", "four"]]


def test_split_label_deletion_and_empty_window():
    windows = [["one", "two"], ["three"]]
    assert split_label(windows, ["one", "two"]) == [["one", "two"], []]
    assert split_label([[], ["a", "b"]], ["a", "b"]) == [[], ["a", "b"]]
