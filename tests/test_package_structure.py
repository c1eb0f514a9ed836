"""The package's shape: no import cycles, Hub files that import only what remote code can, small files and classes,
and a repository that explains itself (no pointer to a document outside it)."""

import ast
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

import transformers_sqllava

PACKAGE_DIR = Path(transformers_sqllava.__file__).parent
REPOSITORY = PACKAGE_DIR.parents[1]
PACKAGE = "transformers_sqllava"
# Shipped by `save_pretrained` as remote code: they may import only these (and each other).
HUB_FILES = (
    "configuration_sqllava",
    "modeling_sqllava",
    "processing_sqllava",
    "chat_template_sqllava",
    "image_processing_sqllava",
)
HUB_FILE_IMPORTS = {"torch", "transformers", "numpy", "PIL", "huggingface_hub", "__future__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def imported_modules(name: str, path: Path) -> set[str]:
    """Every module of the package that `name` imports, at any depth of its code (function-level imports too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from . import x` may name a submodule; `from .m import f` names a module.
            targets = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES] or [base]
        else:
            continue
        found.update(target for target in targets if target in MODULES and target != name)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for successor in sorted(graph[node]):
            if state.get(successor) == 1:
                return stack[stack.index(successor) :] + [successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_import_graph_has_no_cycles():
    graph = {name: imported_modules(name, path) for name, path in MODULES.items()}
    # A package's `__init__` re-exports its submodules; a submodule importing names back from its own package's
    # `__init__` closes a cycle, which these edges keep visible.
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"
    # The detector sees cycles: two modules importing each other.
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]


@pytest.mark.parametrize("order_seed", [0, 1, 2])
def test_every_module_imports_in_a_fresh_interpreter_in_any_order(order_seed):
    names = sorted(MODULES)
    random.Random(order_seed).shuffle(names)
    if order_seed == 0:
        names.reverse()
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\nprint('OK')"
    result = subprocess.run(
        [sys.executable, "-c", script, *names], capture_output=True, text=True, timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


@pytest.mark.parametrize("hub_file", HUB_FILES)
def test_hub_files_import_only_torch_transformers_and_each_other(hub_file):
    tree = ast.parse(MODULES[f"{PACKAGE}.{hub_file}"].read_text())
    stdlib = set(sys.stdlib_module_names)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            assert node.level == 1 and node.module in HUB_FILES, f"{hub_file} imports .{node.module}"
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in HUB_FILE_IMPORTS or top in stdlib, f"{hub_file} imports {name}"


def test_files_and_classes_stay_small():
    too_long = {}
    for name, path in MODULES.items():
        source = path.read_text()
        if source.count("\n") > 600:
            too_long[name] = source.count("\n")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 300:
                too_long[f"{name}.{node.name}"] = node.end_lineno - node.lineno + 1
    assert not too_long, f"over 600 lines per file / 300 per class: {too_long}"


def tracked_files() -> list[Path]:
    result = subprocess.run(["git", "ls-files"], cwd=REPOSITORY, capture_output=True, text=True)
    if result.returncode != 0:  # not a git checkout (an sdist): the files on disk
        return [path for path in REPOSITORY.rglob("*") if path.is_file() and ".git" not in path.parts]
    return [REPOSITORY / line for line in result.stdout.splitlines()]


def test_the_repository_points_only_inside_itself():
    # The development notes' names, spelt in pieces so that this file does not itself point at them.
    outside = tuple("".join(parts) for parts in (("../", "shared"), ("sqllava-reference", ".md"),
                                                 ("paper-notes", ".md"), ("design", ".md"), ("\u00a7",)))
    offenders = []
    for path in tracked_files():
        if path.suffix not in {".py", ".md", ".jinja", ".cfg", ".toml", ".yaml", ".json", ""} or not path.is_file():
            continue
        text = path.read_text(errors="ignore")
        offenders += [f"{path.relative_to(REPOSITORY)}: {marker}" for marker in outside if marker in text]
    assert not offenders, "\n".join(offenders[:40])


def test_docs_links_resolve():
    # Every `docs/<page>.md#anchor` named in code and docs is a page of docs/ with that heading.
    def slug(heading: str) -> str:
        return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")

    anchors = {}
    for page in (REPOSITORY / "docs").glob("*.md"):
        anchors[page.name] = {slug(line.lstrip("#")) for line in page.read_text().splitlines() if line.startswith("#")}
    missing = []
    pattern = re.compile(r"(?<![/\w])docs/([\w\-]+\.md)(?:#([\w\-]+))?")  # not inside a URL
    for path in tracked_files():
        if path.suffix not in {".py", ".md", ".jinja"} or not path.is_file():
            continue
        for page, anchor in pattern.findall(path.read_text(errors="ignore")):
            if page not in anchors or (anchor and anchor not in anchors[page]):
                missing.append(f"{path.relative_to(REPOSITORY)}: docs/{page}#{anchor}")
    assert not missing, "\n".join(sorted(set(missing))[:40])


def test_every_name_in_the_api_page_exists():
    # docs/api.md lists each module's public names; a rename that forgets the page fails here.
    import importlib

    missing = []
    module = None
    for line in (REPOSITORY / "docs" / "api.md").read_text().splitlines():
        header = re.fullmatch(r"## `(transformers_sqllava(?:\.\w+)*)`", line.strip())
        if header:
            module = importlib.import_module(header.group(1))
            continue
        if line.startswith("## "):
            module = None  # a section about several modules: not checked name by name
        submodule = re.fullmatch(r"`([\w.]+)`:", line.strip())  # "`training.data`:" opens a submodule's table
        if submodule and module is not None:
            module = importlib.import_module(f"{PACKAGE}.{submodule.group(1)}")
            continue
        cell = re.match(r"\| `([A-Za-z_][\w.]*)", line)
        if module is not None and cell and cell.group(1) != "name":
            target = module
            for part in cell.group(1).split("."):
                target = getattr(target, part, None)
            if target is None:
                missing.append(f"{module.__name__}.{cell.group(1)}")
    assert not missing, f"docs/api.md names that do not exist: {missing}"
