"""The layer order of the package: data below metrics, both below config, inference, models, training.

Two checks: a fresh interpreter imports one subpackage and lists the ``xinggan`` modules that came
with it (``sys.modules``); and the source of every module of ``xinggan.data`` / ``xinggan.metrics``
is read for import statements, including those inside functions, which an import alone never runs.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "xinggan"

# What each lower layer may not load: the layers above it.
FORBIDDEN = {
    "xinggan.data": ("xinggan.metrics", "xinggan.models", "xinggan.training", "xinggan.prep"),
    "xinggan.metrics": ("xinggan.inference", "xinggan.config", "xinggan.training", "xinggan.models",
                        "xinggan.prep"),
}


def modules_loaded_by(code: str) -> set[str]:
    """The ``xinggan`` modules in ``sys.modules`` after ``code`` runs in a new interpreter."""
    script = (code + "\nimport json, sys\n"
              "print(json.dumps(sorted(m for m in sys.modules if m == 'xinggan' or m.startswith('xinggan.'))))\n")
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    return set(json.loads(run.stdout.splitlines()[-1]))


def within(modules: set[str], layers) -> list[str]:
    """The members of ``layers`` (package names) that ``modules`` holds, or any module below them."""
    return [layer for layer in layers if any(m == layer or m.startswith(layer + ".") for m in modules)]


def test_the_module_lists_see_what_an_import_loads():
    # The helpers themselves: importing the data layer loads it, and importing a module above
    # the metrics (the inference layer) is reported as such.
    loaded = modules_loaded_by("import xinggan.inference")
    assert "xinggan.data.pairs" in loaded
    assert "xinggan.inference" in within(loaded, FORBIDDEN["xinggan.metrics"])


def test_metrics_import_loads_no_layer_above_it():
    loaded = modules_loaded_by("import xinggan.metrics")
    assert "xinggan.metrics.evaluate" in loaded
    assert within(loaded, FORBIDDEN["xinggan.metrics"]) == []


def test_data_import_loads_no_layer_above_it():
    loaded = modules_loaded_by("import xinggan.data")
    assert "xinggan.data.pairs" in loaded
    assert within(loaded, FORBIDDEN["xinggan.data"]) == []


def test_config_import_does_not_load_metrics():
    loaded = modules_loaded_by("import xinggan.config")
    assert "xinggan.config" in loaded
    assert within(loaded, ["xinggan.metrics"]) == []


def test_loading_a_config_does_not_load_metrics():
    loaded = modules_loaded_by("from xinggan.config import load_config\n"
                               f"load_config({str(REPO / 'configs' / 'toy.yaml')!r})")
    assert within(loaded, ["xinggan.metrics"]) == []


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports anywhere in its source (relative ones resolved)."""
    package = ".".join(path.relative_to(REPO).parts[:-1])  # of a module and of an __init__.py alike
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = ".".join(base[:len(base) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return names


def test_import_resolution_of_the_source_check():
    # The reader resolves relative imports against the file's package, at every level.
    layouts = imported_modules(PACKAGE / "metrics" / "layouts.py")
    assert "xinggan.data.pairs" in layouts
    evaluate = imported_modules(PACKAGE / "metrics" / "evaluate.py")
    assert "xinggan.metrics.accumulators" in evaluate
    inference = imported_modules(PACKAGE / "inference.py")
    assert "xinggan.config" in inference and "xinggan.models" in inference  # the latter inside a function


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_module_of_a_layer_imports_a_layer_above_it(layer):
    folder = PACKAGE / layer.split(".")[1]
    offending = {}
    for path in sorted(folder.rglob("*.py")):
        bad = within(imported_modules(path), FORBIDDEN[layer])
        if bad:
            offending[str(path.relative_to(REPO))] = bad
    assert offending == {}
