"""Reading ``dialogs.jsonl`` (replay input) and evaluation files, one checked row at a time.

A dialog row: ``{"audio": ..., "correction": ...}`` (typed), ``{"audio": ..., "correction_audio":
...}`` (spoken), both (a spoken correction the user saw heard wrong, then typed), ``{"audio": ...}``
(accepted), or ``{"audio": ..., "accepted": "the text shown"}`` (accepted as that text, as ``listen
--save-audio`` records it); ``reference`` is the truth, for scoring only.
An evaluation row: ``{"audio": ..., "reference": ..., "terms": [...]}``. Paths are relative to the
JSONL file. A bad row becomes a ``BadRow`` with its line number, never an exception, so a replay can
skip it (or, with ``--strict``, stop on it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import FfasrError

MAX_LINE_BYTES = 1 << 20  # a row is a few hundred bytes; parsing a line of gigabytes would hold all of it
UTF8_BOM = b"\xef\xbb\xbf"  # some Windows editors begin UTF-8 files with it


@dataclass(frozen=True)
class Dialog:
    line: int
    audio: Path
    correction: str | None = None
    correction_audio: Path | None = None
    reference: str | None = None
    accepted: str | None = None  # the transcript the user accepted (``listen --save-audio``)


@dataclass(frozen=True)
class EvalRow:
    line: int
    audio: Path
    reference: str
    terms: tuple[str, ...] = ()


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class _BadLine(Exception):
    """Why a line is not a row."""


def _rows(path: Path, parse) -> Iterator:
    """``parse(row, line number, base folder)`` for each line's JSON object; a bad line, for any reason, as a ``BadRow``.

    Every way a line can fail ends here, so that one bad line never stops the lines after it.
    """
    base = Path(path).parent
    for number, line in enumerate(_lines(path), start=1):
        if number == 1 and line is not None:
            line = line.removeprefix(UTF8_BOM)
        if line is not None and not line.strip():
            continue
        try:
            row = parse(_object(line), number, base)
        except _BadLine as error:
            row = BadRow(number, str(error))
        except (OSError, ValueError) as error:  # a path the system will not look up: too long, or holding a NUL
            row = BadRow(number, f"a path cannot be looked up ({getattr(error, 'strerror', None) or error})")
        yield row


def _lines(path: Path) -> Iterator[bytes | None]:
    """The file's lines; ``None`` for one over ``MAX_LINE_BYTES``, read past in pieces and never held whole."""
    try:
        with open(path, "rb") as handle:
            while line := handle.readline(MAX_LINE_BYTES + 1):
                if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                    while (rest := handle.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                        pass
                    line = None
                yield line
    except OSError as error:
        raise FfasrError(f"cannot read {path}: {error.strerror or error}") from None


def _object(line: bytes | None) -> dict:
    """The JSON object on ``line``; ``_BadLine`` saying why there is none."""
    if line is None:
        raise _BadLine(f"longer than {MAX_LINE_BYTES:,} bytes")
    try:
        row = json.loads(line.decode("utf-8"))
        json.dumps(row, ensure_ascii=False).encode("utf-8")  # "\ud800" parses, but no file or tensor can hold it
    except UnicodeDecodeError:
        raise _BadLine("not UTF-8 text") from None
    except UnicodeEncodeError:
        raise _BadLine("text holds a lone surrogate") from None
    except json.JSONDecodeError as error:
        raise _BadLine(f"not valid JSON ({error.msg})") from None
    except RecursionError:
        raise _BadLine("JSON nested too deeply") from None
    except ValueError:  # int() refuses more than 4,300 digits
        raise _BadLine("a number with too many digits") from None
    if not isinstance(row, dict):
        raise _BadLine("not a JSON object")
    return row


def _text(row: dict, key: str, number: int, required: bool = False) -> str | None | BadRow:
    value = row.get(key)
    if value is None:
        return BadRow(number, f"missing {key!r}") if required else None
    if not isinstance(value, str):
        return BadRow(number, f"{key!r} must be a string, got {type(value).__name__}")
    return value


def _audio(row: dict, key: str, number: int, base: Path, required: bool) -> Path | None | BadRow:
    value = _text(row, key, number, required)
    if not isinstance(value, str):
        return value
    from .audio import path_problem

    path = base / value
    problem = path_problem(path, key)
    return BadRow(number, problem) if problem else path


def _dialog(row: dict, number: int, base: Path) -> Dialog | BadRow:
    fields = {
        "audio": _audio(row, "audio", number, base, required=True),
        "correction": _text(row, "correction", number),
        "correction_audio": _audio(row, "correction_audio", number, base, required=False),
        "reference": _text(row, "reference", number),
        "accepted": _text(row, "accepted", number),
    }
    bad = next((v for v in fields.values() if isinstance(v, BadRow)), None)
    return bad or Dialog(number, **fields)


def _eval_row(row: dict, number: int, base: Path) -> EvalRow | BadRow:
    audio = _audio(row, "audio", number, base, required=True)
    reference = _text(row, "reference", number, required=True)
    terms = row.get("terms", [])
    if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
        return BadRow(number, "'terms' must be a list of strings")
    bad = next((v for v in (audio, reference) if isinstance(v, BadRow)), None)
    return bad or EvalRow(number, audio, reference, tuple(terms))


def read_dialogs(path: Path) -> Iterator[Dialog | BadRow]:
    return _rows(path, _dialog)


def read_eval(path: Path) -> Iterator[EvalRow | BadRow]:
    return _rows(path, _eval_row)
