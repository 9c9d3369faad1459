"""Text is text: what the user types (a correction, a term, a path) is learned and shown as written.

Rich markup in user text (``[/x]``, ``[bold]``) prints literally and never breaks a table;
terminal escape sequences and control characters are removed from corrections and terms before
anything is learned or stored, and shown escaped (``\\x1b``) wherever else they reach the screen.
"""

from __future__ import annotations

import io
import subprocess
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from test_reliability import ENV, FFASR, one_error_line

from ffasr_cli.cli import app
from ffasr_cli.commands.common import printable, shown
from ffasr_cli.corrections import (
    CONTROL_CHARACTER, MAX_CORRECTION_CHARS, check_correction, clean_text, learned_terms, parse_spoken_correction, typed_correction,
)  # fmt: skip
from ffasr_cli.errors import CorrectionRejected
from ffasr_cli.store import Store

runner = CliRunner()
MARKUP = ["[/x]", "[bold]Kube", "[/bold]", "[red]x[/red]", "\\[x]", "x\\", ":smile:", "[link=file:///etc]y[/link]"]


def glossary(state) -> list[str]:
    with Store.open(state, readonly=True) as store:
        return store.glossary("default")


def cli(*args) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


# --------------------------------------------------------------------------- markup in terms and paths


@pytest.mark.parametrize("term", MARKUP)
def test_a_term_holding_markup_is_listed_and_counted_as_written(tmp_path, term):
    code, out, err = cli("vocab", "add", term, "--state-dir", tmp_path)
    assert code == 0 and out == f"added: {term}\n", err
    for command in (["vocab", "list"], ["stats"]):
        code, out, err = cli(*command, "--state-dir", tmp_path)
        assert code == 0 and "Traceback" not in err, err
        assert term in out, out
    assert glossary(tmp_path) == [term]


@pytest.mark.parametrize("name", ["[/x]", "[red]x[/red]", "a\\", "[bold]"])
def test_a_state_dir_holding_markup_reads_as_a_path(tmp_path, name):
    state = tmp_path / name
    code, out, err = cli("stats", "--state-dir", state)  # nothing there yet: its normal line
    assert code == 0 and out == f"profile 'default': nothing learned yet in {state}\n", err
    code, _, err = cli("vocab", "list", "--state-dir", state)  # an error that holds the path
    assert code == 1 and err == f"ffasr: error: no ffasr store in {state} yet: nothing has been learned there\n"
    assert cli("vocab", "add", "Kube", "--state-dir", state)[0] == 0
    code, out, err = cli("stats", "--state-dir", state)
    assert code == 0 and str(state) in out and "Kube" in out, err


def test_an_error_holding_markup_and_escapes_prints_as_one_literal_line(tmp_path):
    state = tmp_path / "[/x]\x1b[31m"
    code, _, err = cli("vocab", "list", "--state-dir", state)
    assert code == 1 and err == f"ffasr: error: no ffasr store in {tmp_path}/[/x]\\x1b[31m yet: nothing has been learned there\n"


# --------------------------------------------------------------------------- control characters


@pytest.mark.parametrize("raw, stored", [
    ("\x1b[31mrunning\x1b[0m", "running"),        # SGR colour: removed whole, not as "31mrunning"
    ("\x1b]0;title\x07Kube", "Kube"),             # OSC (a window title)
    ("\x9b1mKube", "Kube"),                       # 8-bit CSI
    ("\x1b(BKube", "Kube"),                       # charset designation (tput sgr0)
    ("Kube\x00\x7fctl", "Kubectl"),               # NUL, DEL
    ("Xochitl\tTlaloc\n", "Xochitl Tlaloc"),      # tab and newline: spaces
])  # fmt: skip
def test_a_term_with_control_characters_is_stored_without_them(tmp_path, raw, stored):
    code, out, err = cli("vocab", "add", raw, "--state-dir", tmp_path)
    assert code == 0 and out == f"added: {stored}\n", err
    assert glossary(tmp_path) == [stored]
    assert cli("vocab", "remove", raw, "--state-dir", tmp_path)[:2] == (0, f"removed: {stored}\n")


@pytest.mark.parametrize("raw", ["\x1b[0m", " \t", "\x07"])
def test_a_term_empty_once_cleaned_is_refused(tmp_path, raw):
    code, out, err = cli("vocab", "add", "Kube", raw, "--state-dir", tmp_path)
    assert code == 1 and out == "" and err.startswith("ffasr: error: the term ") and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())  # refused before the store was opened


HEARD = "Deploy the new service to Cuba Nates tomorrow."


@pytest.mark.parametrize("typed, label", [
    ("Deploy the new [/bold] service to Kubernetes tomorrow.", "Deploy the new [/bold] service to Kubernetes tomorrow."),
    ("Deploy the new service to [red]Kubernetes[/red] tomorrow.", "Deploy the new service to [red]Kubernetes[/red] tomorrow."),
    ("Deploy the new service to \x1b[31mKubernetes\x1b[0m tomorrow.", "Deploy the new service to Kubernetes tomorrow."),
    ("Deploy the new service\r\nto Kubernetes\ttomorrow.", "Deploy the new service to Kubernetes tomorrow."),
    ("\x1b[1mKubernetes", "Deploy the new service to Kubernetes tomorrow."),  # a fragment, merged
])  # fmt: skip
def test_a_typed_correction_is_learned_as_plain_text(typed, label):
    correction = typed_correction(typed, HEARD)
    assert correction.label == label
    assert "Kubernetes" in learned_terms(HEARD, correction.label)
    assert not CONTROL_CHARACTER.search(correction.label)


def test_a_spoken_correction_loses_its_control_characters_too():
    assert parse_spoken_correction("No, I said \x1b[31mKubernetes\x1b[0m.", HEARD).label == "Deploy the new service to Kubernetes tomorrow."


@pytest.mark.parametrize("text", ["\x1b[0m", "\x1b[31m\x1b[0m\t"])
def test_a_correction_of_only_control_characters_is_empty(text):
    with pytest.raises(CorrectionRejected, match="The correction is empty"):
        typed_correction(text, HEARD)


@given(st.text())
@settings(max_examples=300, deadline=None)
def test_clean_text_leaves_no_control_character_and_keeps_plain_text(text):
    cleaned = clean_text(text)
    assert not CONTROL_CHARACTER.search(cleaned)
    if not CONTROL_CHARACTER.search(text):
        assert cleaned == text


# --------------------------------------------------------------------------- any text renders as written


@given(st.text(st.characters(exclude_categories=())))  # surrogates too
@settings(max_examples=300, deadline=None)
def test_shown_renders_any_text_literally(text):
    console = Console(record=True, width=100, file=io.StringIO(), color_system=None)
    console.print(shown(text), soft_wrap=True)
    table = Table("cell")
    table.add_row(shown(text))
    console.print(table)
    rendered = console.export_text()
    assert rendered.startswith(printable(text) + "\n")
    assert not CONTROL_CHARACTER.search(printable(text))
    if not CONTROL_CHARACTER.search(text):
        assert printable(text) == text


# --------------------------------------------------------------------------- long corrections


@pytest.mark.parametrize("read", [
    lambda text: typed_correction(text, HEARD),
    lambda text: parse_spoken_correction(text, HEARD),
    lambda text: check_correction(HEARD, text),
], ids=["typed", "spoken", "check"])  # fmt: skip
def test_an_overlong_correction_is_refused_before_it_is_read(read):
    text = "a" + "!" * 32_000 + "b"
    started = time.perf_counter()
    with pytest.raises(CorrectionRejected, match=f"32002 characters long, over the limit of {MAX_CORRECTION_CHARS}"):
        read(text)
    assert time.perf_counter() - started < 2.0


def test_a_long_punctuation_run_within_the_limit_is_read_in_linear_time():
    text = "a" + "!" * (MAX_CORRECTION_CHARS - 2) + "b"
    started = time.perf_counter()
    assert typed_correction(text, HEARD).label == text
    assert time.perf_counter() - started < 2.0


# --------------------------------------------------------------------------- vocab --wait


@pytest.mark.parametrize("command", [["vocab", "add", "Kube"], ["vocab", "remove", "Kube"]], ids=["add", "remove"])
def test_vocab_is_refused_or_waits_for_a_held_lock(tmp_path, command):
    state = tmp_path / "state"
    with Store.open(state) as store:
        store.ensure_profile("default")
        store.add_terms("default", ["Kube"], source="user")
    holder = Store.open(state)
    try:
        refused = subprocess.run([*FFASR, *command, "--state-dir", str(state)], capture_output=True, text=True, env=ENV, timeout=60)
        one_error_line(refused, "another ffasr process")
        waiting = subprocess.Popen([*FFASR, *command, "--state-dir", str(state), "--wait", "60"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, text=True)  # fmt: skip
        time.sleep(1.5)
        assert waiting.poll() is None  # still waiting for the lock
    finally:
        holder.close()
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0 and out.startswith(("added: Kube", "removed: Kube")), err
