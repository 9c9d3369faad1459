"""Reading ``dialogs.jsonl`` (replay input) and evaluation files, one checked row at a time.

A dialog row: ``{"audio": ..., "correction": ...}`` (typed), ``{"audio": ..., "correction_audio":
...}`` (spoken), both (a spoken correction the user saw heard wrong, then typed), or ``{"audio": ...}``
(accepted); ``reference`` is the truth, for scoring only.
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


@dataclass(frozen=True)
class Dialog:
    line: int
    audio: Path
    correction: str | None = None
    correction_audio: Path | None = None
    reference: str | None = None


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


def _rows(path: Path) -> Iterator[tuple[int, dict | BadRow]]:
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise FfasrError(f"cannot read {path}: {error.strerror or error}") from None
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            yield number, BadRow(number, "not UTF-8 text")
            continue
        except json.JSONDecodeError as error:
            yield number, BadRow(number, f"not valid JSON ({error.msg})")
            continue
        yield number, row if isinstance(row, dict) else BadRow(number, "not a JSON object")


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


def _read(path: Path, parse) -> Iterator:
    """``parse(row, line number, base folder)`` for each JSON object; bad lines as ``BadRow``."""
    base = Path(path).parent
    for number, row in _rows(path):
        yield row if isinstance(row, BadRow) else parse(row, number, base)


def _dialog(row: dict, number: int, base: Path) -> Dialog | BadRow:
    fields = {
        "audio": _audio(row, "audio", number, base, required=True),
        "correction": _text(row, "correction", number),
        "correction_audio": _audio(row, "correction_audio", number, base, required=False),
        "reference": _text(row, "reference", number),
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
    return _read(path, _dialog)


def read_eval(path: Path) -> Iterator[EvalRow | BadRow]:
    return _read(path, _eval_row)
