"""The README is the front door: it must stay true to the code, CI and files it describes."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

from worker.base.settings import ENV_PREFIX, Settings
from worker.cli import COMMAND_MODULES, build_parser

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
SECTIONS = ["Quick start", "How it works", "Authorize a real Constant Contact account",
            "Producers", "Configuration", "Operations", "Performance", "Troubleshooting",
            "Development"]
# pytest options that change only what is printed, not which tests run or how.
OUTPUT_ONLY = re.compile(r"^(-q|--quiet|-v|-ra|--durations=\d+)$")


def section(title: str) -> str:
    return README.split(f"\n## {title}", 1)[1].split("\n## ", 1)[0]


def quick_start_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", section("Quick start"))


def sub_commands(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
    """`prefix name` for every sub-command, nested ones (`auth device`, `dlq list`) too."""
    found: list[str] = []
    for action in parser._actions:  # argparse offers no public way to walk sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found.append(f"{prefix} {name}")
                found += sub_commands(child, f"{prefix} {name}")
    return found


def ci_command(start: str) -> list[str]:
    """The first command line of .ci/run that starts with `start`, split like the shell."""
    for line in (REPO / ".ci" / "run").read_text().splitlines():
        if line.strip().startswith(start):
            return shlex.split(line, comments=True)
    raise AssertionError(f".ci/run has no line starting with {start!r}")


def pytest_options(words: list[str]) -> list[str]:
    """The options after `-m pytest`, without those that change only what is printed."""
    rest = iter(words[words.index("pytest") + 1:])
    kept = []
    for word in rest:
        if word == "-p" and next(rest, "") == "no:cacheprovider":
            continue  # no .pytest_cache written; the same tests run
        if not OUTPUT_ONLY.match(word):
            kept.append(word)
    return kept


def test_sections_are_in_order_and_the_delivery_figures_have_their_place() -> None:
    titles = re.findall(r"^## (.+)$", README, flags=re.M)
    assert len(titles) == len(SECTIONS)
    for title, expected in zip(titles, SECTIONS, strict=True):
        assert title.startswith(expected), (title, expected)
    assert "<!-- perf: delivery -->" in section("Performance")


def test_every_setting_is_in_the_configuration_table() -> None:
    rows = set(re.findall(r"^\| `(LEADSYNC_[A-Z_]+)` \|", README, flags=re.M))
    expected = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    assert expected - rows == set(), "settings missing from the README table"
    assert rows - expected == set(), "README documents settings that do not exist"


def test_every_sub_command_is_documented() -> None:
    names = sub_commands(build_parser(), "leadsync")
    top_level = [name for name in names if name.count(" ") == 1]
    assert len(top_level) >= len(COMMAND_MODULES)
    assert {"leadsync auth device", "leadsync dlq replay"} <= set(names)
    missing = [name for name in names if not re.search(re.escape(name) + r"\b", README)]
    assert missing == [], f"not in the README: {missing}"


def test_quick_start_has_two_commands_and_ci_runs_the_same_install_and_tests() -> None:
    demo, tests = quick_start_commands()
    assert demo == "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/leadsync demo"
    venv, install, run = tests.split(" && ")
    assert venv == "python3 -m venv .venv" and ci_command("python3 -m venv")[:3] == venv.split()[:3]
    # CI installs inside an activated venv with `python -m pip ... --quiet`: same target.
    readme_install = [w for w in shlex.split(install)[1:] if w != "--quiet"]
    ci_install = ci_command("python -m pip install --quiet -e")
    assert readme_install == ["install", "-e", ".[dev]"]
    assert [w for w in ci_install[3:] if w != "--quiet"] == readme_install
    # CI's pytest adds only output options: the same tests run the same way (on xdist workers).
    assert run == ".venv/bin/python -m pytest -n 4"
    ci_pytest = ci_command("python -m pytest")
    assert ci_pytest[:3] == ["python", "-m", "pytest"]
    assert pytest_options(ci_pytest) == pytest_options(shlex.split(run)) == ["-n", "4"]


def test_development_repeats_the_quick_start_test_command() -> None:
    commands = re.findall(r"```bash\n(.+?)\n```", section("Development"))
    assert commands[0] == quick_start_commands()[1]
    assert "bash .ci/run" in section("Development")


def test_documented_procfile_lines_are_the_procfile() -> None:
    lines = [line.split(":", 1)[1].strip()
             for line in (REPO / "Procfile").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert len(lines) == 4  # worker, beat, flower, intake
    for command in lines:
        assert command in section("Operations"), command


def test_redis_cli_example_is_the_one_a_test_runs() -> None:
    # tests/leads/test_raw_producer.py runs the block marked in docs/notes/producers.md.
    notes = (REPO / "docs" / "notes" / "producers.md").read_text()
    tested = notes.split("<!-- redis-cli-example", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    shown = section("Producers").split("```sh\n", 1)[1].split("```", 1)[0]
    assert shown == tested
