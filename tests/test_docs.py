"""The documents quote what the results files hold, and the repository speaks of the product only.

Text and JSON only (no model): a figure in README.md or BENCHMARKS.md that the files in
benchmarks/results/ no longer hold fails here, so the documents cannot go stale silently.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest
import yaml

from ffasr_cli.config import Config, to_yaml_dict

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def read(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def flat(text: str) -> str:
    """Text with every run of whitespace one space: a figure may wrap across lines."""
    return " ".join(text.split())


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def first_table(text: str) -> list[str]:
    """The lines of the first markdown table with a ``row`` column."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| row |"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


@cache
def overview(name: str) -> dict[str, dict[str, str]]:
    """The overview table of a learning results file (learning.md): row -> column -> cell."""
    header, _, *rows = first_table((RESULTS / name).read_text(encoding="utf-8"))
    return {cells(row)[0]: dict(zip(cells(header), cells(row))) for row in rows}


def recall(name: str, row: str, column: str) -> str:
    """A recall cell ("97.1 (367/378)") as the documents quote it: "97.1 %"."""
    return overview(name)[row][column].split()[0] + " %"


@cache
def results(name: str) -> dict:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def value(name: str, *keys: str) -> float:
    node = results(name)
    for key in keys:
        node = node[key]
    return node


def xeon(*keys: str) -> float:
    """tiny.en on one core of an Intel Xeon (cost.json)."""
    return value("cost.json", "models", "tiny.en", *keys)


def gpu(*keys: str) -> float:
    """tiny.en on an NVIDIA H200 (cost_cuda.json)."""
    return value("cost_cuda.json", "models", "tiny.en", *keys)


def base(*keys: str) -> float:
    """Whisper base on one core of an AMD EPYC (cost_base.json)."""
    return value("cost_base.json", "models", "base", *keys)


def held_out(row: str, column: str = "**held-out, pooled**", name: str = "learning.md") -> str:
    return recall(name, row, column)


def most_soundalikes_in_a_run(row: str) -> int:
    """The most sound-alike sentences one run of ``row`` wrote a learned term into (learning.json)."""
    runs = [r for r in results("learning.json")["results"] if r["row"] == row]
    return max(r["metrics"]["soundalike.jsonl"]["any_term_insertions"] for r in runs)


def soundalikes(name: str, file: str) -> tuple[int, int]:
    """Sentences of ``file`` the default wrote a learned term into, and those scored, over its runs in ``name``."""
    runs = [r["metrics"][file] for r in results(name)["results"] if r["row"] == "encoder+glossary"]
    return sum(m["any_term_insertions"] for m in runs), sum(m["forbidden"] for m in runs)


def fixed_back(name: str) -> tuple[int, int, int]:
    """Second sentences with the corrected-back term, before and after the correction, of how many (``fix_back``)."""
    done = [r["fix_back"] for r in results(name)["results"] if r.get("fix_back") and r["fix_back"]["corrections"]]
    again = [f["again"] for f in done]
    return sum(a["before"]["false_insertions"] for a in again), sum(a["after"]["false_insertions"] for a in again), sum(a["after"]["forbidden"] for a in again)


def step_seconds(source: Callable[..., float]) -> tuple[float, ...]:
    return tuple(source("step", mode, "step_plus_save") for mode in ("logits", "encoder", "full"))


def rtf(source: Callable[..., float]) -> str:
    """Real-time factors: whisper / encoder mode / with the guard / with the guard and the glossary."""
    readings = ("whisper", "infer.encoder", "infer.encoder.guarded", "infer.encoder.glossary")
    return " / ".join(f"{source('rtf', k):.3f}" for k in readings)


def seconds(source: Callable[..., float], reading: str) -> float:
    return source("decoding", "seconds", reading)


def cuda_update(variant: str, key: str) -> float:
    return value("cuda_check.json", "update_arithmetic", variant, key)


def live(decoder: str, key: str, name: str = "live.json") -> float:
    """One decoder's latency, utterances spoken in real time on one core of an AMD EPYC (live.json)."""
    return value(name, "summary", decoder, key)


def decoder(name: str, key: str) -> float:
    """One decoder of the decode table: tiny.en, the live benchmark's clips, one core of an Intel Xeon (cost_decode.json)."""
    return value("cost_decode.json", "decode", "tiny.en", "decoders", name, key)


def live_row(decoder: str) -> str:
    """A row of the live-latency table: p50 | p95 | p95 / whisper's | p95 from the end of speech."""
    ratio = "1" if decoder == "whisper" else f"**{live(decoder, 'ratio_p95'):.2f}×**"
    p50, p95, from_speech_end = (live(decoder, key) for key in ("p50", "p95", "from_speech_end_p95"))
    return f"{p50:.2f} s | {p95:.2f} s | {ratio} | {from_speech_end:.2f} s"


def core_share(name: str) -> str:
    share = value(name, "core_share")
    return f"{100 * share['min']:.0f}–{100 * share['max']:.0f} %"


# Each figure a document quotes, and where the results hold it: (document, the figure as quoted,
# the figure as the results files give it). Edit a document's figure and its line here together.
FIGURES: list[tuple[str, str, Callable[[], str]]] = [
    # README.md, "What it does, measured": every figure of that section is here
    ("README.md", "97.1 %", lambda: held_out("encoder+glossary")),
    ("README.md", "61.9 %", lambda: held_out("prompt")),
    ("README.md", "81.5 %", lambda: held_out("encoder+glossary @espeak", "held-out espeak")),
    ("README.md", "+0.0", lambda:
        max(overview("learning.md")["encoder+glossary"][f"{k} WER rise"] for k in ("general", "human"))),
    ("BENCHMARKS.md", "in 42 of 2,268 sentences", lambda: "in {} of {:,} sentences".format(*soundalikes("learning_soundalikes.json", "soundalike_hard_heldout.jsonl"))),
    ("BENCHMARKS.md", "(25 → 8 of 48)", lambda: "({} → {} of {})".format(*fixed_back("learning_soundalikes.json"))),
    ("README.md", "0.20×", lambda: f"{xeon('update', 'ratio_to_full', 'encoder'):.2f}×"),
    # BENCHMARKS.md, does it learn
    ("BENCHMARKS.md", "weights alone 95.5 %", lambda: "weights alone " + held_out("encoder")),
    ("BENCHMARKS.md", "71.4 % for holler", lambda: held_out("holler") + " for holler"),
    ("BENCHMARKS.md", "1.6 % for plain decoding", lambda: held_out("plain") + " for plain decoding"),
    ("BENCHMARKS.md", "the weights alone 79.4 %", lambda: "the weights alone " + held_out("encoder @espeak", "held-out espeak")),
    ("BENCHMARKS.md", "54.2 % and 35.2 %", lambda: "{} and {}".format(
        held_out("encoder+glossary", "held-out espeak"), held_out("encoder", "held-out espeak"))),
    ("BENCHMARKS.md", "At most 3 sound-alike", lambda: f"At most {most_soundalikes_in_a_run('encoder+glossary')} sound-alike"),
    ("BENCHMARKS.md", "(4 when taught", lambda: f"({most_soundalikes_in_a_run('encoder+glossary @espeak')} when taught"),
    ("BENCHMARKS.md", "the term in 86.5 % of held-out espeak", lambda: "the term in {} of held-out espeak".format(
        held_out("encoder+glossary base @espeak", "held-out espeak", "learning_base.md"))),
    # BENCHMARKS.md, what does it cost
    ("BENCHMARKS.md", "**0.202×** (0.088 s vs 0.440 s)", lambda: "**{:.3f}×** ({:.3f} s vs {:.3f} s)".format(
        xeon("update", "ratio_to_full", "encoder"), xeon("update", "seconds", "encoder"), xeon("update", "seconds", "full"))),
    ("BENCHMARKS.md", "0.111× (0.047 s)", lambda: "{:.3f}× ({:.3f} s)".format(
        xeon("update", "ratio_to_full", "logits"), xeon("update", "seconds", "logits"))),
    ("BENCHMARKS.md", "**1.19×** (0.65 s vs 0.55 s", lambda: "**{:.2f}×** ({:.2f} s vs {:.2f} s".format(
        xeon("decoding", "guard_ratio"), seconds(xeon, "infer.encoder.guarded"), seconds(xeon, "infer.encoder"))),
    ("BENCHMARKS.md", "**1.42×** (0.91 s vs 0.65 s)", lambda: "**{:.2f}×** ({:.2f} s vs {:.2f} s)".format(
        xeon("decoding", "glossary_ratio"), seconds(xeon, "infer.encoder.glossary"), seconds(xeon, "infer.encoder.guarded"))),
    ("BENCHMARKS.md", "1.59 s, **2.06 s**, 15.18 s", lambda: "{:.2f} s, **{:.2f} s**, {:.2f} s".format(*step_seconds(xeon))),
    ("BENCHMARKS.md", "0.174 / 0.174 / 0.206 / 0.288", lambda: rtf(xeon)),
    ("BENCHMARKS.md", "0.21 s, 0.25 s", lambda: ", ".join(
        f"{value('cost.json', 'startup', command, 'seconds'):.2f} s" for command in ("ffasr --help", "ffasr stats"))),
    ("BENCHMARKS.md", "on two cores 1.28 s", lambda: "on two cores {:.2f} s".format(
        value("cost_2threads.json", "models", "tiny.en", "step", "encoder", "step_plus_save"))),
    ("BENCHMARKS.md", "a cached update is 0.084×", lambda:
        f"a cached update is {base('update', 'ratio_to_full', 'encoder'):.3f}×"),
    ("BENCHMARKS.md", "a step 4.10 s", lambda: f"a step {base('step', 'encoder', 'step_plus_save'):.2f} s"),
    ("BENCHMARKS.md", "0.47 plain and 0.77 with", lambda: "{:.2f} plain and {:.2f} with".format(
        base("rtf", "whisper"), base("rtf", "infer.encoder.glossary"))),
    # BENCHMARKS.md, the decode table
    ("BENCHMARKS.md", "| 0.104 | **0.602×** | 0.602× |", lambda: "| {:.3f} | **{:.3f}×** | {:.3f}× |".format(
        *(decoder("ffasr after updates", k) for k in ("rtf", "ratio_to_whisper", "cpu_ratio_to_whisper")))),
    ("BENCHMARKS.md", "| 0.096 | **0.550×** | 0.550× |", lambda: "| {:.3f} | **{:.3f}×** | {:.3f}× |".format(
        *(decoder("ffasr fresh", k) for k in ("rtf", "ratio_to_whisper", "cpu_ratio_to_whisper")))),
    ("BENCHMARKS.md", "| 0.132 | 0.747× | 0.748× |", lambda: "| {:.3f} | {:.3f}× | {:.3f}× |".format(
        *(decoder("faster-whisper int8", k) for k in ("rtf", "ratio_to_whisper", "cpu_ratio_to_whisper")))),
    ("BENCHMARKS.md", "| 0.112 | 0.631× | 0.631× |", lambda: "| {:.3f} | {:.3f}× | {:.3f}× |".format(
        *(decoder("ffasr after updates, every term prompted", k) for k in ("rtf", "ratio_to_whisper", "cpu_ratio_to_whisper")))),
    ("BENCHMARKS.md", "| 0.168 | **0.965×** | 0.965× |", lambda: "| {:.3f} | **{:.3f}×** | {:.3f}× |".format(
        *(decoder("ffasr after updates, fp32 encoder", k) for k in ("rtf", "ratio_to_whisper", "cpu_ratio_to_whisper")))),
    ("BENCHMARKS.md", "ffasr fresh 0.507×, after updates 0.572× (every name prompted 0.616×, fp32 projection 0.645×, fp32 encoder 0.996×), faster-whisper int8 0.686× and fp32 1.065×",
     lambda: "ffasr fresh {:.3f}×, after updates {:.3f}× (every name prompted {:.3f}×, fp32 projection {:.3f}×, fp32 encoder {:.3f}×), faster-whisper int8 {:.3f}× and fp32 {:.3f}×".format(
        *(value("cost_decode_base.json", "decode", "base", "decoders", name, "ratio_to_whisper") for name in (
            "ffasr fresh", "ffasr after updates", "ffasr after updates, every term prompted", "ffasr after updates, fp32 projection",
            "ffasr after updates, fp32 encoder", "faster-whisper int8", "faster-whisper fp32")))),
    ("BENCHMARKS.md", "tiny.en fresh 0.675×, after updates 0.842× (every name prompted 0.893×, fp32 encoder 1.115×), faster-whisper int8 0.918×; base fresh 0.614×, after updates 0.780× (every name prompted 0.800×, fp32 encoder 1.118×), faster-whisper int8 0.822×",
     lambda: "tiny.en fresh {:.3f}×, after updates {:.3f}× (every name prompted {:.3f}×, fp32 encoder {:.3f}×), faster-whisper int8 {:.3f}×; base fresh {:.3f}×, after updates {:.3f}× (every name prompted {:.3f}×, fp32 encoder {:.3f}×), faster-whisper int8 {:.3f}×".format(
        *(value("cost_decode_2threads.json", "decode", model, "decoders", name, "ratio_to_whisper") for model in ("tiny.en", "base") for name in (
            "ffasr fresh", "ffasr after updates", "ffasr after updates, every term prompted", "ffasr after updates, fp32 encoder", "faster-whisper int8")))),
    # BENCHMARKS.md, live latency
    ("BENCHMARKS.md", "1.22 s | 1.57 s | 1 | 2.18 s", lambda: live_row("whisper")),
    ("BENCHMARKS.md", "1.30 s | 1.84 s | **1.17×** | 2.45 s", lambda: live_row("ffasr")),
    ("BENCHMARKS.md", "1.29 s | 1.74 s | **1.11×** | 2.35 s", lambda: live_row("ffasr+update")),
    ("BENCHMARKS.md", "0 of 66", lambda: "{} of {}".format(
        *(sum(live(d, key) for d in ("whisper", "ffasr", "ffasr+update")) for key in ("dropped", "fed")))),
    ("BENCHMARKS.md", "p50 1.06×, p95 1.17×", lambda: "p50 {:.2f}×, p95 {:.2f}×".format(
        live("ffasr", "ratio_p50"), live("ffasr", "ratio_p95"))),
    ("BENCHMARKS.md", "1.06× the CPU time", lambda: f"{live('ffasr', 'cpu_ratio_p50'):.2f}× the CPU time"),
    ("BENCHMARKS.md", "p50 goes from 1.06× to 1.06×, p95 from 1.17× to 1.11×", lambda:
        "p50 goes from {:.2f}× to {:.2f}×, p95 from {:.2f}× to {:.2f}×".format(
        *(live(d, k) for k in ("ratio_p50", "ratio_p95") for d in ("ffasr", "ffasr+update")))),
    ("BENCHMARKS.md", "20 updates ran during those passes, 4.6 s each at the median, covering 78 %", lambda:
        "{} updates ran during those passes, {:.1f} s each at the median, covering {:.0f} %".format(
        value("live.json", "updating", "updates"), value("live.json", "updating", "update_seconds_p50"),
        100 * value("live.json", "updating", "covered"))),
    ("BENCHMARKS.md", "17 of the 22 utterances were decoded while one trained", lambda:
        "{} of the {} utterances were decoded while one trained".format(
        value("live.json", "updating", "utterances_during_an_update"), live("ffasr+update", "n"))),
    ("BENCHMARKS.md", "got 98–98 % of its core", lambda: f"got {core_share('live.json')} of its core"),
    # BENCHMARKS.md, on a GPU
    ("BENCHMARKS.md", "**0.80×** (8.3 ms vs 10.3 ms)", lambda: "**{:.2f}×** ({:.1f} ms vs {:.1f} ms)".format(
        gpu("update", "ratio_to_full", "encoder"), 1000 * gpu("update", "seconds", "encoder"),
        1000 * gpu("update", "seconds", "full"))),
    ("BENCHMARKS.md", "**2.0×** (69 ms vs 35 ms", lambda: "**{:.1f}×** ({:.0f} ms vs {:.0f} ms".format(
        gpu("decoding", "guard_ratio"), 1000 * seconds(gpu, "infer.encoder.guarded"), 1000 * seconds(gpu, "whisper"))),
    ("BENCHMARKS.md", "0.03 s, **0.12 s**, 0.18 s", lambda: "{:.2f} s, **{:.2f} s**, {:.2f} s".format(*step_seconds(gpu))),
    ("BENCHMARKS.md", "0.011 / 0.012 / 0.022 / 0.035", lambda: rtf(gpu)),
    ("BENCHMARKS.md", "gradient within 0.013 %", lambda: "gradient within {:.3f} %".format(
        100 * cuda_update("cuda", "gradient_relative_difference"))),
    ("BENCHMARKS.md", "3.3 % off in gradient and flushed 88 of 688,128", lambda: "{:.1f} % off in gradient and flushed {} of {:,}"
     .format(
        100 * cuda_update("cuda_fp16", "gradient_relative_difference"), cuda_update("cuda_fp16", "flushed_to_zero"),
        cuda_update("cuda_fp16", "gradient_entries"))),
]


@pytest.mark.parametrize(("document", "quoted", "held"), FIGURES, ids=[f"{d}: {q}" for d, q, _ in FIGURES])
def test_a_quoted_figure_is_what_the_results_hold(document, quoted, held):
    assert quoted in flat(read(document)), f"{document} no longer quotes {quoted!r}: update FIGURES in tests/test_docs.py"
    assert held() == quoted, f"{document} quotes {quoted!r}; benchmarks/results/ holds {held()!r}"


FIGURE = re.compile(r"[+−-]?\d[\d,]*(?:\.\d+)?\s?(?:%|×)|[+−]\d+\.\d+")


def section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_every_figure_readme_leads_with_is_tied_to_a_result():
    measured = section(read("README.md"), "## What it does, measured")
    tied = {quoted for document, quoted, _ in FIGURES if document == "README.md"}
    assert set(FIGURE.findall(measured)) <= tied
    assert len(tied) <= 5  # a newcomer reads five numbers, then the link


@pytest.mark.parametrize(("document", "results_file"), [
    ("BENCHMARKS.md", "learning.md"), ("BENCHMARKS.md", "learning_base.md"), ("BENCHMARKS.md", "learning_restarts.md"),
])  # fmt: skip
def test_a_results_table_is_copied_whole(document, results_file):
    """The overview table of a learning results file appears in the document, line for line."""
    table = first_table((RESULTS / results_file).read_text(encoding="utf-8"))
    text = read(document)
    missing = [line for line in table if line not in text.splitlines()]
    assert not missing, f"{document} does not show these lines of {results_file}: {missing}"


def config_keys(node: dict, prefix: str = "") -> dict[str, object]:
    keys: dict[str, object] = {}
    for key, value_ in node.items():
        if isinstance(value_, dict):
            keys |= config_keys(value_, f"{prefix}{key}.")
        else:
            keys[prefix + key] = value_
    return keys


def test_decisions_has_every_setting_with_its_shipped_value():
    """docs/decisions.md: one entry per key of config.yaml, in its order, whose value is the default."""
    text = read("docs/decisions.md")
    entries = dict(re.findall(r"^### `([\w.]+)`\n\n- \*\*Value:\*\* `([^`]*)`", text, re.M))
    shipped = config_keys(yaml.safe_load(read("config.yaml")))
    assert list(entries) == list(shipped)
    defaults = config_keys(to_yaml_dict(Config()))
    wrong = {key: (shown, defaults[key]) for key, shown in entries.items() if yaml.safe_load(shown) != defaults[key]}
    assert not wrong, f"docs/decisions.md values differ from ffasr_cli/config.py: {wrong}"


def repo_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout  # fmt: skip
    return [name for name in listed.splitlines() if (ROOT / name).is_file()]


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_documents_resolve():
    broken = []
    for name in (n for n in repo_files() if n.endswith(".md")):
        prose = re.sub(r"```.*?```|`[^`\n]*`", "", read(name), flags=re.S)  # code is not a link
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, fragment = target.partition("#")
            linked = (ROOT / name).parent / path if path else ROOT / name
            if not linked.exists():
                broken.append(f"{name}: {target}")
            elif fragment and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), re.M)
                if fragment not in {anchor(h) for h in headings}:
                    broken.append(f"{name}: {target}")
    assert not broken


# Words that count rounds of work or point at a tracker, instead of the product. "Session" alone is
# the product's (a listening session, ``Session``); an ordinal before it is a round of work.
ORDINALS = ("third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|thirteenth|fourteenth|fifteenth"
            "|sixteenth|seventeenth|eighteenth|nineteenth|twentieth|twenty-\\w+|thirtieth|thirty-\\w+")
HISTORY = [
    re.compile(rf"\b(?:{ORDINALS})(?:\s+to\s+\w+)?\s+(?:sessions?|rounds?)\b", re.I),
    re.compile(r"\b(?:first|second)\s+session(?:s\b|'s\b|,)", re.I),
    re.compile(r"\bsessions?\s+\d+\b", re.I),
    re.compile(r"\b(?:this|that|next|previous|last|earlier|several)\s+sessions?\b", re.I),
    re.compile(r"\bthe\s+issue\b|\bissues?\s+#?\d+\b", re.I),
    re.compile(r"\bthe\s+seed(?:'s|\s+write-up)", re.I),
    re.compile(r"\brounds?\s+of\s+work\b", re.I),
]


def history_lines(name: str) -> list[str]:
    try:
        text = read(name)
    except UnicodeDecodeError:  # audio, images
        return []
    return [f"{name}:{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1) if any(p.search(line) for p in HISTORY)]


def test_the_repository_speaks_of_the_product_not_of_its_history():
    found = [line for name in repo_files() if name != "tests/test_docs.py" for line in history_lines(name)]
    assert not found, "say a date or a commit instead:\n" + "\n".join(found)
