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
from .common import ConfigFile, Profile, StateDir, console, reports_errors, shown, state_dir


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
        out.print(shown(f"profile {profile!r}: nothing learned yet in {data['state_dir']}"))
        return
    pending, updates, interactions = data["pending_cache"], data["updates"], data["interactions"]
    model = f"{data['model']}, {data['mode']} mode" if data["model"] else "no session yet"  # `vocab add` came first
    latest = data["checkpoints"]["latest"]
    saved = f"{data['checkpoints']['count']} saved, {data['checkpoints']['kept']} kept on disk"
    rows = {
        "state dir": data["state_dir"],
        "pending corrections": f"{pending['entries']}/{pending['accumulation_steps']} ({pending['bytes'] / 1e6:.2f} MB on disk)",
        "cache limit": f"{pending['max_cache_size']} interactions",
        "interactions": ", ".join(f"{k} {v}" for k, v in interactions["by_status"].items() if v) or "none",
        "updates": f"{updates['applied']} applied, {updates['rolled_back']} rolled back",
        "last losses": ", ".join(f"{loss:.3f}" for loss in updates["last_losses"] if loss is not None) or "-",  # None: recorded at a restart
        "checkpoints": saved + (f"; latest at step {latest['step']}: {latest['path']}" if latest else ""),
        "learned terms": ", ".join(data["terms"]["all"]) or "-",
        "store": f"{data['db_bytes'] / 1e3:.0f} kB",
    }
    table = Table(title=shown(f"ffasr — profile {profile} ({model})"), show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows.items():
        table.add_row(name, shown(value))  # paths, terms and names are the user's: never markup
    out.print(table)
    if len(data["profiles"]) > 1:
        console.print(shown(f"other profiles: {', '.join(p for p in data['profiles'] if p != profile)}"))
