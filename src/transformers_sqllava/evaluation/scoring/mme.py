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
"""MME, as LLaVA's `playground/data/eval/MME/convert_answer_to_mme.py` followed by MME's
`eval_tool/calculation.py --results_dir`.

The conversion writes one `<task>.txt` per task, a line per question: `image file \\t question \\t ground truth \\t
answer`. Every image has two questions (one "yes", one "no"), on consecutive lines. An answer is read as MME reads it:
`yes` or `no` (lower-cased) as such, else "yes" when its first four characters contain `yes`, "no" when they contain
`no`, and "other" otherwise. A task scores `100 * accuracy + 100 * accuracy+`, accuracy+ being the share of images
with both answers right (so a task is out of 200); Perception sums its 10 tasks (out of 2000), Cognition its 4 (out
of 800).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from ._files import PathLike, read_answers


PERCEPTION_TASKS = (
    "existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR",
)  # fmt: skip
COGNITION_TASKS = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
EVAL_TYPES = {"Perception": PERCEPTION_TASKS, "Cognition": COGNITION_TASKS}
_SHORT_ANSWER_INSTRUCTION = "Answer the question using a single word or phrase."
_YES_NO_INSTRUCTION = "Please answer yes or no."


def parse_mme_answer(text: str) -> str:
    """
    `"yes"`, `"no"` or `"other"`, as MME's `parse_pred_ans` (after lower-casing).

    ```python
    >>> parse_mme_answer("Yes, there is.")
    'yes'
    >>> parse_mme_answer("There is no dog.")  # "ther" holds neither
    'other'
    ```
    """
    text = text.lower()
    if text in ("yes", "no"):
        return text
    prefix = text[:4]
    if "yes" in prefix:
        return "yes"
    if "no" in prefix:
        return "no"
    return "other"


def mme_ground_truth(data_path: PathLike) -> dict[tuple[str, str, str], str]:
    """`(task, question file, question) -> answer` from the MME release folder (`MME_Benchmark_release_version`):
    each task folder holds `.txt` files of `question \\t answer` lines, in `questions_answers_YN/` where the task has
    an `images/` folder."""
    ground_truth = {}
    for task in sorted(os.listdir(data_path)):
        task_dir = Path(data_path) / task
        if not task_dir.is_dir():
            continue
        qa_dir = task_dir / "questions_answers_YN" if (task_dir / "images").exists() else task_dir
        for qa_file in sorted(qa_dir.glob("*.txt")):
            for line in qa_file.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                question, answer = line.strip().split("\t")
                ground_truth[(task, qa_file.name, question)] = answer
    return ground_truth


def convert_answers_to_mme(answers: list[dict], ground_truth: dict) -> dict[str, list[tuple[str, str, str, str]]]:
    r"""
    Group answers by task as `convert_answer_to_mme.py` does: `question_id` is `<task>/<image>`, the prompt loses
    LLaVA's short-answer instruction and gains `" Please answer yes or no."` (with two spaces where the release's
    question has two), and each answer is paired with its ground truth.

    Returns:
        `dict`: task -> `(question file, question, ground truth, answer)` rows in the answers' order.
    """
    rows = defaultdict(list)
    for answer in answers:
        question_id = answer["question_id"]
        task = question_id.split("/")[0]
        qa_file = question_id.split("/")[-1].split(".")[0] + ".txt"
        prompt = answer["prompt"]
        if _SHORT_ANSWER_INSTRUCTION in prompt:
            prompt = prompt.replace(_SHORT_ANSWER_INSTRUCTION, "").strip()
        if _YES_NO_INSTRUCTION not in prompt:
            prompt = prompt + " " + _YES_NO_INSTRUCTION
            if (task, qa_file, prompt) not in ground_truth:
                prompt = prompt.replace(" " + _YES_NO_INSTRUCTION, "  " + _YES_NO_INSTRUCTION)
        if (task, qa_file, prompt) not in ground_truth:
            raise ValueError(f"No MME ground truth for task {task!r}, file {qa_file!r}, question {prompt!r}.")
        rows[task].append((qa_file, prompt, ground_truth[(task, qa_file, prompt)], answer["text"]))
    return dict(rows)


def write_mme_results(results_dir: PathLike, rows_by_task: dict) -> str:
    """Write `<task>.txt` files as the conversion does (tab-separated, one line per row)."""
    os.makedirs(results_dir, exist_ok=True)
    for task, rows in rows_by_task.items():
        with open(os.path.join(results_dir, f"{task}.txt"), "w", encoding="utf-8") as file:
            file.writelines("\t".join(row) + "\n" for row in rows)
    return str(results_dir)


def read_mme_results(results_dir: PathLike) -> dict[str, list[tuple[str, str, str, str]]]:
    """The `<task>.txt` files of `results_dir` (the tasks present), as `(image, question, ground truth, answer)`."""
    rows_by_task = {}
    for task in PERCEPTION_TASKS + COGNITION_TASKS:
        path = Path(results_dir) / f"{task}.txt"
        if not path.is_file():
            continue
        rows = []
        with open(path, encoding="utf-8") as file:
            for number, line in enumerate(file, start=1):
                fields = line.rstrip("\n").split("\t")
                if len(fields) != 4:
                    raise ValueError(
                        f"{path}, line {number}: {len(fields)} tab-separated fields, expected 4 (image, question, "
                        "ground truth, answer); an answer with a tab or newline breaks the format."
                    )
                rows.append(tuple(fields))
        rows_by_task[task] = rows
    return rows_by_task


def mme_task_metrics(rows: list[tuple[str, str, str, str]]) -> dict:
    r"""
    One task's numbers from its rows, paired two by two (an image's two questions).

    Returns:
        `dict`: `score` (`100 * (accuracy + accuracy_plus)`), `accuracy`, `accuracy_plus` (in [0, 1]), `num_images`,
        `num_other` (answers neither yes nor no), and the confusion counts of the answers that are (`TP`, `FN`, `TN`,
        `FP`, "yes" positive).
    """
    if len(rows) % 2:
        raise ValueError(
            f"An MME task has {len(rows)} rows: every image needs its two questions, on consecutive lines."
        )
    correct = images_both_right = other = 0
    confusion = {"TP": 0, "FN": 0, "TN": 0, "FP": 0}
    for start in range(0, len(rows), 2):
        right_here = 0
        for _, _, ground_truth, answer in rows[start : start + 2]:
            ground_truth = ground_truth.lower()
            if ground_truth not in ("yes", "no"):
                raise ValueError(f"MME ground truth {ground_truth!r} is neither yes nor no.")
            predicted = parse_mme_answer(answer)
            right_here += predicted == ground_truth
            if predicted == "other":
                other += 1
            else:
                key = ("T" if predicted == ground_truth else "F") + ("P" if predicted == "yes" else "N")
                confusion[key] += 1
        correct += right_here
        images_both_right += right_here == 2
    num_images = len(rows) // 2
    accuracy = correct / len(rows) if rows else 0.0
    accuracy_plus = images_both_right / num_images if num_images else 0.0
    return {
        "score": 100 * accuracy + 100 * accuracy_plus,
        "accuracy": accuracy,
        "accuracy_plus": accuracy_plus,
        "num_images": num_images,
        "num_other": other,
        **confusion,
    }


def score_mme(
    results_dir: PathLike | None = None, answers_file: PathLike | None = None, data_path: PathLike | None = None
) -> dict:
    r"""
    MME scores.

    Args:
        results_dir (`str` or `os.PathLike`, *optional*): `calculation.py --results_dir`: a folder of `<task>.txt`
            files. With `answers_file`, the converted files are written there.
        answers_file (`str` or `os.PathLike`, *optional*): The model's answers (`answers/<experiment>.jsonl`), to
            convert first, as `convert_answer_to_mme.py --experiment` does.
        data_path (`str` or `os.PathLike`, *optional*): The MME release folder (`MME_Benchmark_release_version`),
            needed with `answers_file`.

    Returns:
        `dict`: `score` (the Perception total), `perception`, `cognition`, `tasks` (each with [`mme_task_metrics`]'s
        numbers), and `missing_tasks` (the original stops at a missing task file; here the totals are then over the
        tasks present, with a note).
    """
    if answers_file is not None:
        if data_path is None:
            raise ValueError("MME needs --data-path (MME_Benchmark_release_version) to convert --answers-file.")
        rows_by_task = convert_answers_to_mme(
            read_answers(answers_file, "MME answers file"), mme_ground_truth(data_path)
        )
        if results_dir is not None:
            write_mme_results(results_dir, rows_by_task)
    elif results_dir is not None:
        rows_by_task = read_mme_results(results_dir)
    else:
        raise ValueError("MME needs --results_dir (converted answers) or --answers-file with --data-path.")
    tasks = {
        task: mme_task_metrics(rows)
        for task, rows in rows_by_task.items()
        if task in PERCEPTION_TASKS + COGNITION_TASKS
    }
    totals = {
        kind.lower(): sum(tasks[task]["score"] for task in names if task in tasks)
        for kind, names in EVAL_TYPES.items()
    }
    missing = [task for task in PERCEPTION_TASKS + COGNITION_TASKS if task not in tasks]
    output = {"benchmark": "mme", "score": totals["perception"], **totals, "tasks": tasks, "missing_tasks": missing}
    if missing:
        output["notes"] = [f"No results for task(s) {missing}: the totals cover only the tasks present."]
    return output
