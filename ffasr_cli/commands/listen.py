"""``ffasr listen``: live microphone sessions — hear, show, take a correction, learn.

Two ways to use it:

* at a terminal: a level meter on stderr; voice-activity end-pointing (``--vad``, the default) or
  push-to-talk (Enter starts and stops); after each utterance, Enter accepts it, a typed line
  corrects it, and ``!`` records a spoken correction, which is shown as heard and taught only
  when Enter confirms it (a typed line replaces it, ``!`` says it again): a misheard correction
  would teach the mishearing;
* from a script (stdin not a terminal, or ``--script``): each transcript is one line on stdout, each
  stdin line answers one utterance (empty = accept, text = typed correction, ``!`` = spoken), and the
  session ends at the end of stdin or after ``--max-utterances``. Progress goes to stderr, where a
  line with "listening" says the microphone is open and waiting.

Ctrl-C ends the session; what was learned is saved and pending corrections are kept for the next.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
import re
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ..errors import FfasrError
from .common import (
    ConfigFile, Device, Glossary, ModeOption, ModelName, Profile, Seed, StateDir, Wait, build_config, console, reports_errors,
    shown, state_dir,
)  # fmt: skip

SPEAK = "!"  # the reply that records a spoken correction


class AudioLog:
    """``--save-audio DIR``: every utterance and spoken correction as a 16 kHz WAV, plus the
    ``dialogs.jsonl`` that ``ffasr replay`` reads (appended and flushed per utterance)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
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


class Meter:
    """A one-line level meter on stderr (only when stderr is a terminal)."""

    WIDTH = 30

    def __init__(self, enabled: bool):
        self.enabled, self.shown, self._last = enabled, False, 0.0

    def __call__(self, level: float, floor: float | None, recording: bool) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.05:
            return
        self._last = now
        filled = max(0, min(self.WIDTH, round((level + 70) / 70 * self.WIDTH)))
        bar = "█" * filled + "·" * (self.WIDTH - filled)
        state = "\033[31m● recording\033[0m" if recording else "○ listening"
        floor_text = f"  floor {floor:4.0f} dB" if floor is not None else ""
        sys.stderr.write(f"\r\033[K{state} [{bar}] {level:4.0f} dB{floor_text}")
        sys.stderr.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self.shown = False


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
        typer.Option("--script", help="Script mode even at a terminal: transcripts on stdout, one answer per stdin line, no meter."),
    ] = False,
    max_utterances: Annotated[
        int | None, typer.Option("--max-utterances", min=1, help="Stop after this many utterances (default: no limit).")
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
    """Listen to the microphone: transcribe each utterance, take your correction, and learn from it."""
    if list_devices:
        _list_devices()
        return
    interactive = not script and sys.stdin.isatty()
    if not vad and not interactive:
        raise FfasrError("--push-to-talk needs a terminal (Enter starts and stops); scripts use --vad")
    settings = build_config(config, model, mode, device, glossary)

    from ..microphone import EnergyEndpointer, LineReader, Recorder, parse_device

    endpointer = EnergyEndpointer(start_db=threshold, stop_db=min(8.0, threshold), silence_s=silence, max_s=max_seconds)
    meter = Meter(interactive and sys.stderr.isatty())
    log = AudioLog(save_audio) if save_audio else None
    try:
        # the microphone opens first: no microphone fails fast, before the model loads
        with Recorder(parse_device(input_device), endpointer=endpointer, meter=meter) as recorder:
            from ..session import Session

            with console.status("loading the model…") if interactive else nullcontext():
                session = Session.open(state_dir(state), profile, settings, "listen", lock_timeout=wait, seed=seed)
            loop = _Loop(session, recorder, LineReader(sys.stdin), meter, log, interactive, vad, max_seconds)
            loop.say(f"ffasr: {settings.model} on {session.agent.device}", style="dim")
            try:
                loop.run(max_utterances)
            finally:
                meter.clear()
                loop.summary()
                session.close()
    finally:
        if log:
            log.close()


class _Loop:
    def __init__(self, session, recorder, lines, meter: Meter, log: AudioLog | None, interactive: bool, vad: bool, max_seconds: float):  # noqa: E501
        self.session, self.recorder, self.lines, self.meter, self.log = session, recorder, lines, meter, log
        self.interactive, self.vad, self.max_seconds = interactive, vad, max_seconds
        self.heard = self.corrections = self.steps = 0

    def say(self, message: str, style: str | None = None) -> None:
        self.meter.clear()
        console.print(shown(message), style=style, soft_wrap=True)  # labels, terms and errors hold the user's text

    # -- recording

    def _record(self, what: str):
        """One utterance (or spoken correction); None at the end of input."""
        if self.vad:
            if self.interactive:
                self.say(f"listening for {what}… (Ctrl-C to quit)")
            else:
                self.say(f"ffasr: listening for {what} on {self.recorder.name}")
            audio = self.recorder.record_utterance_vad(stop=self.lines.exhausted)
        else:
            self.say(f"press Enter to record {what} (Ctrl-C to quit)")
            if self.lines.get() is None:
                return None
            self.say("recording… press Enter to stop")
            audio = self.recorder.record_push_to_talk(stop=self.lines.has_line, max_s=self.max_seconds)
            self.lines.get()
        self.meter.clear()
        return None if self.lines.exhausted() else audio

    def _reply(self, hint: str = "Enter = accept · type a correction · ! + Enter = speak it") -> str | None:
        """The user's next line, stripped; None at the end of input."""
        if self.interactive:
            self.lines.drain()  # keys pressed while listening answer nothing
            console.print(f"[dim]{hint}[/dim]")
            sys.stderr.write("› ")
            sys.stderr.flush()
        line = self.lines.get()
        return None if line is None else line.strip()

    # -- the loop

    def run(self, max_utterances: int | None) -> None:
        from ..audio import is_silent

        while max_utterances is None or self.heard < max_utterances:
            audio = self._record("speech")
            if audio is None:
                return
            if is_silent(audio):
                if self.interactive:
                    self.say("(too quiet to transcribe)", "dim")
                continue
            name = self.log.next_name() if self.log else None
            saved = self.log.write_wav(name, audio) if self.log else None
            with self._busy("transcribing…"):
                heard = self.session.hear(audio, str(self.log.folder / saved) if saved else f"microphone:{self.heard + 1}")
            if heard.cache_id is None or not heard.text.strip():
                self.say("(nothing heard)", "dim")
                continue
            self.heard += 1
            if self.interactive:
                console.print(Text.assemble(("heard:", "bold"), " ", shown(heard.text)), soft_wrap=True)
            else:
                sys.stdout.write(heard.text + "\n")
                sys.stdout.flush()
            self._answer(heard, name, saved)

    def _answer(self, heard, name: str | None, saved: str | None) -> None:
        """Ask until the user accepts, corrects, or confirms a spoken correction; then teach it.

        A spoken correction is taught as heard only in script mode or once Enter confirms it; the
        saved row keeps its audio beside a typed line that replaced it, which is how ``ffasr
        replay`` tells the two apart.
        """
        from ..errors import CorrectionRejected

        row: dict = {"audio": saved}
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
                    spoken = self._record("the spoken correction")
                    if spoken is None:
                        return
                    if self.log:
                        row["correction_audio"] = self.log.write_wav(f"{name}-fix", spoken)
                    with self._busy("decoding the correction…"):
                        label = self.session.hear_correction(spoken, heard)
                    self.say(f"spoken correction → {label}")
                    source = "spoken"
                    if self.interactive:
                        reply = self._reply("Enter = teach it · type the sentence instead · ! + Enter = say it again")
                        if reply != "":
                            continue  # replaced (typed or said again), or the end of input
                else:
                    label, source = self.session.read_correction(reply, heard), "typed"
                    row["correction"] = reply
            except CorrectionRejected as error:
                self.say(f"refused: {error}", "yellow")
                if self.interactive:
                    reply = self._reply()  # ask again
                    continue
                self.session.teach(heard, None, "spoken" if reply == SPEAK else "typed", refused=str(error))  # kept in the history
                return
            except FfasrError as error:  # a spoken correction with nothing in it, say
                self.say(f"ffasr: warning: {error}", "yellow")
                if self.interactive:
                    reply = self._reply()
                    continue
                return
            break
        if self.log:
            self.log.add(row)
        self._teach(heard, label, source)

    def _busy(self, message: str):
        return console.status(message) if self.interactive else nullcontext()

    def _teach(self, heard, label: str | None, source: str) -> None:
        session = self.session
        every = session.agent.config.training.accumulation_steps
        will_step = session.will_update(heard, label)
        if will_step and not self.interactive:
            self.say("ffasr: updating the model…")
        with self._busy("updating the model…" if will_step else "learning…"):
            taught = session.teach(heard, label, source)
        if taught.source == "accepted":
            learning = " · learning from it (it holds a learned term)" if taught.loss is not None else ""
            self.say(f"accepted{learning} · pending {taught.pending}/{every}")
        elif taught.rejected:
            self.say(f"refused: {taught.rejected}", "yellow")
        else:
            self.corrections += 1
            loss = "" if taught.loss is None else f" · loss {taught.loss:.3f}"
            self.say(f"label: {taught.label}{loss} · pending {taught.pending}/{every}")
            if taught.terms:
                self.say(f"new terms: {', '.join(taught.terms)}")
        update = taught.update
        if update is not None:
            if update.rolled_back:
                self.say(f"update rolled back ({update.seconds:.2f} s): {update.undone}", "yellow")
            else:
                self.steps += 1
                count = len(update.corrections)
                self.say(f"update {update.step}: loss {update.loss:.3f} · {update.seconds:.2f} s · {count} corrections")

    def summary(self) -> None:
        pending = len(self.session.agent.pending)
        every = self.session.agent.config.training.accumulation_steps
        self.say(
            f"{self.heard} utterances, {self.corrections} corrections, {self.steps} updates; pending {pending}/{every} (kept for next time)"
        )
