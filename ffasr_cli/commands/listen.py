"""``ffasr listen``: live microphone sessions — hear, show, take a correction, learn.

The microphone is listened to for the whole session, on its own thread: every utterance is queued
in the order it was spoken while ffasr transcribes, waits for an answer or updates the model, and
none is dropped ("queued: 2" says how many wait; past 50 utterances or 10 minutes of audio ffasr
says it is behind, and still keeps them). Two ways to answer:

* continuous (``--continuous``; the default at a terminal): transcripts stream as numbered lines
  without a keypress, and a line typed at any time answers one of the last ``OPEN_LINES`` (10):
  ``2: Xochitl is late`` corrects line 2, ``2!`` then speaking corrects it by voice, a line without
  a number corrects the newest line (``!`` says it), ``2:`` accepts line 2 and an empty line (Enter)
  accepts every open line. A line is accepted too when it leaves the ten; lines still open at the
  end are left untaught. A spoken correction is the first utterance that ends after ``N!``;
* one at a time (``--one-at-a-time``; the default from a script): each transcript waits for its
  answer — Enter accepts it, a typed line corrects it, ``!`` records a spoken correction — before the
  next queued utterance is shown (``--push-to-talk``: Enter starts and stops each recording).

At a terminal a spoken correction is shown as heard and taught only when Enter confirms it (a typed
line replaces it, ``!`` says it again): a misheard correction would teach the mishearing. Under the
output, one status line shows what ffasr is doing, the level meter, the queue and the line being
typed.

From a script (stdin not a terminal, or ``--script``), transcripts go to stdout — one a line, or
``N: text`` when continuous — and answers come one a line from stdin (a spoken correction is taught
as heard); progress goes to stderr, where a line with "listening" says the microphone is open. One
at a time, the session ends at the end of stdin or after ``--max-utterances``; continuous, it ends at
the end of stdin once ``--max-utterances`` lines (if given) were shown, after transcribing what was
already heard.

Ctrl-C ends the session; what was learned is saved and pending corrections are kept for the next.
A microphone that stops (unplugged, the audio server gone) ends it with one line and exit status 1.
"""

from __future__ import annotations

import json
import queue
import re
import shutil
import sys
import threading
import time
from collections import OrderedDict
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ..corrections import word_key
from ..errors import CorrectionRejected, FfasrError
from .common import (
    ConfigFile, Device, Glossary, ModeOption, ModelName, Profile, Seed, StateDir, Wait, build_config, console, printable,
    reports_errors, shown, state_dir,
)  # fmt: skip

SPEAK = "!"  # the reply that records a spoken correction
OPEN_LINES = 10  # continuous: the newest lines that can still be corrected


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'s' * (n != 1)}"


class AudioLog:
    """``--save-audio DIR``: every utterance and spoken correction as a 16 kHz WAV, plus the
    ``dialogs.jsonl`` that ``ffasr replay`` reads (appended and flushed per utterance)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder).absolute()  # the store keeps the path: it must not depend on where ffasr ran
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            names = (re.fullmatch(r"utt-(\d+)(?:-fix)?\.wav", p.name) for p in self.folder.glob("utt-*.wav"))
            numbers = [int(m.group(1)) for m in names if m]
            self.jsonl = open(self.folder / "dialogs.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - open for the whole session
        except OSError as error:
            raise FfasrError(f"cannot save audio in {folder}: {error.strerror or error}") from None
        self.number = max(numbers, default=0)

    def next_name(self) -> str:
        self.number += 1
        return f"utt-{self.number:04d}"

    def write_wav(self, name: str, audio) -> str:
        import soundfile

        from ..audio import SAMPLE_RATE

        path = self.folder / f"{name}.wav"
        try:
            soundfile.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16")
        except (OSError, RuntimeError) as error:
            raise FfasrError(f"cannot write {path}: {error}") from None
        return path.name

    def add(self, row: dict) -> None:
        self.jsonl.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.jsonl.flush()

    def close(self) -> None:
        self.jsonl.close()


# ------------------------------------------------------------------------------- the screen


DOUBTFUL = "bold yellow underline"  # a learned term shown over a word the plain model was sure of
PUNCTUATED = re.compile(r"""(["'(\[]*)(.*?)([.,;:!?"')\]]*)""", re.S)  # a word: opening marks, the word, closing ones


def marked(text: str, doubtful: tuple[str, ...]) -> Text:
    """``text`` as data, the words in ``doubtful`` marked (``guard.doubtful_terms``): where a wrong term is likeliest."""
    if not doubtful:
        return shown(text)
    line = Text()
    for i, word in enumerate(text.split(" ")):
        line.append(" " if i else "")
        if word not in doubtful:
            line.append_text(shown(word))
            continue
        before, term, after = PUNCTUATED.fullmatch(word).groups()  # the term marked, not the full stop after it
        for part, style in ((before, ""), (term, DOUBTFUL), (after, "")):
            line.append_text(shown(part, style))
    return line


class Screen:
    """What listen shows: progress lines on stderr (transcripts on stdout from a script), and at a
    terminal one status line under them, redrawn in place from any thread: the microphone's state
    and level, what ffasr is doing, how many utterances wait, and the line being typed."""

    BAR = 20

    def __init__(self, interactive: bool, live: bool):
        self.interactive, self.live = interactive, live
        self.doing = ""  # what the main loop is busy with ("transcribing…"); empty when it waits
        self.prompt = False  # whether the line being typed is shown (and so answers something)
        self.queued = lambda: 0
        self.typed = lambda: ""
        self._level, self._floor, self._recording = -100.0, None, False
        self._lock = threading.RLock()
        self._drawn = False
        self._last = 0.0

    # -- lines

    def say(self, message: str, style: str | None = None) -> None:
        """A progress line (user text in it is shown as written)."""
        self.show(shown(message), style)

    def show(self, text: Text, style: str | None = None) -> None:
        with self._lock:
            self._erase()
            console.print(text, style=style, soft_wrap=True)
            self._draw()

    def typed_line(self, text: str) -> None:
        """A line just typed, kept on screen above the status line where it was edited."""
        if self.live:
            self.show(Text.assemble(("› ", "dim"), shown(text, "dim")))

    def transcript(self, number: int, text: str, numbered: bool, doubtful: tuple[str, ...] = ()) -> None:
        if self.interactive:
            self.show(Text.assemble((f"{number:>3}  ", "bold"), marked(text, doubtful)))
            return
        with self._lock:
            sys.stdout.write(f"{number}: {printable(text)}\n" if numbered else f"{printable(text)}\n")
            sys.stdout.flush()

    def backlog(self, count: int, seconds: float) -> None:
        """Called from the capture thread once the queue passes its bound."""
        self.say(f"ffasr: {count} utterances ({seconds / 60:.1f} min of audio) wait to be transcribed: "
                 "ffasr is behind; every one is kept", "yellow")  # fmt: skip

    @contextmanager
    def busy(self, doing: str, announce: bool = False):
        """The main loop is busy: shown in the status line; from a script, ``announce`` prints it."""
        if announce and not self.interactive:
            self.say(f"ffasr: {doing}{self.queue_note()}")
        with self._lock:
            self.doing = doing
            self._draw()
        try:
            yield
        finally:
            with self._lock:
                self.doing = ""
                self._draw()

    def queue_note(self) -> str:
        count = self.queued()
        return f" (queued: {count})" if count else ""

    # -- the status line

    def meter(self, level: float, floor: float | None, recording: bool) -> None:
        """Called about 30 times a second by the capture thread (push-to-talk: by the recorder)."""
        self._level, self._floor, self._recording = level, floor, recording
        now = time.monotonic()
        if self.live and now - self._last >= 0.05:
            self._last = now
            self.redraw()

    def redraw(self) -> None:
        with self._lock:
            self._draw()

    def close(self) -> None:
        with self._lock:
            self._erase()
            self.live = False

    def _erase(self) -> None:
        if self._drawn:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self._drawn = False

    def _draw(self) -> None:
        if not self.live:
            return
        width = shutil.get_terminal_size((80, 24)).columns - 1
        filled = max(0, min(self.BAR, round((self._level + 70) / 70 * self.BAR)))
        mic = "● recording" if self._recording else "○ listening"
        parts = [f"{mic} [{'█' * filled}{'·' * (self.BAR - filled)}] {self._level:4.0f} dB"]
        if self.doing:
            parts.append(self.doing)
        if count := self.queued():
            parts.append(f"queued: {count}")
        status = " · ".join(parts)
        if self.prompt:
            room = max(8, width - len(status) - 4)
            typed = printable(self.typed())
            status = f"{status}  › {typed[-room:]}"
        status = status[:width] if len(status) > width else status
        if self._recording:
            status = status.replace("● recording", "\033[31m● recording\033[0m", 1)
        sys.stderr.write(f"\r\033[K{status}")
        sys.stderr.flush()
        self._drawn = True


# ------------------------------------------------------------------------------- the learner, as listen shows it
# The one place that reads the agent: what was loaded, the counters, the glossary.


def loaded_line(session) -> str:
    agent = session.agent
    return (f"ffasr: {agent.config.model} on {agent.device} · profile {session.profile} · adapter step {agent.learner.steps} · "
            f"{_count(len(agent.reader.glossary), 'term')} known")  # fmt: skip


def pending(session) -> str:
    """Corrections pending against ``accumulation_steps``, and confirmed sentences riding along."""
    waiting = session.waiting()
    riding = sum(e.confirms for e in waiting)
    return f"corrections {len(waiting) - riding}/{session.agent.config.training.accumulation_steps} · riding along {riding}"


def counters(session) -> str:
    """``pending``, and when the next update runs."""
    more, either = session.agent.learner.until_update(list(session.queued.values()))
    if more == 0:
        return f"{pending(session)} · updating in the background"
    if either <= more:  # so many more of any kind make a batch
        when = f"{_count(either, 'more correction')} or confirmed sentence{'s' * (either != 1)}"
    else:
        when = _count(more, "more correction")
    return f"{pending(session)} · next update after {when}"


def known_terms(session) -> set[str]:
    return {word_key(term) for term in session.agent.reader.glossary}


# ------------------------------------------------------------------------------- the command


def _list_devices() -> None:
    from ..microphone import NO_INPUT, MicrophoneError, input_devices

    devices = input_devices()
    if not devices:
        raise MicrophoneError(NO_INPUT)
    for d in devices:
        mark = "  (default)" if d.default else ""
        typer.echo(f"{d.index:3d}  {d.name}  [{d.hostapi}, {d.channels} ch, {d.sample_rate:.0f} Hz]{mark}")


@reports_errors
def listen(
    vad: Annotated[
        bool,
        typer.Option("--vad/--push-to-talk", help="End utterances on silence (voice activity), or press Enter to start and stop."),
    ] = True,
    continuous: Annotated[
        bool | None,
        typer.Option(
            "--continuous/--one-at-a-time",
            help="Stream numbered transcripts and correct any of the last 10 ('2: text', '2!'), or answer each before the next "
            "(default: continuous at a terminal with --vad, one at a time otherwise).",
            show_default=False,
        ),
    ] = None,
    input_device: Annotated[
        str | None,
        typer.Option("--input-device", "-i", help="Microphone: an index or part of a name from --list-devices (default: the system's)."),
    ] = None,
    list_devices: Annotated[bool, typer.Option("--list-devices", help="Print the input devices and exit.")] = False,
    save_audio: Annotated[
        Path | None,
        typer.Option("--save-audio", help="Save each utterance and spoken correction as WAV, with a dialogs.jsonl for `ffasr replay`."),
    ] = None,
    script: Annotated[
        bool,
        typer.Option("--script", help="Script mode even at a terminal: transcripts on stdout, answers from stdin, no meter."),
    ] = False,
    max_utterances: Annotated[
        int | None, typer.Option("--max-utterances", min=1, help="Stop listening after this many utterances (default: no limit).")
    ] = None,
    silence: Annotated[float, typer.Option("--silence", min=0.1, help="Seconds of silence that end an utterance (--vad).")] = 0.8,
    threshold: Annotated[
        float, typer.Option("--threshold", min=1.0, help="dB above the noise floor that count as speech (--vad).")
    ] = 12.0,
    max_seconds: Annotated[
        float, typer.Option("--max-seconds", min=1.0, max=30.0, help="Longest utterance, in seconds (one Whisper window).")
    ] = 30.0,
    glossary: Glossary = None,
    state: StateDir = None,
    config: ConfigFile = None,
    model: ModelName = None,
    mode: ModeOption = None,
    device: Device = None,
    profile: Profile = "default",
    seed: Seed = 0,
    wait: Wait = 0.0,
) -> None:
    """Listen to the microphone: transcribe what you say, take your corrections, and learn from them."""
    if list_devices:
        _list_devices()
        return
    interactive = not script and sys.stdin.isatty()
    continuous = interactive and vad if continuous is None else continuous
    if not vad and not interactive:
        raise FfasrError("--push-to-talk needs a terminal (Enter starts and stops); scripts use --vad")
    if not vad and continuous:
        raise FfasrError("--push-to-talk takes one utterance at a time (Enter starts and stops it): --continuous needs --vad")
    settings = build_config(config, model, mode, device, glossary)

    from ..microphone import (
        Capture, EnergyEndpointer, LineReader, MicrophoneError, Recorder, TerminalReader, native_stderr_silenced, parse_device,
    )  # fmt: skip

    screen = Screen(interactive, live=interactive and sys.stderr.isatty())
    with ExitStack() as stack:
        log = AudioLog(save_audio) if save_audio else None
        if log:
            stack.callback(log.close)
        stack.enter_context(native_stderr_silenced())
        stack.callback(screen.close)
        # the microphone opens first: no microphone fails fast, before the model loads
        recorder = stack.enter_context(Recorder(parse_device(input_device), meter=screen.meter))
        source = recorder
        if vad:
            endpointer = EnergyEndpointer(start_db=threshold, stop_db=min(8.0, threshold), silence_s=silence, max_s=max_seconds)
            source = stack.enter_context(Capture(recorder, endpointer, meter=screen.meter, on_backlog=screen.backlog))
            screen.queued = source.__len__
        if screen.live:
            lines = TerminalReader(sys.stdin.fileno(), screen.redraw)
            stack.callback(lines.close)
            screen.typed = lambda: lines.typed
        else:
            lines = LineReader(sys.stdin)

        from ..session import Session

        with screen.busy("loading the model…"):  # learning runs in a thread of its own: the loop never waits for an update
            session = Session.open(state_dir(state), profile, settings, "listen", lock_timeout=wait, seed=seed, background=True)
        loop = _Loop(session, source, lines, screen, log, interactive=interactive, continuous=continuous, max_seconds=max_seconds)
        screen.say(loaded_line(session), style="dim")
        interrupted = False
        try:
            loop.run(max_utterances)
        except MicrophoneError as error:  # it stopped mid-session: what was taught is on disk already
            raise MicrophoneError(f"{error}; everything learned is saved") from None
        except KeyboardInterrupt:  # a running update is undone; every correction is on disk already
            interrupted = True
            raise
        finally:
            screen.close()
            loop.finish(interrupted)


# ------------------------------------------------------------------------------- the loop


@dataclass
class _Line:
    """A transcript shown to the user, until it is answered."""

    number: int
    heard: object  # session.Heard
    name: str | None  # the saved WAV's stem (--save-audio), which names its spoken correction's file
    saved: str | None  # the saved WAV's file name

    def row(self) -> dict:
        return {"audio": self.saved}


_NUMBERED = re.compile(r"\s*(\d+)\s*(?::(.*)|(!))\s*", re.DOTALL)


def parse_command(text: str) -> tuple[int | None, str]:
    """A continuous-mode line as (line number or None for the newest, reply): ``2: text`` → (2, "text"),
    ``2!`` → (2, "!"), ``2:`` → (2, ""), ``text`` → (None, "text"), ``""`` → (None, "")."""
    match = _NUMBERED.fullmatch(text)
    if not match:
        return None, text.strip()
    number = int(match.group(1))
    return number, SPEAK if match.group(3) else match.group(2).strip()


class _Loop:
    """The session's loop: ``source`` is a ``Capture`` (voice activity) or a ``Recorder`` (push-to-talk)."""

    def __init__(self, session, source, lines, screen: Screen, log: AudioLog | None, *, interactive: bool,
                 continuous: bool = False, max_seconds: float = 30.0):  # fmt: skip
        self.session, self.source, self.lines, self.screen, self.log = session, source, lines, screen, log
        self.interactive, self.continuous, self.max_seconds = interactive, continuous, max_seconds
        self.push_to_talk = not hasattr(source, "take")
        self.heard = self.corrections = self.steps = 0
        self.open: OrderedDict[int, _Line] = OrderedDict()  # continuous: lines that can still be answered
        self.spoken_for: tuple[_Line, int] | None = None  # continuous: the line a spoken correction is awaited for, since when
        self.confirming: tuple[_Line, str, dict] | None = None  # continuous, at a terminal: a spoken label awaiting Enter

    def say(self, message: str, style: str | None = None) -> None:
        self.screen.say(message, style)

    def run(self, max_utterances: int | None) -> None:
        if self.continuous:
            self._run_continuous(max_utterances)
        else:
            self._run_one_at_a_time(max_utterances)

    # -- hearing

    def _transcribe(self, audio) -> _Line | None:
        """Transcribe and show one utterance; None when there was nothing in it."""
        from ..audio import is_silent

        if is_silent(audio):
            if self.interactive:
                self.say("(too quiet to transcribe)", "dim")
            return None
        name = self.log.next_name() if self.log else None
        saved = self.log.write_wav(name, audio) if self.log else None
        with self.screen.busy("transcribing…"):
            heard = self.session.hear(audio, str(self.log.folder / saved) if saved else f"microphone:{self.heard + 1}")
        if heard.cache_id is None or not heard.text.strip():
            self.say("(nothing heard)", "dim")
            return None
        self.heard += 1
        self.screen.transcript(self.heard, heard.text, numbered=self.continuous, doubtful=heard.doubtful)
        if not self.interactive and (waiting := self.screen.queued()):
            self.say(f"ffasr: queued: {waiting}")
        return _Line(self.heard, heard, name, saved)

    def _line(self) -> str | None:
        """The next line typed; None at the end of input. A microphone that stopped ends the wait."""
        while True:
            self._report_learning()
            if not self.push_to_talk:
                self.source.check()
            try:
                return self.lines.get(timeout=0.1)
            except queue.Empty:
                continue

    def _utterance(self, what: str, after: int | None = None):
        """The next utterance (a spoken correction: the first that ended ``after`` the request); None at the end of input."""
        if self.push_to_talk:
            return self._push_to_talk(what)
        take = self.source.take if after is None else (lambda timeout: self.source.take_after(after, timeout))
        if (utterance := take(0.0)) is not None:
            return utterance.audio
        if not self.interactive:
            self.say(f"ffasr: listening for {what} on {self.source.recorder.name}")
        with self.screen.busy(f"say {what}" if after is not None else ""):
            while (utterance := take(0.1)) is None:
                self._report_learning()
                if self.lines.exhausted():
                    return None
        return utterance.audio

    def _push_to_talk(self, what: str):
        self.say(f"press Enter to record {what} (Ctrl-C to quit)")
        if self.lines.get() is None:
            return None
        self.say("recording… press Enter to stop")
        audio = self.source.record_push_to_talk(stop=self.lines.has_line, max_s=self.max_seconds)
        self.screen.meter(-100.0, None, recording=False)
        self.lines.get()
        return audio

    # -- one at a time

    def _run_one_at_a_time(self, max_utterances: int | None) -> None:
        if self.interactive and not self.push_to_talk:
            self.say("speak: each transcript waits for your answer; what you say meanwhile waits its turn · Ctrl-C quits", "dim")
        while max_utterances is None or self.heard < max_utterances:
            audio = self._utterance("speech")
            if audio is None:
                return
            line = self._transcribe(audio)
            if line is not None:
                self._answer(line)

    def _reply(self, hint: str = "Enter = accept · type a correction · ! + Enter = speak it") -> str | None:
        """The user's next line, stripped; None at the end of input."""
        if self.interactive:
            self.lines.drain()  # keys pressed while listening answer nothing
            self.say(hint, "dim")
            self.screen.prompt = True
            self.screen.redraw()
            if not self.screen.live:
                sys.stderr.write("› ")
                sys.stderr.flush()
        try:
            line = self._line()
        finally:
            self.screen.prompt = False
        if line is not None:
            self.screen.typed_line(line)
        return None if line is None else line.strip()

    def _answer(self, line: _Line) -> None:
        """Ask until the user accepts, corrects, or confirms a spoken correction; then teach it.

        A spoken correction is taught as heard only in script mode or once Enter confirms it; the
        saved row keeps its audio beside a typed line that replaced it, which is how ``ffasr
        replay`` tells the two apart.
        """
        row = line.row()
        reply = self._reply()
        while True:
            if reply is None:  # end of input before an answer: this one is left untaught
                self.say("end of input: the last utterance was not answered, so nothing was learned from it")
                return
            try:
                if not reply:
                    label, source = None, "accepted"
                    row.pop("correction_audio", None)  # a spoken try that was refused: replay must accept too
                elif reply == SPEAK:
                    mark = None if self.push_to_talk else self.source.mark()
                    spoken = self._utterance("the spoken correction", after=mark)
                    if spoken is None:
                        return
                    label = self._hear_spoken(line, spoken, row)
                    source = "spoken"
                    if self.interactive:
                        reply = self._reply("Enter = teach it · type the sentence instead · ! + Enter = say it again")
                        if reply != "":
                            continue  # replaced (typed or said again), or the end of input
                else:
                    label, source = self.session.read_correction(reply, line.heard), "typed"
                    row["correction"] = reply
            except CorrectionRejected as error:
                self.say(f"refused: {error}", "yellow")
                if self.interactive:
                    reply = self._reply()  # ask again
                    continue
                self.session.teach(line.heard, None, "spoken" if reply == SPEAK else "typed", refused=str(error))  # kept in the history
                return
            except FfasrError as error:  # a spoken correction with nothing in it, say
                self.say(f"ffasr: warning: {error}", "yellow")
                if self.interactive:
                    reply = self._reply()
                    continue
                return
            break
        self._settle(line, label, source, row)

    def _hear_spoken(self, line: _Line, audio, row: dict) -> str:
        """The label a spoken correction gives (CorrectionRejected when none); its audio is saved first."""
        if self.log:
            row["correction_audio"] = self.log.write_wav(f"{line.name}-fix", audio)
        with self.screen.busy("decoding the correction…"):
            label = self.session.hear_correction(audio, line.heard)
        self.say(f"{self._prefix(line)}spoken correction → {label}")
        return label

    # -- continuous

    def _run_continuous(self, max_utterances: int | None) -> None:
        if self.interactive:
            self.say('speak · "N: text" corrects line N, "N!" says it · Enter accepts the open lines · Ctrl-D ends · Ctrl-C quits', "dim")
            self.screen.prompt = True
            self.screen.redraw()
        else:
            self.say(f"ffasr: listening for speech on {self.source.recorder.name}")
        input_ended = False
        while True:
            self._report_learning()
            self.source.check()
            if not input_ended:
                try:
                    command = self.lines.get(timeout=0.05)
                except queue.Empty:
                    pass
                else:
                    if command is None:
                        input_ended = True
                    else:
                        self.screen.typed_line(command)
                        self._command(command)
                    continue
            full = max_utterances is not None and self.heard >= max_utterances
            if not full and (utterance := self.source.take(0.0 if not input_ended else 0.1)) is not None:
                self._heard(utterance)
            elif input_ended and (full or max_utterances is None):
                break
        if max_utterances is None:  # the end of input: what was already heard is still shown
            self.source.finish()
            while (utterance := self.source.take()) is not None:
                self._heard(utterance)

    def _heard(self, utterance) -> None:
        if self.spoken_for is not None and utterance.end > self.spoken_for[1]:
            line, self.spoken_for = self.spoken_for[0], None
            self._spoken_correction(line, utterance.audio)
            return
        line = self._transcribe(utterance.audio)
        if line is None:
            return
        self.open[line.number] = line
        while len(self.open) > OPEN_LINES:  # out of reach of a correction: it stands as shown
            self._settle(next(iter(self.open.values())), None, "accepted", quiet=True)

    def _command(self, text: str) -> None:
        number, reply = parse_command(text)
        if self.confirming is not None:
            line, label, row = self.confirming
            self.confirming = None
            if number is None:
                if reply == "":
                    self._settle(line, label, "spoken", row)
                elif reply == SPEAK:
                    self._ask_spoken(line)
                else:
                    self._typed(line, reply, row)
                return
            self.say(f"line {line.number}: the spoken correction was not taught")
        if number is None and reply == "":
            self._accept_open()
            return
        line = self._open_line(number)
        if line is None:
            return
        if reply == SPEAK:
            self._ask_spoken(line)
        elif reply == "":
            self._settle(line, None, "accepted")
        else:
            self._typed(line, reply, line.row())

    def _open_line(self, number: int | None) -> _Line | None:
        if not self.open:
            self.say("no line to answer yet", "yellow")
            return None
        if number is None:
            return next(reversed(self.open.values()))
        if number in self.open:
            return self.open[number]
        if 0 < number <= self.heard:
            first, last = next(iter(self.open)), next(reversed(self.open))
            span = f"{first}" if first == last else f"{first}-{last}"
            self.say(f"line {number} is answered already; lines {span} are open", "yellow")
        else:
            self.say(f"there is no line {number}", "yellow")
        return None

    def _ask_spoken(self, line: _Line) -> None:
        self.spoken_for = (line, self.source.mark())
        self.say(f"line {line.number}: say the correction")

    def _spoken_correction(self, line: _Line, audio) -> None:
        if line.number not in self.open:
            return
        row = line.row()
        try:
            label = self._hear_spoken(line, audio, row)
        except CorrectionRejected as error:
            self.say(f"line {line.number} · refused: {error}", "yellow")
            if not self.interactive:
                self.open.pop(line.number)
                self.session.teach(line.heard, None, "spoken", refused=str(error))
            return
        except FfasrError as error:
            self.say(f"ffasr: warning: {error}", "yellow")
            return
        if self.interactive:
            self.confirming = (line, label, row)
            self.say("Enter = teach it · type the sentence instead · ! + Enter = say it again", "dim")
        else:
            self._settle(line, label, "spoken", row)

    def _typed(self, line: _Line, text: str, row: dict) -> None:
        try:
            label = self.session.read_correction(text, line.heard)
        except CorrectionRejected as error:
            self.say(f"line {line.number} · refused: {error}", "yellow")
            if not self.interactive:  # kept in the history; a script does not try again
                self.open.pop(line.number)
                self.session.teach(line.heard, None, "typed", refused=str(error))
            return
        row["correction"] = text
        self._settle(line, label, "typed", row)

    def _accept_open(self) -> None:
        if not self.open:
            self.say("no open line to accept", "dim")
            return
        numbers = list(self.open)
        for line in list(self.open.values()):
            self._settle(line, None, "accepted", quiet=True)
        span = f"line {numbers[0]}" if len(numbers) == 1 else f"lines {numbers[0]}-{numbers[-1]}"
        self.say(f"accepted {span} · {counters(self.session)}")

    # -- teaching

    def _prefix(self, line: _Line) -> str:
        return f"line {line.number} · " if self.continuous else ""

    def _settle(self, line: _Line, label: str | None, source: str, row: dict | None = None, quiet: bool = False) -> None:
        """Teach the answer to ``line``, saving its row first (an accepted row keeps the text that was accepted)."""
        self.open.pop(line.number, None)
        if self.log:
            row = dict(row or line.row())
            if source == "accepted":
                row.pop("correction_audio", None)  # a spoken try that was refused: replay must accept too
                row["accepted"] = line.heard.text
            self.log.add(row)
        self._teach(line, label, source, quiet)

    def _teach(self, line: _Line, label: str | None, source: str, quiet: bool = False) -> None:
        session, prefix = self.session, self._prefix(line)
        known, learning = known_terms(session), session.learns_from(line.heard, label)
        with self.screen.busy("learning…"):  # a moment: it is saved here, learned in the learner's thread
            taught = session.teach(line.heard, label, source)
        tally = f" · {counters(session)}"
        if taught.rejected:
            self.say(f"{prefix}refused: {taught.rejected}", "yellow")
        elif taught.source == "accepted":
            if learning:
                self.say(f"{prefix}accepted · learning from it (it holds a learned term){'' if quiet else tally}")
            elif not quiet:
                self.say(f"{prefix}accepted{tally}")
        else:
            self.corrections += 1
            self.say(f"{prefix}label: {taught.label}{tally}")
            if new := [term for term in taught.terms if word_key(term) not in known]:
                self.say(f"{prefix}new terms: {', '.join(new)}")

    def _report_learning(self) -> None:
        """Say what the learner thread finished since the last look: updates, refusals; raise its errors."""
        for done in self.session.finished():
            if isinstance(done, BaseException):
                raise done
            if isinstance(done, str):
                self.say(done, "yellow")
            elif done.rolled_back:
                self.say(f"update rolled back ({done.seconds:.2f} s): {done.undone} · {counters(self.session)}", "yellow")
            else:
                self.steps += 1
                count = len(done.corrections)
                self.say(f"update {done.step}: loss {done.loss:.3f} · {done.seconds:.2f} s · {_count(count, 'example')} · "
                         f"{counters(self.session)}")  # fmt: skip

    def finish(self, interrupted: bool) -> None:
        """End the session: the learner finishes what it was given (Ctrl-C: undoes a running update), then the summary."""
        busy = self.session.learner_thread.busy and not interrupted
        with self.screen.busy("finishing the update…", announce=busy) if busy else nullcontext():
            self.session.close(finish_learning=not interrupted)
        try:
            self._report_learning()
        finally:
            self.summary()

    def summary(self) -> None:
        parts = [f"{_count(self.heard, 'utterance')}, {_count(self.corrections, 'correction')}, {_count(self.steps, 'update')}"]
        if self.open:
            parts.append(f"{_count(len(self.open), 'open line')} not learned from")
        if not self.push_to_talk and (waiting := len(self.source)):
            parts.append(f"{_count(waiting, 'utterance')} still queued, not transcribed")
        parts.append(f"{pending(self.session)}, kept for the next start")  # a complete batch updates as it opens
        self.say("; ".join(parts))
