#!/usr/bin/env python
"""Cheaper encoders: does the decoder still read what it reads from whisper's own?

    python benchmarks/encoder_variants.py                                  # every variant, tiny.en
    python benchmarks/encoder_variants.py --variants bf16 --model base     # about 8 minutes on one core

Whisper's encoder is most of a short utterance's decoding time. Two ways to make it cheaper:

- **bf16** (``decoding.bf16_encoder``): its products in bf16, where the CPU multiplies bf16 in
  hardware (AMX); the output in fp32.
- **a shorter context** (whisper.cpp's ``audio_ctx`` idea): the encoder always reads a 30 s window,
  a live utterance is 2–5 s; encoding only the clip's length plus a margin costs a fraction.

This decodes the everyday and sound-alike sets (benchmarks/data, from scripts/make_speech.py;
``--every 2``: every second clip) with the plain model greedily from each variant's encoder output,
and scores WER (whisper's normalizer, corpus-level jiwer), the transcripts the same as from the
fp32 encoder, and the time of the log-mel and the encoder against fp32's, one torch thread, clip by clip in turn.
Results: benchmarks/results/encoder_variants_MODEL.json; the shorter contexts of 2026-12-07 (tiny.en,
``--every 2``), audio_ctx.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import subprocess
import time
from pathlib import Path

import jiwer
import numpy as np
import torch
import whisper
from whisper.decoding import DecodingOptions, DecodingTask
from whisper.normalizers import EnglishTextNormalizer

from ffasr_cli.audio import load_audio
from ffasr_cli.capture import bf16_available, encode
from ffasr_cli.models import load_model

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data"
FP32 = "fp32, 30 s (whisper)"


def shortened(model, audio: np.ndarray, margin: float, at_least: float = 0.0) -> torch.Tensor:
    """The encoder's output on the clip's length plus ``margin`` seconds, at least ``at_least``."""
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audio)))
    seconds = max(at_least, len(audio) / 16_000 + margin)
    encoder = model.encoder
    frames = min(mel.shape[-1], 2 * math.ceil(seconds * 50))
    x = torch.nn.functional.gelu(encoder.conv1(mel[None, :, :frames]))
    x = torch.nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)
    x = x + encoder.positional_embedding[: x.shape[1]]
    for block in encoder.blocks:
        x = block(x)
    return encoder.ln_post(x)


VARIANTS = {  # name: the log-mel and the encoder's output from (model, audio); the first two as decoding runs them
    FP32: lambda model, audio: encode(model, audio, fp16=False)[1],
    "bf16": lambda model, audio: encode(model, audio, fp16=False, bf16=True)[1],
    "clip + 1 s": lambda model, audio: shortened(model, audio, 1.0),
    "clip + 3 s": lambda model, audio: shortened(model, audio, 3.0),
    "clip + 1 s, at least 10 s": lambda model, audio: shortened(model, audio, 1.0, at_least=10.0),
}


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--variants", default=",".join(v for v in VARIANTS if v != FP32), help="comma-separated, besides fp32: " + ", ".join(VARIANTS))
    parser.add_argument("--every", type=int, default=1, help="every Nth clip")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/encoder_variants_MODEL.json")
    args = parser.parse_args()
    variants = [FP32, *(v.strip() for v in args.variants.split(","))]
    if "bf16" in variants and not bf16_available(torch.device("cpu")):
        parser.error("this CPU has no AMX: bf16 would be emulated, and its time says nothing")
    torch.set_num_threads(1)
    model, normalize = load_model(args.model, "cpu"), EnglishTextNormalizer()
    options = DecodingOptions(language="en", without_timestamps=True, fp16=False)
    rows = [json.loads(line) for name in ("general.jsonl", "soundalike.jsonl") for line in (DATA / name).open()][:: args.every]
    references, hypotheses, seconds = [], {v: [] for v in variants}, dict.fromkeys(variants, 0.0)
    for row in rows:
        audio = load_audio(DATA / row["audio"])
        references.append(normalize(row["reference"]))
        for variant in variants:
            start = time.perf_counter()
            features = VARIANTS[variant](model, audio)
            seconds[variant] += time.perf_counter() - start
            model.dims.n_audio_ctx = features.shape[1]  # whisper's task takes input of this shape as encoder output
            try:
                hypotheses[variant].append(normalize(DecodingTask(model, options).run(features)[0].text))
            finally:
                model.dims.n_audio_ctx = 1500
    whole = hypotheses[FP32]
    result = {
        "date": datetime.date.today().isoformat(),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        "model": args.model,
        "cpu_amx": bf16_available(torch.device("cpu")),
        "clips": len(rows),
        "variants": {
            v: {
                "wer": round(100 * jiwer.wer(references, h), 2),
                "same_as_fp32": sum(a == b for a, b in zip(h, whole)),
                "encoder_time_ratio": round(seconds[v] / seconds[FP32], 3),
                "changed": [{"reference": r, "fp32": a, v: b} for r, a, b in zip(references, whole, h) if a != b][:20],
            }
            for v, h in hypotheses.items()
        },
    }  # fmt: skip
    out = args.out or ROOT / "benchmarks" / "results" / f"encoder_variants_{args.model}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    for v, r in result["variants"].items():
        print(f"{v:<28} WER {r['wer']:7.2f} %   same as fp32: {r['same_as_fp32']}/{len(rows)}   encoder time {r['encoder_time_ratio']:.3f}x")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
