"""The layer map of docs/layout.md holds: every module of the package sits in one layer, and
imports only modules of its own layer or of layers below it (its source is read, so imports inside
functions count too).  A fresh interpreter also shows that loading a config loads neither torch
nor the metrics."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "xinggan"


def layers() -> list[tuple[str, list[str]]]:
    """(layer, [module prefixes]) from the top of the map down, read from docs/layout.md."""
    text = (REPO / "docs" / "layout.md").read_text()
    block = text.split("## Layers", 1)[1].split("```")[1]
    out: list[tuple[str, list[str]]] = []
    for line in block.strip("\n").splitlines():
        name = line[:17].strip()
        paths = re.findall(r"xinggan/[\w/]*(?:\.py)?", line)
        if name:
            out.append((name, []))
        out[-1][1].extend(p.removesuffix(".py").removesuffix("/").replace("/", ".")
                          .removesuffix(".__init__") for p in paths)
    return out


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def level(module: str, table) -> int:
    """The position of ``module``'s layer, counted from the bottom; -1 when no layer holds it."""
    for depth, (_, prefixes) in enumerate(reversed(table)):
        if any(module == p or (p != "xinggan" and module.startswith(p + ".")) for p in prefixes):
            return depth
    return -1


def imported_modules(source: str, package: str) -> set[str]:
    """The ``xinggan`` modules a module of ``package`` imports anywhere in its ``source``
    (relative imports resolved)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")
                module = ".".join(base[:len(base) - node.level + 1] + ([module] if module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return {n for n in names if n == "xinggan" or n.startswith("xinggan.")}


def test_the_map_is_read_and_places_known_modules():
    table = layers()
    assert [name for name, _ in table][:2] == ["entry points", "experiments"]
    assert level("xinggan.metrics.fid", table) < level("xinggan.config", table) \
        < level("xinggan.training.loop", table)
    assert level("xinggan.nowhere", table) == -1
    assert imported_modules("from ..data import pairs\nfrom . import fid\n", "xinggan.metrics") \
        >= {"xinggan.data.pairs", "xinggan.metrics.fid"}


def test_every_module_is_on_the_map():
    table = layers()
    lost = [module_name(p) for p in sorted(PACKAGE.rglob("*.py")) if level(module_name(p), table) < 0]
    assert lost == [], f"add these to the Layers block of docs/layout.md: {lost}"


def upward(source: str, module: str, table, package: str = "") -> list[str]:
    """What ``module`` (of ``source``, in ``package``) imports from layers above its own."""
    package = package or module.rpartition(".")[0]
    return sorted(m for m in imported_modules(source, package)
                  if m != "xinggan" and level(m, table) > level(module, table))


def test_imports_only_point_down():
    table = layers()
    found = {module_name(p): upward(p.read_text(encoding="utf-8"), module_name(p), table,
                                    module_name(p) if p.name == "__init__.py" else "")
             for p in sorted(PACKAGE.rglob("*.py"))}
    assert {k: v for k, v in found.items() if v} == {}


def test_an_import_upward_inside_a_function_is_caught():
    table = layers()
    source = "import numpy\n\ndef f():\n    from ..training import Trainer\n"
    assert upward(source, "xinggan.data.probe", table) == ["xinggan.training",
                                                            "xinggan.training.Trainer"]
    assert upward(source, "xinggan.bench.probe", table) == []


def modules_loaded_by(code: str) -> set[str]:
    """The modules in ``sys.modules`` after ``code`` runs in a new interpreter."""
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    return set(json.loads(run.stdout.splitlines()[-1]))


@pytest.mark.parametrize("code", ["import xinggan.config",
                                  "from xinggan.config import load_config\n"
                                  f"load_config({str(REPO / 'configs' / 'toy.yaml')!r})"])
def test_a_config_loads_without_torch_or_the_metrics(code):
    loaded = modules_loaded_by(code)
    assert "xinggan.config" in loaded
    assert not [m for m in loaded if m in ("torch", "numpy") or m.startswith("xinggan.metrics")]
