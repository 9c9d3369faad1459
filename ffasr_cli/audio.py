"""Audio in: any file soundfile reads (WAV, FLAC, OGG, …) or an array → 16 kHz mono float32.

No ffmpeg: files are read with soundfile (libsndfile ships in its wheel) and resampled with soxr,
a real band-limited resampler.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import AudioError

SAMPLE_RATE = 16_000
WINDOW_SECONDS = 30  # one Whisper input window


def _resample(audio: np.ndarray, rate: int) -> np.ndarray:
    if rate == SAMPLE_RATE:
        return audio
    import soxr

    return soxr.resample(audio, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)


def _read_file(path: Path) -> tuple[np.ndarray, int]:
    import soundfile

    if not path.exists():
        raise AudioError(f"audio file not found: {path}")
    if path.is_dir():
        raise AudioError(f"audio path is a directory, not a file: {path}")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file is empty (0 bytes): {path}")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else error.__class__.__name__
        raise AudioError(f"cannot read audio {path}: {reason}") from None
    return data.mean(axis=1), rate


def load_audio(source: str | Path | np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """16 kHz mono float32 samples from a file path or an array (``sample_rate`` for arrays).

    Arrays may be int16 (scaled to [-1, 1]) or float, mono or (samples, channels).
    """
    if isinstance(source, (str, Path)):
        audio, sample_rate = _read_file(Path(source))
        name = str(source)
    else:
        audio = np.asarray(source)
        name = "audio array"
        if audio.dtype == np.int16:
            audio = audio.astype(np.float32) / 32768.0
        if audio.ndim == 2:
            audio = audio.mean(axis=1)
        if audio.ndim != 1:
            raise AudioError(f"audio array must be 1-D or (samples, channels), got shape {audio.shape}")
        audio = audio.astype(np.float32)
    if audio.size == 0:
        raise AudioError(f"{name} holds no samples")
    if not np.isfinite(audio).all():
        raise AudioError(f"{name} holds NaN or infinite samples")
    audio = np.ascontiguousarray(_resample(audio, sample_rate), dtype=np.float32)
    if audio.size == 0:  # a sample or two at a higher rate resample to nothing
        raise AudioError(f"{name} is too short to hold any audio at {SAMPLE_RATE} Hz")
    return audio


def windows(audio: np.ndarray) -> list[np.ndarray]:
    """Consecutive Whisper windows of at most 30 s each."""
    size = WINDOW_SECONDS * SAMPLE_RATE
    return [audio[start : start + size] for start in range(0, len(audio), size)]


def is_silent(audio: np.ndarray, threshold_dbfs: float = -50.0) -> bool:
    """True when the loudest 100 ms of the audio is below ``threshold_dbfs`` (nothing was said)."""
    frame = SAMPLE_RATE // 10
    usable = len(audio) // frame * frame or len(audio)
    frames = audio[:usable].reshape(-1, min(frame, usable))
    loudest = float(np.sqrt((frames**2).mean(axis=1)).max())
    return 20 * np.log10(max(loudest, 1e-10)) < threshold_dbfs
