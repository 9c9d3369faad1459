"""``ffasr profile export|import``: carry what a profile learned to another machine, or share it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import FfasrError
from .common import ConfigFile, Device, ModeOption, ModelName, Profile, StateDir, build_config, reports_errors, shown, console, state_dir

app = typer.Typer(help="Export a profile to one file, or import one (adapter, learner state and vocabulary).", no_args_is_help=True)

Archive = Annotated[Path, typer.Argument(help="The profile archive (a zip of safetensors and JSON).", show_default=False)]


@app.command("export")
@reports_errors
def export(target: Archive, state: StateDir = None, profile: Profile = "default") -> None:
    """Write the profile's newest checkpoint, the examples it replays and its vocabulary to one file."""
    from ..profiles import export_profile

    manifest = export_profile(state_dir(state), profile, target)
    note = f"; {manifest['pending_not_included']} pending correction(s) not included" if manifest["pending_not_included"] else ""
    console.print(shown(f"exported profile {profile!r} at step {manifest['step']} ({len(manifest['terms'])} terms) to {target}{note}"))


@app.command("import")
@reports_errors
def import_(
    source: Archive,
    as_name: Annotated[str | None, typer.Option("--as", help="The new profile's name (default: the exported profile's).")] = None,
    state: StateDir = None,
    config: ConfigFile = None,
    model: ModelName = None,
    mode: ModeOption = None,
    device: Device = None,
) -> None:
    """Add an exported profile here, after checking that it fits this model and adapter."""
    from ..profiles import install_profile, read_archive

    manifest, members = read_archive(source)
    name = as_name or manifest["profile"]
    settings = build_config(config, model or manifest["model"] or None, mode, device, None)
    _check_fits(settings, manifest, members["checkpoint.safetensors"], source)
    step = install_profile(state_dir(state), name, manifest, members, source)
    console.print(shown(f"imported {source} as profile {name!r} at step {step} ({len(manifest['terms'])} terms)"))


def _check_fits(settings, manifest: dict, checkpoint: bytes, source: Path) -> None:
    """The archive's model and adapter are this machine's, and its tensors have the shapes they need."""
    from safetensors.torch import load

    from ..agent import ASRAgent
    from ..state import adapter_tensors

    agent = ASRAgent(config=settings)
    ours, theirs = agent.identity(), manifest["identity"]
    if ours != theirs:
        raise FfasrError(
            f"{source} was trained for model {theirs.get('model')!r} with adapter {theirs.get('adapter')!r}, "
            f"not {ours['model']!r} with {ours['adapter']!r}: import it with those settings (--model, --mode, --config)"
        )
    adapter = adapter_tensors(load(checkpoint))
    shapes = {name: tuple(p.shape) for name, p in agent.learner.trainable.items()}
    if {name: tuple(t.shape) for name, t in adapter.items()} != shapes:
        raise FfasrError(f"{source}: the adapter's tensors do not fit {ours['model']} with {ours['adapter']}: not imported")
