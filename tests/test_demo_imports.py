"""The demo package's import graph: no cycle between its modules, whatever the order they are imported in.

`demo/__init__.py` imports its modules in one fixed order, which can hide a cycle (the first module of a cycle to be
imported decides whether `from .a import x` finds `x`). These tests import the modules without that `__init__`, in
fresh interpreters, each module first in turn, and read the import statements themselves.
"""

import ast
import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

# Found, not imported: a cycle must fail the tests below, not their collection.
DEMO_DIR = Path(importlib.util.find_spec("transformers_sqllava.demo").origin).parent
MODULES = sorted(path.stem for path in DEMO_DIR.glob("*.py") if path.stem != "__init__")

# Runs in a fresh interpreter: argv[1] is a JSON list of orders, each a list of demo module names.
IMPORT_IN_ORDERS = """
import importlib, importlib.util, json, sys, types

import transformers_sqllava

location = importlib.util.find_spec("transformers_sqllava.demo").submodule_search_locations
for order in json.loads(sys.argv[1]):
    for name in [name for name in sys.modules if name.startswith("transformers_sqllava.demo")]:
        del sys.modules[name]
    # The package without its `__init__`: only the modules' own imports decide what is imported when.
    package = types.ModuleType("transformers_sqllava.demo")
    package.__path__ = list(location)
    sys.modules["transformers_sqllava.demo"] = package
    for name in order:
        try:
            importlib.import_module("transformers_sqllava.demo." + name)
        except ImportError as error:
            sys.exit(f"importing {order[:order.index(name) + 1]} in this order failed: {error}")
"""


def _sibling_imports(tree: ast.Module) -> list[tuple[str, ast.AST]]:
    """(demo module imported, the import statement) for each `from .x import ...` / `from . import x`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else [alias.name for alias in node.names]
            found += [(name.split(".")[0], node) for name in names if name.split(".")[0] in MODULES]
    return found


def test_demo_modules_import_in_any_order():
    orders = [[first] + [name for name in MODULES if name != first] for first in MODULES] + [MODULES[::-1]]
    completed = subprocess.run(
        [sys.executable, "-c", IMPORT_IN_ORDERS, json.dumps(orders)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]


def test_demo_import_graph_has_no_cycle_and_no_hidden_import():
    graph = {}
    for name in MODULES:
        tree = ast.parse((DEMO_DIR / f"{name}.py").read_text())
        top_level = {id(node) for node in tree.body}
        imports = _sibling_imports(tree)
        # An import of a sibling inside a function is how a cycle gets dodged rather than removed.
        hidden = [f"line {node.lineno}: .{module}" for module, node in imports if id(node) not in top_level]
        assert not hidden, f"demo/{name}.py imports demo modules inside a function: {hidden}"
        graph[name] = {module for module, _ in imports}

    def visit(name, path):
        assert name not in path, f"import cycle in the demo package: {' -> '.join(path + [name])}"
        for module in graph[name]:
            visit(module, path + [name])

    for name in MODULES:
        visit(name, [])


def test_checkpoint_contract_is_not_the_trainers():
    # The runner (and so `sqllava demo`) reads checkpoints through `record`, with no training code imported.
    assert "train" not in {module for module, _ in _sibling_imports(ast.parse((DEMO_DIR / "run.py").read_text()))}
    assert not _sibling_imports(ast.parse((DEMO_DIR / "record.py").read_text()))


def test_public_names_import_from_the_package():
    demo = importlib.import_module("transformers_sqllava.demo")
    for name in demo.__all__:
        assert getattr(demo, name) is not None, name
