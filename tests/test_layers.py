"""The layers import only downstream, configuration comes from Settings, and the wheel lists
every package.

Layers, ground first: ``nenqa`` (settings, domain types, text, model preparation) → ``ingest``
→ ``retriever`` → ``answer`` → ``server`` and ``eval`` (side by side, neither imports the other)
→ ``cli`` and ``benchmarks`` (entry points). Every import counts, those inside functions too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from nenqa.settings import PROJECT_ROOT

LAYER = {"nenqa": 0, "ingest": 1, "retriever": 2, "answer": 3, "server": 4, "eval": 4, "cli": 5}
ENTRY_POINTS = {"cli", "benchmarks"}


def product_modules() -> list[Path]:
    return sorted(
        path
        for package in LAYER
        for path in (PROJECT_ROOT / package).rglob("*.py")
        if "__pycache__" not in path.parts
    )


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in ``tree``, at any depth."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def layer_violations(path: Path) -> list[str]:
    """Each import in the module at ``path`` that runs up (or across) the layers."""
    relative = path.relative_to(PROJECT_ROOT)
    own = relative.parts[0]
    problems = []
    for line, module in imported_modules(ast.parse(path.read_text(encoding="utf-8"))):
        top = module.split(".")[0]
        if top == own:
            continue
        if top in ENTRY_POINTS or (top in LAYER and LAYER[top] >= LAYER[own]):
            problems.append(f"{relative}:{line}: {own} imports {module}")
    return problems


def environment_reads(path: Path) -> list[str]:
    """Each place the module at ``path`` reads a variable from ``os.environ`` / ``os.getenv``.

    Copying the whole environment for a child process (``{**os.environ}``, ``.items()``) is not
    a read of configuration.
    """
    relative = path.relative_to(PROJECT_ROOT)
    reads = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        text = ast.unparse(node)
        if (isinstance(node, ast.Call) and text.startswith(("os.getenv(", "os.environ.get("))) or (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and ast.unparse(node.value) == "os.environ"
        ):
            reads.append(f"{relative}:{node.lineno}: {text}")
    return reads


def test_the_layer_rule_catches_an_import_that_runs_upward(tmp_path, monkeypatch):
    fake_root = tmp_path
    (fake_root / "retriever").mkdir()
    module = fake_root / "retriever" / "bad.py"
    module.write_text("def f():\n    from server.state import load_service\n", encoding="utf-8")
    monkeypatch.setattr(f"{__name__}.PROJECT_ROOT", fake_root)

    assert layer_violations(module) == ["retriever/bad.py:2: retriever imports server.state"]


@pytest.mark.parametrize("path", product_modules(), ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_no_import_runs_up_the_layers(path):
    assert layer_violations(path) == []


def test_only_the_entry_points_read_the_environment():
    reads = [
        read
        for path in product_modules()
        if path.relative_to(PROJECT_ROOT).parts[0] not in ENTRY_POINTS
        for read in environment_reads(path)
    ]
    assert reads == [], "configuration comes from nenqa.settings.Settings"


@pytest.mark.slow
def test_the_wheel_ships_every_package_the_corpus_prompts_and_widget(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path),
            str(PROJECT_ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("nenqa-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    packages = {
        init.relative_to(PROJECT_ROOT).as_posix()
        for package in LAYER
        for init in (PROJECT_ROOT / package).rglob("__init__.py")
    }
    assert packages - shipped == set(), "a package the wheel leaves out"
    for folder, inside in (("data", "nenqa/data"), ("prompts", "nenqa/prompts")):
        bundled = {f"{inside}/{p.name}" for p in (PROJECT_ROOT / folder).iterdir()}
        assert bundled - shipped == set(), f"{folder}/ files the wheel leaves out"
    static = {
        p.relative_to(PROJECT_ROOT).as_posix()
        for p in (PROJECT_ROOT / "server" / "static").iterdir()
    }
    assert static - shipped == set()
    assert {"eval/qa.jsonl", "eval/thresholds.toml"} <= shipped
