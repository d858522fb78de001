"""The engine's layout: every module imports alone, the import graph inside aam_engine has no
cycle (imports inside functions included), the modules that the plugin loads at start-up do
not pull in torch, and every module says in its docstring what it owns."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

import aam_engine

PKG = Path(aam_engine.__file__).resolve().parent


def modules():
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(name, path, known):
    """The aam_engine modules that ``name`` imports, anywhere in its source."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                mod = base[:len(base) - node.level + 1] + (node.module.split(".")
                                                          if node.module else [])
                mod = ".".join(mod)
            else:
                mod = node.module or ""
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}    # `from . import losses`
    return {m for m in found if m in known and m != name}


def test_the_import_graph_inside_the_engine_has_no_cycle():
    mods = modules()
    graph = {m: imports(m, p, mods) for m, p in mods.items()}
    # a package's __init__ re-exporting its own submodules is not a cycle of design
    for m in graph:
        graph[m] = {d for d in graph[m] if not d.startswith(m + ".")}
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"
    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_every_engine_module_imports_alone_in_a_fresh_interpreter():
    """One interpreter per module, nothing imported before it: an import that works only
    after another module happened to load first fails here."""
    code = ("import importlib, subprocess, sys\n"
            "bad = []\n"
            "for m in sys.argv[1:]:\n"
            "    r = subprocess.run([sys.executable, '-c', 'import ' + m], capture_output=True,"
            " text=True)\n"
            "    if r.returncode: bad.append(m + ': ' + r.stderr.strip().splitlines()[-1])\n"
            "print('\\n'.join(bad)); sys.exit(1 if bad else 0)\n")
    names = [m for m in modules() if m != "aam_engine.__main__"]
    r = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True,
                       cwd=PKG.parent, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("name", ["aam_engine.api", "aam_engine.config", "aam_engine.metrics",
                                  "aam_engine.io.model_dir"])
def test_what_the_plugin_loads_at_start_up_does_not_import_torch(name):
    r = subprocess.run([sys.executable, "-c", f"import sys, {name}; "
                        "print('torch' in sys.modules)"], capture_output=True, text=True,
                       cwd=PKG.parent, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False", f"{name} imports torch at import time"


def test_every_engine_module_starts_with_a_docstring_that_says_what_it_owns():
    missing = [m for m, p in modules().items()
               if len((ast.get_docstring(ast.parse(p.read_text())) or "").split()) < 6]
    assert not missing, missing
