"""``ffasr stats``: what was learned and what is waiting, read from the store alone (no torch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..config import load_config
from ..errors import StateError
from ..state import ProfileFiles
from ..store import Store
from .common import ConfigFile, Profile, StateDir, console, reports_errors, state_dir


def read_stats(state: Path, profile: str, config: Path | None) -> dict:
    settings = load_config(config).training
    try:
        store = Store.open(state, readonly=True)
    except StateError as error:
        if "no ffasr store" not in str(error):
            raise
        return {"profile": profile, "state_dir": str(state), "exists": False}
    with store:
        data = store.stats(profile)
        data["profiles"] = store.profiles()
        data["terms"]["all"] = [t.term for t in store.terms(profile)]
    files = ProfileFiles(state, profile)
    pending = files.pending_paths()
    count, nbytes = len(pending), sum(f.stat().st_size for f in pending)
    data["checkpoints"]["kept"] = len(files.checkpoint_paths())
    data.update(
        state_dir=str(state),
        pending_cache={"entries": count, "bytes": nbytes, "accumulation_steps": settings.accumulation_steps, "max_cache_size": settings.max_cache_size},
    )
    return data


@reports_errors
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")] = False,
    state: StateDir = None,
    config: ConfigFile = None,
    profile: Profile = "default",
) -> None:
    """Show cache and accumulation state, updates, checkpoints and learned terms of a profile."""
    data = read_stats(state_dir(state), profile, config)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    out = Console()
    if not data.get("exists"):
        out.print(f"profile {profile!r}: nothing learned yet in {data['state_dir']}", highlight=False)
        return
    pending, updates, interactions = data["pending_cache"], data["updates"], data["interactions"]
    model = f"{data['model']}, {data['mode']} mode" if data["model"] else "no session yet"  # `vocab add` came first
    table = Table(title=f"ffasr — profile {profile} ({model})", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("state dir", data["state_dir"])
    table.add_row("pending corrections", f"{pending['entries']}/{pending['accumulation_steps']} ({pending['bytes'] / 1e6:.2f} MB on disk)")
    table.add_row("cache limit", f"{pending['max_cache_size']} interactions")
    table.add_row("interactions", ", ".join(f"{k} {v}" for k, v in interactions["by_status"].items() if v) or "none")
    table.add_row("updates", f"{updates['applied']} applied, {updates['rolled_back']} rolled back")
    losses = ", ".join(f"{loss:.3f}" for loss in updates["last_losses"])
    table.add_row("last losses", losses or "-")
    latest = data["checkpoints"]["latest"]
    saved = f"{data['checkpoints']['count']} saved, {data['checkpoints']['kept']} kept on disk"
    table.add_row("checkpoints", saved + (f"; latest at step {latest['step']}: {latest['path']}" if latest else ""))
    table.add_row("learned terms", ", ".join(data["terms"]["all"]) or "-")
    table.add_row("store", f"{data['db_bytes'] / 1e3:.0f} kB")
    out.print(table)
    if len(data["profiles"]) > 1:
        console.print(f"other profiles: {', '.join(p for p in data['profiles'] if p != profile)}", highlight=False)
