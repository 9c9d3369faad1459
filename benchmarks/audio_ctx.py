#!/usr/bin/env python
"""Does a shorter encoder context keep WER for short audio? (whisper.cpp's ``audio_ctx`` idea)

    python benchmarks/audio_ctx.py      # about 3 minutes on one core

Whisper's encoder always reads a 30 s window; a live utterance is 2–5 s. Encoding only the
clip's length plus a margin would cost a fraction of the time, if the decoder still reads it.
This decodes every second clip of the everyday and sound-alike sets (benchmarks/data, from
scripts/make_speech.py) with plain tiny.en, from the full window and from shorter ones, and
scores WER (whisper's normalizer, corpus-level jiwer). Results: benchmarks/results/audio_ctx.json.
"""

from __future__ import annotations

import datetime
import json
import math
import subprocess
from pathlib import Path

import jiwer
import torch
import whisper
from whisper.decoding import DecodingOptions, DecodingTask
from whisper.normalizers import EnglishTextNormalizer

from ffasr_cli.audio import load_audio
from ffasr_cli.models import load_model

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data"
CONTEXTS = {"30 s (whisper)": None, "clip + 1 s": 1.0, "clip + 3 s": 3.0, "clip + 1 s, at least 10 s": 10.0}


def encoded(model, mel: torch.Tensor, seconds: float | None) -> torch.Tensor:
    """The encoder's output on the first ``seconds`` of ``mel`` (None: the whole 30 s window)."""
    encoder = model.encoder
    frames = mel.shape[-1] if seconds is None else min(mel.shape[-1], 2 * math.ceil(seconds * 50))
    x = torch.nn.functional.gelu(encoder.conv1(mel[None, :, :frames]))
    x = torch.nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)
    x = x + encoder.positional_embedding[: x.shape[1]]
    for block in encoder.blocks:
        x = block(x)
    return encoder.ln_post(x)


@torch.no_grad()
def main() -> None:
    torch.set_num_threads(1)
    model, normalize = load_model("tiny.en", "cpu"), EnglishTextNormalizer()
    options = DecodingOptions(language="en", without_timestamps=True, fp16=False)
    rows = [json.loads(line) for name in ("general.jsonl", "soundalike.jsonl") for line in (DATA / name).open()][::2]
    references, hypotheses = [], {name: [] for name in CONTEXTS}
    for row in rows:
        audio = load_audio(DATA / row["audio"])
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)))
        references.append(normalize(row["reference"]))
        clip = len(audio) / 16_000
        for name, margin in CONTEXTS.items():
            seconds = None if margin is None else (max(10.0, clip + 1.0) if margin == 10.0 else clip + margin)
            features = encoded(model, mel, seconds)
            model.dims.n_audio_ctx = features.shape[1]  # whisper's task takes input of this shape as encoder output
            try:
                hypotheses[name].append(normalize(DecodingTask(model, options).run(features)[0].text))
            finally:
                model.dims.n_audio_ctx = 1500
    full = hypotheses["30 s (whisper)"]
    result = {
        "date": datetime.date.today().isoformat(),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        "clips": len(rows),
        "contexts": {
            name: {"wer": round(100 * jiwer.wer(references, h), 2), "same_as_30s": sum(a == b for a, b in zip(h, full))}
            for name, h in hypotheses.items()
        },
    }  # fmt: skip
    out = ROOT / "benchmarks" / "results" / "audio_ctx.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, r in result["contexts"].items():
        print(f"{name:<28} WER {r['wer']:7.2f} %   same as 30 s: {r['same_as_30s']}/{len(rows)}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
