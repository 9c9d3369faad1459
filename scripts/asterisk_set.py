#!/usr/bin/env python
"""Build asterisk.jsonl: a small set of real human speech (the Asterisk PBX prompts, read by Allison
Smith) for checking that learning does not hurt ordinary recognition.

Needs the Debian/Ubuntu packages asterisk-core-sounds-en (transcripts) and
asterisk-core-sounds-en-wav (8 kHz WAV audio):

    sudo apt-get install asterisk-core-sounds-en asterisk-core-sounds-en-wav
    python scripts/asterisk_set.py                    # -> benchmarks/data/asterisk/asterisk.jsonl

Keeps transcript lines with 4+ words and no "[...]", "(...)", digits, or keypad symbols (* #, which
the speaker says as "star" / "pound"), and prompts of at most 25 s; takes a fixed, seeded sample of
60; converts 8 kHz -> 16 kHz mono 16-bit WAV. Rows: {"audio": "clips/x.wav", "reference": "text"}.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import sys
from pathlib import Path

import soundfile as sf
import soxr

TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
SOUND_DIRS = [
    Path("/usr/share/asterisk/sounds/en"),
    Path("/usr/share/asterisk/sounds/en_US_f_Allison"),
    Path("/usr/share/asterisk/sounds/en_US"),
]
ROOT = Path(__file__).resolve().parent.parent
SEED = 20240611
N = 60
MAX_SECONDS = 25.0


def read_transcripts(path: Path) -> list[tuple[str, str]]:
    rows = []
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            rows.append((name.strip(), " ".join(text.split())))
    return rows


def keep(text: str) -> bool:
    if re.search(r"\[.*?\]|\(.*?\)|[\[\]()]|\d|[*#]", text):
        return False
    return len(text.split()) >= 4


def find_audio(name: str) -> Path | None:
    for folder in SOUND_DIRS:
        path = folder / f"{name}.wav"
        if path.exists():
            return path
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description="Build asterisk.jsonl (real speech) from the Asterisk prompts.")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "data" / "asterisk")
    ap.add_argument("-n", type=int, default=N, help=f"sample size (default {N})")
    ap.add_argument("--force", action="store_true", help="rewrite clips that already exist")
    ap.add_argument("--eval", action="store_true", help="print base tiny.en WER on the set")
    args = ap.parse_args(argv)

    if not TRANSCRIPTS.exists() or find_audio("agent-pass") is None:
        sys.exit("asterisk_set: needs the packages asterisk-core-sounds-en and asterisk-core-sounds-en-wav "
                 "(sudo apt-get install asterisk-core-sounds-en asterisk-core-sounds-en-wav)")

    candidates = []
    for name, text in read_transcripts(TRANSCRIPTS):
        if not keep(text):
            continue
        audio = find_audio(name)
        if audio is None or sf.info(audio).duration > MAX_SECONDS:
            continue
        candidates.append((name, text, audio))
    candidates.sort()
    sample = sorted(random.Random(SEED).sample(candidates, min(args.n, len(candidates))))

    clips = args.out / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, text, audio in sample:
        target = clips / (name.replace("/", "_") + ".wav")
        if args.force or not target.exists():
            wav, sr = sf.read(audio, dtype="float32", always_2d=True)
            wav = soxr.resample(wav.mean(axis=1), sr, 16000)
            sf.write(target, wav, 16000, subtype="PCM_16")
        rows.append({"audio": f"clips/{target.name}", "reference": text})
    with open(args.out / "asterisk.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{args.out / 'asterisk.jsonl'}: {len(rows)} clips (from {len(candidates)} eligible prompts)")
    if args.eval:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from make_speech import baseline_table

        baseline_table(args.out, ["asterisk.jsonl"])


if __name__ == "__main__":
    main()
