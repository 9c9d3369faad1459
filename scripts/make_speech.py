#!/usr/bin/env python
"""Generate ffasr's synthetic speech evaluation set (and the small demo in examples/).

    python scripts/make_speech.py                       # -> benchmarks/data/
    python scripts/make_speech.py --out /tmp/speech     # elsewhere
    python scripts/make_speech.py --examples examples/  # the small committed demo
    python scripts/make_speech.py --force               # re-render clips that already exist
    python scripts/make_speech.py --no-eval             # skip the base tiny.en table

Everything is deterministic: fixed TTS seeds, fixed noise seeds, and the hand-written sentences in
scripts/speech/ (speech/README.md).
Clips that already exist are not rendered again (unless --force, or unless clips/manifest.json says
they were rendered from another text or voice); JSONL files are always rewritten (they are cheap).
At the end the base tiny.en model transcribes every clip and a table shows, per file, the clip
count, WER and term recall (for the soundalike files: how often the term wrongly appears).

Voices:
  * training clips: hibari "heart", speed 1.0, clean; and the same dialogs in espeak-ng en-us
    (train_*_espeak.jsonl: a user in a voice nothing was tuned on);
  * term test clips (terms_*.jsonl): hibari with other speed / pitch / noise (three "voices",
    one per test sentence, rotating), and espeak-ng (terms_*_espeak.jsonl, same sentences);
  * soundalike / general clips: hibari, mixed voices (the harder sound-alikes too, in two files:
    soundalike_hard.jsonl for the tuning slices' terms, soundalike_hard_heldout.jsonl for the
    held-out slices' terms; and soundalike_again.jsonl, each sound-alike in a second sentence).
Names are spoken with their usual pronunciation (forced with hibari's [Word](/phonemes/) syntax,
and a respelling for espeak-ng); the default G2P guesses are often wrong for rare names.

All audio: 16 kHz mono 16-bit PCM WAV. Paths in JSONL are relative to the JSONL file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SR = 16000
ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------------------------
# What is said lives in speech/ beside this script (speech/README.md describes each file): per term
# its pronunciations and sentences, per slice its terms and dialogs, the sound-alikes, the everyday
# sentences, and the small demo in examples/.
# --------------------------------------------------------------------------------------------
DATA = Path(__file__).resolve().parent / "speech"


def _json(name: str):
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def _lines(name: str) -> list[str]:
    return (DATA / name).read_text(encoding="utf-8").splitlines()


TERMS = _json("terms.json")  # term -> hibari phonemes, espeak-ng respelling, training and test sentences
PRON = {term: (t["hibari"], t["espeak"]) for term, t in TERMS.items()}
SLICES = _json("slices.json")  # slice -> its terms, spoken corrections and accepted sentences
SOUNDALIKE = [tuple(line.split("\t")) for line in _lines("soundalikes.tsv")]  # (term, a sentence without it)
# harder ones, three per term: (term, kind, sentence, another sentence with the same sound-alike);
# kind: misheard (the word base tiny.en writes for the term, where it is right), split (the term as
# ordinary words), onset (its first syllable in a word)
SOUNDALIKE_HARD = [tuple(line.split("\t")) for line in _lines("soundalikes_hard.tsv")]
GENERAL = _lines("general.txt")
EXAMPLES = _json("examples.json")

# ---- voices: (hibari speed, pitch factor, SNR dB or None) ----
TRAIN_VOICE = (1.0, 1.0, None)
TEST_VOICES = [(0.85, 0.92, None), (1.12, 1.08, 25.0), (1.0, 1.0, 15.0)]
MIXED_VOICES = [(1.0, 1.0, None), (0.9, 0.95, 30.0), (1.1, 1.05, None)]
FIX_VOICE = (0.95, 1.0, None)


def _seed(*parts) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode()) & 0x7FFFFFFF


def slug(text: str, n: int = 40) -> str:
    import unicodedata

    t = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", t.lower()).strip("_")[:n]


class Renderer:
    def __init__(self, force: bool):
        self.force = force
        self.manifests: dict[Path, dict] = {}  # clips dir -> {file name: what it says, in which voice}
        self._hibari = None
        self.rendered = 0
        self.skipped = 0

    def _manifest(self, folder: Path) -> dict:
        if folder not in self.manifests:
            f = folder / "manifest.json"
            self.manifests[folder] = json.loads(f.read_text(encoding="utf-8")) if f.exists() else {}
        return self.manifests[folder]

    def save_manifests(self):
        for folder, data in self.manifests.items():
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "manifest.json").write_text(
                json.dumps(dict(sorted(data.items())), ensure_ascii=False, indent=0) + "\n", encoding="utf-8")

    @property
    def hibari(self):
        if self._hibari is None:
            import hibari

            self._hibari = hibari.Hibari()
        return self._hibari

    @staticmethod
    def _hibari_text(text: str) -> str:
        for term, (ipa, _) in PRON.items():
            text = re.sub(rf"\b{re.escape(term)}\b", f"[{term}](/{ipa}/)", text)
        return text

    @staticmethod
    def _espeak_text(text: str) -> str:
        for term, (_, resp) in PRON.items():
            text = re.sub(rf"\b{re.escape(term)}\b", resp, text)
        return text

    def hibari_audio(self, text, voice):
        speed, pitch, snr = voice
        wav = self.hibari(self._hibari_text(text), speed=speed, seed=_seed("tts", text, voice))
        # treat the 24 kHz output as 24k*pitch: higher pitch (and a little faster) for pitch > 1
        audio = soxr.resample(wav.astype(np.float32), 24000 * pitch, SR)
        return self._finish(audio, snr, ("noise", text, voice))

    def espeak_audio(self, text, variant=0):
        voices = ["en-us", "en-us+f3", "en+m3"]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "e.wav"
            subprocess.run(
                ["espeak-ng", "-v", voices[variant % 3], "-s", "160", "-w", str(path), self._espeak_text(text)],
                check=True, capture_output=True,
            )
            wav, sr = sf.read(path, dtype="float32")
        audio = soxr.resample(wav, sr, SR)
        return self._finish(audio, None, None)

    @staticmethod
    def _finish(audio, snr, seed_key):
        audio = audio.astype(np.float64)
        # trim long silences at the ends, keep 0.2 s padding
        idx = np.nonzero(np.abs(audio) > 0.01 * (np.abs(audio).max() + 1e-9))[0]
        if len(idx):
            pad = int(0.2 * SR)
            audio = audio[max(0, idx[0] - pad): idx[-1] + pad]
        audio = np.concatenate([np.zeros(int(0.15 * SR)), audio, np.zeros(int(0.15 * SR))])
        if snr is not None:
            rng = np.random.default_rng(_seed(*seed_key))
            power = np.mean(audio**2)
            audio = audio + rng.normal(0, np.sqrt(power / 10 ** (snr / 10)), len(audio))
        peak = np.abs(audio).max()
        if peak > 0:
            audio = audio * (0.9 / peak)
        return audio.astype(np.float32)

    def clip(self, path: Path, text: str, voice=TRAIN_VOICE, espeak: int | None = None) -> float:
        """Render text to path (16 kHz mono PCM_16) unless it exists; returns its duration."""
        key = f"{'espeak' if espeak is not None else 'hibari'}|{espeak if espeak is not None else voice}|{text}"
        manifest = self._manifest(path.parent)
        if path.exists() and not self.force and manifest.get(path.name) == key:
            self.skipped += 1
            return sf.info(path).duration
        manifest[path.name] = key
        path.parent.mkdir(parents=True, exist_ok=True)
        audio = self.espeak_audio(text, espeak) if espeak is not None else self.hibari_audio(text, voice)
        sf.write(path, audio, SR, subtype="PCM_16")
        self.rendered += 1
        dur = len(audio) / SR
        if not 2.0 <= dur <= 6.0:
            print(f"warning: {path.name} is {dur:.1f} s (outside 2-6 s): {text}", file=sys.stderr)
        return dur


def interleave(groups):
    """[[a1,a2],[b1,b2]] -> [a1,b1,a2,b2]"""
    out = []
    for i in range(max(len(g) for g in groups)):
        out += [g[i] for g in groups if i < len(g)]
    return out


def write_jsonl(path: Path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def training_dialogs(split: str, terms: list[str], say, user_checks: bool = False) -> list[dict]:
    """A slice's training dialogs: typed corrections interleaved across terms, with the accepted and
    spoken ones spread through them. ``say(name, text, fix=False)`` renders a clip, returns its path.

    ``user_checks``: the user reads every answer, as ``ffasr listen`` at a terminal asks them to,
    and types the sentence where it was heard wrong: an accepted sentence (a typed correction the
    same as the transcript is an acceptance) and a spoken correction (replay teaches the typed
    text where the spoken one was heard as other words). Base tiny.en hears every accepted sentence
    right in hibari's voice, not in espeak-ng's, and no user accepts "But Wojciech should be
    sunny…", or teaches "The Nnamix server…" for "The Zabbix server…".
    """
    typed = []
    for term in terms:
        rows = []
        for i, s in enumerate(TERMS[term]["train"]):
            audio = say(f"train_{slug(term, 12)}_{i}", s)
            rows.append({"audio": audio, "correction": s, "reference": s, "terms": [term]})
        typed.append(rows)
    typed = interleave(typed)

    def checked(sentence: str) -> dict:  # what the user types if it was heard wrong
        return {"correction": sentence} if user_checks else {}

    accepted = [{"audio": say(f"accept_{split}_{i}", s), "reference": s} | checked(s)
                for i, s in enumerate(SLICES[split]["accepted"])]
    spoken = []
    for i, said in enumerate(SLICES[split]["spoken"]):
        term, s, fix = said["term"], said["sentence"], said["correction"]
        name = f"spoken_{slug(term, 12)}_{i}"
        spoken.append({"audio": say(name, s), "correction_audio": say(f"{name}_fix", fix, fix=True),
                       "correction_text": fix, "reference": s, "terms": [term]} | checked(s))
    rows, extra = [], interleave([accepted, spoken])
    step = max(1, len(typed) // (len(extra) + 1))
    for i, row in enumerate(typed):
        rows.append(row)
        if (i + 1) % step == 0 and extra:
            rows.append(extra.pop(0))
    return rows + extra


def build_benchmark(out: Path, r: Renderer) -> list[str]:
    clips = out / "clips"
    files = []
    for split, slice_data in SLICES.items():
        terms = slice_data["terms"]
        # training dialogs, once in hibari and once in espeak-ng: a voice nothing was tuned on
        for suffix, voice, fix_voice, espeak in (("", TRAIN_VOICE, FIX_VOICE, None), ("_espeak", None, None, 0)):

            def say(name: str, text: str, fix: bool = False) -> str:
                path = f"clips/{name}{suffix}.wav"
                r.clip(out / path, text, fix_voice if fix else voice, espeak=espeak)
                return path

            write_jsonl(out / f"train_{split}{suffix}.jsonl", training_dialogs(split, terms, say, user_checks=espeak is not None))
            files.append(f"train_{split}{suffix}.jsonl")

        # term test sets: 3 held-back sentences per term, other voices; espeak-ng variant
        hib, esp = [], []
        for term in terms:
            for j, s in enumerate(TERMS[term]["test"]):
                base = f"test_{slug(term, 12)}_{j}"
                r.clip(clips / f"{base}.wav", s, TEST_VOICES[j % len(TEST_VOICES)])
                r.clip(clips / f"{base}_espeak.wav", s, espeak=j)
                hib.append({"audio": f"clips/{base}.wav", "reference": s, "terms": [term]})
                esp.append({"audio": f"clips/{base}_espeak.wav", "reference": s, "terms": [term]})
        write_jsonl(out / f"terms_{split}.jsonl", hib)
        write_jsonl(out / f"terms_{split}_espeak.jsonl", esp)
        files += [f"terms_{split}.jsonl", f"terms_{split}_espeak.jsonl"]

    rows = []
    for i, (term, s) in enumerate(SOUNDALIKE):
        name = f"soundalike_{i:02d}_{slug(s, 24)}.wav"
        r.clip(clips / name, s, MIXED_VOICES[i % len(MIXED_VOICES)])
        rows.append({"audio": f"clips/{name}", "reference": s, "terms": [term]})
    write_jsonl(out / "soundalike.jsonl", rows)
    # the harder sound-alikes: those of the held-out slices' terms in a file of their own
    held_out = {term for split, slice_data in SLICES.items() if split.startswith("heldout") for term in slice_data["terms"]}
    tuning, held, again = [], [], []
    for i, (term, kind, s, s_again) in enumerate(SOUNDALIKE_HARD):
        name = f"soundalike_hard_{i:03d}_{slug(s, 24)}.wav"
        r.clip(clips / name, s, MIXED_VOICES[i % len(MIXED_VOICES)])
        (held if term in held_out else tuning).append({"audio": f"clips/{name}", "reference": s, "terms": [term], "kind": kind})
        # the same sound-alike in another sentence, in the same voice: what a fix-back correction of the first is scored on
        name = f"soundalike_again_{i:03d}_{slug(s_again, 24)}.wav"
        r.clip(clips / name, s_again, MIXED_VOICES[i % len(MIXED_VOICES)])
        again.append({"audio": f"clips/{name}", "reference": s_again, "terms": [term], "kind": kind, "again_of": s})
    write_jsonl(out / "soundalike_hard.jsonl", tuning)
    write_jsonl(out / "soundalike_hard_heldout.jsonl", held)
    write_jsonl(out / "soundalike_again.jsonl", again)
    rows = []
    for i, s in enumerate(GENERAL):
        name = f"general_{i:02d}_{slug(s, 24)}.wav"
        r.clip(clips / name, s, MIXED_VOICES[i % len(MIXED_VOICES)])
        rows.append({"audio": f"clips/{name}", "reference": s})
    write_jsonl(out / "general.jsonl", rows)
    files += ["soundalike.jsonl", "soundalike_hard.jsonl", "soundalike_hard_heldout.jsonl", "soundalike_again.jsonl", "general.jsonl"]
    return files


def build_examples(out: Path, r: Renderer) -> list[str]:
    clips = out / "clips"
    rows = []
    for i, dialog in enumerate(EXAMPLES["dialogs"]):
        s, kind = dialog["sentence"], dialog["kind"]
        name = f"dialog_{i}.wav"
        r.clip(clips / name, s, TRAIN_VOICE)
        terms = [t for t in EXAMPLES["terms"] if t in s]
        row = {"audio": f"clips/{name}", "reference": s}
        if kind == "typed":
            row = {"audio": f"clips/{name}", "correction": s, "reference": s, "terms": terms}
        elif kind == "spoken":
            r.clip(clips / f"dialog_{i}_fix.wav", EXAMPLES["spoken_correction"], FIX_VOICE)
            row = {"audio": f"clips/{name}", "correction_audio": f"clips/dialog_{i}_fix.wav",
                   "correction_text": EXAMPLES["spoken_correction"], "reference": s, "terms": terms}
        rows.append(row)
    write_jsonl(out / "dialogs.jsonl", rows)
    rows = []
    for i, row_data in enumerate(EXAMPLES["eval"]):
        s, terms = row_data["sentence"], row_data["terms"]
        name = f"eval_{i}.wav"
        r.clip(clips / name, s, TEST_VOICES[i % len(TEST_VOICES)])
        row = {"audio": f"clips/{name}", "reference": s}
        if terms:
            row["terms"] = terms
        rows.append(row)
    write_jsonl(out / "eval.jsonl", rows)
    return ["dialogs.jsonl", "eval.jsonl"]


def baseline_table(out: Path, files: list[str], verbose: bool = False):
    import jiwer
    import torch
    import whisper
    import whisper.normalizers

    sys.path.insert(0, str(ROOT))
    from ffasr_cli.models import load_model

    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    model = load_model("tiny.en", device="cpu")
    norm = whisper.normalizers.EnglishTextNormalizer()
    opts = whisper.DecodingOptions(language="en", without_timestamps=True, fp16=False)

    def transcribe(path: Path) -> str:
        audio, sr = sf.read(path, dtype="float32")
        assert sr == SR
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio))
        return whisper.decode(model, mel, opts).text

    print(f"\n{'file':28s} {'clips':>5s} {'WER':>6s}  term recall (soundalike: term wrongly present)")
    for name in files:
        rows = [json.loads(line) for line in open(out / name, encoding="utf-8")]
        refs, hyps, hits, n_terms = [], [], 0, 0
        for row in rows:
            hyp = transcribe(out / row["audio"])
            refs.append(norm(row["reference"]))
            hyps.append(norm(hyp))
            if verbose:
                print(f"  {row['audio']}: {hyp.strip()}")
            for term in row.get("terms", []):
                n_terms += 1
                hits += f" {norm(term)} " in f" {norm(hyp)} "
        wer = jiwer.wer(refs, hyps)
        rec = f"{hits}/{n_terms} = {hits / n_terms:.0%}" if n_terms else "-"
        print(f"{name:28s} {len(rows):5d} {wer:6.1%}  {rec}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "data")
    ap.add_argument("--examples", type=Path, metavar="DIR", help="build the small demo set into DIR instead")
    ap.add_argument("--force", action="store_true", help="re-render clips that already exist")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every base transcript")
    ap.add_argument("--no-eval", action="store_true", help="skip the base tiny.en table")
    args = ap.parse_args(argv)
    if shutil.which("espeak-ng") is None and args.examples is None:
        sys.exit("make_speech: espeak-ng is not installed (apt-get install espeak-ng)")
    t0 = time.time()
    r = Renderer(args.force)
    out = args.examples if args.examples is not None else args.out
    files = build_examples(out, r) if args.examples is not None else build_benchmark(out, r)
    r.save_manifests()
    print(f"{out}: {r.rendered} clips rendered, {r.skipped} already there, {time.time() - t0:.1f} s")
    if not args.no_eval:
        t1 = time.time()
        baseline_table(out, files, args.verbose)
        print(f"(base tiny.en, {time.time() - t1:.0f} s)")


if __name__ == "__main__":
    main()
