"""Property tests: the readers of user files never fail but with a clear FfasrError.

``read_dialogs`` / ``read_eval`` on arbitrary bytes yield rows or ``BadRow``s (never raise), and
each known way a line can fail (depth, size, encoding, a path the system refuses) has its row;
``load_audio`` on arbitrary bytes named ``.wav`` returns 16 kHz mono float32 or raises
``AudioError``. Correction parsing has its own property tests in test_corrections.py.
"""

from __future__ import annotations

import io
import json
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ffasr_cli.audio import load_audio
from ffasr_cli.dialogs import MAX_LINE_BYTES, UTF8_BOM, BadRow, Dialog, EvalRow, read_dialogs, read_eval
from ffasr_cli.errors import AudioError, FfasrError

fast = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

DATA = Path(__file__).parent / "data"
CLIP = "data/weather.wav"  # relative to tests/, where the fuzzed JSONL is written

# JSON-ish values and rows, so that many lines parse and reach the field checks.
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20) | st.just(CLIP) | st.just("data"),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
keys = st.sampled_from(["audio", "correction", "correction_audio", "reference", "terms", "x"])
rows = st.dictionaries(keys, values, max_size=5)
lines = st.one_of(
    rows.map(lambda r: json.dumps(r).encode()),
    st.binary(max_size=60),
    st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


def _check_rows(path: Path) -> None:
    for reader, kind in ((read_dialogs, Dialog), (read_eval, EvalRow)):
        seen = []
        for row in reader(path):
            assert isinstance(row, (kind, BadRow)), row
            if isinstance(row, BadRow):
                assert row.line >= 1 and row.reason and "\n" not in str(row)
            else:
                assert row.audio.is_file()
            seen.append(row.line)
        assert seen == sorted(seen)


@fast
@given(body=st.lists(lines, max_size=8).map(b"\n".join))
def test_jsonl_readers_yield_rows_or_bad_rows(body):
    with tempfile.NamedTemporaryFile(dir=DATA.parent, suffix=".jsonl") as handle:
        handle.write(body)
        handle.flush()
        _check_rows(Path(handle.name))


@fast
@given(body=st.binary(max_size=400))
def test_jsonl_readers_on_random_bytes(body):
    with tempfile.NamedTemporaryFile(dir=DATA.parent, suffix=".jsonl") as handle:
        handle.write(body)
        handle.flush()
        _check_rows(Path(handle.name))


def test_unreadable_jsonl_is_an_ffasr_error(tmp_path):
    for path in (tmp_path / "missing.jsonl", tmp_path):  # missing; a directory
        for reader in (read_dialogs, read_eval):
            with pytest.raises(FfasrError, match="cannot read"):
                list(reader(path))


# Every way one line can fail: a row warning naming the line, and the next line is still read.
CLIP_PATH = json.dumps(str(DATA / "weather.wav")).encode()
GOOD = json.dumps({"audio": str(DATA / "weather.wav"), "correction": "The weather is nice today, let us go for a walk.",
                   "reference": "The weather is nice today, let us go for a walk."}).encode()  # fmt: skip
ROW = b'{"audio": ' + CLIP_PATH + b', "correction": '  # then a value and "}"
BAD_LINES = [
    pytest.param(ROW + b"[" * 200_000 + b"]" * 200_000 + b"}", "JSON nested too deeply", id="nested-200000-deep"),
    pytest.param(ROW + b"9" * 5000 + b"}", "a number with too many digits", id="5000-digit-integer"),
    pytest.param(ROW + b'"' + b"a" * MAX_LINE_BYTES + b'"}', "longer than 1,048,576 bytes", id="over-1-MiB"),
    pytest.param(ROW + b'"caf\xe9"}', "not UTF-8 text", id="latin-1"),
    pytest.param(ROW + b'"Kuber\\ud800netes"}', "text holds a lone surrogate", id="lone-surrogate"),
    pytest.param(json.dumps({"audio": "x" * 5000}).encode(), "File name too long", id="5000-character-path"),
    pytest.param(b'{"audio": "weather\\u0000.wav"}', "embedded null byte", id="nul-in-a-path"),
    pytest.param(b'{"audio": "[/x].wav"}', "[/x].wav", id="markup-in-a-path"),  # printed as written, not read as rich markup
    pytest.param(b'{"audio": "\\u001b[31mred.wav"}', "[31mred.wav", id="escape-in-a-path"),  # printed as "\x1b[31m"
]


@pytest.mark.parametrize("line, reason", BAD_LINES)
def test_a_bad_line_is_a_row_warning_and_the_next_is_read(tmp_path, line, reason):
    path = tmp_path / "dialogs.jsonl"
    path.write_bytes(line + b"\n" + GOOD + b"\n")
    for reader, kind in ((read_dialogs, Dialog), (read_eval, EvalRow)):
        bad, good = reader(path)
        assert isinstance(bad, BadRow) and bad.line == 1 and reason in bad.reason, bad
        assert str(bad).startswith("line 1: ") and "\n" not in str(bad)
        assert isinstance(good, kind) and good.line == 2


def test_a_bom_and_lines_at_the_size_cap_are_read(tmp_path):
    path = tmp_path / "dialogs.jsonl"
    at_cap = GOOD[:-1] + b" " * (MAX_LINE_BYTES - len(GOOD)) + b"}"  # JSON allows the spaces
    path.write_bytes(UTF8_BOM + GOOD + b"\r\n" + at_cap + b"\n" + at_cap)  # Windows line ends; no newline at the end
    assert [type(row) for row in read_dialogs(path)] == [Dialog, Dialog, Dialog]


def test_replay_warns_of_each_bad_line_and_learns_the_good_ones(tmp_path):
    """Through the CLI: every bad line is a warning naming it, and the rows around them are learned."""
    from typer.testing import CliRunner

    from ffasr_cli.cli import app
    from ffasr_cli.store import Store

    dialogs = tmp_path / "dialogs.jsonl"
    dialogs.write_bytes(UTF8_BOM + GOOD + b"\n" + b"".join(bad.values[0] + b"\n" for bad in BAD_LINES))
    state = tmp_path / "state"
    result = CliRunner().invoke(app, ["replay", str(dialogs), "--state-dir", str(state), "--flush"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "\x1b" not in result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("ffasr: warning:")]
    for number, bad in enumerate(BAD_LINES, start=2):
        [warning] = [w for w in warnings if f": line {number}: " in w]
        assert bad.values[1] in warning and warning.endswith("; skipped")
    with Store.open(state, readonly=True) as store:
        [learned] = store.interactions("default")
        assert (learned.label, learned.status) == ("The weather is nice today, let us go for a walk.", "applied")


def _wav_header(rate: int, channels: int, bits: int, n_bytes: int, fmt: int = 1) -> bytes:
    block = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", (36 + n_bytes) % 2**32) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, fmt, channels, rate, rate * block % 2**32, block % 2**16, bits)
            + b"data" + struct.pack("<I", n_bytes))  # fmt: skip


def _check_audio(tmp_path: Path, body: bytes) -> None:
    path = tmp_path / "fuzz.wav"
    path.write_bytes(body)
    try:
        audio = load_audio(path)
    except AudioError as error:
        assert str(error) and "\n" not in str(error)
        return
    assert isinstance(audio, np.ndarray) and audio.dtype == np.float32 and audio.ndim == 1 and audio.size > 0
    assert np.isfinite(audio).all()


@fast
@given(body=st.binary(max_size=2000))
def test_load_audio_random_bytes(tmp_path, body):
    _check_audio(tmp_path, body)


@fast
@given(
    rate=st.sampled_from([0, 1, 8000, 16000, 44100, 48000, 2**31 - 1, 2**32 - 1]),
    channels=st.integers(0, 9),
    bits=st.sampled_from([0, 8, 16, 24, 32, 64, 7]),
    fmt=st.sampled_from([1, 3, 0, 2, 0xFFFE]),
    claimed=st.integers(0, 2**32 - 1),
    payload=st.binary(max_size=1500),
)
def test_load_audio_wav_headers_that_lie(tmp_path, rate, channels, bits, fmt, claimed, payload):
    """A RIFF header with arbitrary fields (rate, channels, bits, a data size that lies)."""
    _check_audio(tmp_path, _wav_header(rate, channels, bits, claimed, fmt) + payload)


@fast
@given(cut=st.integers(0, 2000), flip=st.lists(st.tuples(st.integers(0, 1999), st.integers(0, 255)), max_size=8))
def test_load_audio_damaged_real_wav(tmp_path, cut, flip):
    """A real clip, truncated and with bytes overwritten (the header included)."""
    data = bytearray((DATA / "weather.wav").read_bytes()[: 44 + cut])
    for offset, value in flip:
        if offset < len(data):
            data[offset] = value
    _check_audio(tmp_path, bytes(data))


def test_wav_header_helper_makes_a_readable_file(tmp_path):
    samples = (np.sin(np.arange(1600) / 5) * 8000).astype("<i2").tobytes()
    buffer = io.BytesIO(_wav_header(16000, 1, 16, len(samples)) + samples)
    path = tmp_path / "ok.wav"
    path.write_bytes(buffer.getvalue())
    assert load_audio(path).shape == (1600,)
