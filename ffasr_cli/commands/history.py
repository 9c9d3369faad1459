"""``ffasr rollback`` and ``ffasr reset``: the way back from something learned wrongly."""

from __future__ import annotations

import shutil
from typing import Annotated

import typer

from ..errors import FfasrError
from ..state import ProfileFiles
from ..store import Store
from .common import Profile, StateDir, Wait, reports_errors, state_dir


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
        removed = files.discard_checkpoints_after(target)
        store.forget_checkpoints_after(profile, target)
        store.record_update(profile, step=target, loss=None, n_interactions=0, status="rolled_back", reason=f"user rollback to step {target}")
    typer.echo(f"rolled back to step {target}: removed {len(removed)} checkpoint(s)")


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
