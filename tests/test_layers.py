"""The package's shape, proved: the layer contracts hold (import-linter), no module imports another's private
names, there are no import cycles, and the torch-free layers load without torch."""
from __future__ import annotations

import ast
import graphlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# dpaudit/attacks is a link to the top-level attacks/ folder: read those files once, under attacks/.
SOURCES = sorted(p for p in (ROOT / "dpaudit").rglob("*.py") if p.relative_to(ROOT / "dpaudit").parts[0] != "attacks")
SOURCES += sorted((ROOT / "attacks").rglob("*.py"))


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "attacks":
        parts.insert(0, "dpaudit")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path):
    """(imported module, names) of every absolute import of dpaudit in ``path``, at any depth (lazy ones too)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("dpaudit"):
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = _module(path).rsplit(".", node.level if not path.name == "__init__.py" else node.level - 1)[0]
            yield (f"{base}.{node.module}" if node.module else base), [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("dpaudit"):
                    yield a.name, []


MODULES = {_module(p): p for p in SOURCES}


def test_the_layer_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    res = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout


def test_no_private_name_is_imported_across_modules():
    bad = [(m, imp, n) for m, p in MODULES.items() for imp, names in _imports(p) for n in names
           if n.startswith("_") and not n.startswith("__") and imp != m]
    assert not bad, bad


def test_no_import_cycles():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for m, p in MODULES.items():
        for imp, names in _imports(p):
            # `from pkg import sub` imports the submodule pkg.sub when there is one
            targets = [f"{imp}.{n}" for n in names if f"{imp}.{n}" in MODULES] or [imp]
            for t in targets:
                if t in MODULES and t != m and t != "dpaudit":  # the facade's lazy __getattr__ is the top
                    graph[m].add(t)
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


TORCH_FREE = ["dpaudit.core.bounds", "dpaudit.core.scores", "dpaudit.core.splits", "dpaudit.core.signals",
              "dpaudit.core.whitebox", "dpaudit.core.whitebox_stats", "dpaudit.core.power", "dpaudit.core.plan",
              "dpaudit.core.attack_registry", "dpaudit.config", "dpaudit.schema", "dpaudit.report",
              "dpaudit.report.html", "dpaudit.check", "dpaudit.attacks.metrics"]


def test_the_torch_free_layers_load_without_torch():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in TORCH_FREE) +
            "heavy = sorted(k for k in ('torch', 'opacus', 'torchvision', 'ray') if k in sys.modules)\n"
            "assert not heavy, heavy\nprint('ok')")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


@pytest.mark.slow  # the subprocess loads torch through the registries (about 4 s)
def test_facade_names_resolve_lazily():
    """Every name the façade exports resolves, and importing the package loads neither numpy nor torch (the
    names load on first use)."""
    code = ("import sys, dpaudit; assert 'numpy' not in sys.modules and 'torch' not in sys.modules, 'eager'; "
            "missing = [n for n in dpaudit.__all__ if getattr(dpaudit, n, None) is None]; "
            "assert not missing, missing; "
            "assert dpaudit.register_model('x-test-facade') is not None; print(len(dpaudit.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip()) >= 12
