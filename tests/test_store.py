"""The store keeps what was learned: round trips, locking, bad state dirs, and SIGKILL mid-write."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ffasr_cli.errors import StateError
from ffasr_cli.store import Checkpoint, Interaction, Store, Term, Update

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _child(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV, cwd=ROOT,
    )


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "state") as opened:
        opened.ensure_profile("me", "tiny.en", "lora")
        yield opened


def _interaction(store, session, cache_id, status="pending", source="typed", **extra):
    return store.add_interaction(
        session, "me", cache_id=cache_id, audio=f"audio/{cache_id}.wav", hypothesis="helo",
        label="hello", source=source, status=status, **extra,
    )


# -- round trips ---------------------------------------------------------------------------------


def test_profiles_and_sessions(store):
    again = store.ensure_profile("me", "base.en", "full")  # an existing profile is not overwritten
    assert (again.name, again.model, again.mode) == ("me", "tiny.en", "lora")
    store.ensure_profile("alt", "base", "lora")
    store.ensure_profile("early")  # `vocab add` before any session: model and mode not known yet
    assert store.profile("early").model == ""
    filled = store.ensure_profile("early", "tiny.en", "encoder")  # the first session fills them in
    assert (filled.model, filled.mode) == ("tiny.en", "encoder")
    assert store.profiles() == ["alt", "early", "me"]
    assert store.profile("nobody") is None
    session = store.start_session("me", "listen")
    store.end_session(session)
    row = store.conn.execute("SELECT * FROM sessions WHERE id = ?", (session,)).fetchone()
    assert row["command"] == "listen" and row["ended_at"] >= row["started_at"]


def test_interactions_and_status(store):
    session = store.start_session("me", "listen")
    first = _interaction(store, session, "a", loss=1.5, infer_ms=12.0)
    _interaction(store, session, "b")
    _interaction(store, session, "c", status="accepted", source="accepted")
    pending = store.pending("me")
    assert [i.cache_id for i in pending] == ["a", "b"]  # oldest first
    assert isinstance(pending[0], Interaction)
    assert pending[0].id == first and pending[0].loss == 1.5 and pending[0].infer_ms == 12.0
    assert pending[0].label == "hello" and pending[0].audio == "audio/a.wav"
    assert store.set_status(["a", "b", "missing"], "applied") == 2
    assert store.pending("me") == []
    assert {i.status for i in store.interactions("me")} == {"applied", "accepted"}
    with pytest.raises(ValueError):
        store.set_status(["a"], "bogus")
    with pytest.raises(ValueError):
        _interaction(store, session, "d", source="guessed")
    with pytest.raises(sqlite3.IntegrityError):  # cache_id is unique
        _interaction(store, session, "a")
    with pytest.raises(sqlite3.IntegrityError):  # foreign keys are on
        store.add_interaction(session, "ghost", cache_id="g", audio=None, hypothesis=None,
                              label=None, source="typed", status="pending")
    assert len(store.interactions("me")) == 3  # failed writes left nothing behind
    _interaction(store, session, "e")  # and no transaction open: the next write goes through
    assert len(store.interactions("me")) == 4


def test_updates_and_checkpoints(store):
    store.record_update("me", step=1, loss=2.0, n_interactions=4, status="applied",
                        duration_ms=80.0, canary_before=0.1, canary_after=0.09)
    store.record_update("me", step=2, loss=9.0, n_interactions=4, status="rolled_back",
                        reason="canary got worse")
    updates = store.updates("me")
    assert [type(u) for u in updates] == [Update, Update]
    assert (updates[0].step, updates[0].canary_after, updates[1].reason) == (1, 0.09, "canary got worse")
    with pytest.raises(ValueError):
        store.record_update("me", step=3, loss=1.0, n_interactions=1, status="pending")
    store.record_checkpoint("me", 1, Path("/x/step1.pt"))
    store.record_checkpoint("me", 5, "/x/step5.pt")
    checkpoints = store.checkpoints("me")
    assert isinstance(checkpoints[0], Checkpoint)
    assert [(c.step, c.path) for c in checkpoints] == [(1, "/x/step1.pt"), (5, "/x/step5.pt")]


def test_terms(store):
    store.add_terms("me", ["Kubernetes", "PyTorch"])
    store.add_terms("me", ["Kubernetes", "  ", "kubernetes"])  # once per call; latest spelling kept
    store.add_terms("me", ["Straße"], source="user")
    store.add_terms("me", ["STRASSE"])  # casefold: the same term; a user term stays 'user'
    terms = store.terms("me")
    assert isinstance(terms[0], Term)
    assert [(t.term, t.count) for t in terms] == [("STRASSE", 2), ("kubernetes", 2), ("PyTorch", 1)]
    assert terms[0].source == "user" and terms[1].source == "learned"
    assert terms[1].first_seen <= terms[1].last_seen
    assert [t.term for t in store.terms("me", limit=1)] == ["STRASSE"]
    assert store.remove_term("me", "KUBERNETES") is True
    assert store.remove_term("me", "kubernetes") is False
    assert [t.term for t in store.terms("me")] == ["STRASSE", "PyTorch"]


def test_terms_tie_breaks_on_recency(store):
    store.add_terms("me", ["old"])
    time.sleep(0.01)
    store.add_terms("me", ["new"])
    assert [t.term for t in store.terms("me")] == ["new", "old"]


def test_reset_profile_forgets_only_that_profile(store):
    store.ensure_profile("alt", "tiny.en", "lora")
    session = store.start_session("me", "listen")
    _interaction(store, session, "a")
    store.add_interaction(None, "alt", cache_id="z", audio=None, hypothesis="x", label="y",
                          source="spoken", status="pending")
    store.record_update("me", step=1, loss=1.0, n_interactions=1, status="applied")
    store.record_checkpoint("me", 1, "/x/1.pt")
    store.add_terms("me", ["foo"])
    store.add_terms("alt", ["bar"])
    deleted = store.reset_profile("me")
    assert deleted == {"interactions": 1, "updates": 1, "checkpoints": 1, "terms": 1}
    assert store.interactions("me") == [] and store.updates("me") == []
    assert store.checkpoints("me") == [] and store.terms("me") == []
    assert "me" in store.profiles()
    assert len(store.pending("alt")) == 1 and store.terms("alt")[0].term == "bar"


def test_stats_is_json_ready(store):
    session = store.start_session("me", "listen")
    _interaction(store, session, "a")
    _interaction(store, session, "b", status="accepted", source="accepted")
    for step, loss in enumerate([3.0, 2.0, 1.0], start=1):
        store.record_update("me", step=step, loss=loss, n_interactions=2, status="applied")
    store.record_update("me", step=4, loss=8.0, n_interactions=2, status="rolled_back")
    store.record_checkpoint("me", 3, "/x/3.pt")
    store.add_terms("me", ["Kubernetes"])
    stats = json.loads(json.dumps(store.stats("me")))
    assert stats["interactions"]["total"] == 2
    assert stats["interactions"]["by_status"]["pending"] == 1
    assert stats["interactions"]["by_source"] == {"accepted": 1, "typed": 1, "spoken": 0}
    assert stats["pending"] == 1
    assert (stats["updates"]["applied"], stats["updates"]["rolled_back"]) == (3, 1)
    assert stats["updates"]["last_losses"] == [3.0, 2.0, 1.0]
    assert stats["updates"]["last_step"] == 3
    assert stats["checkpoints"]["count"] == 1 and stats["checkpoints"]["latest"]["path"] == "/x/3.pt"
    assert stats["terms"]["count"] == 1 and stats["terms"]["top"][0]["term"] == "Kubernetes"
    assert stats["db_bytes"] > 0 and stats["model"] == "tiny.en"
    empty = json.loads(json.dumps(store.stats("nobody")))
    assert empty["exists"] is False and empty["interactions"]["total"] == 0


def test_data_survives_reopen_and_readonly_reads_it(tmp_path):
    with Store.open(tmp_path) as store:
        store.ensure_profile("me", "tiny.en", "lora")
        store.add_terms("me", ["kept"])
    with Store.open(tmp_path, readonly=True) as reader:
        assert reader.terms("me")[0].term == "kept"
        assert reader.integrity_ok()
        with pytest.raises(RuntimeError):
            reader.add_terms("me", ["nope"])
    with Store.open(tmp_path) as store:
        assert store.terms("me")[0].term == "kept"


# -- the file on disk ----------------------------------------------------------------------------


def test_wal_mode_and_private_permissions(tmp_path):
    state = tmp_path / "deep" / "state"
    with Store.open(state) as store:
        store.ensure_profile("me", "tiny.en", "lora")
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] >= 1
        assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
        for name in ("ffasr.db", "ffasr.db-wal", "lock"):
            assert stat.S_IMODE(os.stat(state / name).st_mode) == 0o600, name


def test_readonly_open_of_missing_store(tmp_path):
    with pytest.raises(StateError, match="no ffasr store"):
        Store.open(tmp_path / "none", readonly=True)
    assert not (tmp_path / "none").exists()  # readonly creates nothing


def test_state_dir_under_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError, match=str(blocker / "state")) as info:
        Store.open(blocker / "state")
    assert "\n" not in str(info.value)
    with pytest.raises(StateError, match="is a file"):
        Store.open(blocker)


def _skip_if_modes_do_not_stop_us(tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir(mode=0o500)
    try:
        (probe / "file").touch()
    except PermissionError:
        return
    finally:
        probe.chmod(0o700)
    # root (CAP_DAC_OVERRIDE) writes through mode bits; run under
    # `setpriv --bounding-set=-dac_override,-dac_read_search,-fowner --inh-caps=...` to cover these.
    pytest.skip("this process writes into a 0o500 dir (root); test_state_dir_under_a_file covers it")


def test_unwritable_state_dir(tmp_path):
    _skip_if_modes_do_not_stop_us(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(StateError, match=f"{locked} is not writable"):
            Store.open(locked)
        with pytest.raises(StateError, match=str(locked / "sub")):
            Store.open(locked / "sub")
    finally:
        locked.chmod(0o700)


def test_store_made_read_only_after_use(tmp_path):
    _skip_if_modes_do_not_stop_us(tmp_path)
    state = tmp_path / "state"
    with Store.open(state) as store:
        store.ensure_profile("me", "tiny.en", "lora")
    state.chmod(0o500)  # e.g. a backup copy on a read-only mount
    try:
        with pytest.raises(StateError, match=f"{state} is not writable"):
            Store.open(state)
        with Store.open(state, readonly=True) as reader:  # reads without a -shm file
            assert reader.profiles() == ["me"]
    finally:
        state.chmod(0o700)
    (state / "ffasr.db").chmod(0o400)
    with pytest.raises(StateError, match="ffasr.db is not writable"):
        Store.open(state)


def test_corrupt_db_is_reported_and_kept(tmp_path):
    junk = random.Random(7).randbytes(8192)
    (tmp_path / "ffasr.db").write_bytes(junk)
    for readonly in (False, True):
        with pytest.raises(StateError, match="corrupt") as info:
            Store.open(tmp_path, readonly=readonly)
        assert str(tmp_path / "ffasr.db") in str(info.value)
    assert (tmp_path / "ffasr.db").read_bytes() == junk
    with pytest.raises(StateError, match="corrupt"):  # not "locked": a failed open let go of it
        Store.open(tmp_path)


def test_newer_schema_is_refused(tmp_path):
    Store.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "ffasr.db")
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(StateError, match="newer ffasr"):
        Store.open(tmp_path)


# -- a damaged store ------------------------------------------------------------------------------

WEATHER = ROOT / "tests" / "data" / "weather.wav"
CORRUPT = r"the store {db} is corrupt \(.+\); move it aside to start afresh"  # the documented line, as a pattern


def _used_store(state: Path) -> None:
    """A store after some real use: a profile, a session, corrections, terms."""
    with Store.open(state) as store:
        store.ensure_profile("default", "tiny.en", "encoder")
        session = store.start_session("default", "replay")
        for n in range(40):
            store.add_interaction(session, "default", cache_id=f"c{n}", audio=f"clips/{n}.wav", hypothesis="the cubes cluster",
                                  label="the Kubernetes cluster", source="typed", status="applied")  # fmt: skip
            store.add_terms("default", ["Kubernetes", f"term{n}"])
        store.end_session(session)


def _damage_the_middle(db: Path) -> bytes:
    """Garbage over 3 pages in the middle of the file (a failing disk, a bad copy); returns the file as left."""
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")  # the page size, from the header
    first = len(data) // page // 2 - 1
    data[first * page : (first + 3) * page] = random.Random(3).randbytes(3 * page)
    db.write_bytes(data)
    return bytes(data)


def test_a_store_damaged_in_the_middle_is_refused_by_every_command(tmp_path):
    """Reading or writing, every command refuses it with one line, and nothing writes into it."""
    from typer.testing import CliRunner

    from ffasr_cli.cli import app

    state = tmp_path / "state"
    _used_store(state)
    checkpoints = state / "profiles" / "default" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for step in (1, 2):  # for rollback to have something to roll back
        (checkpoints / f"step-{step:06d}.safetensors").write_bytes(b"adapter")
    db = state / "ffasr.db"
    damaged = _damage_the_middle(db)
    dialogs = tmp_path / "dialogs.jsonl"
    dialogs.write_text(json.dumps({"audio": str(WEATHER), "correction": "The weather is nice today."}) + "\n")
    for command in (["stats"], ["vocab", "list"], ["vocab", "add", "Cilium"], ["rollback"], ["replay", str(dialogs)]):
        result = CliRunner().invoke(app, [*command, "--state-dir", str(state)])
        assert result.exit_code == 1, (command, result.output)
        [line] = result.stderr.splitlines()
        assert re.fullmatch(f"ffasr: error: {CORRUPT.format(db=re.escape(str(db)))}", line), line
        assert db.read_bytes() == damaged, command
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-000001.safetensors", "step-000002.safetensors"]


def test_a_damaged_store_is_left_as_it_is_even_with_a_wal_to_fold_in(tmp_path):
    """A writer killed with commits still in the WAL, then damage: refusing the store does not checkpoint into it."""
    _used_store(tmp_path)
    holder = _child(HOLDER, tmp_path)
    assert holder.stdout.readline().strip() == "ready"
    os.kill(holder.pid, signal.SIGKILL)
    holder.communicate()
    assert (tmp_path / "ffasr.db-wal").stat().st_size > 0
    damaged = _damage_the_middle(tmp_path / "ffasr.db")
    for readonly in (False, True):
        with pytest.raises(StateError, match=CORRUPT.format(db=re.escape(str(tmp_path / "ffasr.db")))):
            Store.open(tmp_path, readonly=readonly)
    assert (tmp_path / "ffasr.db").read_bytes() == damaged


def test_damage_found_after_the_open_is_the_same_one_line(tmp_path):
    """A page that goes bad after the check at open (or that the check missed): the same line, for reads and writes."""
    _used_store(tmp_path)
    with Store.open(tmp_path, readonly=True) as reader, Store.open(tmp_path) as writer:
        for store in (reader, writer):
            store.conn.execute("PRAGMA cache_size = 1")  # read pages from the file, not from memory
        _damage_the_middle(tmp_path / "ffasr.db")
        corrupt = f"^{CORRUPT.format(db=re.escape(str(tmp_path / 'ffasr.db')))}$"
        with pytest.raises(StateError, match=corrupt):
            reader.stats("default")
        with pytest.raises(StateError, match=corrupt):
            writer.interactions("default")
        with pytest.raises(StateError, match=corrupt):
            writer.set_status([f"c{n}" for n in range(40)], "rolled_back")


def test_the_check_at_open_is_cheap(tmp_path):
    """A store of a heavy user (10,000 corrections, ~3 MB): the check adds ~10 ms to an open."""
    hypothesis, label = "the cubes cluster ran out of memory again " * 2, "the Kubernetes cluster ran out of memory again " * 2
    with Store.open(tmp_path) as store:
        store.ensure_profile("me", "tiny.en", "lora")
        with store._write() as conn:
            conn.executemany(
                "INSERT INTO interactions(profile, cache_id, audio, hypothesis, label, source, status, created_at)"
                " VALUES ('me', ?, ?, ?, ?, 'typed', 'applied', 0)",
                [(f"c{n}", f"/home/me/clips/{n}.wav", hypothesis, label) for n in range(10_000)],
            )
    assert (tmp_path / "ffasr.db").stat().st_size > 3_000_000
    start = time.perf_counter()
    Store.open(tmp_path, readonly=True).close()
    assert time.perf_counter() - start < 0.5  # a shared, busy CPU can be many times slower than the ~10 ms


# -- files made under any umask, and reports that cannot be written --------------------------------

FFASR = Path(sys.executable).parent / "ffasr"
LEARNED = "The weather is nice today, let us go for a walk."


@pytest.mark.slow
def test_nothing_is_world_readable_under_umask_000(tmp_path):
    """State dir, profiles/, checkpoints/, pending/, the store and the report: the user's alone, whatever the umask."""
    config = tmp_path / "config.yaml"
    config.write_text("training:\n  accumulation_steps: 1\n")  # one correction makes a checkpoint
    dialogs = tmp_path / "dialogs.jsonl"
    dialogs.write_text(json.dumps({"audio": str(WEATHER), "correction": LEARNED}) + "\n")
    state, report = tmp_path / "new" / "state", tmp_path / "report.json"
    result = subprocess.run(
        [FFASR, "replay", dialogs, "--state-dir", state, "--config", config, "--output", report],
        capture_output=True, text=True, env={**ENV, "OMP_NUM_THREADS": "1"}, timeout=300, preexec_fn=lambda: os.umask(0),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    made = [state.parent, state, *state.rglob("*"), report]
    names = {str(p.relative_to(tmp_path)) for p in made}
    assert {"new/state/profiles/default/checkpoints", "new/state/profiles/default/pending", "report.json"} <= names
    assert any(p.suffix == ".safetensors" for p in made)
    for path in made:
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path


@pytest.mark.slow
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_report_that_cannot_be_written_is_one_line_after_the_learning_is_saved(tmp_path):
    from typer.testing import CliRunner

    from ffasr_cli.cli import app

    dialogs = tmp_path / "dialogs.jsonl"
    dialogs.write_text(json.dumps({"audio": str(WEATHER), "correction": LEARNED}) + "\n")
    state = tmp_path / "state"
    result = CliRunner().invoke(app, ["replay", str(dialogs), "--state-dir", str(state), "--output", "/dev/full"])
    assert result.exit_code == 1, result.output
    assert [line for line in result.stderr.splitlines() if "error" in line] == [
        "ffasr: error: cannot write the report to /dev/full (No space left on device)"
    ]
    with Store.open(state, readonly=True) as store:  # the correction is saved, and the session closed
        [kept] = store.pending("default")
        assert kept.label == LEARNED
        assert store.conn.execute("SELECT ended_at FROM sessions").fetchone()[0] is not None
    assert len(list(state.glob("profiles/default/pending/*.safetensors"))) == 1


# -- locking -------------------------------------------------------------------------------------

HOLDER = """
import sys
from ffasr_cli.store import Store
store = Store.open(sys.argv[1])
store.ensure_profile("held", "tiny.en", "lora")
print("ready", flush=True)
sys.stdin.read()
store.close()
"""


def test_second_writer_is_refused_while_readers_work(tmp_path):
    holder = _child(HOLDER, tmp_path)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StateError, match=rf"another ffasr process \(pid {holder.pid}\) is using"):
            Store.open(tmp_path)
        start = time.monotonic()
        with pytest.raises(StateError, match="--state-dir"):
            Store.open(tmp_path, lock_timeout=0.3)
        assert time.monotonic() - start >= 0.3
        with Store.open(tmp_path, readonly=True) as reader:  # no lock needed to read
            assert reader.profiles() == ["held"]
            assert reader.stats("held")["exists"] is True
    finally:
        holder.communicate("")
    assert holder.returncode == 0
    with Store.open(tmp_path, lock_timeout=1.0) as store:  # free again once the holder is gone
        assert store.profiles() == ["held"]


def test_lock_waits_for_a_holder_that_leaves(tmp_path):
    holder = _child(HOLDER, tmp_path)
    assert holder.stdout.readline().strip() == "ready"
    holder.stdin.close()  # the holder closes its store and exits soon
    with Store.open(tmp_path, lock_timeout=5.0) as store:
        assert store.profiles() == ["held"]
    holder.wait()


def test_second_writer_in_the_same_process(tmp_path):
    with Store.open(tmp_path):
        with pytest.raises(StateError, match=f"pid {os.getpid()}"):
            Store.open(tmp_path)
    Store.open(tmp_path).close()


# -- crashes -------------------------------------------------------------------------------------

WRITER = """
import sys
from ffasr_cli.store import Store
store = Store.open(sys.argv[1], lock_timeout=5.0)
store.ensure_profile("me", "tiny.en", "lora")
session = store.start_session("me", "listen")
print("ready", flush=True)
n = 0
while True:
    n += 1
    row = store.add_interaction(session, "me", cache_id=f"{sys.argv[2]}-{n}", audio="a.wav",
                                hypothesis="helo", label="hello", source="typed", status="pending")
    store.add_terms("me", [f"term{n % 7}"])
    print(row, flush=True)
"""


def test_sigkill_never_loses_a_committed_write(tmp_path):
    rng = random.Random(1234)
    reported: list[int] = []
    rows_before = 0
    for run in range(10):
        child = _child(WRITER, tmp_path, run)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.02, 0.15))
        os.kill(child.pid, signal.SIGKILL)
        # read, not communicate(): readline's read-ahead (rows printed right after "ready") sits
        # in child.stdout's buffer, which communicate() skips when stdin is a pipe too
        out = child.stdout.read()
        child.stdin.close()
        assert child.wait() == -signal.SIGKILL
        committed = [int(line) for line in out.split()]
        reported += committed
        with Store.open(tmp_path, readonly=True) as reader:
            assert reader.integrity_ok()
            ids = {i.id for i in reader.interactions("me")}
        assert set(reported) <= ids  # every reported commit is there
        new_rows = len(ids) - rows_before
        assert len(committed) <= new_rows <= len(committed) + 1  # +1: committed, not yet printed
        rows_before = len(ids)
    assert len(reported) > 10, "the children should have written something before being killed"
    with Store.open(tmp_path) as store:  # a writer recovers the WAL and goes on
        assert store.integrity_ok()
        assert sum(t.count for t in store.terms("me")) >= len(reported)


# -- speed and imports ---------------------------------------------------------------------------


def test_import_does_not_pull_in_torch():
    code = (
        "import sys, ffasr_cli.store\n"
        "print(sorted(m for m in ('torch', 'whisper', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


def test_readonly_stats_are_fast(tmp_path):
    with Store.open(tmp_path) as store:
        store.ensure_profile("me", "tiny.en", "lora")
        for n in range(50):
            _interaction(store, None, f"c{n}")
        store.add_terms("me", [f"t{n}" for n in range(300)])
    start = time.perf_counter()
    with Store.open(tmp_path, readonly=True) as reader:
        stats = reader.stats("me")
    assert time.perf_counter() - start < 0.2
    assert stats["pending"] == 50


FULL_DISK = """
import os, subprocess, sys
from ffasr_cli.errors import StateError
from ffasr_cli.store import Store
disk = sys.argv[1]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", disk], check=True)
Store.open(f"{disk}/used").close()  # used before the disk filled up: reopening needs room for its -shm file
held = Store.open(f"{disk}/held")
held.ensure_profile("me", "tiny.en", "lora")
filler = os.open(f"{disk}/filler", os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(filler, bytes(512))
except OSError:
    pass
for name in ("used", "new"):
    try:
        Store.open(f"{disk}/{name}")
    except StateError as error:
        print(error)
try:
    held.add_terms("me", [f"term{n}" for n in range(1000)])
except StateError as error:
    print(error)
"""


def test_a_really_full_disk_says_so(tmp_path):
    """A tmpfs filled to the last byte, in a mount namespace of its own (where the system allows one)."""
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("no unprivileged mount namespace here; test_full_disk_is_a_state_error_and_rolls_back covers the store")
    command = ["unshare", "-rm", sys.executable, "-c", FULL_DISK, tmp_path]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"cannot write to the store {tmp_path}/used/ffasr.db (the disk is full)",
        f"cannot write to the store {tmp_path}/new/ffasr.db (the disk is full)",
        f"cannot write to the store {tmp_path}/held/ffasr.db (the disk is full)",
    ]


def test_full_disk_is_a_state_error_and_rolls_back(store):
    store.add_terms("me", ["before"])
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages}")  # stands in for a full disk: SQLite's "database or disk is full"
    with pytest.raises(StateError, match=rf"^cannot write to the store {re.escape(str(store.path))} \(the disk is full\)$"):
        store.add_terms("me", [f"term{n}-" + "x" * 200 for n in range(200)])
    assert [t.term for t in store.terms("me")] == ["before"]  # all of that write or none
    store.conn.execute("PRAGMA max_page_count = 1073741823")
    store.add_terms("me", ["after"])
    assert len(store.terms("me")) == 2
