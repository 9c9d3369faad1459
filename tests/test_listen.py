"""``ffasr listen``: the energy end-pointer, device errors, and a session against a virtual microphone."""

from __future__ import annotations

import json
import os
import queue
import shutil
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
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._run, args=(stream,), daemon=True).start()

    def _run(self, stream):
        for line in stream:
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


@pytest.mark.slow
def test_listen_learns_from_a_correction_on_a_virtual_microphone(virtual_mic, tmp_path):
    state = tmp_path / "state"
    config = tmp_path / "config.yaml"
    config.write_text("training:\n  accumulation_steps: 1\n")
    saved = tmp_path / "audio"
    command = FFASR + ["listen", "--state-dir", str(state), "--config", str(config), "--save-audio", str(saved)]
    pipe = subprocess.PIPE
    child = subprocess.Popen(command, env=virtual_mic, stdin=pipe, stdout=pipe, stderr=pipe, text=True, bufsize=1)
    try:
        out, err = Lines(child.stdout), Lines(child.stderr)
        err.wait_for(lambda line: "listening" in line, timeout=300)
        subprocess.run(["paplay", "--device=vspk", str(DATA / "kubernetes_deploy.wav")], env=virtual_mic, check=True, timeout=60)
        transcript = out.wait_for(lambda line: line.strip() != "", timeout=300)
        assert "Deploy the new service" in transcript and "Kubernetes" not in transcript
        child.stdin.write("Deploy the new service to Kubernetes tonight.\n")
        child.stdin.flush()
        err.wait_for(lambda line: line.startswith("label:"), timeout=300)
        step = err.wait_for(lambda line: line.startswith("update "), timeout=300)
        assert "update 1" in step
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
    assert report["updates"]["applied"] == 1
    assert "Kubernetes" in [t["term"] for t in report["terms"]["top"]]

    rows = [json.loads(line) for line in (saved / "dialogs.jsonl").read_text().splitlines()]
    assert rows == [{"audio": "utt-0001.wav", "correction": "Deploy the new service to Kubernetes tonight."}]
    import soundfile

    info = soundfile.info(str(saved / "utt-0001.wav"))
    assert info.samplerate == SR and info.channels == 1 and 2.5 < info.duration < 5.0


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

    def get(self) -> str | None:
        return self.lines.pop(0) if self.lines else None

    def has_line(self) -> bool:
        return bool(self.lines)

    def exhausted(self) -> bool:
        return not self.lines


class ClipRecorder:
    """A microphone that hears these clips, in order."""

    name = "clips"

    def __init__(self, names: list[str]):
        from ffasr_cli.audio import load_audio

        self.clips = [load_audio(DATA / f"{name}.wav") for name in names]

    def record_utterance_vad(self, stop):
        return self.clips.pop(0)


@pytest.mark.slow
def test_a_spoken_correction_is_taught_only_once_confirmed_and_replays_the_same(tmp_path):
    from ffasr_cli.commands.listen import AudioLog, Meter, _Loop
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

    def history(state):
        session = Session.open(state, "default", config, "test")
        try:
            return [(i.source, i.status, i.label) for i in session.store.interactions("default")]
        finally:
            session.close()

    session = Session.open(tmp_path / "listened", "default", config, "listen")
    log = AudioLog(saved)
    loop = _Loop(session, ClipRecorder(clips), Keyboard(answers), Meter(False), log, interactive=True, vad=True, max_seconds=30.0)
    try:
        loop.run(max_utterances=3)
    finally:
        session.close()
        log.close()

    listened = history(tmp_path / "listened")
    assert [source for source, _, _ in listened] == ["typed", "accepted", "spoken"], listened
    assert listened[0][2] == fixed and "Zbigniew" in listened[2][2]
    rows = [json.loads(line) for line in (saved / "dialogs.jsonl").read_text().splitlines()]
    assert rows == [
        {"audio": "utt-0001.wav", "correction_audio": "utt-0001-fix.wav", "correction": fixed},  # the last one said, then typed
        {"audio": "utt-0002.wav"},  # the refused spoken try is not kept: replay accepts it too
        {"audio": "utt-0003.wav", "correction_audio": "utt-0003-fix.wav"},
    ]

    session = Session.open(tmp_path / "replayed", "default", config, "replay")
    try:
        run_replay(session, list(read_dialogs(saved / "dialogs.jsonl")), [], source=saved / "dialogs.jsonl")
    finally:
        session.close()
    assert history(tmp_path / "replayed") == listened
