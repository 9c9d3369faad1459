"""Audio in: files of any format soundfile reads, and arrays, to 16 kHz mono float32."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from ffasr_cli.audio import SAMPLE_RATE, is_silent, load_audio, windows
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


def one_line_error(source) -> str:
    with pytest.raises(AudioError) as error:
        load_audio(source)
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
    parts = windows(audio)
    assert [len(p) for p in parts] == [30 * SAMPLE_RATE, 30 * SAMPLE_RATE, 5 * SAMPLE_RATE]
    assert windows(audio[:SAMPLE_RATE])[0].shape == (SAMPLE_RATE,)
    assert is_silent(audio)
    assert is_silent(np.full(SAMPLE_RATE, 0.001, np.float32))  # -60 dBFS
    assert not is_silent(np.full(SAMPLE_RATE, 0.01, np.float32))  # -40 dBFS
    assert not is_silent(np.zeros(50, np.float32) + 0.5)  # shorter than one 100 ms frame
