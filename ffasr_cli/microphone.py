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

``Capture`` runs the end-pointer on its own thread for the whole session: every utterance is queued
in the order it was spoken while the caller transcribes, waits for an answer or updates the model,
and none is ever dropped (past ``MAX_QUEUED`` utterances or ``MAX_QUEUED_S`` of audio it says so
once, and keeps them). A stream that stops delivering audio (the device or the audio server went
away) becomes one ``MicrophoneError``; ``native_stderr_silenced`` keeps what PortAudio and ALSA
print from C ("Expression ... failed", "ALSA lib ...") off the screen meanwhile.
"""

from __future__ import annotations

import codecs
import logging
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .audio import SAMPLE_RATE
from .errors import FfasrError

INSTALL_PORTAUDIO = "install PortAudio: apt-get install libportaudio2 (Fedora: dnf install portaudio; macOS: brew install portaudio)"  # noqa: E501

PICK_DEVICE = "list the inputs with `ffasr listen --list-devices` and pick one with --input-device"
NO_INPUT = "no microphone found: PortAudio sees no input device (connect one, or start PulseAudio/PipeWire)"
STOPPED = "the microphone stopped"


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
    """An open 16 kHz mono input stream: its blocks, and push-to-talk recordings.

    ``read_block()`` is the next block, None when none came in time, and a ``MicrophoneError`` once
    the stream has stopped delivering audio. ``position`` counts the samples the device has
    delivered (at 16 kHz), the clock that ``Capture.mark`` reads. Use as a context manager;
    ``name`` is the device actually opened.
    """

    BLOCK = 480  # 30 ms at 16 kHz
    STALL_S = 1.0  # no audio this long from a stream that is no longer active: the device or server is gone
    SILENT_S = 10.0  # no audio this long at all: gone too, whatever the stream says

    def __init__(self, device: int | str | None = None, *, meter: Callable | None = None):
        self.device = device
        self.meter = meter
        self.name = "?"
        self._blocks: queue.Queue[np.ndarray] = queue.Queue()
        self._stream = None
        self._resampler = None
        self._rate = SAMPLE_RATE
        self._delivered = 0  # frames at the device's rate
        self._last_block = time.monotonic()
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
        self._last_block = time.monotonic()
        self._stream.start()

    def _open_at(self, rate: int):
        def callback(indata, frames, time_info, status):
            if status.input_overflow:
                self.overflows += 1
            self._delivered += frames
            self._blocks.put(indata[:, 0].copy())

        self._rate = rate
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

    @property
    def position(self) -> int:
        """Samples delivered so far, counted at 16 kHz."""
        return round(self._delivered * SAMPLE_RATE / self._rate)

    def drain(self) -> None:
        """Drop audio recorded while nobody was listening (push-to-talk waits for Enter)."""
        while True:
            try:
                self._blocks.get_nowait()
            except queue.Empty:
                return

    def read_block(self, timeout: float = 0.1) -> np.ndarray | None:
        try:
            block = self._blocks.get(timeout=timeout)
        except queue.Empty:
            self._check_alive()
            return None
        self._last_block = time.monotonic()
        if self._resampler is not None:
            block = self._resampler.resample_chunk(block)
        return block

    def _check_alive(self) -> None:
        quiet = time.monotonic() - self._last_block
        if quiet > self.SILENT_S:
            raise MicrophoneError(f"{STOPPED}: no audio came for {self.SILENT_S:.0f} s")
        if quiet > self.STALL_S and self._stream is not None and not self._stream.active:
            raise MicrophoneError(f"{STOPPED}: its input stream ended (the device or the audio server went away)")

    # -- push-to-talk

    def record_push_to_talk(self, stop: Callable[[], bool], max_s: float = 30.0) -> np.ndarray | None:
        """Record until ``stop()`` turns true (the user pressed Enter again) or ``max_s`` passes."""
        self.drain()
        blocks, total, limit = [], 0, round(max_s * SAMPLE_RATE)
        while not stop() and total < limit:
            block = self.read_block()
            if block is None:
                continue
            blocks.append(block)
            total += len(block)
            if self.meter:
                self.meter(level_db(block), None, True)
        time.sleep(0.05)  # the last block or two still in flight
        while (block := self.read_block(timeout=0.0)) is not None:
            blocks.append(block)
        if not blocks:
            return None
        return np.ascontiguousarray(np.concatenate(blocks)[:limit], dtype=np.float32)


# ------------------------------------------------------------------------------- capture

MAX_QUEUED = 50  # utterances waiting to be transcribed before ffasr says it is behind
MAX_QUEUED_S = 600.0  # or this much audio waiting


class Capture:
    """The end-pointer on its own thread, for the whole session: every utterance, queued in order.

    ``take()`` is the oldest utterance waiting; ``take_after(mark)`` the oldest that ended after
    ``mark()`` was read (a spoken correction: what was said before it stays queued). Both wait up to
    ``timeout`` and return None when nothing came; both raise the ``MicrophoneError`` that stopped
    the stream. ``finish()`` ends listening: an utterance in progress is queued as it is. Past
    ``max_queued`` utterances or ``max_queued_s`` of audio, ``on_backlog(count, seconds)`` is called
    once (again only after the queue has emptied); nothing is dropped.
    """

    def __init__(self, recorder: Recorder, endpointer: EnergyEndpointer, *, meter: Callable | None = None,
                 on_backlog: Callable[[int, float], None] | None = None,
                 max_queued: int = MAX_QUEUED, max_queued_s: float = MAX_QUEUED_S):  # fmt: skip
        self.recorder, self.endpointer, self.meter, self.on_backlog = recorder, endpointer, meter, on_backlog
        self.max_queued, self.max_queued_s = max_queued, max_queued_s
        self._queued: deque[Utterance] = deque()
        self._ready = threading.Condition()
        self._stop = threading.Event()
        self._warned = False
        self.failure: MicrophoneError | None = None
        self._thread = threading.Thread(target=self._run, name="ffasr-capture", daemon=True)

    def __enter__(self) -> Capture:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        endpointer = self.endpointer
        try:
            while not self._stop.is_set():
                block = self.recorder.read_block()
                if block is None:
                    continue
                for utterance in endpointer.feed(block):
                    self._put(utterance)
                if self.meter:
                    self.meter(endpointer.level, endpointer.floor, endpointer.in_speech)
        except MicrophoneError as error:
            self.failure = error
        except Exception as error:  # noqa: BLE001 - any failure of the stream ends the session in one line
            self.failure = MicrophoneError(f"{STOPPED}: {error.__class__.__name__}: {error}")
        finally:
            with self._ready:
                self._ready.notify_all()

    def _put(self, utterance: Utterance) -> None:
        with self._ready:
            self._queued.append(utterance)
            self._ready.notify_all()
            count, seconds = len(self._queued), self.queued_seconds
        if not self._warned and (count > self.max_queued or seconds > self.max_queued_s):
            self._warned = True
            if self.on_backlog:
                self.on_backlog(count, seconds)

    def finish(self) -> None:
        """Stop listening; an utterance in progress is queued as far as it got."""
        self._stop.set()
        self._thread.join(timeout=2)
        last = self.endpointer.flush()
        if last is not None:
            self._put(last)

    # -- the queue

    def __len__(self) -> int:
        return len(self._queued)

    @property
    def queued_seconds(self) -> float:
        return sum(u.seconds for u in list(self._queued))

    def mark(self) -> int:
        """Now, on the clock of ``Utterance.end``."""
        return self.recorder.position

    def check(self) -> None:
        """Raise the ``MicrophoneError`` that stopped the stream, if it stopped."""
        if self.failure is not None:
            raise self.failure

    def take(self, timeout: float = 0.0) -> Utterance | None:
        return self._take(lambda u: True, timeout)

    def take_after(self, mark: int, timeout: float = 0.0) -> Utterance | None:
        return self._take(lambda u: u.end > mark, timeout)

    def _take(self, wanted: Callable[[Utterance], bool], timeout: float) -> Utterance | None:
        deadline = time.monotonic() + timeout
        with self._ready:
            while True:
                self.check()
                found = next((u for u in self._queued if wanted(u)), None)
                if found is not None:
                    self._queued.remove(found)
                    if not self._queued:
                        self._warned = False
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._ready.wait(left)


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Keep what C libraries write to file descriptor 2 off the screen; Python's stderr goes on as before.

    PortAudio and ALSA print their internals there from their own threads ("Expression
    'alsa_snd_pcm_poll_descriptors_revents…' failed", "ALSA lib pcm.c: …") when a device goes away:
    the caller reports that in one line of its own. Descriptor 2 points at /dev/null meanwhile;
    ``sys.stderr`` and the logging handlers that wrote to it use a copy of the original.
    """
    python_stderr = sys.stderr
    try:
        python_stderr.flush()
        original = os.dup(2)
    except (OSError, ValueError):  # no descriptor 2 to move: nothing to silence
        yield
        return
    ours = open(original, "w", buffering=1, encoding=getattr(python_stderr, "encoding", None) or "utf-8",  # noqa: SIM115
                errors="backslashreplace", closefd=True)  # fmt: skip
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler) and h.stream is python_stderr]
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = ours
    for handler in handlers:
        handler.setStream(ours)
    try:
        yield
    finally:
        ours.flush()
        os.dup2(original, 2)
        sys.stderr = python_stderr
        for handler in handlers:
            handler.setStream(python_stderr)
        ours.close()


# ------------------------------------------------------------------------------- stdin


class LineReader:
    """Reads stdin lines on a thread, so recording can go on while waiting for Enter.

    ``get()`` returns the next line without its newline, or None at end of input; with a
    ``timeout``, ``queue.Empty`` when no line came in time.
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
        self._end()

    def _end(self) -> None:
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

    def get(self, timeout: float | None = None) -> str | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:  # a short timeout keeps Ctrl-C responsive
            wait = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
            try:
                line = self._lines.get(timeout=wait)
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                continue
            if line is None:
                self._lines.put(None)  # stays at end of input
            return line


class TerminalReader(LineReader):
    """Lines typed at a terminal, edited here rather than by the terminal, so that output can go on above them.

    The terminal is put in cbreak mode (no echo, no line editing; Ctrl-C still interrupts) until
    ``close()``. ``typed`` is the line being typed, which the caller draws; ``on_change()`` is called
    after each key. Keys: text, Backspace, Ctrl-U (clear), Ctrl-W (erase a word), Enter (the line),
    Ctrl-D on an empty line (end of input); arrows and other escape sequences are ignored.
    """

    def __init__(self, fd: int, on_change: Callable[[], None] = lambda: None):
        import termios
        import tty

        self.fd, self.on_change, self.typed = fd, on_change, ""
        self._restore = termios.tcgetattr(fd)
        self._termios = termios
        tty.setcbreak(fd)
        super().__init__(None)

    def close(self) -> None:
        self._termios.tcsetattr(self.fd, self._termios.TCSADRAIN, self._restore)

    def _run(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        keys = _KeyEditor()
        try:
            while chunk := os.read(self.fd, 1024):
                for key in decoder.decode(chunk):
                    line = keys.press(key)
                    self.typed = keys.text
                    if line is EOF_KEY:
                        self._end()
                        return
                    if line is not None:
                        self._lines.put(line)
                    self.on_change()
        except OSError:
            pass
        self._end()


EOF_KEY = object()  # what _KeyEditor.press returns for Ctrl-D on an empty line


class _KeyEditor:
    """The line being typed, one key at a time: ``press`` returns the finished line, ``EOF_KEY`` or None."""

    def __init__(self):
        self.text = ""
        self._escape = ""  # an escape sequence being skipped

    def press(self, key: str):
        if self._escape:  # ESC x, ESC O x, or ESC [ parameters… final (0x40-0x7e)
            self._escape += key
            introducer = self._escape[1]
            if introducer in "[O" and len(self._escape) == 2 or introducer == "[" and not "\x40" <= key <= "\x7e":
                return None
            self._escape = ""
            return None
        if key == "\x1b":
            self._escape = key
        elif key in "\r\n":
            line, self.text = self.text, ""
            return line
        elif key in "\x7f\b":
            self.text = self.text[:-1]
        elif key == "\x15":  # Ctrl-U
            self.text = ""
        elif key == "\x17":  # Ctrl-W
            self.text = self.text.rstrip()
            self.text = self.text[: self.text.rfind(" ") + 1]
        elif key == "\x04":  # Ctrl-D
            if not self.text:
                return EOF_KEY
        elif key == "\t":
            self.text += " "
        elif key.isprintable():
            self.text += key
        return None
