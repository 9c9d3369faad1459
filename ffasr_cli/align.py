"""Line a label up with a hypothesis by edit distance (difflib opcodes), for tokens and words."""

from __future__ import annotations

from difflib import SequenceMatcher


def position_targets(hypothesis: list[int], label: list[int]) -> list[int | None]:
    """For each hypothesis position, the label token the model should have produced there.

    Position ``i`` is the state that produced ``hypothesis[i]`` (both lists end with end-of-text).
    Before the first error this is exact. After it, the states were conditioned on the
    hypothesis prefix, so the target is an approximation: matched and substituted positions get
    their aligned label token; where the label inserts tokens, the position at the insertion point
    gets the first inserted token; where the label deletes tokens, the first deleted position gets
    the label token that follows; positions with no sensible target get ``None`` (no loss).
    """
    targets: list[int | None] = [None] * len(hypothesis)

    def put(i: int, token: int) -> None:
        if i < len(targets) and targets[i] is None:  # an insertion outranks the match after it
            targets[i] = token

    for op, i1, i2, j1, j2 in SequenceMatcher(None, hypothesis, label, autojunk=False).get_opcodes():
        if op in ("equal", "replace"):
            for k in range(min(i2 - i1, j2 - j1)):
                put(i1 + k, label[j1 + k])
        elif op == "insert":
            put(i1, label[j1])
        elif op == "delete" and j1 < len(label):
            put(i1, label[j1])
    return targets


def matched_label_positions(hypothesis: list[int], label: list[int]) -> list[bool]:
    """For each label position, whether the hypothesis already had that token there."""
    matched = [False] * len(label)
    for block in SequenceMatcher(None, hypothesis, label, autojunk=False).get_matching_blocks():
        matched[block.b : block.b + block.size] = [True] * block.size
    return matched


def split_label(window_words: list[list[str]], label_words: list[str]) -> list[list[str]]:
    """Share the label's words out over windows, following where the hypothesis words were heard.

    Each label word goes to the window of the hypothesis word it is aligned with; words the
    label adds go to the window of the word before them (the first window at the start).
    """
    owner = [w for w, words in enumerate(window_words) for _ in words]
    flat = [word for words in window_words for word in words]
    shares: list[list[str]] = [[] for _ in window_words]
    keys = [w.lower().strip(".,!?;:") for w in flat], [w.lower().strip(".,!?;:") for w in label_words]
    current = 0
    for op, i1, i2, j1, j2 in SequenceMatcher(None, *keys, autojunk=False).get_opcodes():
        for k in range(j1, j2):
            if op in ("equal", "replace") and i1 + (k - j1) < i2:
                current = owner[i1 + (k - j1)]
            elif op == "replace" and i2 > i1:
                current = owner[i2 - 1]
            shares[current].append(label_words[k])
    return shares
