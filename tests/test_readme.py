"""README.md stays true: its opted-in ```python blocks run as written, in order.

A block opts in when the line before its opening fence (blank lines allowed in between) is the HTML comment
`<!-- test: run -->`, which GitHub does not render. The blocks run one after another in a fresh namespace each (as
a reader would paste them), in one temporary working directory, so a block may use files an earlier one wrote
(e.g. `./sqllava-tiny`). Keep marked blocks small and offline: tiny local models only, no Hub download.
"""

import os
import re
from pathlib import Path

import pytest
from sqllava_tiny import single_torch_thread

README = Path(__file__).resolve().parents[1] / "README.md"
RUN_MARKER = "<!-- test: run -->"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def marked_python_blocks(text: str) -> list[tuple[int, str]]:
    """`(line number, code)` of every ```python block directly preceded by the run marker."""
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if before.strip() == RUN_MARKER:
            blocks.append((text.count("\n", 0, match.start()) + 2, match.group(1)))
    return blocks


def test_marker_parsing():
    text = (
        "<!-- test: run -->\n```python\na = 1\n```\n\n```python\nskipped = 1\n```\n"
        "<!-- test: run -->\n\n```python\nb = 2\n```\n"
    )
    assert marked_python_blocks(text) == [(3, "a = 1\n"), (12, "b = 2\n")]


def test_readme_python_blocks_run_as_written(tmp_path, monkeypatch, capsys):
    blocks = marked_python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 6, "the README's usage snippets lost their `<!-- test: run -->` markers"
    monkeypatch.chdir(tmp_path)
    with single_torch_thread():
        for line, code in blocks:
            namespace = {"__name__": "__main__"}
            try:
                exec(compile(code, f"{README.name}:{line}", "exec"), namespace)
            except Exception as error:
                pytest.fail(f"The README's python block at line {line} fails: {type(error).__name__}: {error}")
    assert os.path.isdir(tmp_path / "sqllava-tiny")
