"""Reliability: bad input, faults and long sessions — ffasr keeps working and loses nothing.

Every bad input gets one ``ffasr: error:`` line on stderr and a non-zero exit (never a traceback),
or, in ``replay``, a warning naming its line while the run goes on. Faults (SIGKILL, a failed write,
a corrupt adapter, a second process, Ctrl-C) leave the store intact and every correction either
applied or still pending on disk. RELIABILITY.md lists each case with its test and the figures.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import TEXTS, add_entry, clip

from ffasr_cli import paths
from ffasr_cli.audio import SAMPLE_RATE, load_audio
from ffasr_cli.config import load_config
from ffasr_cli.dialogs import BadRow, Dialog, read_dialogs
from ffasr_cli.errors import AudioError, ConfigError, StateError
from ffasr_cli.state import KEEP_CHECKPOINTS, ProfileFiles
from ffasr_cli.store import Store

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
_BIN = Path(sys.executable).parent / "ffasr"
FFASR = [str(_BIN) if _BIN.exists() else (shutil.which("ffasr") or "ffasr")]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "NO_COLOR": "1"}
WEATHER = TEXTS["weather"]


def ffasr(*args, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*FFASR, *map(str, args)], capture_output=True, text=True, errors="replace", env=ENV, timeout=timeout, **kwargs)


def one_error_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The run failed with exactly one ``ffasr: error:`` line holding ``fragments``, no traceback."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ffasr: error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def write_config(path: Path, **training) -> Path:
    path.write_text("training:\n" + "".join(f"  {k}: {v}\n" for k, v in training.items()))
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    """Rows: dicts (dumped as JSON) or raw bytes (written as they are)."""
    path.write_bytes(b"".join((row if isinstance(row, bytes) else json.dumps(row).encode()) + b"\n" for row in rows))
    return path


# --------------------------------------------------------------------------- bad audio files


@pytest.fixture(scope="module")
def bad_audio(tmp_path_factory) -> dict[str, Path]:
    """One file per kind of bad (or merely unusual) audio."""
    d = tmp_path_factory.mktemp("audio")
    speech, rate = sf.read(clip("weather"), dtype="float32")
    assert rate == SAMPLE_RATE
    files = {name: d / f"{name}.wav" for name in ("zero", "random", "empty", "lying", "silence", "stereo8k", "hifi48k", "directory")}
    files["zero"].write_bytes(b"")
    files["random"].write_bytes(np.random.default_rng(0).bytes(8000))
    sf.write(files["empty"], np.zeros(0, np.float32), SAMPLE_RATE)
    full = np.zeros(10 * SAMPLE_RATE, np.float32)
    full[: len(speech)] = speech
    sf.write(files["lying"], full, SAMPLE_RATE, subtype="PCM_16")  # the header says 10 s ...
    data = files["lying"].read_bytes()
    files["lying"].write_bytes(data[: data.index(b"data") + 8 + 2 * (len(speech) + SAMPLE_RATE // 2)])  # ... the data stops after ~3.6 s
    sf.write(files["silence"], np.zeros(3 * SAMPLE_RATE, np.float32), SAMPLE_RATE)
    import soxr

    low = soxr.resample(speech, SAMPLE_RATE, 8000)
    sf.write(files["stereo8k"], np.stack([low, low], axis=1), 8000)
    sf.write(files["hifi48k"], soxr.resample(speech, SAMPLE_RATE, 48000), 48000, subtype="PCM_24")
    files["directory"].mkdir()
    files["missing"] = d / "missing.wav"
    return files


@pytest.mark.parametrize(
    "name, message",
    [
        ("missing", "audio file not found"),
        ("directory", "audio is a directory, not a file"),
        ("zero", "audio file is empty (0 bytes)"),
        ("random", "Format not recognised"),
        ("empty", "holds no samples"),
    ],
)
def test_unreadable_audio_is_one_clear_audio_error(bad_audio, name, message):
    with pytest.raises(AudioError) as raised:
        load_audio(bad_audio[name])
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_wav_with_lying_header_reads_what_is_there(bad_audio):
    data = bad_audio["lying"].read_bytes()
    claimed = int.from_bytes(data[data.index(b"data") + 4 :][:4], "little")
    assert claimed == 10 * SAMPLE_RATE * 2  # the header says 10 s of 16-bit mono
    audio = load_audio(bad_audio["lying"])  # libsndfile stops at the end of the data (and so does sf.info)
    assert 3.0 < len(audio) / SAMPLE_RATE < 4.0


@pytest.mark.parametrize("name", ["stereo8k", "hifi48k"])
def test_other_rates_and_channels_are_resampled(bad_audio, name):
    reference = load_audio(clip("weather"))
    audio = load_audio(bad_audio[name])
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - len(reference)) < SAMPLE_RATE // 100  # same duration, within 10 ms


def test_jsonl_bad_rows_name_their_line(tmp_path):
    (tmp_path / "a_dir.wav").mkdir()
    good = str(clip("weather"))
    path = write_jsonl(tmp_path / "d.jsonl", [
        b'{"audio": "x.wav"',  # 1 malformed
        {"correction": "hi"},  # 2 no audio
        {"audio": 5},  # 3 wrong type
        {"audio": good, "correction": ["a"]},  # 4 wrong type
        b'{"audio": "\xff\xfe.wav"}',  # 5 not UTF-8
        {"audio": "nope.wav"},  # 6 no such file
        {"audio": "a_dir.wav"},  # 7 a directory
        b"[1, 2]",  # 8 not an object
        {"audio": good, "correction": WEATHER},  # 9 fine
    ])  # fmt: skip
    rows = list(read_dialogs(path))
    assert [row.line for row in rows] == list(range(1, 10))
    reasons = {row.line: row.reason for row in rows if isinstance(row, BadRow)}
    assert reasons[1].startswith("not valid JSON")
    assert reasons[2] == "missing 'audio'"
    assert reasons[3] == "'audio' must be a string, got int"
    assert reasons[4] == "'correction' must be a string, got list"
    assert reasons[5] == "not UTF-8 text"
    assert reasons[6].startswith("audio file not found")
    assert reasons[7].startswith("audio is a directory, not a file")
    assert reasons[8] == "not a JSON object"
    assert isinstance(rows[8], Dialog)


# --------------------------------------------------------------------------- bad config, paths, model


def test_bad_config_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="training.learning_rate must be a number, got 'fast'"):
        load_config(write_config(tmp_path / "a.yaml", learning_rate="fast"))
    with pytest.raises(ConfigError, match="unknown config key training.speed"):
        load_config(write_config(tmp_path / "b.yaml", speed=3))


@pytest.fixture(scope="module")
def silence_jsonl(tmp_path_factory, bad_audio) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("silence") / "silence.jsonl", [{"audio": str(bad_audio["silence"]), "correction": WEATHER}])


def test_cli_refuses_bad_settings_in_one_line(tmp_path, silence_jsonl):
    """Config, dialogs file and state dir problems: found before the model loads, so fast."""
    state = tmp_path / "state"
    cases = [
        (["--config", write_config(tmp_path / "v.yaml", learning_rate="fast")], "training.learning_rate must be a number, got 'fast'"),
        (["--config", write_config(tmp_path / "k.yaml", speed=3)], "unknown config key training.speed"),
        (["--config", tmp_path / "nothere.yaml"], "cannot read config"),
    ]
    for extra, message in cases:
        one_error_line(ffasr("replay", silence_jsonl, "--state-dir", state, *extra), message)
    one_error_line(ffasr("replay", tmp_path / "none.jsonl", "--state-dir", state), "cannot read")
    one_error_line(ffasr("replay", tmp_path, "--state-dir", state), "cannot read")  # a directory
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_error_line(ffasr("replay", silence_jsonl, "--state-dir", afile / "sub"), "cannot create the state directory", "Not a directory")
    one_error_line(ffasr("replay", silence_jsonl, "--state-dir", afile), "is a file; pass another --state-dir")
    one_error_line(ffasr("rollback", "--state-dir", afile / "sub"), "no checkpoints")
    assert not state.exists()  # nothing was created for a run that could not start


def test_a_device_this_machine_lacks_is_one_line(tmp_path, silence_jsonl):
    import torch

    missing = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"
    one_error_line(ffasr("replay", silence_jsonl, "--state-dir", tmp_path / "s", "--device", missing), f"device '{missing}'")
    one_error_line(ffasr("replay", silence_jsonl, "--state-dir", tmp_path / "s", "--device", "cuda:x"), "device must be cpu, cuda or cuda:N")


def test_gpu_out_of_memory_mid_replay_is_one_line_and_loses_no_correction(tmp_path, monkeypatch):
    """The GPU runs out of memory after two corrections (faked: no GPU here; the error is torch's own)."""
    import torch
    from typer.testing import CliRunner

    from ffasr_cli.agent import ASRAgent
    from ffasr_cli.cli import app

    infer, calls = ASRAgent.infer, []

    def out_of_memory_on_the_third(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity)")
        return infer(self, *args, **kwargs)

    monkeypatch.setattr(ASRAgent, "infer", out_of_memory_on_the_third)
    state = tmp_path / "state"
    result = CliRunner().invoke(app, ["replay", str(EXAMPLES / "dialogs.jsonl"), "--state-dir", str(state)])
    assert result.exit_code == 1, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("ffasr: error:")]
    assert "the GPU ran out of memory (CUDA out of memory. Tried to allocate 2.00 GiB" in line and "--device cpu" in line
    figures = assert_nothing_lost(state)
    assert figures["pending"] == 2 and figures["spilled"] == 2  # the two typed corrections before it


@pytest.mark.slow
def test_unknown_model_is_one_line(tmp_path, silence_jsonl):
    result = ffasr("replay", silence_jsonl, "--state-dir", tmp_path / "s", "--model", "nosuch")
    one_error_line(result, "unknown model 'nosuch'", "offline: tiny.en")


def test_list_devices_without_a_microphone_is_one_line():
    result = ffasr("listen", "--list-devices", timeout=60)
    assert "Traceback" not in result.stderr
    if result.returncode != 0:  # no input device here (CI): one line says so
        one_error_line(result, "microphone")


def test_state_dir_is_private(tmp_path):
    state = tmp_path / "new" / "state"
    Store.open(state).close()
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "ffasr.db").stat().st_mode & 0o777 == 0o600


def test_adapters_load_with_safe_loaders_only():
    """safetensors for adapters and pending corrections; torch.load only with weights_only=True."""
    package = ROOT / "ffasr_cli"
    for source in package.rglob("*.py"):
        text = source.read_text()
        for call in re.finditer(r"torch\.load\(([^)]*)\)", text):
            assert "weights_only=True" in call.group(1), f"{source.name}: {call.group(0)}"
        assert not re.search(r"\bpickle\.loads?\(|\bjoblib\.load|\bnp\.load\([^)]*allow_pickle=True", text), source.name
    state = (package / "state.py").read_text()
    assert "safetensors" in state and "torch.load" not in state


# --------------------------------------------------------------------------- replay with bad rows


@pytest.mark.slow
def test_replay_skips_bad_rows_refuses_non_corrections_and_goes_on(tmp_path, bad_audio):
    b = {k: str(v) for k, v in bad_audio.items()}
    dialogs = write_jsonl(tmp_path / "d.jsonl", [
        b'{"audio": ',  # 1 malformed
        {"correction": WEATHER},  # 2 no audio key
        {"audio": ["x"]},  # 3 wrong type
        b'{"audio": "\xff.wav"}',  # 4 not UTF-8
        {"audio": b["missing"]},  # 5 no such file
        {"audio": b["directory"]},  # 6 a directory
        {"audio": b["zero"], "correction": WEATHER},  # 7 zero bytes
        {"audio": b["random"], "correction": WEATHER},  # 8 random bytes
        {"audio": b["empty"], "correction": WEATHER},  # 9 no frames
        {"audio": b["silence"], "correction": WEATHER},  # 10 silence: nothing heard, nothing learned
        {"audio": b["stereo8k"], "correction": "The weather is nice today, let's go for a stroll."},  # 11
        {"audio": b["hifi48k"], "correction": "The weather is nice today, let us go for a walk."},  # 12
        {"audio": b["lying"], "correction": "The weather is fine today, let's go for a walk."},  # 13
        {"audio": str(clip("weather")), "correction": ""},  # 14 empty
        {"audio": str(clip("weather")), "correction": "?!... —"},  # 15 only punctuation
        {"audio": str(clip("weather")), "correction": "The weather is nice " * 250},  # 16 5,000 characters
        {"audio": str(clip("weather")), "correction": "Please transfer forty dollars to my savings account."},  # 17 unrelated
    ])  # fmt: skip
    state, report_path = tmp_path / "state", tmp_path / "report.json"
    config = write_config(tmp_path / "c.yaml", accumulation_steps=8)
    result = ffasr("replay", dialogs, "--state-dir", state, "--config", config, "-o", report_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("ffasr: warning:")]
    for line in range(1, 10):
        assert any(f"d.jsonl: line {line}: " in w and w.endswith("skipped") for w in warnings), (line, result.stderr)
    assert len(warnings) == 9, result.stderr

    report = json.loads(report_path.read_text())
    by_line = {d["line"]: d for d in report["dialogs"]}
    assert [by_line[n]["error"] for n in (7, 8, 9)] == [
        f"audio file is empty (0 bytes): {b['zero']}",
        f"cannot read audio {b['random']}: Error opening {b['random']!r}: Format not recognised.",
        f"{b['empty']} holds no samples",
    ]
    assert by_line[10]["hypothesis"] == "" and by_line[10]["rejected"] == "nothing was heard" and not by_line[10]["stepped"]
    for n in (11, 12, 13):  # resampled / truncated audio is heard and learned from
        assert "weather" in by_line[n]["hypothesis"].lower() and by_line[n]["rejected"] is None and by_line[n]["loss"] is not None
    rejected = {n: by_line[n]["rejected"] for n in (14, 15, 16, 17)}
    assert rejected[14].startswith("The correction is empty") and rejected[15].startswith("The correction is empty")
    assert "characters long, over the limit of 1000" in rejected[16]
    assert "shares too little with what was heard" in rejected[17] and "not a correction" in rejected[17]
    assert report["summary"]["rejected"] == 5 and report["summary"]["skipped"] == 3 and report["summary"]["corrections"] == 3
    assert "refused: The correction is empty" in result.stderr  # the table shows why

    stats = json.loads(ffasr("stats", "--json", "--state-dir", state).stdout)
    assert stats["interactions"]["by_status"]["rejected"] == 4  # recorded with their reasons
    assert stats["interactions"]["by_status"]["pending"] == 3 and stats["pending_cache"]["entries"] == 3
    assert_nothing_lost(state)


@pytest.mark.slow
@pytest.mark.parametrize("bad, message", [
    (b'{"audio": ', "line 2: not valid JSON"),  # found by the reader, before the model loads
    ("zero", "line 2: audio file is empty (0 bytes)"),  # found when decoding
])  # fmt: skip
def test_strict_replay_stops_at_the_first_bad_row(tmp_path, bad_audio, bad, message):
    rows = [{"audio": str(clip("weather"))}, bad if isinstance(bad, bytes) else {"audio": str(bad_audio[bad])}, {"audio": str(clip("weather"))}]
    result = ffasr("replay", write_jsonl(tmp_path / "d.jsonl", rows), "--strict", "--state-dir", tmp_path / "s", timeout=300)
    assert result.returncode == 1
    one_error_line(result, message)


@pytest.mark.slow
def test_ten_minute_file_decodes_in_windows_in_bounded_time(tmp_path):
    """20 windows of 30 s; speech in the first and the last, quiet room noise between."""
    audio = (np.random.default_rng(0).standard_normal(600 * SAMPLE_RATE) * 3e-4).astype(np.float32)
    for start, name in ((1, "weather"), (571, "kubernetes_cluster")):
        samples = load_audio(clip(name))
        audio[start * SAMPLE_RATE : start * SAMPLE_RATE + len(samples)] = samples
    path = tmp_path / "long.wav"
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    dialogs = write_jsonl(tmp_path / "d.jsonl", [{"audio": str(path)}])
    started = time.perf_counter()
    result = ffasr("replay", dialogs, "--state-dir", tmp_path / "s", "-o", tmp_path / "r.json", timeout=400)
    seconds = time.perf_counter() - started
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    dialog = json.loads((tmp_path / "r.json").read_text())["dialogs"][0]
    assert "error" not in dialog, dialog
    heard = dialog["hypothesis"].lower()
    assert "weather" in heard and "cluster ran out of memory" in heard
    print(f"\nRELIABILITY ten-minute file: {seconds:.1f} s for the whole replay (model load included)")
    assert seconds < 300


# --------------------------------------------------------------------------- the invariant


def assert_nothing_lost(state: Path, profile: str = "default") -> dict:
    """Store intact; every kept checkpoint loads; every correction applied or still pending on disk."""
    with Store.open(state) as store:  # a writer open: no other process holds the state dir
        assert store.integrity_ok()
        rows = [r for r in store.interactions(profile) if r.status in ("pending", "applied")]
    files = ProfileFiles(state, profile)
    applied: set[str] = set()
    checkpoints = files.checkpoint_paths()
    assert len(checkpoints) <= KEEP_CHECKPOINTS
    for path in checkpoints:
        applied |= set(json.loads(files.read_checkpoint(path).meta["applied"]))
    spilled = {p.stem for p in files.pending_dir.glob("*.safetensors")}
    lost = [r.cache_id for r in rows if r.status == "pending" and r.cache_id not in spilled and r.cache_id not in applied]
    assert not lost, f"corrections recorded as pending, but neither on disk nor in a checkpoint: {lost}"
    temp = [p.name for p in files.root.rglob("*.tmp")] if files.root.exists() else []
    return {"rows": len(rows), "pending": sum(r.status == "pending" for r in rows), "spilled": len(spilled),
            "checkpoints": len(checkpoints), "temp_files": temp}  # fmt: skip


# --------------------------------------------------------------------------- faults, in-process


def _tensors():
    import torch

    return {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(4)}


def save_checkpoint(files: ProfileFiles, step: int, adapter: dict, identity: dict, applied: list[str]) -> Path:
    """A checkpoint of a learner that holds ``adapter`` and nothing else yet (no replay, no canaries)."""
    state = {"steps": step, "adapter": adapter, "optimizer": {}, "replay": [], "canaries": [],
             "rng": random.Random(0).getstate(), "taught_terms": [], "misheard": {}, "fixed_back": {}, "written": {}}  # fmt: skip
    return files.save_checkpoint(state, identity, applied)


def test_failed_checkpoint_write_keeps_the_previous_adapter(tmp_path, monkeypatch):
    files = ProfileFiles(tmp_path, "default")
    first = save_checkpoint(files, 1, _tensors(), {"model": "m"}, ["c1"])
    before = first.read_bytes()

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(paths.os, "replace", full_disk)
    with pytest.raises(StateError) as raised:
        save_checkpoint(files, 2, _tensors(), {"model": "m"}, ["c2"])
    monkeypatch.undo()
    assert "cannot save the adapter checkpoint" in str(raised.value) and "No space left on device" in str(raised.value)
    assert "the previous checkpoint is kept" in str(raised.value)
    assert files.checkpoint_paths() == [first] and first.read_bytes() == before
    assert list(tmp_path.rglob("*.tmp")) == [] and [p.name for p in files.checkpoints_dir.iterdir()] == [first.name]
    assert files.latest_checkpoint({"model": "m"})[0].step == 1


@pytest.fixture
def fresh_session(tmp_path, captures):
    """A Session on a fresh agent (the session agents of conftest are never trained)."""
    from ffasr_cli import ASRAgent
    from ffasr_cli.session import Heard, Session

    made = []

    def make(state: Path = tmp_path / "state", **training):
        agent = ASRAgent(**{"accumulation_steps": 2, "inner_steps": 1, **training})
        session = Session(agent, Store.open(state), ProfileFiles(state, "default"), "default", "test")
        made.append(session)
        return session

    def heard(session, name: str) -> Heard:
        windows = captures.windows(session.agent.config.training.mode, name)
        return Heard(" ".join(w.text for w in windows).strip(), add_entry(session.agent, windows), str(clip(name)), 0.0)

    make.heard = heard
    yield make
    for session in made:
        if session.store.conn is not None:
            session.close()


def test_failed_save_during_an_update_loses_no_correction(fresh_session, monkeypatch):
    session = fresh_session()
    real_replace = os.replace

    def checkpoints_fail(src, dst):
        if "checkpoints" in str(dst):
            raise OSError(errno.EIO, "Input/output error")
        return real_replace(src, dst)

    session.teach(fresh_session.heard(session, "kubernetes_deploy"), "Deploy the new service to Kubernetes tonight.", "typed")
    monkeypatch.setattr(paths.os, "replace", checkpoints_fail)
    with pytest.raises(StateError, match="cannot save the adapter checkpoint"):
        session.teach(fresh_session.heard(session, "kubernetes_cluster"), "Our Kubernetes cluster ran out of memory again.", "typed")
    monkeypatch.undo()
    state = session.store.state_dir
    session.close()
    figures = assert_nothing_lost(state)
    assert figures["pending"] == 2 and figures["spilled"] == 2 and figures["checkpoints"] == 0 and figures["temp_files"] == []

    again = fresh_session(state)  # the next start takes both corrections up again
    assert len(again.agent.learner.pending) == 2
    update = again.step_now()
    assert update is not None and not update.rolled_back
    again.close()
    assert assert_nothing_lost(state)["pending"] == 0


# Corrections close to what each clip says, so that each is a correction (not the transcript accepted).
FIXES = {
    "kubernetes_deploy": "Deploy the new service to Kubernetes tomorrow.",
    "kubernetes_cluster": "Our Kubernetes cluster ran out of memory today.",
    "kubernetes_dashboard": "Please restart the Kubernetes dashboard after lunch.",
    "weather": "The weather is fine today, let's go for a walk.",
}


def _teach(make, session, *names):
    """Type the ``FIXES`` of ``names`` in ``session``; returns the last ``Taught``."""
    for name in names:
        taught = session.teach(make.heard(session, name), FIXES[name], "typed")
        assert taught.rejected is None, taught.rejected
    return taught


def _newer_format(path: Path) -> None:
    """Rewrite a checkpoint as a later ffasr might: same tensors, another format string."""
    from safetensors.torch import load_file, save_file
    from ffasr_cli.state import _metadata

    meta = {**_metadata(path.read_bytes()), "format": "ffasr-adapter/2"}
    save_file(load_file(path), path, metadata=meta)


@pytest.mark.parametrize("damage", ["garbage", "torn", "newer format"])
def test_unreadable_checkpoint_is_set_aside_never_overwritten(fresh_session, caplog, damage):
    session = fresh_session()
    lost = list(_teach(fresh_session, session, *FIXES).update.corrections)  # two updates; the second one's
    assert session.agent.learner.steps == 2
    files, state = session.files, session.store.state_dir
    newest = files.checkpoint_paths()[-1]
    session.close()
    if damage == "garbage":
        newest.write_bytes(np.random.default_rng(1).bytes(4096))
    elif damage == "torn":
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    else:
        _newer_format(newest)
    damaged = newest.read_bytes()

    with caplog.at_level("WARNING"):
        again = fresh_session(state)  # goes on from step 1
    assert again.agent.learner.steps == 1 and files.steps() == [1]
    aside = files.checkpoints_dir / "unreadable" / newest.name
    assert aside.read_bytes() == damaged and "is unreadable" in caplog.text and "going on from step 1" in caplog.text
    rows = {row.cache_id: row for row in again.store.interactions("default")}
    assert all(rows[i].status == "rolled_back" and "could not be read" in rows[i].reason for i in lost)
    assert [c.step for c in again.store.checkpoints("default")] == [1]
    taught = _teach(fresh_session, again, "kubernetes_deploy", "weather")  # two more corrections: a new step 2
    assert taught.update is not None and not taught.update.rolled_back and files.steps() == [1, 2]
    assert aside.read_bytes() == damaged  # what could not be read is never overwritten
    again.close()
    stats = json.loads(ffasr("stats", "--json", "--state-dir", state).stdout)
    assert stats["updates"]["applied"] == 3 and stats["updates"]["rolled_back"] == 1


def test_only_step_files_are_checkpoints(tmp_path):
    files = ProfileFiles(tmp_path, "default")
    for step in (1, 2):
        save_checkpoint(files, step, _tensors(), {"model": "m"}, [])
    for junk in ("step-000002 (copy).safetensors", "step-2.safetensors", "step-000009.safetensors.bak", "notes.txt"):
        (files.checkpoints_dir / junk).write_text("not a checkpoint")
    assert files.steps() == [1, 2]
    for step in range(3, 3 + KEEP_CHECKPOINTS):  # junk never takes a kept slot
        save_checkpoint(files, step, _tensors(), {"model": "m"}, [])
    assert len(files.checkpoint_paths()) == KEEP_CHECKPOINTS and (files.checkpoints_dir / "notes.txt").exists()
    with Store.open(tmp_path) as store:
        store.ensure_profile("default", "tiny.en", "encoder")
    result = ffasr("rollback", "--state-dir", tmp_path)
    assert result.returncode == 0 and "rolled back to step 6" in result.stdout, result.stderr


def test_unreadable_pending_correction_is_set_aside_and_rejected(fresh_session, caplog):
    session = fresh_session()
    heard = fresh_session.heard(session, "kubernetes_deploy")
    session.teach(heard, FIXES["kubernetes_deploy"], "typed")
    spill = session.files.pending_dir / f"{heard.cache_id}.safetensors"
    state = session.store.state_dir
    session.close()
    spill.write_bytes(b"\x00garbage" * 100)
    with caplog.at_level("WARNING"):
        again = fresh_session(state)
    assert again.agent.learner.pending == [] and "is unreadable" in caplog.text
    assert (again.files.pending_dir / "unreadable" / spill.name).read_bytes() == b"\x00garbage" * 100
    (row,) = again.store.interactions("default")
    assert row.status == "rejected" and "missing or unreadable" in row.reason
    assert again.store.pending("default") == []


def test_update_saved_but_not_recorded_is_recorded_at_the_next_start(fresh_session):
    session = fresh_session()
    _teach(fresh_session, session, "kubernetes_deploy", "kubernetes_cluster")
    assert session.agent.learner.steps == 1
    # as if the process had been killed right after writing the checkpoint, before the store heard of it
    with session.store._write() as conn:
        conn.execute("DELETE FROM checkpoints")
        conn.execute("DELETE FROM updates")
    state = session.store.state_dir
    session.close()
    again = fresh_session(state)
    assert again.agent.learner.steps == 1
    assert [(u.step, u.status) for u in again.store.updates("default")] == [(1, "applied")]
    assert [c.step for c in again.store.checkpoints("default")] == [1]
    again.close()
    table = ffasr("stats", "--state-dir", state)  # an update recorded at a restart has no loss to show
    assert table.returncode == 0 and "1 applied, 0 rolled back" in table.stdout, table.stderr


# --------------------------------------------------------------------------- non-finite learning


def _poisoned(windows, value: float):
    """Copies of cached windows whose encoder output is all ``value`` (an fp16 overflow gives inf)."""
    import dataclasses

    import torch

    return tuple(dataclasses.replace(w, audio_features=torch.full_like(w.audio_features, value)) for w in windows)


def _poison_example(example, value: float) -> None:
    from ffasr_cli.modes import Target

    example.targets = tuple(Target(window, t.tokens) for window, t in zip(_poisoned([t.window for t in example.targets], value), example.targets))


@pytest.mark.parametrize("poison, reason", [
    ("replayed loss", "a loss was not finite"),
    ("weights after the step", "a weight was not finite after the step"),
    ("canary loss", "canary loss was not finite"),
])  # fmt: skip
def test_non_finite_update_is_undone_and_recorded(fresh_session, poison, reason):
    """Whatever makes an update non-finite rolls it back: weights, optimizer and store stay sane."""
    import torch

    session = fresh_session(canary_size=2)
    agent = session.agent
    session.teach(fresh_session.heard(session, "weather"), None, "accepted")  # a canary
    first = _teach(fresh_session, session, "kubernetes_deploy", "kubernetes_cluster")
    assert first.update is not None and not first.update.rolled_back  # step 1; its corrections are now in replay
    before = {n: p.detach().clone() for n, p in agent.learner.trainable.items()}
    if poison == "replayed loss":
        for example in agent.learner.replay:
            _poison_example(example, float("inf"))
    elif poison == "weights after the step":  # optimizer moments gone bad: the step divides by sqrt(-1)
        for moments in agent.learner.optimizer.state.values():
            moments["exp_avg_sq"].fill_(-1.0)
    else:
        _poison_example(agent.learner.canaries[0], float("nan"))
    update = _teach(fresh_session, session, "kubernetes_dashboard", "weather").update
    assert update is not None and update.rolled_back, poison
    assert all(torch.equal(p, before[n]) for n, p in agent.learner.trainable.items()) and agent.learner.steps == 1
    assert session.store.updates("default")[-1].reason == update.undone and update.undone.startswith(reason)
    assert session.files.steps() == [1]
    state = session.store.state_dir
    session.close()
    stats = ffasr("stats", "--json", "--state-dir", state)
    assert stats.returncode == 0 and json.loads(stats.stdout)["updates"]["rolled_back"] == 1, stats.stderr


def test_correction_with_a_non_finite_loss_is_refused_and_teaches_nothing(fresh_session, captures):
    session = fresh_session()
    windows = _poisoned(captures.windows("encoder", "kubernetes_deploy"), float("nan"))
    heard = fresh_session.heard(session, "kubernetes_deploy")
    session.agent.cache.discard([heard.cache_id])
    session.agent.cache.add(windows, cache_id=heard.cache_id)
    taught = session.teach(heard, FIXES["kubernetes_deploy"], "typed")
    assert taught.rejected is not None and "not finite" in taught.rejected
    assert session.agent.learner.pending == [] and session.agent.learner.accumulated == 0
    assert all(p.grad is None for p in session.agent.learner.params)


def test_profile_with_non_finite_weights_is_refused_with_the_way_back(tmp_path, silence_jsonl, captures):
    import torch

    state = tmp_path / "state"
    agent = captures.agent("encoder")  # read only: its adapter (untrained) and identity
    files = ProfileFiles(state, "default")
    save_checkpoint(files, 1, agent.learner.adapter_state(), agent.identity(), [])
    poisoned = {name: torch.full_like(t, float("nan")) for name, t in agent.learner.adapter_state().items()}
    save_checkpoint(files, 2, poisoned, agent.identity(), [])
    one_error_line(ffasr("replay", silence_jsonl, "--state-dir", state), "holds weights that are not finite", "ffasr rollback")
    assert files.steps() == [1, 2]  # nothing was touched
    assert ffasr("rollback", "--state-dir", state).returncode == 0
    result = ffasr("replay", silence_jsonl, "--state-dir", state)
    assert result.returncode == 0, result.stderr


def test_ctrl_c_during_an_update_keeps_pending_on_disk(fresh_session, monkeypatch):
    session = fresh_session(inner_steps=2)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    session.teach(fresh_session.heard(session, "kubernetes_deploy"), TEXTS["kubernetes_deploy"], "typed")
    monkeypatch.setattr(session.agent.learner.optimizer, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        session.teach(fresh_session.heard(session, "kubernetes_cluster"), TEXTS["kubernetes_cluster"], "typed")
    assert len(session.agent.learner.pending) == 2 and session.agent.learner.steps == 0
    state = session.store.state_dir
    session.close()
    figures = assert_nothing_lost(state)
    assert figures["pending"] == 2 and figures["spilled"] == 2 and figures["checkpoints"] == 0


# --------------------------------------------------------------------------- rollback and reset


def _learned_state(state: Path, steps: int = 3) -> None:
    with Store.open(state) as store:
        store.ensure_profile("default", "tiny.en", "encoder")
        files = ProfileFiles(state, "default")
        for step in range(1, steps + 1):
            path = save_checkpoint(files, step, _tensors(), {"model": "tiny.en"}, [f"c{step}"])
            store.record_checkpoint("default", step, path)
            store.record_update("default", step=step, loss=1.0, n_interactions=1, status="applied")
        store.add_terms("default", ["Xochitl"])


def test_rollback_and_reset_show_in_stats(tmp_path):
    state = tmp_path / "state"
    _learned_state(state)
    result = ffasr("rollback", "--state-dir", state)
    assert result.returncode == 0 and "rolled back to step 2: removed 1 checkpoint(s)" in result.stdout, result.stderr
    stats = json.loads(ffasr("stats", "--json", "--state-dir", state).stdout)
    assert stats["updates"]["rolled_back"] == 1
    assert stats["checkpoints"]["latest"]["step"] == 2 and stats["checkpoints"]["count"] == 2
    one_error_line(ffasr("rollback", "--to", "7", "--state-dir", state), "step 7 is not before the latest checkpoint")

    result = ffasr("reset", "--yes", "--state-dir", state)
    assert result.returncode == 0 and "profile 'default' reset" in result.stdout
    stats = json.loads(ffasr("stats", "--json", "--state-dir", state).stdout)
    assert stats["updates"]["applied"] == 0 and stats["checkpoints"]["count"] == 0 and stats["terms"]["count"] == 0
    assert not (state / "profiles" / "default").exists()
    one_error_line(ffasr("rollback", "--state-dir", state), "has no checkpoints to roll back")


# --------------------------------------------------------------------------- subprocess faults

TRACED = """
import os, signal, sys, time
from ffasr_cli import learner, session, state

# Ctrl-C as in a terminal, even when the tests run in the background (which ignores SIGINT)
signal.signal(signal.SIGINT, signal.default_int_handler)

marks = open(os.environ["FFASR_TEST_MARKS"], "a", buffering=1)


def mark(name):
    marks.write(f"{time.monotonic():.3f} {name}\\n")


def traced(cls, attr, before, after=None):
    real = getattr(cls, attr)

    def wrapper(*args, **kwargs):
        mark(before)
        result = real(*args, **kwargs)
        if after:
            mark(after)
        return result

    setattr(cls, attr, wrapper)


traced(session.Session, "_resume", "resume", "decode")
traced(session.Session, "hear", "decode")
traced(learner.Learner, "_update", "update", "store")
traced(state.ProfileFiles, "save_checkpoint", "save", "store")
mark("start")
from ffasr_cli.cli import main

sys.argv = ["ffasr", *sys.argv[1:]]
main()
"""


class Traced:
    """``ffasr`` in a subprocess that notes each phase (load, decode, update, save) in a file."""

    def __init__(self, tmp: Path, *args):
        self.marks = tmp / "marks.txt"
        self.marks.write_text("")
        script = tmp / "traced_ffasr.py"
        script.write_text(TRACED)
        self.process = subprocess.Popen([sys.executable, str(script), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        env={**ENV, "FFASR_TEST_MARKS": str(self.marks)}, text=True, errors="replace")  # fmt: skip

    def phase(self) -> str:
        lines = self.marks.read_text().split()
        return lines[-1] if lines else "load"

    def wait_for(self, phase: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            if phase in self.marks.read_text().split():
                return True
            time.sleep(0.005)
        return False

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err


@pytest.mark.slow
def test_sigkill_at_random_points_never_loses_a_correction(tmp_path):
    """Kill ``ffasr replay`` at ≥ 20 seeded random moments, on one state dir; check the invariant each time."""
    kills = int(os.environ.get("FFASR_KILLS", "20"))
    rng = random.Random(20250101)
    # A rate too small to learn the terms: every replay keeps correcting and updating, so that the
    # kills aimed at an update find one (with the real rate, later replays only accept); and
    # updates long enough to be hit (the first ones of a replay take 0.3 s with 3 inner steps).
    state, config = tmp_path / "state", write_config(tmp_path / "c.yaml", accumulation_steps=2, learning_rate="0.0000001", inner_steps=10)
    args = ["replay", EXAMPLES / "dialogs.jsonl", "--state-dir", state, "--config", config]
    started = time.perf_counter()
    hits: dict[str, int] = {}
    leftovers = 0
    for i in range(kills):
        run = Traced(tmp_path, *args)  # removes the temp files an earlier kill left
        aim = ("random", "random", "update", "save")[i % 4]
        if aim == "random":
            time.sleep(rng.uniform(0.3, 8.0))
        elif run.wait_for(aim, timeout=30):
            time.sleep(rng.uniform(0.0, 0.8) if aim == "update" else rng.uniform(0.0, 0.01))
        phase = run.phase() if run.process.poll() is None else "finished"
        run.process.kill()
        run.finish()
        hits[phase] = hits.get(phase, 0) + 1
        figures = assert_nothing_lost(state)
        leftovers = max(leftovers, len(figures["temp_files"]))
    killed = time.perf_counter() - started

    # One more start takes up whatever the kills left pending, and learns it.
    final = write_jsonl(tmp_path / "one.jsonl", [{"audio": str(EXAMPLES / "clips" / "dialog_7.wav")}])
    result = ffasr("replay", final, "--flush", "--state-dir", state, "--config", config, timeout=300)
    assert result.returncode == 0, result.stderr
    figures = assert_nothing_lost(state)
    assert figures["pending"] == 0 and figures["spilled"] == 0 and figures["temp_files"] == []
    stats = json.loads(ffasr("stats", "--json", "--state-dir", state).stdout)
    print(f"\nRELIABILITY kills: {kills} in {killed:.0f} s; phase at kill: {hits}; most temp files left by a kill: {leftovers}; "
          f"after: {stats['interactions']['by_status']}, updates {stats['updates']}, checkpoints {figures['checkpoints']}")  # fmt: skip
    assert sum(v for k, v in hits.items() if k in ("update", "save", "store")) >= kills // 4


@pytest.mark.slow
def test_ctrl_c_during_an_update_exits_130_and_keeps_pending(tmp_path):
    state = tmp_path / "state"
    config = write_config(tmp_path / "c.yaml", accumulation_steps=2, inner_steps=10)  # an update of ~2 s, not 0.3 s
    run = Traced(tmp_path, "replay", EXAMPLES / "dialogs.jsonl", "--state-dir", state, "--config", config)
    assert run.wait_for("update", timeout=120)
    run.process.send_signal(signal.SIGINT)
    code, _, err = run.finish()
    assert code == 130, err
    assert "Traceback" not in err and "interrupted; everything learned and pending is saved" in err
    figures = assert_nothing_lost(state)
    assert figures["pending"] >= 2 and figures["spilled"] >= 2


@pytest.mark.slow
def test_second_process_on_one_state_dir_is_refused_or_waits(tmp_path, silence_jsonl):
    state = tmp_path / "state"
    holder = Store.open(state)
    try:
        one_error_line(ffasr("replay", silence_jsonl, "--state-dir", state), f"another ffasr process (pid {os.getpid()}) is using")
        one_error_line(ffasr("reset", "--yes", "--state-dir", state), "another ffasr process")
        waiting = subprocess.Popen([*FFASR, "replay", str(silence_jsonl), "--state-dir", str(state), "--wait", "120"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, text=True)  # fmt: skip
        time.sleep(2.0)
        assert waiting.poll() is None  # still waiting for the lock
    finally:
        holder.close()
    _, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0 and "Traceback" not in err, err
    assert_nothing_lost(state)


# --------------------------------------------------------------------------- learning safety


@pytest.mark.slow
def test_poisoned_batch_is_rolled_back_and_recorded(tmp_path):
    dialogs = write_jsonl(tmp_path / "d.jsonl", [
        {"audio": str(clip("weather"))},  # accepted: the canary
        {"audio": str(clip("kubernetes_deploy")), "correction": "Deploy the new service to Cuba Nates tomorrow."},
        {"audio": str(clip("kubernetes_cluster")), "correction": "Our Qberneats cluster ran out of money again."},
    ])  # fmt: skip
    state = tmp_path / "state"
    config = write_config(tmp_path / "c.yaml", accumulation_steps=2, learning_rate=1.0)
    result = ffasr("replay", dialogs, "--state-dir", state, "--config", config, "-o", tmp_path / "r.json", timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["rolled_back"] == 1
    stats = json.loads(ffasr("stats", "--json", "--state-dir", state).stdout)
    assert stats["updates"]["rolled_back"] >= 1 and stats["updates"]["applied"] == 0
    assert stats["interactions"]["by_status"]["rolled_back"] == 2 and stats["checkpoints"]["count"] == 0
    with Store.open(state, readonly=True) as store:
        assert store.updates("default")[-1].reason.startswith("canary loss rose")


@pytest.mark.slow
def test_adapter_for_another_setup_is_refused_and_left_untouched(tmp_path, silence_jsonl, captures):
    state = tmp_path / "state"
    agent = captures.agent("encoder")  # read only: its adapter (untrained) and identity
    path = save_checkpoint(ProfileFiles(state, "default"), 1, agent.learner.adapter_state(), agent.identity(), [])
    before = path.read_bytes()
    one_error_line(ffasr("replay", silence_jsonl, "--state-dir", state, "--mode", "logits"),
                   "was trained for model 'tiny.en' with adapter 'lora/r32/", "not 'tiny.en' with 'head/r16'")  # fmt: skip
    one_error_line(ffasr("replay", silence_jsonl, "--state-dir", state, "--config", write_config(tmp_path / "r8.yaml", lora_rank=8)),
                   "with 'lora/r8/", "use those settings, or another --profile")  # fmt: skip
    assert path.read_bytes() == before and ProfileFiles(state, "default").checkpoint_paths() == [path]


# --------------------------------------------------------------------------- long sessions


@pytest.mark.slow
def test_soak_hundreds_of_interactions_memory_and_disk_stay_bounded(tmp_path, monkeypatch):
    """examples/dialogs.jsonl looped 20× (160 interactions) through one Session, as ``replay`` runs it.

    Decoding is real for each distinct clip once, then replayed from a memo (fresh tensor copies each
    time): a CPU decodes a clip in ~1 s, and what grows in a long session is ffasr's own state
    (cache, replay buffer, canaries, store, files), which every interaction still exercises in full.
    """
    import ctypes
    import dataclasses

    import psutil

    from ffasr_cli.commands.replay import run_replay
    from ffasr_cli.session import Session

    loops, max_cache = 20, 6
    source = [json.loads(line) for line in (EXAMPLES / "dialogs.jsonl").read_text().splitlines() if line.strip()]
    for row in source:
        for key in ("audio", "correction_audio"):
            if key in row:
                row[key] = str(EXAMPLES / row[key])
    dialogs = write_jsonl(tmp_path / "soak.jsonl", source * loops)
    rows = list(read_dialogs(dialogs))
    assert len(rows) == 8 * loops and all(isinstance(r, Dialog) for r in rows)

    state = tmp_path / "state"
    config = load_config(None, accumulation_steps=4, inner_steps=1, max_cache_size=max_cache)
    session = Session.open(state, "default", config, "replay")
    agent = session.agent
    real_decode, memo = agent.reader.read, {}

    def decode(audio, keep, prompt, glossary=()):
        key = (str(audio), keep)
        if key not in memo:
            memo[key] = real_decode(audio, keep, prompt, glossary)
        return tuple(dataclasses.replace(c, **{n: getattr(c, n).clone() for n in ("hidden", "audio_features", "mel") if getattr(c, n) is not None})
                     for c in memo[key])  # fmt: skip

    monkeypatch.setattr(agent.reader, "read", decode)
    process = psutil.Process()
    try:  # memory freed but kept by glibc's allocator is not a leak: give it back before each reading
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except OSError:
        trim = lambda _pad: None  # noqa: E731 (not glibc: read RSS as it is)
    rss, cache_sizes, started = [], [], time.perf_counter()
    try:
        for i in range(loops):
            report = run_replay(session, rows[8 * i : 8 * i + 8], [], source=dialogs)
            assert report["summary"]["skipped"] == 0
            trim(0)
            rss.append(process.memory_info().rss / 2**20)
            cache_sizes.append(len(agent.cache))
            assert len(agent.cache) <= max_cache
            assert len(session.files.checkpoint_paths()) <= KEEP_CHECKPOINTS
            assert len(list(session.files.pending_dir.glob("*.safetensors"))) < config.training.accumulation_steps
        db = session.store.db_bytes()
        stats = session.store.stats("default")
    finally:
        session.close()
    seconds = time.perf_counter() - started
    # A leak raises the floor: the lowest RSS of the last quarter against the second (in the first,
    # the replay buffer is still filling, and with it the replayed group of an update). Between
    # them RSS swings by an update's working set (up to 12 windows' cross-attention keys/values,
    # ~18 MB each), freed after the update; without the trim, glibc kept it for whole quarters.
    quarter = loops // 4
    growth = min(rss[-quarter:]) - min(rss[quarter : 2 * quarter])
    swing = max(rss[quarter:]) - min(rss[quarter:])
    print(f"\nRELIABILITY soak: {8 * loops} interactions in {seconds:.0f} s; RSS MB per loop {[round(r) for r in rss]}, "
          f"floor growth {growth:+.1f}, swing {swing:.0f}; cache max {max(cache_sizes)}/{max_cache}, evicted {agent.cache.evicted}; "
          f"updates {stats['updates']['applied']} applied, {stats['updates']['rolled_back']} rolled back; "
          f"db {db / 1e3:.0f} kB; checkpoints kept {len(session.files.checkpoint_paths())}")  # fmt: skip
    assert growth < 50 and swing < 400
    assert db < 10_000_000  # the WAL (~4 MB before SQLite folds it in) included
    assert stats["interactions"]["total"] == 8 * loops
    assert_nothing_lost(state)
