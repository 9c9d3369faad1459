"""The ``ffasr`` command line: one Typer app, one module per command under ``commands/``.

Nothing here imports torch or whisper: ``ffasr --help``, ``stats`` and ``vocab`` stay fast; the
commands that decode import the engine when they run.
"""

from __future__ import annotations

import typer

from . import __version__
from .commands import export, history, listen, profile, replay, stats, vocab

app = typer.Typer(
    name="ffasr",
    help="A local Whisper that learns from your corrections, without re-running the audio.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ffasr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Transcribe, correct, learn: `ffasr listen` live, `ffasr replay` from files."""


app.command("listen")(listen.listen)
app.command("replay")(replay.replay)
app.command("stats")(stats.stats)
app.command("export")(export.export)
app.add_typer(vocab.app, name="vocab")
app.add_typer(profile.app, name="profile")
app.command("history")(history.history)
app.command("rollback")(history.rollback)
app.command("reset")(history.reset)


def main() -> None:
    app()
