"""``ffasr replay dialogs.jsonl``: learn from recorded dialogs, with before/after evaluation."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..corrections import normalize_words
from ..dialogs import BadRow, Dialog, read_dialogs, read_eval
from ..errors import CorrectionRejected, FfasrError, StateError
from ..paths import write_private_file
from .common import (
    ConfigFile, Device, Glossary, ModeOption, ModelName, Profile, Seed, StateDir, Wait, build_config, console, reports_errors,
    shown, state_dir,
)  # fmt: skip


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console, transient=True)


def evaluate_file(agent, path: Path, progress: Progress | None = None) -> dict:
    """Transcribe every row of an eval file with the model as it is now, and score it."""
    from ..evaluate import score

    rows = [row for row in read_eval(path)]
    bad = [row for row in rows if isinstance(row, BadRow)]
    if bad:
        raise FfasrError(f"eval file {path}: {bad[0]}")
    task = progress.add_task(f"eval {path.name}", total=len(rows)) if progress else None
    results = []
    for row in rows:
        results.append({"audio": str(row.audio), "reference": row.reference, "hypothesis": agent.infer(row.audio, cache_logits=False)})
        if progress:
            progress.advance(task)
    if progress:
        progress.remove_task(task)
    scores = score([r["reference"] for r in results], [r["hypothesis"] for r in results], [row.terms for row in rows])
    return {"rows": results, "metrics": scores.as_dict()}


def _teach(session, dialog: Dialog, heard):
    """Turn the dialog's correction into a label and teach it; a refused one is recorded as rejected.

    A row with both a spoken and a typed correction is what ``ffasr listen --save-audio`` writes
    when the user saw the spoken one heard wrong and typed the sentence: the spoken one is taught
    where it was heard as the typed words, the typed one where it was not.
    """
    typed = None
    if dialog.correction is not None:
        try:
            typed = session.read_correction(dialog.correction, heard)
        except CorrectionRejected:  # e.g. empty: teach refuses it too, and records why
            typed = dialog.correction
    if dialog.correction_audio is not None:
        try:
            spoken = session.hear_correction(dialog.correction_audio, heard)
        except CorrectionRejected as error:  # "No." and nothing else
            if typed is None:
                return session.teach(heard, None, "spoken", refused=str(error))
        else:
            if typed is None or normalize_words(spoken) == normalize_words(typed):
                return session.teach(heard, spoken, "spoken")
    if typed is not None:
        return session.teach(heard, typed, "typed")
    return session.teach(heard, dialog.accepted, "accepted")


@reports_errors
def replay(
    dialogs: Annotated[Path, typer.Argument(help="JSONL of dialogs: audio + correction | correction_audio | neither.", show_default=False)],
    eval_files: Annotated[list[Path], typer.Option("--eval", help="Eval JSONL (audio, reference, terms); scored before and after. Repeatable.")] = [],  # noqa: B006
    no_learn: Annotated[bool, typer.Option("--no-learn", help="Do not update weights (the glossary still learns terms): a baseline.")] = False,
    flush: Annotated[bool, typer.Option("--flush", help="Run a final update on corrections still pending at the end.")] = False,
    curve: Annotated[bool, typer.Option("--curve", help="Score the eval files after every update too (a learning curve).")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first bad row instead of skipping it.")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write a JSON report here.")] = None,
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
    """Replay recorded dialogs: transcribe each clip, learn from its correction, report what changed."""
    rows = list(read_dialogs(dialogs))
    for row in rows:
        if isinstance(row, BadRow):
            if strict:
                raise FfasrError(f"{dialogs}: {row}")
            _skipped(dialogs, row)
    rows = [row for row in rows if isinstance(row, Dialog)]
    settings = build_config(config, model, mode, device, glossary)

    from ..session import Session

    session = Session.open(state_dir(state), profile, settings, "replay", lock_timeout=wait, seed=seed)
    session.learn_weights = not no_learn
    try:
        with _progress() as progress:
            report = run_replay(session, rows, eval_files, flush=flush, curve=curve, strict=strict, source=dialogs, progress=progress)
    finally:
        session.close()
    _show(report)
    if output:
        _write_report(output, report)


def _write_report(path: Path, report: dict) -> None:
    """Everything learned is saved by now: a report that cannot be written is one line, and only that."""
    try:
        write_private_file(path, json.dumps(report, indent=2).encode())
    except OSError as error:
        raise FfasrError(f"cannot write the report to {path} ({error.strerror or error})") from None
    console.print(shown(f"report written to {path}"))


def _skipped(source: Path, what: object) -> None:
    """The one-line warning for a row or clip the replay skips and goes on; it holds the user's paths and text."""
    console.print(shown(f"ffasr: warning: {source}: {what}; skipped"), soft_wrap=True)


def run_replay(session, rows: list[Dialog], eval_files: list[Path], *, flush: bool = False, curve: bool = False, strict: bool = False,
               source: Path = Path("dialogs.jsonl"), progress: Progress | None = None, before: bool = True) -> dict:  # fmt: skip
    """Score the eval files, learn from every dialog, score again: the report ``replay`` writes."""
    report: dict = {"summary": {}, "dialogs": [], "eval": {}, "curve": []}
    started = time.perf_counter()
    for path in eval_files:
        report["eval"][path.name] = {"before": evaluate_file(session.agent, path, progress) if before else {"rows": [], "metrics": None}}
    task = progress.add_task("replay", total=len(rows)) if progress else None
    for dialog in rows:
        report["dialogs"].append(_replay_one(session, dialog, report, eval_files, curve, progress, source, strict))
        if progress:
            progress.advance(task)
    if flush and (update := session.step_now()):
        report["flush"] = {"stepped": not update.rolled_back, "rolled_back": update.rolled_back, "update_seconds": update.seconds}
    for path in eval_files:
        report["eval"][path.name]["after"] = evaluate_file(session.agent, path, progress)
    _summarize(report, rows, session, time.perf_counter() - started)
    return report


def _replay_one(session, dialog, report, eval_files, curve, progress, dialogs, strict) -> dict:
    try:
        heard = session.hear(dialog.audio)
        taught = _teach(session, dialog, heard)
    except StateError:  # the state dir failed (a full disk): not this clip's fault, stop
        raise
    except FfasrError as error:  # a bad clip: skip it like a bad row
        if strict:
            raise FfasrError(f"{dialogs}: line {dialog.line}: {error}") from None
        _skipped(dialogs, f"line {dialog.line}: {error}")
        return {"line": dialog.line, "audio": str(dialog.audio), "error": str(error)}
    if taught.update and curve:
        point = {"update": taught.update.step, "rolled_back": taught.update.rolled_back, "after_dialog": len(report["dialogs"]) + 1}
        point.update({p.name: evaluate_file(session.agent, p, progress)["metrics"] for p in eval_files})
        report["curve"].append(point)
    update = taught.update
    return {
        "line": dialog.line, "audio": str(dialog.audio), "hypothesis": heard.text, "reference": dialog.reference,
        "label": taught.label, "source": taught.source, "loss": taught.loss, "rejected": taught.rejected,
        "stepped": update is not None and not update.rolled_back, "rolled_back": bool(update and update.rolled_back),
        "update_seconds": update.seconds if update else None, "infer_seconds": heard.seconds, "terms": list(taught.terms),
    }  # fmt: skip


def _summarize(report: dict, rows: list[Dialog], session, seconds: float) -> None:
    from ..evaluate import score

    done = [d for d in report["dialogs"] if "error" not in d]
    scored = [d for d in done if d["reference"]]
    stepped = done + ([report["flush"]] if "flush" in report else [])
    updates = [d["update_seconds"] for d in stepped if d["update_seconds"] is not None]
    report["summary"].update({
        "dialogs": len(rows), "skipped": len(rows) - len(done),
        "corrections": sum(d["source"] != "accepted" and not d["rejected"] for d in done),
        "confirmed": sum(d["source"] == "accepted" and d["loss"] is not None for d in done),  # accepted, holding a learned term: learned from
        "rejected": sum(bool(d["rejected"]) for d in done),
        "steps": sum(d["stepped"] for d in stepped), "rolled_back": sum(d["rolled_back"] for d in stepped),
        "pending": len(session.agent.learner.pending), "accumulation_steps": session.agent.config.training.accumulation_steps,
        "mean_update_seconds": round(sum(updates) / len(updates), 3) if updates else None,
        "total_update_seconds": round(sum(updates), 3),
        "dialog_wer": score([d["reference"] for d in scored], [d["hypothesis"] for d in scored]).wer if scored else None,
        "seconds": round(seconds, 1), "mode": session.agent.config.training.mode, "model": session.agent.config.model,
        "device": session.agent.device,
        "glossary": session.agent.config.decoding.glossary, "learned_terms": list(session.agent.reader.glossary),
    })  # fmt: skip
    for entry in report["eval"].values():
        entry["metrics"] = {"before": entry["before"]["metrics"], "after": entry.get("after", {}).get("metrics")}
        entry["before"], entry["after"] = entry["before"]["rows"], entry.get("after", {}).get("rows", [])


def _show(report: dict) -> None:
    table = Table(title="dialogs", show_lines=False)
    for column in ("#", "heard", "label", "loss", "update"):
        table.add_column(column, overflow="fold")
    for d in report["dialogs"]:
        if "error" in d:
            table.add_row(str(d["line"]), shown(d["error"], "red"), "", "", "")
            continue
        label = "(accepted)" if d["source"] == "accepted" else d["label"]
        label = shown(f"refused: {d['rejected']}", "yellow") if d["rejected"] else shown(label)
        update = "rolled back" if d["rolled_back"] else (f"step, {d['update_seconds']:.2f} s" if d["stepped"] else "")
        table.add_row(str(d["line"]), shown(d["hypothesis"]), label, "" if d["loss"] is None else f"{d['loss']:.3f}", update)
    console.print(table)
    s = report["summary"]
    console.print(shown(  # the model may be a path of the user's
        f"{s['dialogs']} dialogs, {s['corrections']} corrections ({s['rejected']} refused, {s['skipped']} skipped), "
        f"{s['confirmed']} accepted with a learned term (learned from), "
        f"{s['steps']} updates ({s['rolled_back']} rolled back), {s['pending']}/{s['accumulation_steps']} pending, "
        f"mean update {s['mean_update_seconds']} s" + (f", dialog WER {s['dialog_wer']:.1f} %" if s["dialog_wer"] is not None else "")
        + f" ({s['model']} on {s['device']})"
    ))
    if report["eval"]:
        table = Table(title="evaluation (before → after)")
        for column in ("file", "WER %", "term recall %", "false insertions"):
            table.add_column(column)
        for name, entry in report["eval"].items():
            before, after = entry["metrics"]["before"] or {}, entry["metrics"]["after"] or {}

            def pair(key):
                b, a = before.get(key), after.get(key)
                return "" if b is None else f"{b} → {a}"

            inserted = "" if before.get("false_insertions") is None else f"{before['false_insertions']}/{before['forbidden']} → {after.get('false_insertions')}/{after.get('forbidden')}"
            table.add_row(shown(name), pair("wer"), pair("term_recall"), inserted)
        console.print(table)
