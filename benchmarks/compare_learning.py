#!/usr/bin/env python
"""One row of the learning benchmark before and after a change, per slice, pooled over seeds.

    python benchmarks/compare_learning.py benchmarks/results/learning.json benchmarks/results/learning_decode.json
    python benchmarks/compare_learning.py before.json after.json --before-row "encoder+glossary always"

For each slice the newer file ran: term recall (sentences, pooled over seeds), sentences of the
sound-alike sets in which a learned term of the slice was written (summed over seeds, of how many
were scored), everyday WER (the mean over seeds) and updates. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

SOUNDALIKE_SETS = ("soundalike.jsonl", "soundalike_hard.jsonl", "soundalike_hard_heldout.jsonl")


def runs(path: Path, row: str) -> dict[str, list[dict]]:
    by_slice: dict[str, list[dict]] = {}
    for run in json.loads(path.read_text())["results"]:
        if run["row"] == row:
            by_slice.setdefault(run["slice"], []).append(run)
    return by_slice


def recall(slice_runs: list[dict], slice_name: str) -> str:
    metrics = [r["metrics"][f"terms_{slice_name}.jsonl"] for r in slice_runs]
    hits = sum(round(m["term_recall"] * m["utterances"] / 100) for m in metrics)
    total = sum(m["utterances"] for m in metrics)
    return f"{100 * hits / total:.1f} ({hits}/{total})"


def insertions(slice_runs: list[dict], name: str) -> str:
    metrics = [r["metrics"][name] for r in slice_runs if name in r["metrics"]]
    if not metrics:
        return "–"
    return f"{sum(m['any_term_insertions'] for m in metrics)}/{sum(m['forbidden'] for m in metrics)}"


def table(before: dict[str, list[dict]], after: dict[str, list[dict]]) -> list[str]:
    head = ["slice", "seeds", "recall before", "recall after", "sound-alikes with a term, before", "after",
            "hard sound-alikes, before", "after", "held-out hard sound-alikes, before", "after",
            "everyday WER before", "after", "updates before", "after"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, new in after.items():
        old = before.get(name, [])

        def wer(rs):
            return f"{statistics.mean(r['metrics']['general.jsonl']['wer'] for r in rs):.2f}" if rs else "–"

        def updates(rs):
            return "/".join(str(r["updates"]) for r in sorted(rs, key=lambda r: r["seed"])) if rs else "–"

        cells = [name, f"{len(old)} → {len(new)}", recall(old, name) if old else "–", recall(new, name),
                 *(insertions(rs, file) for file in SOUNDALIKE_SETS for rs in (old, new)), wer(old), wer(new), updates(old), updates(new)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--row", default="encoder+glossary")
    ap.add_argument("--before-row", help="the row of the first file, if another (default: --row)")
    ap.add_argument("--same-seeds", action="store_true", help="only the seeds both files ran, on the slices both ran")
    args = ap.parse_args()
    before, after = runs(args.before, args.before_row or args.row), runs(args.after, args.row)
    if args.same_seeds:
        after = {
            name: [r for r in new if r["seed"] in {o["seed"] for o in before[name]}]
            for name, new in after.items() if name in before
        }  # fmt: skip
    print("\n".join(table(before, after)))


if __name__ == "__main__":
    main()
