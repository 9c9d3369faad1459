"""Audio in: files of any format soundfile reads, and arrays, to 16 kHz mono float32."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import TEXTS, clip

from ffasr_cli.audio import SAMPLE_RATE, WINDOW_SECONDS, is_silent, load_audio, read_windows
from ffasr_cli.errors import AudioError


def tone(rate: int, seconds: float, channels: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = amplitude * np.sin(2 * np.pi * 440 * t)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


@pytest.mark.parametrize(
    "name, rate, channels, subtype",
    [
        ("8k_stereo.wav", 8_000, 2, "PCM_16"),
        ("44k.wav", 44_100, 1, "PCM_16"),
        ("48k_24bit.wav", 48_000, 1, "PCM_24"),
        ("44k_stereo.flac", 44_100, 2, "PCM_16"),
        ("48k_24bit.flac", 48_000, 2, "PCM_24"),
        ("48k.ogg", 48_000, 1, "VORBIS"),
        ("22k_stereo.ogg", 22_050, 2, "VORBIS"),
        ("16k_float.wav", 16_000, 1, "FLOAT"),
    ],
)
def test_files_become_16k_mono_float32(tmp_path, name, rate, channels, subtype):
    path = tmp_path / name
    seconds = 1.5
    soundfile.write(path, tone(rate, seconds, channels), rate, subtype=subtype)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.flags["C_CONTIGUOUS"]
    assert abs(len(audio) - seconds * SAMPLE_RATE) <= 0.01 * seconds * SAMPLE_RATE
    middle = audio[len(audio) // 4 : 3 * len(audio) // 4]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)  # level kept
    assert load_audio(str(path)).shape == audio.shape  # str or Path


def test_stereo_is_averaged(tmp_path):
    left = tone(16_000, 0.5, 1)
    path = tmp_path / "lr.wav"
    soundfile.write(path, np.stack([left, np.zeros_like(left)], axis=1), 16_000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), left / 2, atol=1e-6)


def one_line_error(source, **options) -> str:
    with pytest.raises(AudioError) as error:
        load_audio(source, **options)
    message = str(error.value)
    assert message and "\n" not in message
    return message


def test_bad_files(tmp_path):
    assert "not found" in one_line_error(tmp_path / "missing.wav")
    assert "directory" in one_line_error(tmp_path)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert "empty" in one_line_error(empty)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    assert "cannot read audio" in one_line_error(junk) and "junk.wav" in one_line_error(junk)
    text = tmp_path / "notes.flac"
    text.write_text("not audio at all\n" * 10)
    assert "cannot read audio" in one_line_error(text)


def test_int16_arrays_are_scaled():
    audio = load_audio(np.array([0, 16384, -32768, 32767], dtype=np.int16))
    assert audio.dtype == np.float32
    np.testing.assert_allclose(audio, [0.0, 0.5, -1.0, 32767 / 32768], atol=1e-7)


def test_arrays():
    samples = tone(16_000, 1.0, 1).astype(np.float64)
    audio = load_audio(samples)
    assert audio.dtype == np.float32 and len(audio) == 16_000
    stereo = load_audio(np.stack([samples, samples], axis=1))
    np.testing.assert_allclose(stereo, audio, atol=1e-6)
    resampled = load_audio(tone(8_000, 1.0, 1).astype(np.float32), sample_rate=8_000)
    assert abs(len(resampled) - 16_000) <= 160
    assert "no samples" in one_line_error(np.zeros(0, np.float32))
    assert "NaN" in one_line_error(np.array([0.0, np.nan], np.float32))
    assert "1-D" in one_line_error(np.zeros((2, 2, 2), np.float32))


def test_windows_and_silence():
    audio = np.zeros(65 * SAMPLE_RATE, np.float32)
    parts = list(read_windows(audio))
    assert [len(p) for p in parts] == [30 * SAMPLE_RATE, 30 * SAMPLE_RATE, 5 * SAMPLE_RATE]
    assert [p.shape for p in read_windows(audio[:SAMPLE_RATE])] == [(SAMPLE_RATE,)]
    assert is_silent(audio)
    assert is_silent(np.full(SAMPLE_RATE, 0.001, np.float32))  # -60 dBFS
    assert not is_silent(np.full(SAMPLE_RATE, 0.01, np.float32))  # -40 dBFS
    assert not is_silent(np.zeros(50, np.float32) + 0.5)  # shorter than one 100 ms frame



# --------------------------------------------------------------------------- bounded: kind of path, rate, length, memory


def wav_header(rate: int, n_bytes: int) -> bytes:
    """A 16-bit mono RIFF header; ``n_bytes`` is what it says the data holds."""
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return b"RIFF" + struct.pack("<I", 36 + n_bytes) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", n_bytes)


def one_hertz_wav(d: Path) -> Path:
    (d / "1hz.wav").write_bytes(wav_header(1, 32_000) + bytes(32_000))  # 32 KB that would last 4.4 h
    return d / "1hz.wav"


def megahertz_wav(d: Path) -> Path:
    (d / "1mhz.wav").write_bytes(wav_header(1_000_000, 2_000) + bytes(2_000))
    return d / "1mhz.wav"


def flac_declaring_two_hours(d: Path) -> Path:
    """One second of FLAC whose STREAMINFO says it holds two hours (132 bytes)."""
    path = d / "long.flac"
    soundfile.write(path, np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    data = bytearray(path.read_bytes())
    fields = int.from_bytes(data[18:26], "big")  # rate, channels, bits, then 36 bits of total samples
    data[18:26] = (fields >> 36 << 36 | 2 * 3600 * SAMPLE_RATE).to_bytes(8, "big")
    path.write_bytes(data)
    return path


def fifo(d: Path) -> Path:
    os.mkfifo(d / "pipe.wav")  # opening it for reading would wait for a writer for ever
    return d / "pipe.wav"


def symlink_loop(d: Path) -> Path:
    (d / "a.wav").symlink_to(d / "b.wav")
    (d / "b.wav").symlink_to(d / "a.wav")
    return d / "a.wav"


BAD_SOURCES = {
    "1 Hz WAV": (one_hertz_wav, {}, "1hz.wav has a sample rate of 1 Hz; ffasr reads 4,000 to 384,000 Hz"),
    "1 MHz WAV": (megahertz_wav, {}, "1mhz.wav has a sample rate of 1000000 Hz"),
    "FLAC declaring 2 h": (flac_declaring_two_hours, {},
                           "long.flac is 2 h long, over the limit of 1 h (decoding.max_audio_seconds)"),
    "FIFO": (fifo, {}, "audio is a FIFO, not a regular file: "),
    "/dev/zero": (lambda d: Path("/dev/zero"), {}, "audio is a character device, not a regular file: /dev/zero"),
    "symlink loop": (symlink_loop, {}, "audio path is a symlink loop: "),
    "directory": (lambda d: d, {}, "audio is a directory, not a file: "),
    "array over the limit": (lambda d: np.zeros(3 * SAMPLE_RATE), {"max_seconds": 2},
                             "audio array is 3 s long, over the limit of 2 s"),
    "array at 1 Hz": (lambda d: np.zeros(100), {"sample_rate": 1}, "audio array has a sample rate of 1 Hz"),
}


@pytest.mark.parametrize("make, options, message", BAD_SOURCES.values(), ids=BAD_SOURCES.keys())
def test_audio_that_would_hang_or_fill_memory_is_refused_at_once(tmp_path, make, options, message):
    source = make(tmp_path)
    refusals: list[str] = []
    reading = threading.Thread(target=lambda: refusals.append(one_line_error(source, **options)), daemon=True)
    started = time.perf_counter()
    reading.start()
    reading.join(timeout=10)  # not for ever: a FIFO opened by mistake blocks
    assert not reading.is_alive() and time.perf_counter() - started < 3
    assert message in refusals[0]


def test_a_wav_header_declaring_hours_reads_only_the_data_there(tmp_path):
    path = tmp_path / "claims.wav"
    path.write_bytes(wav_header(SAMPLE_RATE, 2**32 - 100) + bytes(2 * SAMPLE_RATE))  # says 37 h, holds 1 s
    started = time.perf_counter()
    assert len(load_audio(path)) == SAMPLE_RATE  # libsndfile sizes a WAV by its file, not its header
    assert time.perf_counter() - started < 3


@pytest.mark.parametrize("rate, channels", [(8_000, 1), (48_000, 2)])
def test_streamed_windows_match_resampling_the_whole_file(tmp_path, rate, channels):
    import soxr

    speech = np.concatenate([load_audio(clip(name)) for name in TEXTS] * 3)  # over 60 s: three windows, many blocks
    speech = soxr.resample(speech, SAMPLE_RATE, rate)
    path = tmp_path / f"{rate}.wav"
    soundfile.write(path, np.stack([speech] * channels, axis=1), rate, subtype="PCM_16")
    whole, _ = soundfile.read(path, dtype="float32", always_2d=True)
    expected = soxr.resample(whole.mean(axis=1), rate, SAMPLE_RATE, quality="HQ")
    parts = list(read_windows(path))
    assert [len(p) for p in parts[:-1]] == [WINDOW_SECONDS * SAMPLE_RATE] * (len(parts) - 1) and len(parts) >= 3
    streamed = np.concatenate(parts)
    assert abs(len(streamed) - len(expected)) <= 1
    n = min(len(streamed), len(expected))
    np.testing.assert_allclose(streamed[:n], expected[:n], atol=1e-5)


def silent_flac(path: Path, minutes: int) -> Path:
    """48 kHz stereo, written a minute at a time: 10 minutes are 0.1 MB on disk and 230 MB as float32."""
    minute = np.zeros((60 * 48_000, 2), np.int16)
    with soundfile.SoundFile(path, "w", 48_000, 2, "PCM_16", format="FLAC") as file:
        for _ in range(minutes):
            file.write(minute)
    return path


def peak_bytes_reading(path: Path) -> tuple[int, float]:
    """(peak bytes traced while reading ``path`` window by window, seconds of audio read)."""
    tracemalloc.start()
    try:
        samples = sum(len(window) for window in read_windows(path))
        return tracemalloc.get_traced_memory()[1], samples / SAMPLE_RATE
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_file(tmp_path):
    short_peak, short_seconds = peak_bytes_reading(silent_flac(tmp_path / "2min.flac", 2))
    long_peak, long_seconds = peak_bytes_reading(silent_flac(tmp_path / "10min.flac", 10))
    assert (short_seconds, long_seconds) == (120, 600)
    assert long_peak < 16e6  # about two windows and a block; the whole file would hold 230 MB
    assert long_peak < 1.2 * short_peak


@pytest.mark.slow
def test_replay_warns_for_each_bad_clip_and_goes_on(tmp_path):
    rows = [{"audio": str(one_hertz_wav(tmp_path))}, {"audio": str(fifo(tmp_path))}, {"audio": str(symlink_loop(tmp_path))}]
    dialogs = tmp_path / "dialogs.jsonl"
    dialogs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    ffasr = Path(sys.executable).parent / "ffasr"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "NO_COLOR": "1"}
    command = [ffasr, "replay", dialogs, "--state-dir", tmp_path / "state"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    warnings = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("ffasr: warning:")]
    assert len(warnings) == 3, result.stdout + result.stderr
    assert "line 2: audio is a FIFO, not a regular file" in warnings[0]
    assert "line 3: audio path is a symlink loop" in warnings[1]
    assert "line 1: " in warnings[2] and "has a sample rate of 1 Hz" in warnings[2]
