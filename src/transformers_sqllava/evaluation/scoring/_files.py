# Copyright 2026 The transformers-sqllava authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Reading and writing the benchmarks' files: JSON, JSON Lines (strict, or skipping broken lines as the VQAv2 and
VizWiz converters do), with errors that name the file and line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


PathLike = str | os.PathLike


def read_json(path: PathLike, what: str = "file") -> Any:
    """Load a JSON file; a missing or malformed file raises a `ValueError` that names it and says what it should be."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No {what} at {str(path)!r}.")
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); expected the {what}.") from None


def read_jsonl(path: PathLike, what: str = "file", skip_bad_lines: bool = False) -> tuple[list[dict], int]:
    r"""
    Load a JSON Lines file.

    Args:
        path (`str` or `os.PathLike`): The file.
        what (`str`, *optional*): How errors name it (`"result file"`, ...).
        skip_bad_lines (`bool`, *optional*, defaults to `False`): Count lines that are not JSON instead of raising,
            as LLaVA's `convert_vqav2_for_submission.py` and `convert_vizwiz_for_submission.py` do (`error_line`).
            Blank lines are skipped either way.

    Returns:
        `tuple[list[dict], int]`: the rows, and how many lines were skipped as broken.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No {what} at {str(path)!r}.")
    rows, broken = [], 0
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                if not skip_bad_lines:
                    raise ValueError(f"{path}, line {number}: not JSON ({error}); expected the {what}.") from None
                broken += 1
    return rows, broken


def read_answers(path: PathLike, what: str = "result file") -> list[dict]:
    """A model's answers as `model_vqa*.py` writes them: one `{"question_id", "prompt", "text", ...}` per line."""
    rows, _ = read_jsonl(path, what)
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or "question_id" not in row or "text" not in row:
            raise ValueError(
                f"{path}: answer {number} has no 'question_id' and 'text' (got {str(row)[:120]!r}); expected the "
                "JSON Lines written by LLaVA's model_vqa*.py scripts."
            )
    return rows


def write_json(path: PathLike, data: Any, indent: int | None = None) -> str:
    """Write `data` as JSON, creating the parent folder; returns the path written."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as file:
        json.dump(data, file, indent=indent)
    return str(path)


def write_jsonl(path: PathLike, rows: list[dict]) -> str:
    """Write one JSON object a line, creating the parent folder; returns the path written."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as file:
        file.writelines(json.dumps(row) + "\n" for row in rows)
    return str(path)


def percent(numerator: float, denominator: float) -> float | None:
    """`100 * numerator / denominator`, or `None` when there is nothing to divide by."""
    return 100.0 * numerator / denominator if denominator else None
