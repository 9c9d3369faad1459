"""Microphone input for ``ffasr listen``: an energy end-pointer and a small recorder.

``sounddevice`` (and so PortAudio) is imported only when a recorder is opened or devices are
listed, so every other command works on machines without audio. Its failures become one-line
``MicrophoneError`` messages that say what to install or which ``--input-device`` to pick.

The end-pointer (``EnergyEndpointer``) is pure numpy over 30 ms frames, so it is tested with
synthetic arrays:

* each frame's level is its RMS in dBFS (digital silence is clamped to ``-100``);
* the noise floor adapts while nobody speaks: it follows a quieter frame quickly (``0.3`` of the
  way per frame) and a louder one slowly (``0.02`` per frame, ~1.5 s to absorb a new hum); it
  starts at the first frame's level and never drops below ``min_floor_db`` (-70 dBFS), so a
  digitally silent line does not turn every breath into speech;
* speech starts when ``min_speech_s`` (90 ms) of consecutive frames are ``start_db`` (12 dB) above
  the floor and above ``min_level_db`` (-55 dBFS); the utterance then begins ``pre_roll_s``
  (300 ms) before those frames, so soft onsets are kept;
* it ends after ``silence_s`` (0.8 s) of frames less than ``stop_db`` (8 dB, the hysteresis)
  above the floor, keeping ``tail_s`` (200 ms) after the last loud frame; or when it reaches
  ``max_s`` (30 s: one Whisper window);
* while speech goes on, the floor is frozen, except that it rises to the quietest frame of the last
  ``floor_window_s`` (2 s): speech always dips between words, so only a noise that never drops
  (a fan switched on) lifts it, and such a noise then ends the "utterance" instead of running on
  to ``max_s``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .audio import SAMPLE_RATE
from .errors import FfasrError

INSTALL_PORTAUDIO = "install PortAudio: apt-get install libportaudio2 (Fedora: dnf install portaudio; macOS: brew install portaudio)"  # noqa: E501

PICK_DEVICE = "list the inputs with `ffasr listen --list-devices` and pick one with --input-device"
NO_INPUT = "no microphone found: PortAudio sees no input device (connect one, or start PulseAudio/PipeWire)"


class MicrophoneError(FfasrError):
    """No usable microphone: PortAudio missing, no input device, or a device that cannot open."""


# ------------------------------------------------------------------------------- end-pointing


@dataclass(frozen=True)
class Utterance:
    start: int  # first sample, counted from the first sample fed since the last reset()
    end: int  # one past the last sample
    audio: np.ndarray  # float32 samples [start, end)

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


def level_db(frame: np.ndarray) -> float:
    """RMS level of a frame in dBFS (full-scale sine ≈ -3 dB); -100 for digital silence."""
    if frame.size == 0:
        return -100.0
    rms = float(np.sqrt(np.mean(np.square(frame, dtype=np.float64))))
    return max(-100.0, 20.0 * np.log10(rms + 1e-12))


class EnergyEndpointer:
    """Finds utterances in a stream of samples by their energy against an adaptive noise floor.

    ``feed(samples)`` returns the utterances that ended within them; ``flush()`` ends the stream
    (returning one in progress, if any). ``level``, ``floor`` and ``in_speech`` are for meters.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        *,
        frame_s: float = 0.03,
        start_db: float = 12.0,
        stop_db: float = 8.0,
        min_level_db: float = -55.0,
        min_floor_db: float = -70.0,
        min_speech_s: float = 0.09,
        silence_s: float = 0.8,
        tail_s: float = 0.2,
        pre_roll_s: float = 0.3,
        max_s: float = 30.0,
        floor_down: float = 0.3,
        floor_up: float = 0.02,
        floor_window_s: float = 2.0,
    ):
        if stop_db > start_db:
            raise ValueError("stop_db must not exceed start_db")
        self.rate = sample_rate
        self.frame = max(1, round(frame_s * sample_rate))
        self.start_db, self.stop_db = start_db, stop_db
        self.min_level_db, self.min_floor_db = min_level_db, min_floor_db
        self.min_speech = max(1, round(min_speech_s / frame_s))
        self.silence = max(1, round(silence_s / frame_s))
        self.tail = round(tail_s * sample_rate)
        self.pre_roll = round(pre_roll_s * sample_rate)
        self.max_samples = round(max_s * sample_rate)
        self.floor_down, self.floor_up = floor_down, floor_up
        self.floor_window = max(1, round(floor_window_s / frame_s))
        self.floor: float | None = None
        self.level = -100.0
        self.reset()

    def reset(self, keep_floor: bool = True) -> None:
        """Forget buffered audio and any utterance in progress; sample counting restarts at 0."""
        if not keep_floor:
            self.floor = None
        self._pending = np.zeros(0, np.float32)  # samples not yet a whole frame
        self._history: deque[np.ndarray] = deque()  # recent frames, for the pre-roll
        self._history_len = 0
        self._position = 0  # samples consumed as whole frames
        self._chunks: list[np.ndarray] = []  # the utterance in progress
        self._start = 0
        self._onset = 0  # consecutive loud frames while not in speech
        self._quiet = 0  # consecutive quiet frames while in speech
        self._last_loud_end = 0
        self._levels: deque[float] = deque(maxlen=self.floor_window)  # levels during speech
        self.in_speech = False

    # -- the stream

    def feed(self, samples: np.ndarray) -> list[Utterance]:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        data = np.concatenate([self._pending, samples]) if self._pending.size else samples
        whole = len(data) // self.frame * self.frame
        self._pending = data[whole:].copy()
        found = []
        for offset in range(0, whole, self.frame):
            utterance = self._frame(data[offset : offset + self.frame])
            if utterance is not None:
                found.append(utterance)
        return found

    def flush(self) -> Utterance | None:
        """End of stream: the utterance in progress (with any partial frame), if speech started."""
        if not self.in_speech:
            return None
        if self._pending.size:
            self._chunks.append(self._pending)
            self._position += len(self._pending)
            self._pending = np.zeros(0, np.float32)
        return self._finish(self._position)

    # -- one frame

    def _frame(self, frame: np.ndarray) -> Utterance | None:
        level = self.level = level_db(frame)
        if self.floor is None:
            self.floor = max(level, self.min_floor_db)
        start = self._position
        self._position += len(frame)
        if self.in_speech:
            self._chunks.append(frame)
            self._levels.append(level)
            if len(self._levels) == self.floor_window:  # a noise that never drops is the new floor
                self.floor = max(self.floor, min(self._levels))
            if level >= self.floor + self.stop_db and level >= self.min_level_db:
                self._quiet = 0
                self._last_loud_end = self._position
            else:
                self._quiet += 1
            if self._quiet >= self.silence:
                return self._finish(min(self._position, self._last_loud_end + self.tail))
            if self._position - self._start >= self.max_samples:
                return self._finish(self._position)
            return None
        loud = level >= self.floor + self.start_db and level >= self.min_level_db
        self._onset = self._onset + 1 if loud else 0
        self._remember(frame)
        if not loud:  # adapt the floor only to what is not speech
            rate = self.floor_down if level < self.floor else self.floor_up
            self.floor = max(self.min_floor_db, self.floor + rate * (level - self.floor))
        if self._onset >= self.min_speech:
            onset = start - (self.min_speech - 1) * self.frame
            begin = max(onset - self.pre_roll, self._position - self._history_len)
            kept = np.concatenate(list(self._history))
            self._chunks = [kept[len(kept) - (self._position - begin) :]]
            self._start, self.in_speech = begin, True
            self._quiet, self._last_loud_end, self._onset = 0, self._position, 0
            self._history.clear()
            self._history_len = 0
            self._levels.clear()
        return None

    def _remember(self, frame: np.ndarray) -> None:
        self._history.append(frame)
        self._history_len += len(frame)
        limit = self.pre_roll + self.min_speech * self.frame
        while self._history_len - len(self._history[0]) >= limit:
            self._history_len -= len(self._history.popleft())

    def _finish(self, end: int) -> Utterance:
        audio = np.concatenate(self._chunks)[: end - self._start]
        utterance = Utterance(self._start, end, np.ascontiguousarray(audio, dtype=np.float32))
        self._chunks, self.in_speech, self._quiet, self._onset = [], False, 0, 0
        return utterance


def find_utterances(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, block: int = 1024, **options) -> list[Utterance]:
    """Every utterance in a whole recording, fed in ``block``-sample pieces as a stream would be."""
    endpointer = EnergyEndpointer(sample_rate, **options)
    found: list[Utterance] = []
    for offset in range(0, len(audio), block):
        found += endpointer.feed(audio[offset : offset + block])
    last = endpointer.flush()
    return found + ([last] if last is not None else [])


# ------------------------------------------------------------------------------- PortAudio


def sounddevice():
    """The sounddevice module, or a MicrophoneError saying what to install."""
    try:
        import sounddevice as sd
    except OSError as error:  # "PortAudio library not found"
        raise MicrophoneError(f"cannot use the microphone: {error}; {INSTALL_PORTAUDIO}") from None
    except ImportError:
        raise MicrophoneError("cannot use the microphone: the package sounddevice is missing; pip install sounddevice") from None
    return sd


def _portaudio_error(error: Exception, device) -> MicrophoneError:
    reason = str(error).splitlines()[0] if str(error) else error.__class__.__name__
    what = "no default microphone" if device is None else f"cannot use input device {device!r}"
    return MicrophoneError(f"{what}; {PICK_DEVICE} (PortAudio: {reason})")


def parse_device(value: str | None) -> int | str | None:
    """``--input-device``: an index from ``--list-devices`` or part of a device's name."""
    if value is None or value.strip() == "":
        return None
    value = value.strip()
    return int(value) if value.lstrip("-").isdigit() else value


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    hostapi: str
    channels: int
    sample_rate: float
    default: bool


def input_devices() -> list[InputDevice]:
    """The devices that can record, as PortAudio sees them (an empty list when there are none)."""
    sd = sounddevice()
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
    except sd.PortAudioError as error:
        raise _portaudio_error(error, None) from None
    try:
        default = sd.query_devices(kind="input")["index"]
    except sd.PortAudioError:  # no default input
        default = None
    return [
        InputDevice(
            d["index"], d["name"], hostapis[d["hostapi"]]["name"], d["max_input_channels"], d["default_samplerate"], d["index"] == default
        )
        for d in devices
        if d["max_input_channels"] > 0
    ]


# ------------------------------------------------------------------------------- recording


class Recorder:
    """An open 16 kHz mono input stream, cut into utterances by voice activity or by key presses.

    ``meter(level_db, floor_db, recording)`` is called about 30 times a second while recording;
    ``stop()`` (checked between blocks) ends a recording early: a call then returns what it has
    heard so far, or None. Use as a context manager; ``name`` is the device actually opened.
    """

    BLOCK = 480  # 30 ms at 16 kHz

    def __init__(
        self, device: int | str | None = None, *, endpointer: EnergyEndpointer | None = None, meter: Callable | None = None
    ):
        self.device = device
        self.endpointer = endpointer or EnergyEndpointer()
        self.meter = meter
        self.name = "?"
        self._blocks: queue.Queue[np.ndarray] = queue.Queue()
        self._stream = None
        self._resampler = None
        self.overflows = 0

    # -- the stream

    def __enter__(self) -> Recorder:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        sd = self._sd = sounddevice()
        try:
            info = sd.query_devices(self.device, kind="input")
        except ValueError as error:  # no device matching a name, or not an input
            raise MicrophoneError(f"{error}; {PICK_DEVICE}") from None
        except sd.PortAudioError as error:
            if self.device is None and not input_devices():
                raise MicrophoneError(NO_INPUT) from None
            raise _portaudio_error(error, self.device) from None
        self.name = info["name"]
        try:
            self._stream = self._open_at(SAMPLE_RATE)
        except sd.PortAudioError:  # the device cannot record at 16 kHz: record at its rate and resample
            import soxr

            rate = int(info["default_samplerate"])
            try:
                self._stream = self._open_at(rate)
            except sd.PortAudioError as error:
                raise _portaudio_error(error, self.device) from None
            self._resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")
        self._stream.start()

    def _open_at(self, rate: int):
        def callback(indata, frames, time_info, status):
            if status.input_overflow:
                self.overflows += 1
            self._blocks.put(indata[:, 0].copy())

        block = round(self.BLOCK * rate / SAMPLE_RATE)
        return self._sd.InputStream(
            samplerate=rate, channels=1, dtype="float32", blocksize=block, device=self.device, callback=callback
        )

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except Exception:  # noqa: BLE001 - closing a broken stream must not hide the real error
                pass
            self._stream = None

    def drain(self) -> None:
        """Drop audio recorded while nobody was listening (decoding, waiting for a correction)."""
        while True:
            try:
                self._blocks.get_nowait()
            except queue.Empty:
                return

    def _read(self, timeout: float = 0.1) -> np.ndarray | None:
        try:
            block = self._blocks.get(timeout=timeout)
        except queue.Empty:
            return None
        if self._resampler is not None:
            block = self._resampler.resample_chunk(block)
        return block

    # -- utterances

    def record_utterance_vad(self, stop: Callable[[], bool] = lambda: False) -> np.ndarray | None:
        """Wait for speech and return it once ``silence_s`` of silence follows (or max length)."""
        self.drain()
        endpointer = self.endpointer
        endpointer.reset()
        while not stop():
            block = self._read()
            if block is None:
                continue
            found = endpointer.feed(block)
            if self.meter:
                self.meter(endpointer.level, endpointer.floor, endpointer.in_speech)
            if found:
                return found[0].audio
        last = endpointer.flush()
        return last.audio if last is not None else None

    def record_push_to_talk(self, stop: Callable[[], bool], max_s: float = 30.0) -> np.ndarray | None:
        """Record until ``stop()`` turns true (the user pressed Enter again) or ``max_s`` passes."""
        self.drain()
        blocks, total, limit = [], 0, round(max_s * SAMPLE_RATE)
        while not stop() and total < limit:
            block = self._read()
            if block is None:
                continue
            blocks.append(block)
            total += len(block)
            if self.meter:
                self.meter(level_db(block), self.endpointer.floor, True)
        time.sleep(0.05)  # the last block or two still in flight
        while (block := self._read(timeout=0.0)) is not None:
            blocks.append(block)
        if not blocks:
            return None
        return np.ascontiguousarray(np.concatenate(blocks)[:limit], dtype=np.float32)


# ------------------------------------------------------------------------------- stdin


class LineReader:
    """Reads stdin lines on a thread, so recording can go on while waiting for Enter.

    ``get()`` returns the next line without its newline, or None at end of input.
    """

    def __init__(self, stream):
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.eof = threading.Event()
        self._stream = stream
        threading.Thread(target=self._run, name="ffasr-stdin", daemon=True).start()

    def _run(self) -> None:
        try:
            for line in self._stream:
                self._lines.put(line.rstrip("\r\n"))
        except (OSError, ValueError):
            pass
        self.eof.set()
        self._lines.put(None)

    def has_line(self) -> bool:
        """A line is waiting (or the end of input was reached)."""
        return not self._lines.empty()

    def exhausted(self) -> bool:
        """End of input reached and every line before it taken."""
        return self.eof.is_set() and self._peek_none()

    def _peek_none(self) -> bool:
        with self._lines.mutex:
            return len(self._lines.queue) > 0 and self._lines.queue[0] is None

    def drain(self) -> None:
        """Drop lines typed ahead (the end of input, if reached, stays)."""
        with self._lines.mutex:
            kept = [line for line in self._lines.queue if line is None]
            self._lines.queue.clear()
            self._lines.queue.extend(kept[:1])

    def get(self) -> str | None:
        while True:  # a short timeout keeps Ctrl-C responsive
            try:
                line = self._lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                self._lines.put(None)  # stays at end of input
            return line
