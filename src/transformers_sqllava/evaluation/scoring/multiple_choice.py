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
"""Multiple choice: MMBench (upload sheet, and a local estimate on dev) and SEED-Bench.

- [`score_mmbench`] writes `convert_mmbench_for_submission.py`'s sheet; MMBench's score comes from its server, which
  evaluates circularly (a question counts only when every rotation of its options is answered right) and falls back
  to ChatGPT to read answers it cannot match. On a TSV with an `answer` column (dev), a local estimate is added: the
  same circular grouping (rows whose `index` agree modulo 1,000,000) and the server's rule-based matching (a lone
  option letter, `A.`, `(A)`, ..., or the one option whose text the answer contains), without the ChatGPT fallback
  (unmatched answers count as wrong and are counted in `num_unmatched`).
- [`score_seed`] equals `convert_seed_for_submission.py`: exact match of the answer text with the option letter, per
  question type, over all questions and over the image and video ones, and writes the upload file.
"""

from __future__ import annotations

import os
import string
from collections import defaultdict

from ._files import PathLike, percent, read_answers, read_json
from .submission import (
    mmbench_upload_table,
    read_mmbench_table,
    seed_upload_rows,
    write_mmbench_upload,
    write_seed_upload,
)


CIRCULAR_INDEX_MODULUS = 1_000_000
_LETTER_WRAPPINGS = (
    ("", "."), ("", ","), ("", ":"), ("", ")"), ("", ")."), ("(", ")"), ("(", ")."), (":", ""), (":", ","),
    (":", "."), (":", ")"), (":", ")."),
)  # fmt: skip


def infer_option_letter(prediction: str, choices: dict[str, str]) -> str | None:
    r"""
    The option an MMBench answer names, by the server's rules (before its ChatGPT fallback), or `None`.

    Args:
        prediction (`str`): The model's answer.
        choices (`dict[str, str]`): Option letter -> option text, for the row's non-empty options.

    ```python
    >>> infer_option_letter("B", {"A": "cat", "B": "dog"})
    'B'
    >>> infer_option_letter("(A) a cat", {"A": "cat", "B": "dog"})
    'A'
    >>> infer_option_letter("It is a dog.", {"A": "cat", "B": "dog"})  # by the option's text
    'B'
    ```
    """
    letters = [letter for letter in string.ascii_uppercase[:5] if letter in choices]
    tokens = [token.strip() for token in prediction.split()]
    bare = [letter for letter in letters if letter in tokens]
    # A bare "A" in a longer answer may be the article, not the option.
    if len(bare) == 1 and not ("A" in tokens and len(tokens) > 3):
        return bare[0]
    for prefix, suffix in _LETTER_WRAPPINGS:
        wrapped = [letter for letter in letters if prefix + letter + suffix in tokens]
        if len(wrapped) == 1:
            return wrapped[0]
    lowered = prediction.lower()
    by_text = [letter for letter in letters if str(choices[letter]).lower() in lowered]
    return by_text[0] if len(by_text) == 1 else None


def mmbench_local_accuracy(rows: list[dict], predictions: dict[str, str]) -> dict:
    r"""
    The circular accuracy of an MMBench dev TSV's rows (which hold `answer`), overall and per `category` and
    `l2-category`, in percent. A row without a prediction is wrong.
    """
    groups = defaultdict(list)
    num_unmatched = 0
    for row in rows:
        choices = {letter: row[letter] for letter in "ABCDE" if row.get(letter) not in (None, "")}
        prediction = predictions.get(str(row["index"]).strip())
        letter = infer_option_letter(prediction, choices) if prediction is not None else None
        num_unmatched += letter is None
        groups[int(row["index"]) % CIRCULAR_INDEX_MODULUS].append((row, letter == row["answer"].strip()))
    hits = {key: all(right for _, right in members) for key, members in groups.items()}
    by_category, by_l2 = defaultdict(list), defaultdict(list)
    for key, members in groups.items():
        first = members[0][0]
        by_category[first.get("category", "")].append(hits[key])
        by_l2[first.get("l2-category", "")].append(hits[key])
    return {
        "accuracy": percent(sum(hits.values()), len(hits)),
        "per_category": {name: percent(sum(v), len(v)) for name, v in sorted(by_category.items())},
        "per_l2_category": {name: percent(sum(v), len(v)) for name, v in sorted(by_l2.items())},
        "num_questions": len(hits),
        "num_rows": len(rows),
        "num_unmatched": num_unmatched,
    }


def score_mmbench(
    annotation_file: PathLike,
    result_dir: PathLike | None = None,
    upload_dir: PathLike | None = None,
    experiment: str | None = None,
    result_file: PathLike | None = None,
    result_upload_file: PathLike | None = None,
) -> dict:
    r"""
    MMBench (and MMBench-CN), as `scripts/convert_mmbench_for_submission.py --annotation-file --result-dir
    --upload-dir --experiment`.

    Args:
        annotation_file (`str` or `os.PathLike`): The MMBench TSV (`mmbench_dev_20230712.tsv`,
            `mmbench_dev_cn_20231003.tsv`).
        result_dir (`str` or `os.PathLike`, *optional*), experiment (`str`, *optional*): The answers are
            `<result_dir>/<experiment>.jsonl`, as in the original.
        upload_dir (`str` or `os.PathLike`, *optional*): The sheet is written to `<upload_dir>/<experiment>.xlsx`.
        result_file, result_upload_file (`str` or `os.PathLike`, *optional*): Explicit paths instead.

    Returns:
        `dict`: `submission_file` (when a destination is given), `num_rows`; on a TSV with answers, `score` /
        `accuracy` and the rest of [`mmbench_local_accuracy`], marked `"official": False`.
    """
    if result_file is None:
        if result_dir is None or experiment is None:
            raise ValueError("MMBench needs --result-dir and --experiment (the original's), or --result-file.")
        result_file = os.path.join(result_dir, f"{experiment}.jsonl")
    if result_upload_file is None and upload_dir is not None:
        if experiment is None:
            raise ValueError("MMBench needs --experiment to name the sheet in --upload-dir.")
        result_upload_file = os.path.join(upload_dir, f"{experiment}.xlsx")
    columns, rows = read_mmbench_table(annotation_file)
    answers = read_answers(result_file, "MMBench result file")
    output: dict = {"benchmark": "mmbench", "score": None, "num_rows": len(rows)}
    if result_upload_file is not None:
        header, table = mmbench_upload_table(columns, rows, answers)
        output["submission_file"] = write_mmbench_upload(result_upload_file, header, table)
    if "answer" in columns and all(row.get("answer") for row in rows):
        predictions = {str(answer["question_id"]): answer["text"] for answer in answers}
        output.update(mmbench_local_accuracy(rows, predictions))
        output["score"] = output["accuracy"]
        output["official"] = False
        output["notes"] = [
            "Local estimate: circular evaluation with rule-based answer matching only (the server also asks "
            "ChatGPT to read unmatched answers). Report the server's number."
        ]
    else:
        output["notes"] = ["No answers in the TSV (a test split): upload submission_file to the MMBench server."]
    return output


def seed_accuracy(annotation: dict, results: dict, only_data_type: str | None = None) -> dict:
    r"""
    SEED-Bench accuracy as `convert_seed_for_submission.py`'s `eval_single`: per `question_type_id` and in total,
    optionally over one `data_type` (`"image"` or `"video"`). A question without a result counts as wrong.

    Returns:
        `dict`: `accuracy` (percent, `None` without questions), `per_question_type` (name -> percent), `num_questions`.
    """
    type_names = {type_id: name for name, type_id in annotation.get("question_type", {}).items()}
    counts, correct = defaultdict(int), defaultdict(int)
    for question in annotation["questions"]:
        if only_data_type is not None and question.get("data_type") != only_data_type:
            continue
        type_id = question["question_type_id"]
        counts[type_id] += 1
        result = results.get(_int_or_same(question["question_id"]), results.get(question["question_id"]))
        if result is not None and result["text"] == question["answer"]:
            correct[type_id] += 1
    total = sum(counts.values())
    return {
        "accuracy": percent(sum(correct.values()), total),
        "per_question_type": {
            type_names.get(type_id, str(type_id)): percent(correct[type_id], counts[type_id])
            for type_id in sorted(counts)
        },
        "num_questions": total,
    }


def _int_or_same(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def score_seed(annotation_file: PathLike, result_file: PathLike, result_upload_file: PathLike | None = None) -> dict:
    r"""
    SEED-Bench, as `scripts/convert_seed_for_submission.py --annotation-file --result-file --result-upload-file`.

    Returns:
        `dict`: `score` (the image accuracy, LLaVA's SEED-I), `accuracy` (all questions), `image_accuracy`,
        `video_accuracy` (percent), `per_question_type`, and `submission_file` when `result_upload_file` is given.
    """
    annotation = read_json(annotation_file, "SEED-Bench annotation file (SEED-Bench.json)")
    answers = read_answers(result_file, "SEED-Bench result file")
    results = {answer["question_id"]: answer for answer in answers}
    overall = seed_accuracy(annotation, results)
    image = seed_accuracy(annotation, results, "image")
    video = seed_accuracy(annotation, results, "video")
    output = {
        "benchmark": "seed",
        "score": image["accuracy"],
        "accuracy": overall["accuracy"],
        "image_accuracy": image["accuracy"],
        "video_accuracy": video["accuracy"],
        "per_question_type": overall["per_question_type"],
        "num_questions": overall["num_questions"],
    }
    if result_upload_file is not None:
        output["submission_file"] = write_seed_upload(result_upload_file, seed_upload_rows(answers, annotation))
    return output
