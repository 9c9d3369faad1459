"""Does it learn? Every mode, with and without the glossary, against the baselines, on one data set.

    python benchmarks/learning.py                 # all rows on dev; the main rows on the other slices;
                                                  # the espeak-taught rows on the held-out ones (~5.3 h on 2 cores)
    python benchmarks/learning.py --rows dev=encoder,prompt --slices dev --seeds 1 --quick
    python benchmarks/learning.py --rows "dev=encoder,encoder restarts/5" --slices dev --seeds 1 --curve none \
        --out benchmarks/results/learning_restarts.json   # taught 5 dialogs per process, next to one process

Each row replays the training dialogs into a fresh state dir through the same code as
``ffasr replay`` (``run_replay``: predict → score → learn), then scores the eval sets:
term recall on unseen sentences in other voices, false insertions on sound-alike sentences (and on
the harder ones, soundalike_hard*.jsonl, where generated), WER
on general TTS speech and on real human speech (Debian's asterisk prompts, if generated).
The default row and the weights-alone row are trained with three seeds and pooled: training is
sensitive to them (one sentence more or less per slice), and one run would report that noise as
a result.
"ROW restarts/N" replays the training dialogs N per process, as a user who teaches a few
corrections and closes ffasr; the row without it is one process for all of them.
A row that learns then meets fix-back (``fix_back``): every harder sound-alike a term was written
into is corrected back to what was said, and the same sound-alike in another sentence is scored
before and after the update, with the term's own test sentences.
Each result also lists where it went wrong (``errors``: missed terms, insertions, wrong labels).
Results: benchmarks/results/learning.json, learning.md (the table), learning_curve.png.
The data comes from scripts/make_speech.py and scripts/asterisk_set.py.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

# name: (config overrides, learn weights, glossary)
ROWS = {
    "plain": ({}, False, False),
    "prompt": ({"term_guard": False}, False, True),  # the zero-training baseline: Whisper's prompt lists the corrected terms, as is
    "holler": None,  # the peer: replacement rules + hotwords around a frozen Whisper
    "logits": ({"mode": "logits"}, True, False),
    "logits+glossary": ({"mode": "logits"}, True, True),
    "encoder": ({"mode": "encoder"}, True, False),
    "encoder+glossary": ({"mode": "encoder"}, True, True),
    "full": ({"mode": "full"}, True, False),
    "full+glossary": ({"mode": "full"}, True, True),
    # LoRA on self-attention too, the targets before cb733c0 ("Press star" -> "Przor": docs/decisions.md, training.lora_targets)
    "encoder +self-attn": ({"mode": "encoder", "lora_targets": ["attn.query", "attn.key", "attn.value", "attn.out", "cross_attn.query", "cross_attn.out", "mlp.0", "mlp.2"]}, True, False),
    # guard ablations (encoder, weights alone)
    "encoder kl=0.5": ({"mode": "encoder", "kl_weight": 0.5}, True, False),
    "encoder no-replay": ({"mode": "encoder", "replay_per_step": 0}, True, False),
    "encoder no-canary": ({"mode": "encoder", "canary_size": 0}, True, False),
    "encoder no-rejection": ({"mode": "encoder", "min_similarity": 0.0}, True, False),
    "encoder no-guard": ({"mode": "encoder", "term_guard": False}, True, False),
    "encoder no-confirm": ({"mode": "encoder", "learn_confirmed": False}, True, False),  # accepted terms kept as canaries only
    "encoder guard w/o confidence": ({"mode": "encoder", "term_min_logprob": float("-inf")}, True, False),
    "encoder guard w/o base confidence": ({"mode": "encoder", "base_sure_logprob": float("inf")}, True, False),
    # the glossary reading prompting every taught term, however often the weights wrote it (decoding.glossary_drop_after)
    "encoder+glossary always": ({"mode": "encoder", "glossary_drop_after": 1000}, True, True),
    # the default with decoding's output projection in fp32, as openai-whisper computes it (decoding.int8_projection)
    "encoder+glossary fp32": ({"mode": "encoder", "int8_projection": False}, True, True),
    # the default with the encoder in fp32 on every CPU, as openai-whisper computes it (decoding.bf16_encoder)
    "encoder+glossary fp32 encoder": ({"mode": "encoder", "bf16_encoder": False}, True, True),
    # the bigger offline model (ffasr[base]) with the shipped settings: does it learn a voice tiny.en hears badly?
    "plain base": ({"model": "base"}, False, False),
    "encoder base": ({"mode": "encoder", "model": "base"}, True, False),
    "encoder+glossary base": ({"mode": "encoder", "model": "base"}, True, True),
    # the original write-up's settings: lr 1e-5, one optimizer step per batch
    "seed: lr 1e-5 x1 step": ({"mode": "encoder", "learning_rate": 1e-5, "inner_steps": 1}, True, False),
}


MAIN_ROWS = "plain,prompt,holler,logits,encoder,encoder+glossary,encoder no-guard"
# "ROW @espeak": ROW trained on the same dialogs spoken by espeak-ng (train_SLICE_espeak.jsonl), a voice
# no setting was tuned on, so that its espeak test sentences are in the user's own voice
TRAINING_VOICES = ("espeak",)
RESTARTS = " restarts/"  # "ROW restarts/5": ROW with the training dialogs replayed 5 per process
HELDOUT_ROWS = MAIN_ROWS + ",prompt @espeak,holler @espeak,encoder @espeak,encoder+glossary @espeak"
SLICE_ROWS = {  # rows run on each slice by default
    # every row but full mode's (its gradients equal encoder mode's bit for bit: tests/test_engine.py)
    "dev": ",".join(n for n in ROWS if not n.startswith("full") and n != "logits+glossary"),
    "dev2": MAIN_ROWS,
    "dev3": MAIN_ROWS,
    "dev4": MAIN_ROWS,
    "dev5": MAIN_ROWS,
    # never used for tuning; also trained in espeak-ng, the voice of their espeak test sentences
    "heldout": HELDOUT_ROWS,
    "heldout2": HELDOUT_ROWS,
    "heldout3": HELDOUT_ROWS,
    "heldout4": HELDOUT_ROWS,
    "heldout5": HELDOUT_ROWS,
}
DEFAULT_ROW = "encoder+glossary"  # the shipped config
# the two rows the targets name, trained with --seeds seeds: one run moves by a sentence or more with its seed
SEEDED_ROWS = (DEFAULT_ROW, "encoder")


def split_row(name: str) -> tuple[str, str]:
    """'encoder @espeak' -> ('encoder', 'espeak'); 'encoder' -> ('encoder', ''); 'encoder restarts/5' -> ('encoder', '')."""
    base, _, voice = name.partition(RESTARTS)[0].partition(" @")
    return base, voice


def dialogs_per_process(name: str) -> int | None:
    """'encoder restarts/5' -> 5; 'encoder' -> None: all dialogs in one process."""
    count = name.partition(RESTARTS)[2]
    return int(count) if count else None


def known_row(name: str) -> bool:
    base, voice = split_row(name)
    count = name.partition(RESTARTS)[2]
    return base in ROWS and voice in ("", *TRAINING_VOICES) and (not count or (count.isdigit() and int(count) > 0))


# harder sound-alikes (a term's usual mishearing as a real word, the term split into words, its
# onset in a word), every term's: those of the tuning slices, and those of the held-out ones
HARD_SOUNDALIKES = {  # file: its column in the overview
    "soundalike_hard.jsonl": "hard sound-alikes with a term",
    "soundalike_hard_heldout.jsonl": "held-out hard sound-alikes with a term",
}
SOUNDALIKE_FILES = ("soundalike.jsonl", *HARD_SOUNDALIKES)
AGAIN = "soundalike_again.jsonl"  # each harder sound-alike in a second sentence (the fix-back check)


def eval_files(data: Path, slice_name: str, quick: bool) -> list[Path]:
    names = [f"terms_{slice_name}.jsonl", "soundalike.jsonl", "general.jsonl"]
    if not quick:
        names += [f"terms_{slice_name}_espeak.jsonl", "asterisk/asterisk.jsonl"]
    names += list(HARD_SOUNDALIKES)  # last: the curve job takes the first and the third
    return [data / n for n in names if (data / n).exists()]


def run_row(args: tuple) -> dict:
    row, slice_name, data, quick, curve, seed = args
    import torch

    torch.set_num_threads(1)
    from ffasr_cli.commands.replay import run_replay
    from ffasr_cli.config import load_config
    from ffasr_cli.dialogs import Dialog, read_dialogs
    from ffasr_cli.session import Session

    name, voice = split_row(row)
    train = data / f"train_{slice_name}{'_' + voice if voice else ''}.jsonl"
    dialogs = [d for d in read_dialogs(train) if isinstance(d, Dialog)]
    # the curve job scores after every update: only the term test set and general speech
    files = eval_files(data, slice_name, quick)[:3:2] if curve else eval_files(data, slice_name, quick)
    started = time.perf_counter()
    if name == "holler":
        report = run_holler(dialogs, files)
    else:
        overrides, learn, glossary = ROWS[name]
        settings = load_config(None, glossary=glossary, **overrides)
        size = dialogs_per_process(row) or len(dialogs)
        runs = [dialogs[start : start + size] for start in range(0, len(dialogs), size)]
        reports, fixed = [], None
        with tempfile.TemporaryDirectory() as state:
            for number, run in enumerate(runs, 1):
                # Each run is a process of its own: Session.open builds a new ASRAgent (a new model, learner and
                # reader) and reads all it knows back from the state dir, as `ffasr` started again does.
                # Pending corrections carry over on disk; only the last run flushes them and is scored.
                last = number == len(runs)
                session = Session.open(Path(state), "bench", settings, "benchmark", seed=seed)
                session.learn_weights = learn
                try:
                    scored = files if last else []
                    reports.append(run_replay(session, run, scored, flush=last, curve=curve, source=train, before=False))
                    if last and learn and not curve and (data / AGAIN).exists():
                        fixed = fix_back(session, reports[-1], data, slice_name, Path(state))
                finally:
                    session.close()
        report = joined(reports)
    after = {file: entry["metrics"]["after"] for file, entry in report["eval"].items()}
    for file in SOUNDALIKE_FILES:  # stricter than the per-sentence term: any of the slice's terms
        if file in report["eval"]:
            rows = report["eval"][file]["after"]
            after[file]["any_term_insertions"] = any_term_insertions(rows, data / f"terms_{slice_name}.jsonl")
    summary = report["summary"]
    return {
        "row": row, "slice": slice_name, "seed": seed, "date": time.strftime("%Y-%m-%d"), "seconds": round(time.perf_counter() - started, 1), "metrics": after,
        "updates": summary.get("steps"), "rolled_back": summary.get("rolled_back"), "update_seconds": summary.get("total_update_seconds"),
        "rejected": summary.get("rejected"), "terms": summary.get("learned_terms"), "curve": report.get("curve", []),
        "errors": errors(report, data / f"terms_{slice_name}.jsonl"), "fix_back": fixed,
    }  # fmt: skip


def fix_back(session, report: dict, data: Path, slice_name: str, folder: Path) -> dict:
    """The user puts back what was said in every harder sound-alike sentence a term of the slice
    was written into (one typed correction each, then an update), as ``listen`` invites; then the
    same sound-alike in another sentence (``soundalike_again.jsonl``) should keep the ordinary
    words, and the term's own test sentences should still get it. Both are scored just before the
    corrections and after the update."""
    from ffasr_cli.commands.replay import run_replay
    from ffasr_cli.dialogs import Dialog, read_eval
    from ffasr_cli.evaluate import contains_term

    data = data.resolve()  # the scored files are written elsewhere, with absolute paths to the clips
    tests = list(read_eval(data / f"terms_{slice_name}.jsonl"))
    terms = {t for row in tests for t in row.terms}
    again = {row["again_of"]: row for row in map(json.loads, (data / AGAIN).read_text().splitlines())}
    wrong = []  # (the eval row, the terms written into it)
    for file in HARD_SOUNDALIKES:
        for r in report["eval"].get(file, {}).get("after", []):
            if written := {t for t in terms if contains_term(r["hypothesis"], t) and not contains_term(r["reference"], t)}:
                wrong.append((r, written))
    if not wrong:
        return {"corrections": 0, "terms": []}
    written_terms = sorted(set().union(*(w for _, w in wrong)))
    dialogs = [Dialog(line=i, audio=Path(r["audio"]), correction=r["reference"], reference=r["reference"]) for i, (r, _) in enumerate(wrong, 1)]
    # scored: the second sentences, each for the terms written into its first; the terms' own test sentences
    new_sentences, test_sentences = folder / "fix_back_again.jsonl", folder / "fix_back_terms.jsonl"
    new_sentences.write_text("".join(
        json.dumps({"audio": str(data / again[r["reference"]]["audio"]), "reference": again[r["reference"]]["reference"], "terms": sorted(w)}) + "\n"
        for r, w in wrong))  # fmt: skip
    test_sentences.write_text("".join(json.dumps({"audio": str(row.audio), "reference": row.reference, "terms": list(row.terms)}) + "\n"
                                      for row in tests if set(row.terms) & set(written_terms)))  # fmt: skip
    replay = run_replay(session, dialogs, [new_sentences, test_sentences], flush=True)
    scores = {name: replay["eval"][path.name]["metrics"] for name, path in (("again", new_sentences), ("recall", test_sentences))}
    return {
        "corrections": len(dialogs), "terms": written_terms, "updates": replay["summary"]["steps"], **scores,
        "again_after": [(r["reference"], r["hypothesis"]) for r in replay["eval"][new_sentences.name]["after"]],
    }  # fmt: skip


def joined(reports: list[dict]) -> dict:
    """The reports of replays one after another on one state dir as one: every dialog, the last one's scores."""
    last = reports[-1]
    keys = ("steps", "rolled_back", "rejected", "total_update_seconds")
    summed = {key: round(sum(r["summary"][key] for r in reports), 3) for key in keys}
    return {**last, "summary": {**last["summary"], **summed}, "dialogs": [d for r in reports for d in r["dialogs"]],
            "curve": [point for r in reports for point in r["curve"]]}  # fmt: skip


def errors(report: dict, terms_file: Path) -> dict:
    """What went wrong, sentence by sentence: the row's numbers say how often, this says where.

    Per eval file, the (reference, hypothesis) pairs that miss a term said or hold a term of the
    slice not said; and the training labels that differ from the reference (a misheard spoken
    correction teaches the wrong thing).
    """
    from ffasr_cli.dialogs import read_eval
    from ffasr_cli.evaluate import contains_term, normalize

    terms = {t for row in read_eval(terms_file) for t in row.terms} if terms_file.exists() else set()
    wrong = {}
    for file, entry in report["eval"].items():
        rows = [(r["reference"], r["hypothesis"]) for r in entry.get("after", [])]
        bad = [(ref, hyp) for ref, hyp in rows if any(contains_term(ref, t) != contains_term(hyp, t) for t in terms)]
        if bad:
            wrong[file] = bad
    labels = [(d["reference"], d["label"]) for d in report.get("dialogs", [])  # refused ones taught nothing
              if d.get("label") and not d.get("rejected") and d.get("reference") and normalize(d["label"]) != normalize(d["reference"])]  # fmt: skip
    if labels:
        wrong["training labels"] = labels
    return wrong


def any_term_insertions(rows: list[dict], terms_file: Path) -> int:
    """Sound-alike sentences in which any term of the slice was written without being said."""
    from ffasr_cli.dialogs import read_eval
    from ffasr_cli.evaluate import contains_term

    terms = {t for row in read_eval(terms_file) for t in row.terms}
    return sum(any(contains_term(r["hypothesis"], t) and not contains_term(r["reference"], t) for t in terms) for r in rows)


def run_holler(dialogs, files: list[Path]) -> dict:
    """holler 1.1.0's learning (Vocab.learn_from_edit / prompt_terms / apply) on the same corrections.

    Emulated on the same openai-whisper tiny.en decoder (holler itself runs faster-whisper): its
    hotwords become Whisper's prompt, its rules rewrite the text. Predict → learn order as ffasr.
    """
    import whisper
    from holler.vocab import Vocab

    from ffasr_cli.audio import load_audio
    from ffasr_cli.corrections import typed_correction
    from ffasr_cli.dialogs import read_eval
    from ffasr_cli.evaluate import score
    from ffasr_cli.models import load_model

    model = load_model("tiny.en", "cpu")
    with tempfile.TemporaryDirectory() as folder:
        vocab = Vocab(folder)

        def transcribe(path) -> str:
            terms = vocab.prompt_terms(350)
            mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(load_audio(path)))
            options = whisper.DecodingOptions(language="en", without_timestamps=True, fp16=False, prompt=", ".join(terms) if terms else None)
            return vocab.apply(whisper.decode(model, mel, options).text)

        for dialog in dialogs:
            heard = transcribe(dialog.audio)
            label = None
            if dialog.correction is not None:
                label = typed_correction(dialog.correction, heard).label
            elif dialog.correction_audio is not None:
                label = dialog.reference  # holler has no spoken corrections: give it the truth
            if label and label != heard:
                vocab.learn_from_edit(heard, label)
        report = {"eval": {}, "summary": {"learned_terms": vocab.keyword_list()}}
        for path in files:
            rows = list(read_eval(path))
            hyps = [transcribe(row.audio) for row in rows]
            report["eval"][path.name] = {
                "metrics": {"after": score([r.reference for r in rows], hyps, [r.terms for r in rows]).as_dict()},
                "after": [{"reference": r.reference, "hypothesis": h} for r, h in zip(rows, hyps)],
            }
    return report


def pooled(runs: list[dict]) -> dict:
    """One row's runs (one per seed) as one: rates averaged, counts summed, times averaged."""
    if len(runs) == 1:
        return runs[0]
    metrics = {}
    for file in runs[0]["metrics"]:
        each = [r["metrics"][file] for r in runs]
        metrics[file] = {key: (sum(m[key] for m in each) if key in ("false_insertions", "forbidden", "any_term_insertions")
                               else sum(m[key] for m in each) / len(each)) if each[0].get(key) is not None else None
                         for key in each[0]}  # fmt: skip
    mean = {key: sum(r[key] or 0 for r in runs) / len(runs) for key in ("updates", "rolled_back", "update_seconds", "seconds")}
    return {**runs[0], **mean, "metrics": metrics, "seed": [r["seed"] for r in runs]}


def term_hits(metrics: dict) -> int:
    """Sentences of a term test set whose transcript holds the term."""
    return round(metrics["term_recall"] * metrics["utterances"] / 100)


def restarts_table(results: list[dict]) -> str:
    """Each row taught N dialogs per process next to the same row taught in one process, slice by slice:
    term recall on unseen sentences and sound-alike sentences holding a term of the slice, summed over
    seeds, and how many sentences the restarts moved each (per run)."""
    header = ["row", "slice", "recall, one process", "with restarts", "sentences apart",
              "sound-alikes with a term, one process", "with restarts", "sentences apart",
              "updates, one process", "with restarts"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in dict.fromkeys(r["row"] for r in results if dialogs_per_process(r["row"])):
        one_process = row.partition(RESTARTS)[0]
        for slice_name in sorted({r["slice"] for r in results}):
            a, b = (counts([r for r in results if (r["row"], r["slice"]) == (name, slice_name)], slice_name)
                    for name in (one_process, row))
            if not a["runs"] or not b["runs"]:
                continue

            def apart(key: str) -> str:
                return f"{b[key] / b['runs'] - a[key] / a['runs']:+g}"

            recall = [f"{100 * c['hits'] / c['said']:.1f} ({c['hits']}/{c['said']})" for c in (a, b)]
            cells = [row, slice_name, *recall, apart("hits"), str(a["sound"]), str(b["sound"]), apart("sound"),
                     f"{a['updates'] / a['runs']:g}", f"{b['updates'] / b['runs']:g}"]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def counts(runs: list[dict], slice_name: str) -> dict:
    """One row's runs on one slice, summed: test sentences with the term written and said, sound-alikes with a term, updates."""
    terms = [r["metrics"][f"terms_{slice_name}.jsonl"] for r in runs]
    return {
        "runs": len(runs), "hits": sum(map(term_hits, terms)), "said": sum(m["utterances"] for m in terms),
        "sound": sum(r["metrics"]["soundalike.jsonl"]["any_term_insertions"] for r in runs),
        "updates": sum(r["updates"] or 0 for r in runs),
    }  # fmt: skip


def fix_back_table(results: list[dict]) -> str:
    """Per row and slice, summed over seeds: the harder sound-alike sentences corrected back
    (``fix_back``), then the same sound-alikes in other sentences with the fixed-back term written,
    and the term's own test sentences with it, just before the corrections and after the update."""
    header = ["row", "slice", "runs", "corrected back", "new sentences with the term, before", "after",
              "term recall, before", "after"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (row, slice_name), runs in grouped(r for r in results if r.get("fix_back") is not None).items():
        fixed = [r["fix_back"] for r in runs if r["fix_back"]["corrections"]]

        said = sum(f["recall"]["after"]["utterances"] for f in fixed)
        forbidden = sum(f["again"]["after"]["forbidden"] for f in fixed)
        cells = [row, slice_name, str(len(runs)), str(sum(f["corrections"] for f in fixed)),
                 *(f"{sum(f['again'][when]['false_insertions'] for f in fixed)}/{forbidden}" for when in ("before", "after")),
                 *(f"{sum(term_hits(f['recall'][when]) for f in fixed)}/{said}" for when in ("before", "after"))]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def grouped(results) -> dict[tuple, list[dict]]:
    """Runs by (row, slice), in the order they come."""
    runs: dict[tuple, list[dict]] = {}
    for r in results:
        runs.setdefault((r["row"], r["slice"]), []).append(r)
    return runs


def overview(results: list[dict]) -> str:
    """One line per row run on more than one slice: term recall per slice, pooled over seeds, and
    pooled over the tuning and the held-out slices; sound-alikes with any term of the slice; the
    largest WER rise over plain decoding on everyday and on human speech; and, where measured, the
    harder sound-alikes with any term of the slice."""

    def terms_file(r: dict, espeak: bool) -> dict | None:
        files = [f for f in r["metrics"] if f.startswith("terms_") and f.endswith("_espeak.jsonl") == espeak]
        return r["metrics"][files[0]] if files else None

    def recall(runs: list[dict], espeak: bool = False) -> str:
        scored = [m for m in (terms_file(r, espeak) for r in runs) if m]
        hits = sum(term_hits(m) for m in scored)
        total = sum(m["utterances"] for m in scored)
        return f"{100 * hits / total:.1f} ({hits}/{total})" if total else "–"

    def insertions(runs: list[dict], file: str) -> str:
        scored = [r["metrics"][file] for r in runs if file in r["metrics"]]
        return f"{sum(m['any_term_insertions'] for m in scored)}/{sum(m['forbidden'] for m in scored)}" if scored else "–"

    def wer_rise(runs: list[dict], file: str) -> str:
        plain = {r["slice"]: r["metrics"][file]["wer"] for r in results if r["row"] == "plain" and file in r["metrics"]}
        rises = [r["metrics"][file]["wer"] - plain[r["slice"]] for r in runs if file in r["metrics"] and r["slice"] in plain]
        return f"{max(rises):+.1f}" if rises else "–"

    slices = sorted({r["slice"] for r in results})
    tuning = [s for s in slices if not s.startswith("heldout")]
    held = [s for s in slices if s.startswith("heldout")]
    # the harder sound-alikes, when measured: one column per file, after the others
    hard = [f for f in HARD_SOUNDALIKES if any(f in r["metrics"] for r in results)]
    header = ["row", *tuning, "**tuning, pooled**", *held, "**held-out, pooled**",
              "held-out espeak", "sound-alikes with a term", "general WER rise", "human WER rise", *(HARD_SOUNDALIKES[f] for f in hard)]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in dict.fromkeys(r["row"] for r in results):
        runs = [r for r in results if r["row"] == row]
        if len({r["slice"] for r in runs}) < 2:
            continue
        by_slice = [recall([r for r in runs if r["slice"] == s]) for s in tuning + held]
        sound = [r["metrics"]["soundalike.jsonl"] for r in runs if "soundalike.jsonl" in r["metrics"]]
        cells = [row, *by_slice[: len(tuning)], recall([r for r in runs if r["slice"] in tuning]), *by_slice[len(tuning) :],
                 recall([r for r in runs if r["slice"] in held]), recall([r for r in runs if r["slice"] in held], espeak=True),
                 f"{sum(m['any_term_insertions'] for m in sound)}/{sum(m['forbidden'] for m in sound)}",
                 wer_rise(runs, "general.jsonl"), wer_rise(runs, "asterisk.jsonl"), *(insertions(runs, f) for f in hard)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(results: list[dict]) -> str:
    def cell(metrics: dict | None, key: str) -> str:
        if not metrics or metrics.get(key) is None:
            return "–"
        if key == "false_insertions":
            return f"{metrics['false_insertions']}/{metrics['forbidden']} ({metrics.get('any_term_insertions', '–')})"
        return f"{metrics[key]:.1f}"

    results = [pooled(group) for group in grouped(results).values()]

    lines = []
    for slice_name in sorted({r["slice"] for r in results}):
        rows = [r for r in results if r["slice"] == slice_name]
        files = list(rows[0]["metrics"])
        header = ["row"]
        for f in files:
            stem = f.removesuffix(".jsonl")
            header += [f"{stem} recall %", f"{stem} WER %"] if stem.startswith("terms") else ([f"{stem} false ins. (any term)"] if stem.startswith("soundalike") else [f"{stem} WER %"])
        header += ["updates (rolled back)", "update s", "row s"]
        lines += [f"\n**slice: {slice_name}**\n", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in rows:
            cells = [r["row"]]
            for f in files:
                m = r["metrics"].get(f)
                stem = f.removesuffix(".jsonl")
                cells += [cell(m, "term_recall"), cell(m, "wer")] if stem.startswith("terms") else ([cell(m, "false_insertions")] if stem.startswith("soundalike") else [cell(m, "wer")])
            cells += [f"{r['updates'] or 0:g} ({r['rolled_back'] or 0:g})", f"{r['update_seconds'] or 0:.1f}", f"{r['seconds']:.0f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curve(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [r for r in results if r["curve"]]
    if not curves:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for r in curves:
        steps = [0] + [p["update"] for p in r["curve"]]
        terms = [k for k in r["curve"][0] if k.startswith("terms_")][0]
        recall = [r["base"][terms]["term_recall"]] + [p[terms]["term_recall"] for p in r["curve"]]
        wer = [r["base"]["general.jsonl"]["wer"]] + [p["general.jsonl"]["wer"] for p in r["curve"]]
        axes[0].plot(steps, recall, marker="o", label=f"{r['row']} ({r['slice']})")
        axes[1].plot(steps, wer, marker="o", label=f"{r['row']} ({r['slice']})")
    axes[0].set(xlabel="update", ylabel="term recall on unseen sentences (%)", ylim=(0, 105), title="learning")
    axes[1].set(xlabel="update", ylabel="general WER (%)", title="forgetting")
    axes[0].legend(fontsize=8)
    for axis in axes:
        axis.xaxis.get_major_locator().set_params(integer=True)  # updates are whole numbers
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)  # written after every row: open figures would pile up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "benchmarks" / "data")
    parser.add_argument("--rows", action="append", default=[], metavar="SLICE=ROWS",
                        help="comma-separated rows to run on one slice (repeatable); default: " + "; ".join(f"{k}={v}" for k, v in SLICE_ROWS.items()))
    parser.add_argument("--slices", default=",".join(SLICE_ROWS), help="slices to run (held-out is never used for tuning)")
    parser.add_argument("--quick", action="store_true", help="skip the espeak and human-speech sets")
    parser.add_argument("--curve", default=DEFAULT_ROW, help="row whose learning curve is recorded (dev; a job of its own)")
    parser.add_argument("--seeds", type=int, default=3, help="train the --seeded rows with this many seeds (adapter init, replay draws); the table pools them")
    parser.add_argument("--seeded", default=",".join(SEEDED_ROWS), help="comma-separated rows trained with --seeds seeds (default: %(default)s); the others with one")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2)))
    parser.add_argument("--out", type=Path, default=RESULTS / "learning.json")
    parser.add_argument("--merge", action="store_true", help="keep the results already in --out of the jobs not run now (each says when it was measured)")
    args = parser.parse_args()
    if not (args.data / "train_dev.jsonl").exists():
        sys.exit(f"no data in {args.data}: run python scripts/make_speech.py (and scripts/asterisk_set.py) first")
    rows = dict(SLICE_ROWS, **dict(r.split("=", 1) for r in args.rows))
    seeded = {n.strip() for n in args.seeded.split(",")}
    jobs = []
    for slice_name in args.slices.split(","):
        names = [n.strip() for n in rows.get(slice_name, "").split(",") if n.strip()]
        unknown = [n for n in names if not known_row(n)]
        if unknown:
            sys.exit(f"unknown rows: {unknown}; known: {list(ROWS)}, each also as 'ROW @VOICE' for VOICE in {TRAINING_VOICES}"
                     f" and as 'ROW{RESTARTS}N' (N dialogs per process)")
        jobs += [(n, slice_name, args.data, args.quick, False, seed) for n in names for seed in range(args.seeds if split_row(n)[0] in seeded else 1)]
    if args.curve in ROWS:  # first: the longest job, so that it does not run alone at the end
        jobs.insert(0, (args.curve, "dev", args.data, args.quick, True, 0))
    kept = earlier_results(args.out, jobs) if args.merge else []
    markdown = "no rows to run"
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        results = []
        for result in pool.imap(run_row, jobs):
            results.append(result)
            print(f"{result['row']:>24} [{result['slice']} seed {result['seed']}] {result['seconds']:.0f} s  " + "  ".join(
                f"{f}: {m}" for f, m in result["metrics"].items()), flush=True)  # fmt: skip
            markdown = write_results(kept + results, args.out)  # after every row: a long run stopped early keeps what it measured
    print(markdown)


def earlier_results(out: Path, jobs: list[tuple]) -> list[dict]:
    """The results in ``out`` of jobs this run does not redo, each with the date it was measured."""
    if not out.exists():
        return []
    earlier = json.loads(out.read_text())
    redone = {(name, slice_name, seed, curve) for name, slice_name, _, _, curve, seed in jobs}
    return [
        {"date": earlier["machine"]["date"], **r}
        for r in earlier["results"] + earlier["curves"]
        if (r["row"], r["slice"], r["seed"], bool(r["curve"])) not in redone
    ]


def write_results(results: list[dict], out: Path) -> str:
    """learning.json, learning.md (the tables; first, if any row has restarts, those rows next to one
    process) and learning_curve.png from the rows finished so far."""
    import torch
    import whisper

    curves = [r for r in results if r["curve"]]
    results = sorted((r for r in results if not r["curve"]), key=lambda r: (split_row(r["row"])[1], list(ROWS).index(split_row(r["row"])[0])))  # merged runs in table order
    by_key = {(r["row"], r["slice"]): r for r in results if r["seed"] == 0}
    for r in curves:  # the learning curve starts from plain decoding
        r["base"] = by_key.get(("plain", r["slice"]), {}).get("metrics", {})
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "python": platform.python_version(),
               "torch": torch.__version__, "whisper": whisper.__version__, "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "results": results, "curves": curves}, indent=2))
    restarts = restarts_table(results) + "\n\n" if any(dialogs_per_process(r["row"]) for r in results) else ""
    fixed = "\n\nFix-back: the harder sound-alikes a term was written into, corrected back (``fix_back``)\n\n" + fix_back_table(results) if any(r.get("fix_back") for r in results) else ""
    markdown = restarts + overview(results) + fixed + "\n" + table(results)
    out.with_suffix(".md").write_text(markdown + "\n")
    if all(c.get("base") for c in curves):
        plot_curve(curves, out.parent / "learning_curve.png")
    return markdown


if __name__ == "__main__":
    main()
