"""``ffasr listen``: the energy end-pointer, device errors, and a session against a virtual microphone."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ffasr_cli.microphone import EnergyEndpointer, LineReader, MicrophoneError, find_utterances, level_db, sounddevice

SR = 16_000
DATA = Path(__file__).parent / "data"
_BIN = Path(sys.executable).parent / "ffasr"
FFASR = [str(_BIN) if _BIN.exists() else (shutil.which("ffasr") or "ffasr")]


def noise(seconds: float, level: float = 1e-3, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * level).astype(np.float32)


def tone(seconds: float, amplitude: float = 0.3, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


# ------------------------------------------------------------------------------ end-pointer


def test_level_db():
    assert level_db(np.zeros(480, np.float32)) == -100.0
    assert level_db(tone(0.1, 1.0)) == pytest.approx(-3.01, abs=0.05)


@pytest.mark.parametrize("silence", [np.zeros(3 * SR, np.float32), noise(3.0), noise(3.0, level=0.05)])
def test_silence_is_no_utterance(silence):
    assert find_utterances(silence) == []


def test_tone_burst_between_silences_is_one_utterance_with_its_bounds():
    audio = np.concatenate([noise(1.0), tone(1.0), noise(2.0, seed=1)])
    [utterance] = find_utterances(audio)
    # begins the 300 ms pre-roll before the first loud 30 ms frame, ends 200 ms after the last
    assert utterance.start / SR == pytest.approx(1.0 - 0.3, abs=0.035)
    assert utterance.end / SR == pytest.approx(2.0 + 0.2, abs=0.035)
    assert len(utterance.audio) == utterance.end - utterance.start
    np.testing.assert_array_equal(utterance.audio, audio[utterance.start : utterance.end])


def test_digital_silence_around_a_burst():
    audio = np.concatenate([np.zeros(SR, np.float32), tone(0.5, 0.05), np.zeros(2 * SR, np.float32)])
    [utterance] = find_utterances(audio)
    assert utterance.start / SR == pytest.approx(0.7, abs=0.035)
    assert utterance.end / SR == pytest.approx(1.7, abs=0.035)


def test_a_short_pause_does_not_split_and_a_long_one_does():
    parts = [noise(1.0), tone(1.0), noise(0.4, seed=1), tone(1.0), noise(1.5, seed=2), tone(0.5), noise(1.0, seed=3)]
    audio = np.concatenate(parts)
    bounds = [(round(u.start / SR, 2), round(u.end / SR, 2)) for u in find_utterances(audio)]
    assert len(bounds) == 2
    assert bounds[0][0] == pytest.approx(0.7, abs=0.035) and bounds[0][1] == pytest.approx(3.6, abs=0.035)
    assert bounds[1][0] == pytest.approx(4.6, abs=0.035) and bounds[1][1] == pytest.approx(5.6, abs=0.035)


def test_clicks_shorter_than_the_minimum_are_ignored():
    audio = noise(2.0)
    audio[SR : SR + 480] += tone(0.03, 0.5)  # one 30 ms click
    assert find_utterances(audio) == []


def test_max_length_cuts_an_endless_utterance():
    audio = np.concatenate([noise(0.5), tone(5.0)])
    found = find_utterances(audio, max_s=1.5)
    assert len(found) >= 2
    assert found[0].seconds == pytest.approx(1.5, abs=0.035)


def test_the_floor_adapts_to_a_louder_room():
    """A steady hum 30 dB above the old floor is absorbed, and speech above it is still found."""
    hum = 0.03
    audio = np.concatenate([noise(1.0), noise(6.0, hum, seed=1), tone(1.0, 0.5) + noise(1.0, hum, 2), noise(2.0, hum, 3)])
    found = find_utterances(audio)
    assert found, "no speech found over the hum"
    last = found[-1]
    assert last.start / SR == pytest.approx(7.0 - 0.3, abs=0.035)
    assert last.end / SR == pytest.approx(8.2, abs=0.035)
    # the hum's onset is taken for speech once, but ends after 2 s (floor window) + 0.8 s, not at max_s
    assert len(found) <= 2
    assert all(u.seconds < 3.5 for u in found[:-1])


def test_a_partial_utterance_is_returned_at_the_end_of_the_stream():
    endpointer = EnergyEndpointer()
    assert endpointer.feed(np.concatenate([noise(1.0), tone(0.5)])) == []
    assert endpointer.in_speech
    last = endpointer.flush()
    assert last is not None and last.end == int(1.5 * SR)
    assert endpointer.flush() is None


def test_line_reader_ends_at_eof():
    read, write = os.pipe()
    reader = LineReader(os.fdopen(read, "r"))
    with os.fdopen(write, "w") as pipe:
        pipe.write("first\n\nlast")
    assert [reader.get(), reader.get(), reader.get()] == ["first", "", "last"]
    assert reader.get() is None and reader.exhausted()


def test_key_editor_builds_the_line_being_typed():
    from ffasr_cli.microphone import EOF_KEY, _KeyEditor

    keys = _KeyEditor()
    typed = [keys.press(key) for key in "2: Xochil\x7ftl\x1b[D\x1b[1;5C\x1bOP is late\r"]
    assert typed[-1] == "2: Xochitl is late" and keys.text == ""  # Backspace; arrows and F1 ignored
    assert [keys.press(key) for key in "one two\x17three\n"][-1] == "one three"  # Ctrl-W erases a word
    assert [keys.press(key) for key in "gone\x15kept\r"][-1] == "kept"  # Ctrl-U clears the line
    assert keys.press("x") is None and keys.press("\x04") is None  # Ctrl-D ends the input only on an empty line
    keys.press("\x15")
    assert keys.press("\x04") is EOF_KEY


def test_terminal_reader_edits_lines_on_a_real_terminal():
    import termios

    from ffasr_cli.microphone import TerminalReader

    controller, terminal = os.openpty()
    echo = termios.tcgetattr(terminal)[3] & termios.ECHO
    reader = TerminalReader(terminal)
    try:
        assert not termios.tcgetattr(terminal)[3] & termios.ECHO  # ffasr draws what is typed, under its output
        os.write(controller, "2: Xóchitx\x7fl is late\r".encode())
        assert reader.get(timeout=5) == "2: Xóchitl is late"
        os.write(controller, b"4!\r\x04")
        assert reader.get(timeout=5) == "4!"
        assert reader.get(timeout=5) is None and reader.exhausted()
    finally:
        reader.close()
        assert termios.tcgetattr(terminal)[3] & termios.ECHO == echo  # the terminal as it was
        os.close(controller)
        os.close(terminal)


def test_what_c_libraries_print_stays_off_the_screen(capfd):
    from ffasr_cli.microphone import native_stderr_silenced

    with native_stderr_silenced():
        os.write(2, b"Expression 'alsa_snd_pcm_poll_descriptors_revents' failed in 'pa_linux_alsa.c'\n")
        print("ffasr: the microphone stopped", file=sys.stderr)
    print("after", file=sys.stderr)
    os.write(2, b"C again\n")
    err = capfd.readouterr().err
    assert "Expression" not in err
    assert "ffasr: the microphone stopped" in err and "after" in err and "C again" in err


@pytest.mark.parametrize(
    ("line", "command"),
    [("2: Xochitl is late", (2, "Xochitl is late")), (" 12 :  fix ", (12, "fix")), ("3!", (3, "!")), ("3 !", (3, "!")),
     ("4:", (4, "")), ("Xochitl is late", (None, "Xochitl is late")), ("!", (None, "!")), ("", (None, "")),
     ("3:30 works", (3, "30 works"))],  # the documented form wins: "3:30" names line 3
)  # fmt: skip
def test_continuous_answers_name_a_line(line, command):
    from ffasr_cli.commands.listen import parse_command

    assert parse_command(line) == command


# ------------------------------------------------------------------------------ capture


class SoundCard:
    """Delivers this audio in 30 ms blocks as fast as it is read, then nothing (the one fake here: the sound card)."""

    def __init__(self, audio: np.ndarray, then: Exception | None = None):
        self.audio, self.then, self.position = audio, then, 0

    def read_block(self, timeout: float = 0.1):
        if self.position >= len(self.audio):
            if self.then is not None:
                raise self.then
            time.sleep(timeout)
            return None
        self.position += 480
        return self.audio[self.position - 480 : self.position]


def bursts(count: int) -> tuple[np.ndarray, list[int]]:
    """``count`` tone bursts of 1 s between 1.5 s of noise; and the sample where each burst starts."""
    parts, starts = [noise(1.5)], []
    for index in range(count):
        starts.append(sum(map(len, parts)))
        parts += [tone(1.0, hz=300.0 + 100 * index), noise(1.5, seed=index + 1)]
    return np.concatenate(parts), starts


def taken(capture, count: int) -> list:
    found = []
    while len(found) < count and (utterance := capture.take(timeout=10)) is not None:
        found.append(utterance)
    return found


def test_capture_queues_every_utterance_in_order_and_a_spoken_correction_after_its_mark():
    from ffasr_cli.microphone import Capture

    audio, starts = bursts(3)
    with Capture(SoundCard(audio), EnergyEndpointer()) as capture:
        mark = starts[1] - SR // 2  # "2!" typed between the first and the second burst
        spoken = capture.take_after(mark, timeout=10)
        assert spoken is not None and spoken.start <= starts[1] < spoken.end  # the second: said after the mark
        first, third = taken(capture, 2)  # what was said before the mark waits, in order
        assert first.start <= starts[0] < first.end and third.start <= starts[2] < third.end
        assert len(capture) == 0 and capture.take() is None


def test_capture_says_once_that_it_is_behind_and_drops_nothing():
    from ffasr_cli.microphone import Capture

    audio, starts = bursts(5)
    warnings = []
    with Capture(SoundCard(audio), EnergyEndpointer(), max_queued=2, on_backlog=lambda n, s: warnings.append(n)) as capture:
        deadline = time.monotonic() + 10
        while len(capture) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert warnings == [3]  # past two waiting, said once
        assert [u.start <= start < u.end for u, start in zip(taken(capture, 5), starts)] == [True] * 5


def test_capture_ends_an_utterance_in_progress_when_listening_finishes():
    from ffasr_cli.microphone import Capture

    with Capture(SoundCard(np.concatenate([noise(1.0), tone(0.6)])), EnergyEndpointer()) as capture:
        time.sleep(0.3)
        assert capture.take() is None  # still speaking
        capture.finish()
        last = capture.take()
        assert last is not None and last.end == int(1.6 * SR)


def test_a_stream_that_stops_ends_every_wait_with_one_error():
    from ffasr_cli.microphone import Capture

    stopped = MicrophoneError("the microphone stopped: its input stream ended (the device or the audio server went away)")
    with Capture(SoundCard(noise(0.5), then=stopped), EnergyEndpointer()) as capture:
        with pytest.raises(MicrophoneError, match="the microphone stopped"):
            capture.take(timeout=10)
        with pytest.raises(MicrophoneError):
            capture.take_after(0)


# ------------------------------------------------------------------------------ no microphone


def test_missing_portaudio_is_one_clear_line(tmp_path, monkeypatch):
    (tmp_path / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    with pytest.raises(MicrophoneError, match="apt-get install libportaudio2"):
        sounddevice()


def _no_pulse_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PULSE_SERVER", "PULSE_RUNTIME_PATH")}
    env["XDG_RUNTIME_DIR"] = str(tmp_path)  # no PulseAudio socket there
    env["FFASR_HOME"] = str(tmp_path / "state")
    return env


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = _no_pulse_env(tmp_path)
    return subprocess.run(FFASR + args, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)


def test_list_devices_without_a_reachable_device_never_tracebacks(tmp_path):
    result = _run(["listen", "--list-devices"], tmp_path)
    assert "Traceback" not in result.stderr
    if result.returncode == 0:  # a real sound card on this machine: a list
        assert result.stdout.strip()
    else:
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ffasr: error:"), result.stderr
        assert "input device" in lines[0] or "install PortAudio" in lines[0]  # no PortAudio at all: how to get it


def test_listen_without_a_microphone_fails_before_loading_the_model(tmp_path):
    started = time.monotonic()
    result = _run(["listen", "--script"], tmp_path)
    if result.returncode == 0:
        pytest.skip("this machine has a microphone")
    assert "Traceback" not in result.stderr
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("ffasr: error:") and ("--input-device" in line or "no microphone" in line or "install PortAudio" in line)
    assert time.monotonic() - started < 30


def test_push_to_talk_needs_a_terminal(tmp_path):
    result = _run(["listen", "--push-to-talk"], tmp_path)
    assert result.returncode == 1 and "needs a terminal" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------------------ virtual microphone

VMIC = """load-module module-native-protocol-unix auth-anonymous=1
load-module module-null-sink sink_name=vspk rate=16000 channels=1 norewinds=1
set-default-source vspk.monitor
"""


@pytest.fixture
def virtual_mic():
    """A private PulseAudio whose default source hears what is played to the sink ``vspk``."""
    if not shutil.which("pulseaudio") or not shutil.which("paplay"):
        pytest.skip("the virtual microphone needs pulseaudio and paplay: apt-get install pulseaudio pulseaudio-utils")
    runtime = Path(tempfile.mkdtemp(prefix="ffasr-vmic-"))  # short: the socket path must fit in 108 bytes
    (runtime / "vmic.pa").write_text(VMIC)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "PULSE_SERVER": f"unix:{runtime}/pulse/native"}
    env.pop("PULSE_RUNTIME_PATH", None)
    start = ["pulseaudio", "-n", "-F", str(runtime / "vmic.pa"), "--daemonize=yes", "--exit-idle-time=-1", "--enable-memfd=no"]
    try:
        for attempt in range(3):
            started = subprocess.run(start, env=env, timeout=120, capture_output=True, text=True)
            if started.returncode == 0:
                break
            time.sleep(1)
        else:
            pytest.fail(f"PulseAudio would not start: {started.stderr.strip()[-500:]}")
        deadline = time.monotonic() + 90  # the first start can take ~18 s
        while (info := subprocess.run(["pactl", "info"], env=env, capture_output=True, text=True, timeout=30)).returncode != 0:
            if time.monotonic() > deadline:
                pytest.fail(f"PulseAudio did not come up within 90 s: {info.stderr.strip()[-500:]}")
            time.sleep(0.5)
        yield env
    finally:
        _stop_pulseaudio(runtime, env)


def _ours(pid: int, runtime: Path) -> bool:
    """Is ``pid`` still the PulseAudio started for ``runtime`` (not a reused pid)?"""
    try:
        return str(runtime) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def _stop_pulseaudio(runtime: Path, env: dict) -> None:
    try:
        pid = int((runtime / "pulse" / "pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pid = None
    subprocess.run(["pulseaudio", "--kill"], env=env, capture_output=True, timeout=30)
    deadline = time.monotonic() + 10
    while pid is not None and _ours(pid, runtime) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid is not None and _ours(pid, runtime):  # --kill did not end it: stop our daemon by its pid
        os.kill(pid, 15)
    shutil.rmtree(runtime, ignore_errors=True)


class Lines:
    """Lines of a child's pipe, read on a thread, waited for with a timeout."""

    def __init__(self, stream):
        self.seen: list[str] = []
        self.arrived: dict[str, float] = {}  # line -> when it was first read (time.monotonic)
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._run, args=(stream,), daemon=True).start()

    def _run(self, stream):
        for line in stream:
            self.arrived.setdefault(line.rstrip("\n"), time.monotonic())
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, predicate, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; lines so far: {self.seen}")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"stream ended; lines so far: {self.seen}")
            self.seen.append(line)
            if predicate(line):
                return line

    def read_to_end(self, timeout: float) -> None:
        """Take every line left, up to the end of the stream."""
        deadline = time.monotonic() + timeout
        while (line := self._queue.get(timeout=max(0.0, deadline - time.monotonic()))) is not None:
            self.seen.append(line)


EXAMPLES = DATA.parent.parent / "examples" / "clips"
# Six clips and a word of each that tiny.en hears; "Xochitl is running late" is heard "Sochitel is running late".
SIX = [(DATA / "kubernetes_cluster.wav", "cluster"), (DATA / "kubernetes_dashboard.wav", "dashboard"),
       (DATA / "weather.wav", "weather"), (EXAMPLES / "dialog_0.wav", "running late"),
       (DATA / "librivox_ill_disposed.wav", "young man"), (DATA / "librivox_amiable.wav", "amiable")]  # fmt: skip
LOADED = re.compile(r"ffasr: tiny\.en on \S+ · profile default · adapter step 0 · 0 terms known")


def six_in_a_row(folder: Path) -> Path:
    """The six clips back to back, 0.5 s of silence after each: one file, so that paplay keeps the gaps exact."""
    import soundfile

    from ffasr_cli.audio import load_audio

    gap = np.zeros(SR // 2, np.float32)
    path = folder / "six.wav"
    soundfile.write(str(path), np.concatenate([part for clip, _ in SIX for part in (load_audio(clip), gap)]), SR, subtype="PCM_16")
    return path


def play(path: Path, env: dict, wait: bool = True) -> subprocess.Popen:
    player = subprocess.Popen(["paplay", "--device=vspk", str(path)], env=env)
    if wait:
        assert player.wait(timeout=120) == 0
    return player


def start_listen(env: dict, *args: str) -> tuple[subprocess.Popen, Lines, Lines]:
    pipe = subprocess.PIPE
    child = subprocess.Popen(FFASR + ["listen", *args], env=env, stdin=pipe, stdout=pipe, stderr=pipe, text=True, bufsize=1)
    return child, Lines(child.stdout), Lines(child.stderr)


def answer(child: subprocess.Popen, line: str) -> None:
    child.stdin.write(line + "\n")
    child.stdin.flush()


def learned(state: Path) -> tuple[list[tuple[str, str, str]], list[str], list[str]]:
    """The store's interactions (source, status, label), update statuses and terms."""
    from ffasr_cli.store import Store

    with Store.open(state) as store:
        return ([(i.source, i.status, i.label) for i in store.interactions("default")], [u.status for u in store.updates("default")],
                [t.term for t in store.terms("default")])  # fmt: skip


@pytest.mark.slow
def test_listen_learns_from_a_correction_on_a_virtual_microphone(virtual_mic, tmp_path):
    """One at a time: six utterances said while a transcript waits for its answer are all kept, and shown in order."""
    state = tmp_path / "state"
    config = tmp_path / "config.yaml"
    config.write_text("training:\n  accumulation_steps: 1\n")
    saved = tmp_path / "audio"
    six = six_in_a_row(tmp_path)
    args = ["--state-dir", str(state), "--config", str(config), "--save-audio", str(saved), "--silence", "0.4"]
    child, out, err = start_listen(virtual_mic, *args)
    try:
        err.wait_for(lambda line: "listening" in line, timeout=300)
        assert LOADED.fullmatch(err.seen[0]), err.seen
        play(DATA / "kubernetes_deploy.wav", virtual_mic)
        transcript = out.wait_for(lambda line: line.strip() != "", timeout=300)
        assert "Deploy the new service" in transcript and "Kubernetes" not in transcript
        play(six, virtual_mic)  # while the transcript above waits for its answer
        answer(child, "Deploy the new service to Kubernetes tonight.")
        err.wait_for(lambda line: line.startswith("label:"), timeout=300)
        step = err.wait_for(lambda line: line.startswith("update "), timeout=300)
        assert "update 1" in step
        shown = []
        for _ in SIX:
            shown.append(out.wait_for(lambda line: line.strip() != "", timeout=300))
            answer(child, "")
        assert [word in line for line, (_, word) in zip(shown, SIX)] == [True] * 6, shown
        err.wait_for(lambda line: "listening" in line, timeout=120)
        child.stdin.close()
        assert child.wait(timeout=120) == 0, err.seen
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    command = FFASR + ["stats", "--json", "--state-dir", str(state)]
    stats = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(stats.stdout)
    assert report["updates"]["applied"] >= 1  # and the accepted sentences writing Kubernetes, riding along, make another
    assert "Kubernetes" in [t["term"] for t in report["terms"]["top"]]

    rows = [json.loads(line) for line in (saved / "dialogs.jsonl").read_text().splitlines()]
    assert rows[0] == {"audio": "utt-0001.wav", "correction": "Deploy the new service to Kubernetes tonight."}
    assert rows[1:] == [{"audio": f"utt-{n:04d}.wav", "accepted": text} for n, text in enumerate(shown, start=2)]  # replay accepts these words
    import soundfile

    info = soundfile.info(str(saved / "utt-0001.wav"))
    assert info.samplerate == SR and info.channels == 1 and 2.5 < info.duration < 5.0


@pytest.mark.slow
def test_continuous_dictation_keeps_every_utterance_while_an_update_runs_and_corrects_an_earlier_line(virtual_mic, tmp_path):
    state = tmp_path / "state"
    config = tmp_path / "config.yaml"
    # every correction is an update, and a long one (100 optimizer steps): the six are said while it runs
    config.write_text("training:\n  accumulation_steps: 1\n  inner_steps: 100\n")
    six = six_in_a_row(tmp_path)
    child, out, err = start_listen(virtual_mic, "--continuous", "--state-dir", str(state), "--config", str(config), "--silence", "0.4")
    try:
        err.wait_for(lambda line: "listening" in line, timeout=300)
        assert LOADED.fullmatch(err.seen[0]), err.seen
        play(DATA / "kubernetes_deploy.wav", virtual_mic)
        assert out.wait_for(lambda line: line.strip() != "", timeout=300).startswith("1: Deploy the new service")
        answer(child, "1: Deploy the new service to Kubernetes tonight.")
        player = play(six, virtual_mic, wait=False)  # said while the update runs
        update = err.wait_for(lambda line: line.startswith("update 1:"), timeout=300)
        assert player.wait(timeout=120) == 0
        lines = [out.wait_for(lambda line: line.strip() != "", timeout=300) for _ in SIX]
        # decoding went on while the update trained: the first of the six was on screen before it finished
        assert out.arrived[lines[0]] < err.arrived[update], (out.arrived, err.arrived)
        assert [line.split(":")[0] for line in lines] == ["2", "3", "4", "5", "6", "7"], lines
        assert [word in line for line, (_, word) in zip(lines, SIX)] == [True] * 6, lines
        answer(child, "5: Xochitl is running late for the standup.")  # the third-to-last line
        assert err.wait_for(lambda line: "label:" in line, timeout=300).startswith("line 5 · label: Xochitl is running late")
        err.wait_for(lambda line: line.startswith("update 2:"), timeout=300)
        child.stdin.close()
        assert child.wait(timeout=120) == 0, err.seen
        err.read_to_end(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    interactions, updates, terms = learned(state)
    assert interactions == [("typed", "applied", "Deploy the new service to Kubernetes tonight."),
                            ("typed", "applied", "Xochitl is running late for the standup.")]  # fmt: skip
    assert updates == ["applied", "applied"] and set(terms) == {"Kubernetes", "Xochitl"}
    assert "5 open lines not learned from" in err.seen[-1]


@pytest.mark.slow
def test_ctrl_c_during_an_update_loses_no_correction(virtual_mic, tmp_path):
    """A correction confirmed, its update running in the background, then Ctrl-C: the update is undone,
    the correction is on disk as pending, and the next start learns it."""
    state, config = tmp_path / "state", tmp_path / "config.yaml"
    config.write_text("training:\n  accumulation_steps: 1\n  inner_steps: 100\n")  # an update of many seconds
    child, out, err = start_listen(virtual_mic, "--state-dir", str(state), "--config", str(config))
    try:
        err.wait_for(lambda line: "listening" in line, timeout=300)
        play(DATA / "kubernetes_deploy.wav", virtual_mic)
        out.wait_for(lambda line: line.strip() != "", timeout=300)
        answer(child, "Deploy the new service to Kubernetes tonight.")
        err.wait_for(lambda line: line.startswith("label:"), timeout=300)
        time.sleep(2)  # the update is training now
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=120) == 130, err.seen  # an abandoned update stops between two optimizer steps: slow on two shared cores
        err.read_to_end(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert not [line for line in err.seen if line.startswith("update 1:") or "Traceback" in line], err.seen
    assert err.seen[-1] == "ffasr: interrupted; everything learned and pending is saved", err.seen
    interactions, updates, terms = learned(state)
    assert interactions == [("typed", "pending", "Deploy the new service to Kubernetes tonight.")] and updates == []
    assert terms == ["Kubernetes"] and len(list((state / "profiles/default/pending").glob("*.safetensors"))) == 1
    stats = json.loads(subprocess.run(FFASR + ["stats", "--json", "--state-dir", str(state)], capture_output=True, text=True).stdout)
    assert stats["interactions"]["by_status"]["pending"] == 1 and stats["interactions"]["by_source"]["typed"] == 1


@pytest.mark.slow
def test_losing_the_microphone_is_one_line_and_keeps_what_was_taught(virtual_mic, tmp_path):
    state = tmp_path / "state"
    child, out, err = start_listen(virtual_mic, "--state-dir", str(state))
    try:
        err.wait_for(lambda line: "listening" in line, timeout=300)
        play(DATA / "kubernetes_deploy.wav", virtual_mic)
        out.wait_for(lambda line: line.strip() != "", timeout=300)
        answer(child, "Deploy the new service to Kubernetes tonight.")
        taught = err.wait_for(lambda line: line.startswith("label:"), timeout=300)
        assert taught.endswith(" · corrections 1/4 · riding along 0 · next update after 3 more corrections")
        err.wait_for(lambda line: "listening" in line, timeout=120)
        subprocess.run(["pulseaudio", "--kill"], env=virtual_mic, timeout=30)  # the audio server goes away
        assert child.wait(timeout=60) == 1  # no hang
        err.read_to_end(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert err.seen[-1] == ("ffasr: error: the microphone stopped: its input stream ended (the device or the audio server went "
                            "away); everything learned is saved"), err.seen  # fmt: skip
    assert LOADED.fullmatch(err.seen[0]), err.seen
    assert not [line for line in err.seen if "Expression" in line or "ALSA" in line or "PortAudio" in line or "Traceback" in line]
    interactions, _, terms = learned(state)
    assert interactions == [("typed", "pending", "Deploy the new service to Kubernetes tonight.")] and terms == ["Kubernetes"]


def test_saved_audio_continues_numbering_and_appends(tmp_path):
    import soundfile

    from ffasr_cli.commands.listen import AudioLog

    log = AudioLog(tmp_path)
    name = log.next_name()
    row = {"audio": log.write_wav(name, tone(0.5)), "correction_audio": log.write_wav(f"{name}-fix", tone(0.3))}
    log.add(row)
    log.close()
    log = AudioLog(tmp_path)  # a second session in the same folder
    log.add({"audio": log.write_wav(log.next_name(), tone(0.2))})
    log.close()
    rows = [json.loads(line) for line in (tmp_path / "dialogs.jsonl").read_text().splitlines()]
    assert rows == [{"audio": "utt-0001.wav", "correction_audio": "utt-0001-fix.wav"}, {"audio": "utt-0002.wav"}]
    assert soundfile.info(str(tmp_path / "utt-0001.wav")).samplerate == SR


# ------------------------------------------------------------------------------ answers at a terminal


class Keyboard:
    """What a user types at the terminal, one answer per prompt (the one fake here: a keyboard)."""

    def __init__(self, lines: list[str]):
        self.lines = list(lines)

    def drain(self) -> None:  # the real reader drops keys typed while listening; these are answers
        pass

    def get(self, timeout: float | None = None) -> str | None:
        return self.lines.pop(0) if self.lines else None

    def has_line(self) -> bool:
        return bool(self.lines)

    def exhausted(self) -> bool:
        return not self.lines


class ClipMicrophone:
    """A microphone that hears these clips, in order, one each time the loop listens."""

    recorder = type("Device", (), {"name": "clips"})

    def __init__(self, names: list[str]):
        from ffasr_cli.audio import load_audio

        self.clips = [load_audio(DATA / f"{name}.wav") for name in names]
        self.heard = 0

    def take(self, timeout: float = 0.0):
        from ffasr_cli.microphone import Utterance

        audio = self.clips.pop(0)
        self.heard += len(audio)
        return Utterance(self.heard - len(audio), self.heard, audio)

    def take_after(self, mark: int, timeout: float = 0.0):
        return self.take(timeout)

    def mark(self) -> int:
        return self.heard

    def check(self) -> None:
        pass

    def __len__(self) -> int:
        return 0


@pytest.mark.slow
def test_a_spoken_correction_is_taught_only_once_confirmed_and_replays_the_same(tmp_path):
    from ffasr_cli.commands.listen import AudioLog, Screen, _Loop
    from ffasr_cli.commands.replay import run_replay
    from ffasr_cli.config import load_config
    from ffasr_cli.dialogs import read_dialogs
    from ffasr_cli.session import Session

    fixed = "Deploy the new service to Kubernetes tonight."
    clips = [
        "kubernetes_deploy", "kubernetes_cluster", "kubernetes_dashboard",  # heard; said, shown; said again, shown: then typed
        "weather", "weather",  # heard; said again, refused as the same words: then accepted
        "kubernetes_deploy", "spelled_zbigniew",  # heard; spelled, shown, confirmed with Enter
    ]
    answers = ["!", "!", fixed, "!", "", "!", ""]
    saved = tmp_path / "audio"
    config = load_config(None)

    def session_text(state, index):
        session = Session.open(state, "default", config, "test")
        try:
            return session.store.interactions("default")[index].hypothesis
        finally:
            session.close()

    def history(state):
        session = Session.open(state, "default", config, "test")
        try:
            return [(i.source, i.status, i.label) for i in session.store.interactions("default")]
        finally:
            session.close()

    session = Session.open(tmp_path / "listened", "default", config, "listen")
    log = AudioLog(saved)
    loop = _Loop(session, ClipMicrophone(clips), Keyboard(answers), Screen(interactive=True, live=False), log, interactive=True)
    try:
        loop.run(max_utterances=3)
    finally:
        session.close()
        log.close()

    listened = history(tmp_path / "listened")
    assert [source for source, _, _ in listened] == ["typed", "accepted", "spoken"], listened
    assert listened[0][2] == fixed and "Zbigniew" in listened[2][2]
    rows = [json.loads(line) for line in (saved / "dialogs.jsonl").read_text().splitlines()]
    weather = session_text(tmp_path / "listened", 1)
    assert rows == [
        {"audio": "utt-0001.wav", "correction_audio": "utt-0001-fix.wav", "correction": fixed},  # the last one said, then typed
        {"audio": "utt-0002.wav", "accepted": weather},  # the refused spoken try is not kept: replay accepts what was shown
        {"audio": "utt-0003.wav", "correction_audio": "utt-0003-fix.wav"},
    ]

    session = Session.open(tmp_path / "replayed", "default", config, "replay")
    try:
        run_replay(session, list(read_dialogs(saved / "dialogs.jsonl")), [], source=saved / "dialogs.jsonl")
    finally:
        session.close()
    assert history(tmp_path / "replayed") == listened


@pytest.mark.slow
def test_a_term_already_learned_is_not_reported_as_new_again(tmp_path, capsys):
    from ffasr_cli.commands.listen import Screen, _Loop
    from ffasr_cli.config import load_config
    from ffasr_cli.session import Session

    session = Session.open(tmp_path / "state", "default", load_config(None), "listen")
    # the second correction writes Kubernetes where the model heard no such word: a term the glossary already has
    answers = ["Deploy the new service to Kubernetes tonight.", "The weather is nice today. Let's go for a walk, Kubernetes."]
    loop = _Loop(session, ClipMicrophone(["kubernetes_deploy", "weather"]), Keyboard(answers), Screen(False, False), None,
                 interactive=False)  # fmt: skip
    try:
        loop.run(max_utterances=2)
    finally:
        session.close()
    err = capsys.readouterr().err.splitlines()
    labels = [line.split(" · ")[0] for line in err if line.startswith("label:")]
    assert labels == [f"label: {answer}" for answer in answers], err  # two corrections, both teaching Kubernetes
    assert [line for line in err if line.startswith("new terms:")] == ["new terms: Kubernetes"], err


def test_a_line_out_of_reach_is_one_line_saying_which_are_open(capsys):
    from ffasr_cli.commands.listen import OPEN_LINES, Screen, _Line, _Loop

    loop = _Loop(None, ClipMicrophone([]), Keyboard([]), Screen(False, False), None, interactive=False, continuous=True)
    loop.heard = 14
    loop.open.update((n, _Line(n, None, None, None)) for n in range(15 - OPEN_LINES, 15))
    for command in ("2: Xochitl is late", "99!", "2:"):
        loop._command(command)
    assert capsys.readouterr().err.splitlines() == [
        "line 2 is answered already; lines 5-14 are open", "there is no line 99", "line 2 is answered already; lines 5-14 are open",
    ]


def test_a_doubtful_term_is_marked_on_the_screen_and_the_text_stays_data():
    from ffasr_cli.commands.listen import DOUBTFUL, marked

    line = marked("Ask Velero about [bold]it", ("Velero",))
    assert line.plain == "Ask Velero about [bold]it"  # the words as said, markup-looking text included
    styled = [line.plain[span.start : span.end] for span in line.spans if span.style == DOUBTFUL]
    assert styled == ["Velero"]
    assert not marked("Ask Velero about it", ()).spans
    line = marked('The test "Mashin."', ('"Mashin."',))
    assert line.plain == 'The test "Mashin."' and [line.plain[s.start : s.end] for s in line.spans if s.style == DOUBTFUL] == ["Mashin"]
