"""``ffasr history``, ``ffasr rollback`` and ``ffasr reset``: what each update taught, and the way back."""

from __future__ import annotations

import shutil
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..errors import FfasrError
from ..state import ProfileFiles
from ..store import Store
from .common import Profile, StateDir, Wait, reports_errors, shown, state_dir


@reports_errors
def history(state: StateDir = None, profile: Profile = "default") -> None:
    """List the updates, oldest first: when, how many corrections, the terms each taught first, rollbacks."""
    with Store.open(state_dir(state), readonly=True) as store:
        updates, taught = store.updates(profile), store.taught_by_step(profile)
    table = Table("step", "when", "what", "corrections", "taught")
    for update in updates:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(update.created_at))
        what = "applied" if update.status == "applied" else f"rolled back: {update.reason or ''}"
        terms = ", ".join(taught.get(update.step, [])) if update.status == "applied" else ""
        table.add_row(str(update.step), when, shown(what), str(update.n_interactions), shown(terms))
    Console().print(table if updates else f"profile {profile!r}: no update yet")


@reports_errors
def rollback(
    to: Annotated[int | None, typer.Option("--to", help="Keep checkpoints up to this update step (default: the one before the latest).")] = None,
    state: StateDir = None,
    profile: Profile = "default",
    wait: Wait = 0.0,
) -> None:
    """Undo updates: go back to an earlier adapter checkpoint (0 = the base model)."""
    root = state_dir(state)
    files = ProfileFiles(root, profile)
    steps = files.steps()
    if not steps:
        raise FfasrError(f"profile {profile!r} has no checkpoints to roll back")
    target = to if to is not None else (steps[-2] if len(steps) > 1 else 0)
    if target >= steps[-1]:
        raise FfasrError(f"step {target} is not before the latest checkpoint (step {steps[-1]})")
    if target and target not in steps:
        raise FfasrError(f"no checkpoint at step {target}; kept: {', '.join(map(str, steps))} (or 0 for the base model)")
    with Store.open(root, lock_timeout=wait) as store:
        removed = files.discard_checkpoints_after(target)  # first: a stop before the store hears of it is mended at the next start
        undone = store.roll_back_to(profile, target, f"user rollback to step {target}")
    typer.echo(f"rolled back to step {target}: removed {len(removed)} checkpoint(s); {undone} correction(s) undone")


@reports_errors
def reset(
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    state: StateDir = None,
    profile: Profile = "default",
    wait: Wait = 0.0,
) -> None:
    """Forget everything a profile learned: adapter checkpoints, pending corrections, vocabulary."""
    if not yes and not typer.confirm(f"Forget everything profile {profile!r} learned?"):
        raise typer.Exit(1)
    root = state_dir(state)
    with Store.open(root, lock_timeout=wait) as store:
        store.reset_profile(profile)
        shutil.rmtree(ProfileFiles(root, profile).root, ignore_errors=True)
    typer.echo(f"profile {profile!r} reset")
