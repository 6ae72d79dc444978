"""Helpers the monitoring tests share: the `drift` command group on its own app, and other test folders' fixture
modules loaded by path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import typer

from pipelines.monitoring import cli

TESTS = Path(__file__).parents[1]


def fixtures_module(name: str, folder: str) -> ModuleType:
    """``tests/<folder>/<name>.py``, loaded by path under its own name (test folders are not packages, and their
    conftest modules collide)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TESTS / folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def drift_app() -> typer.Typer:
    """A fresh app holding only `drift` (learnloop.cli.build_app registers onto one module-level root)."""
    groups = {"drift": typer.Typer()}
    root = typer.Typer()
    cli.register(groups=groups, root=root)
    root.add_typer(groups["drift"], name="drift")
    return root
