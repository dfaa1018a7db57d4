"""The README is the front door: it must stay true to the code it describes."""

from __future__ import annotations

import re
from pathlib import Path

from worker.cli import COMMAND_MODULES, build_parser
from worker.settings import ENV_PREFIX, Settings

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    rows = set(re.findall(r"^\| `(LEADSYNC_[A-Z_]+)` \|", README, flags=re.M))
    expected = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    assert expected - rows == set(), "settings missing from the README table"
    assert rows - expected == set(), "README documents settings that do not exist"


def test_every_sub_command_is_documented() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # argparse keeps them here
    names = set(sub.choices)  # type: ignore[arg-type]
    assert len(names) >= len(COMMAND_MODULES)
    for name in names:
        assert f"leadsync {name}" in README, f"`leadsync {name}` is not in the README"
    assert "celery -A worker worker" in README


def test_quick_start_has_two_commands_and_ci_runs_the_test_command() -> None:
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.+?)\n```", quick)
    assert len(commands) == 2
    assert commands[0].endswith("leadsync demo")
    test = commands[1].rsplit(" && ", 1)[1]
    assert test == ".venv/bin/python -m pytest"
    ci = (REPO / ".ci" / "run").read_text()
    assert "pip install --quiet -e '.[dev]'" in ci and "python -m pytest" in ci


def test_documented_procfile_lines_are_the_procfile() -> None:
    procfile = (REPO / "Procfile").read_text()
    for line in ("celery -A worker worker -E --hostname=worker@%h", "celery -A worker beat",
                 "celery -A worker flower"):
        assert line in procfile and line in README
