"""``ffasr vocab list|add|remove``: the glossary of learned terms, which fills itself and stays editable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..corrections import clean_text, word_key
from ..errors import FfasrError
from ..guard import fixed_back
from ..store import Store
from .common import Profile, StateDir, Wait, printable, reports_errors, shown, state_dir

app = typer.Typer(help="Show and edit the learned vocabulary (passed to Whisper as its prompt).", no_args_is_help=True)

Terms = Annotated[list[str], typer.Argument(help="Terms, e.g. Kubernetes Xochitl.", show_default=False)]


def cleaned_terms(terms: list[str]) -> list[str]:
    """The terms as words only (``clean_text``); FfasrError, before anything is written, for one with none."""
    words = [clean_text(term).strip() for term in terms]
    for term, word in zip(terms, words):
        if not word:
            raise FfasrError(f"the term {term!r} is empty once its control characters and spaces are removed")
    return words


@app.command("list")
@reports_errors
def list_terms(state: StateDir = None, profile: Profile = "default") -> None:
    """List the terms, most corrected first, and the sentences each was corrected back out of."""
    with Store.open(state_dir(state), readonly=True) as store:
        terms = store.terms(profile)
        away = fixed_back_sentences(store.interactions(profile), [term.term for term in terms])
    table = Table("term", "count", "source", "corrected back in")
    for term in terms:
        table.add_row(shown(term.term), str(term.count), term.source, Text("\n").join(shown(s) for s in away.get(word_key(term.term), [])))
    Console().print(table)


def fixed_back_sentences(interactions, terms: list[str]) -> dict[str, list[str]]:
    """Per term key, the sentences in which a correction put back what was said where the term had
    been shown (``guard.fixed_back``): where the term guard no longer shows it."""
    found: dict[str, list[str]] = {}
    for row in interactions:
        if row.teaches:
            for term in fixed_back(row.hypothesis, row.label, terms):
                found.setdefault(term, []).append(row.label)
    return found


@app.command("add")
@reports_errors
def add(terms: Terms, state: StateDir = None, profile: Profile = "default", wait: Wait = 0.0) -> None:
    """Add terms you want recognised (before ever correcting them)."""
    terms = cleaned_terms(terms)
    _add(terms, state, profile, wait)
    typer.echo(f"added: {', '.join(terms)}")


@app.command("import")
@reports_errors
def import_terms(
    source: Annotated[Path, typer.Argument(help="A text file, one term a line ('#' starts a comment).", show_default=False)],
    state: StateDir = None,
    profile: Profile = "default",
    wait: Wait = 0.0,
) -> None:
    """Add every term of a plain list (a team's vocabulary, or another profile's `vocab export`)."""
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise FfasrError(f"cannot read {source} ({getattr(error, 'strerror', None) or error})") from None
    terms = cleaned_terms([line for line in lines if line.strip() and not line.lstrip().startswith("#")])
    _add(terms, state, profile, wait)
    typer.echo(f"added {len(terms)} term(s) from {printable(str(source))}")


@app.command("export")
@reports_errors
def export_terms(state: StateDir = None, profile: Profile = "default") -> None:
    """Print the terms, one a line, most corrected first (for `vocab import` elsewhere)."""
    with Store.open(state_dir(state), readonly=True) as store:
        for term in store.terms(profile):
            typer.echo(term.term)


def _add(terms: list[str], state, profile: str, wait: float) -> None:
    with Store.open(state_dir(state), lock_timeout=wait) as store:
        store.ensure_profile(profile)  # model and mode unknown until its first session
        store.add_terms(profile, terms, source="user")


@app.command("remove")
@reports_errors
def remove(terms: Terms, state: StateDir = None, profile: Profile = "default", wait: Wait = 0.0) -> None:
    """Remove terms from the glossary; with the term guard on, the adapter stops writing them too."""
    terms = cleaned_terms(terms)
    with Store.open(state_dir(state), lock_timeout=wait) as store:
        missing = [t for t in terms if not store.remove_term(profile, t)]
    if missing:
        typer.echo(f"not in the vocabulary: {', '.join(missing)}", err=True)
        raise typer.Exit(1)
    typer.echo(f"removed: {', '.join(terms)}")
