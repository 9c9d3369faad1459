"""Audio in: any file soundfile reads (WAV, FLAC, OGG, …) or an array → 16 kHz mono float32.

No ffmpeg: files are read with soundfile (libsndfile ships in its wheel) and resampled with soxr,
a real band-limited resampler. Files are read a block at a time and come out as 30 s Whisper
windows, so memory does not grow with the length of the file; the header's rate and duration are
checked before anything is decoded (a 32 KB WAV declaring 1 Hz would otherwise decode for hours).
"""

from __future__ import annotations

import contextlib
import errno
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .config import DecodingConfig
from .errors import AudioError

SAMPLE_RATE = 16_000
WINDOW_SECONDS = 30  # one Whisper input window
RATES = (4_000, 384_000)  # Hz, telephone to studio; a rate outside is a broken or hostile header
BLOCK_FRAMES = 1 << 16  # frames read and resampled at a time (~1.4 s at 48 kHz)
MAX_SECONDS = DecodingConfig.max_audio_seconds

_KINDS = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))


def path_problem(path: Path, name: str = "audio") -> str | None:
    """Why ``path`` cannot be an audio file, or None; from ``stat`` alone, as opening a FIFO would block."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"{name} file not found: {path}"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return f"{name} path is a symlink loop: {path}"
        return f"cannot read {name} {path}: {error.strerror or error}"
    if stat.S_ISDIR(mode):
        return f"{name} is a directory, not a file: {path}"
    if not stat.S_ISREG(mode):
        kind = next((kind for is_kind, kind in _KINDS if is_kind(mode)), "special file")
        return f"{name} is a {kind}, not a regular file: {path}"
    return None


def _duration(seconds: float) -> str:
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def _check_format(name: str, rate: int, frames: int, max_seconds: float) -> None:
    """The one check of rate and length, for files (from the header) and arrays alike."""
    low, high = RATES
    if not low <= rate <= high:
        raise AudioError(f"{name} has a sample rate of {rate} Hz; ffasr reads {low:,} to {high:,} Hz")
    if frames / rate > max_seconds:
        limit = _duration(max_seconds)
        raise AudioError(f"{name} is {_duration(frames / rate)} long, over the limit of {limit} (decoding.max_audio_seconds)")


@contextlib.contextmanager
def _read_errors(path: Path):
    """libsndfile's errors, in the header or half-way through the data, as one AudioError line."""
    import soundfile

    try:
        yield
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else error.__class__.__name__
        raise AudioError(f"cannot read audio {path}: {reason}") from None


def _float_mono(block: np.ndarray) -> np.ndarray:
    """float32 mono samples from int16 (scaled to [-1, 1]) or float, mono or (samples, channels)."""
    if block.dtype == np.int16:
        block = block.astype(np.float32) / 32768.0
    if block.ndim == 2:
        block = block.mean(axis=1)
    return np.ascontiguousarray(block, dtype=np.float32)


def _file_blocks(path: Path, max_seconds: float) -> tuple[int, Iterator[np.ndarray]]:
    """The file's rate and its mono blocks, once its kind, size, rate and length are checked."""
    import soundfile

    if problem := path_problem(path):
        raise AudioError(problem)
    if path.stat().st_size == 0:
        raise AudioError(f"audio file is empty (0 bytes): {path}")
    with _read_errors(path):
        info = soundfile.info(str(path))
    _check_format(str(path), info.samplerate, info.frames, max_seconds)

    def blocks() -> Iterator[np.ndarray]:
        with _read_errors(path), soundfile.SoundFile(str(path)) as file:
            for block in file.blocks(BLOCK_FRAMES, dtype="float32", always_2d=True):
                yield _float_mono(block)

    return info.samplerate, blocks()


def _array_blocks(audio: np.ndarray, rate: int, max_seconds: float) -> Iterator[np.ndarray]:
    if audio.ndim not in (1, 2):
        raise AudioError(f"audio array must be 1-D or (samples, channels), got shape {audio.shape}")
    _check_format("audio array", rate, len(audio), max_seconds)
    return (_float_mono(audio[start : start + BLOCK_FRAMES]) for start in range(0, len(audio), BLOCK_FRAMES))


def _checked(name: str, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    count = 0
    for block in blocks:
        if not np.isfinite(block).all():
            raise AudioError(f"{name} holds NaN or infinite samples")
        count += len(block)
        yield block
    if count == 0:
        raise AudioError(f"{name} holds no samples")


def _resampled(blocks: Iterable[np.ndarray], rate: int) -> Iterator[np.ndarray]:
    """``blocks`` at 16 kHz; soxr's stream gives the same samples as resampling the whole at once."""
    if rate == SAMPLE_RATE:
        yield from blocks
        return
    import soxr

    stream = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
    for block in blocks:
        yield stream.resample_chunk(block)
    yield stream.resample_chunk(np.zeros(0, np.float32), last=True)


def _windowed(name: str, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Consecutive windows of 30 s, the last one shorter, holding no more than a window and a chunk."""
    size = WINDOW_SECONDS * SAMPLE_RATE
    held, count, any_window = [], 0, False
    for chunk in chunks:
        held.append(chunk)
        count += len(chunk)
        if count >= size:
            joined = np.concatenate(held)
            full = count // size * size
            for start in range(0, full, size):
                yield joined[start : start + size]
            held, count, any_window = [joined[full:]], count - full, True
    if count:
        yield np.concatenate(held)
    elif not any_window:  # a sample or two at a higher rate resample to nothing
        raise AudioError(f"{name} is too short to hold any audio at {SAMPLE_RATE} Hz")


def read_windows(
    source: str | Path | np.ndarray, sample_rate: int = SAMPLE_RATE, max_seconds: float = MAX_SECONDS
) -> Iterator[np.ndarray]:
    """16 kHz mono float32 windows of at most 30 s each, from a file path or an array (``sample_rate`` for arrays).

    The kind of path, the rate and the length are checked here, before any window is decoded;
    samples that cannot be read, or NaN ones, are found as the windows come.
    """
    if isinstance(source, (str, Path)):
        name = str(source)
        rate, blocks = _file_blocks(Path(source), max_seconds)
    else:
        name, rate = "audio array", sample_rate
        blocks = _array_blocks(np.asarray(source), rate, max_seconds)
    return _windowed(name, _resampled(_checked(name, blocks), rate))


def load_audio(source: str | Path | np.ndarray, sample_rate: int = SAMPLE_RATE, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """All of ``read_windows`` as one array, for short clips.

    Arrays may be int16 (scaled to [-1, 1]) or float, mono or (samples, channels).
    """
    return np.concatenate(list(read_windows(source, sample_rate, max_seconds)))


def is_silent(audio: np.ndarray, threshold_dbfs: float = -50.0) -> bool:
    """True when the loudest 100 ms of the audio is below ``threshold_dbfs`` (nothing was said)."""
    frame = SAMPLE_RATE // 10
    usable = len(audio) // frame * frame or len(audio)
    frames = audio[:usable].reshape(-1, min(frame, usable))
    loudest = float(np.sqrt((frames**2).mean(axis=1)).max())
    return 20 * np.log10(max(loudest, 1e-10)) < threshold_dbfs
