"""The ``ffasr`` command line (filled in below)."""
import typer

from . import __version__

app = typer.Typer()


def main() -> None:
    app()
