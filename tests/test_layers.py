"""The package's shape: which modules may reach the Celery app, how long a module may grow.

Read from the source (the AST of every module under worker/), not by importing anything, so a
lazy import inside a function counts the same as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

WORKER = Path(__file__).resolve().parents[1] / "worker"
APP_MODULE = "worker.celery"
# The layers above the app: the CLI and the task wrappers may build or use it.
MAY_IMPORT_APP = ("worker/cli/", "worker/tasks/")
MAX_LINES = 300
# Modules still over MAX_LINES, with their length when listed: this list only shrinks.
# worker/delivery.py: 304 on main, 308 with the request_refresh parameter; issue 10 splits it.
OVER_LIMIT = {"worker/delivery.py": 308}


def _modules() -> list[Path]:
    return sorted(WORKER.rglob("*.py"))


def _module_name(path: Path, root: Path = WORKER.parent) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(path: Path, *, top_level_only: bool = False,
                   root: Path = WORKER.parent) -> set[str]:
    """Every module `path` imports (`from a import b` yields `a` and `a.b`), resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_nothing_below_the_cli_and_tasks_imports_the_celery_app() -> None:
    offenders = []
    for path in _modules():
        relative = path.relative_to(WORKER.parent).as_posix()
        if relative.startswith(MAY_IMPORT_APP) or relative == "worker/celery.py":
            continue
        if APP_MODULE in imported_names(path):
            offenders.append(relative)
    assert not offenders, f"modules below the app import {APP_MODULE}: {offenders}"


def test_the_checker_sees_a_lazy_import_of_the_app(tmp_path: Path) -> None:
    (tmp_path / "worker" / "auth").mkdir(parents=True)
    module = tmp_path / "worker" / "auth" / "lazy.py"
    module.write_text("def f():\n    from worker.celery import make_app\n    return make_app\n")
    assert APP_MODULE in imported_names(module, root=tmp_path)
    assert APP_MODULE not in imported_names(module, root=tmp_path, top_level_only=True)
    for spelling in ("from worker import celery\n", "from .. import celery\n",
                     "import worker.celery\n"):
        module.write_text(spelling)
        assert APP_MODULE in imported_names(module, root=tmp_path), spelling


def test_every_module_is_under_the_line_limit_except_a_shrinking_allowlist() -> None:
    lengths = {path.relative_to(WORKER.parent).as_posix(): len(path.read_text().splitlines())
               for path in _modules()}
    too_long = {name: n for name, n in lengths.items()
                if n >= MAX_LINES and name not in OVER_LIMIT}
    assert not too_long, f"modules of {MAX_LINES} lines or more (split along a seam): {too_long}"
    grown = {name: lengths.get(name) for name, limit in OVER_LIMIT.items()
             if lengths.get(name, 0) > limit}
    assert not grown, f"allowlisted modules grew past their listed length: {grown}"
    fixed = sorted(name for name in OVER_LIMIT if lengths.get(name, 0) < MAX_LINES)
    assert not fixed, f"now under {MAX_LINES} lines: remove from OVER_LIMIT: {fixed}"
