"""Property tests: the readers of user files never fail but with a clear FfasrError.

``read_dialogs`` / ``read_eval`` on arbitrary bytes yield rows or ``BadRow``s (never raise);
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
from ffasr_cli.dialogs import BadRow, Dialog, EvalRow, read_dialogs, read_eval
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
