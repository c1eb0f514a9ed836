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
"""The upload files of the benchmarks scored on a server, as LLaVA's `scripts/convert_*_for_submission.py` write them.

Each builder returns the rows of the file (so they can be checked or scored locally) and each writer writes them in the
original's layout:

- VQAv2 (`convert_vqav2_for_submission.py`): a JSON list of `{"question_id", "answer"}`, one per test question, the
  answer through [`normalize_answer`], `""` when missing;
- VizWiz (`convert_vizwiz_for_submission.py`): a JSON list of `{"image", "answer"}`, every question required;
- GQA (`convert_gqa_for_eval.py`): a JSON list of `{"questionId", "prediction"}`, the text without trailing periods,
  lower-cased;
- MM-Vet (`convert_mmvet_for_eval.py`): a JSON object `{"v1_<question_id>": text}`;
- MMBench (`convert_mmbench_for_submission.py`): an Excel sheet, the TSV without `hint`, `category`, `source`,
  `image`, `comment`, `l2-category`, with a `prediction` column 7th;
- SEED-Bench (`convert_seed_for_submission.py`): JSON Lines of `{"question_id", "prediction"}` in the annotation's
  order.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ._files import PathLike, read_jsonl, write_json, write_jsonl
from .answer_processing import normalize_answer


MMBENCH_DROPPED_COLUMNS = ("hint", "category", "source", "image", "comment", "l2-category")
MMBENCH_PREDICTION_POSITION = 6


def vqav2_upload_rows(answers: list[dict], test_questions: list[dict]) -> tuple[list[dict], int]:
    """One `{"question_id", "answer"}` per test question, in the test file's order; the answer normalised, `""` when
    the model gave none. Returns the rows and how many were missing."""
    texts = {answer["question_id"]: answer["text"] for answer in answers}
    rows, missing = [], 0
    for question in test_questions:
        question_id = question["question_id"]
        if question_id in texts:
            rows.append({"question_id": question_id, "answer": normalize_answer(texts[question_id])})
        else:
            rows.append({"question_id": question_id, "answer": ""})
            missing += 1
    return rows, missing


def vizwiz_upload_rows(answers: list[dict], test_questions: list[dict]) -> list[dict]:
    """One `{"image", "answer"}` per test question, answers normalised; every question must have an answer."""
    texts = {answer["question_id"]: answer["text"] for answer in answers}
    missing = [question["question_id"] for question in test_questions if question["question_id"] not in texts]
    if missing:
        raise ValueError(
            f"{len(missing)} VizWiz question(s) have no answer in the result file (first: {missing[:5]}); the "
            "VizWiz server needs every test question (the original script asserts the same)."
        )
    return [
        {"image": question["image"], "answer": normalize_answer(texts[question["question_id"]])}
        for question in test_questions
    ]


def gqa_prediction_rows(answers: list[dict]) -> list[dict]:
    """`{"questionId", "prediction"}` per answer: the text with its trailing periods removed, lower-cased."""
    return [
        {"questionId": answer["question_id"], "prediction": answer["text"].rstrip(".").lower()} for answer in answers
    ]


def mmvet_results(answers: list[dict]) -> dict[str, str]:
    """MM-Vet's result file: `{"v1_<question_id>": text}` (later answers to the same question win)."""
    return {f"v1_{answer['question_id']}": answer["text"] for answer in answers}


def seed_upload_rows(answers: list[dict], annotation: dict) -> list[dict]:
    """One `{"question_id", "prediction"}` per SEED-Bench question in the annotation's order; a result keyed by the
    integer id is found for a string id too, as in the original."""
    by_id = {answer["question_id"]: answer for answer in answers}
    rows = []
    for question in annotation["questions"]:
        question_id = question["question_id"]
        answer = by_id.get(question_id)
        if answer is None:
            answer = by_id.get(_int_or_none(question_id))
        if answer is None:
            raise ValueError(
                f"SEED-Bench question {question_id!r} has no answer in the result file; the upload needs every "
                "question (the original script fails the same way)."
            )
        rows.append({"question_id": question_id, "prediction": answer["text"]})
    return rows


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def read_mmbench_table(path: PathLike) -> tuple[list[str], list[dict[str, str]]]:
    """The MMBench TSV's columns and rows (values as strings, `""` for empty cells), read the way pandas' `read_table`
    splits it: tab-separated, double-quoted fields may hold tabs and newlines."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No MMBench annotation file (TSV) at {str(path)!r}.")
    with open(path, encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file, delimiter="\t")
        rows = [dict(row) for row in reader]
        columns = list(reader.fieldnames or [])
    if "index" not in columns:
        raise ValueError(f"{path} has no 'index' column; expected an MMBench TSV (e.g. mmbench_dev_20230712.tsv).")
    return columns, rows


def mmbench_upload_table(columns: list[str], rows: list[dict], answers: list[dict]) -> tuple[list[str], list[list]]:
    """The upload sheet: the TSV's columns less [`MMBENCH_DROPPED_COLUMNS`], `prediction` inserted 7th, each row's
    prediction the answer whose `question_id` is its `index` (empty when there is none)."""
    missing_columns = [name for name in MMBENCH_DROPPED_COLUMNS if name not in columns]
    if missing_columns:
        raise ValueError(
            f"The MMBench TSV lacks the column(s) {missing_columns}, which the upload drops; expected the official "
            "mmbench_dev_20230712.tsv / mmbench_dev_cn_20231003.tsv layout."
        )
    kept = [name for name in columns if name not in MMBENCH_DROPPED_COLUMNS]
    header = kept[:MMBENCH_PREDICTION_POSITION] + ["prediction"] + kept[MMBENCH_PREDICTION_POSITION:]
    texts = {str(answer["question_id"]): answer["text"] for answer in answers}
    table = []
    for row in rows:
        values = {name: _sheet_value(name, row.get(name, "")) for name in kept}
        values["prediction"] = texts.get(str(row["index"]).strip())
        table.append([values[name] for name in header])
    return header, table


def _sheet_value(column: str, text: str | None):
    """A TSV cell for the sheet: empty -> an empty cell (pandas' NaN), `index` -> a number, anything else its text."""
    if text is None or text == "":
        return None
    if column == "index" and text.strip().lstrip("-").isdigit():
        return int(text.strip())
    return text


def write_mmbench_upload(path: PathLike, header: list[str], table: list[list]) -> str:
    """Write the MMBench sheet as `.xlsx` (needs `openpyxl`, in the `eval` extra)."""
    try:
        from openpyxl import Workbook
    except ImportError:
        raise ImportError(
            "Writing the MMBench upload (.xlsx) needs openpyxl: `pip install 'transformers-sqllava[eval]'` or "
            "`pip install openpyxl`."
        ) from None
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(header)
    for row in table:
        sheet.append(row)
    workbook.save(path)
    return str(path)


def write_vqav2_upload(path: PathLike, rows: list[dict]) -> str:
    return write_json(path, rows)


def write_vizwiz_upload(path: PathLike, rows: list[dict]) -> str:
    return write_json(path, rows)


def write_gqa_predictions(path: PathLike, rows: list[dict]) -> str:
    return write_json(path, rows)


def write_mmvet_results(path: PathLike, results: dict[str, str]) -> str:
    return write_json(path, results, indent=2)


def write_seed_upload(path: PathLike, rows: list[dict]) -> str:
    return write_jsonl(path, rows)


def read_question_file(path: PathLike, what: str = "question file") -> list[dict]:
    """A LLaVA question file (`llava_*.jsonl`: one `{"question_id", ...}` a line)."""
    rows, _ = read_jsonl(path, what)
    return rows
