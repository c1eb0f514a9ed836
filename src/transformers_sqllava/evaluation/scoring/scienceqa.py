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
"""ScienceQA, as LLaVA's `llava/eval/eval_science_qa.py`.

Every problem of the split (`pid_splits.json`) is scored; one without an answer counts as wrong. An answer's letter is
read as the original reads it: the whole text when it is an option letter (`"C"`), its first character when it starts
with a letter, a period and a space (`"C. 42"`), or the one letter of `The answer is X.` (the pattern's final `.`
matches any character, so `"The answer is C"` with nothing after the letter is not read, and two such phrases are
not either). A letter beyond the problem's number of choices is wrong. SQA-I, the paper's number, is the accuracy on
the problems whose prompt holds `<image>`.
"""

from __future__ import annotations

import os
import re

from ._files import PathLike, percent, read_answers, read_json, write_json


OPTIONS = ("A", "B", "C", "D", "E")
_ANSWER_IS = re.compile(r"The answer is ([A-Z]).")


def parse_scienceqa_answer(text: str, options: tuple[str, ...] = OPTIONS) -> str:
    """
    The option letter of an answer, or `"FAILED"`.

    ```python
    >>> parse_scienceqa_answer("The answer is C.")
    'C'
    >>> parse_scienceqa_answer("B. a magnet")
    'B'
    >>> parse_scienceqa_answer("The answer is C")  # the pattern needs one more character
    'FAILED'
    ```
    """
    if text in options:
        return text
    if len(text) >= 3 and text[0] in options and text[1:3] == ". ":
        return text[0]
    found = _ANSWER_IS.findall(text)
    return found[0] if len(found) == 1 else "FAILED"


def choice_index(letter: str, num_choices: int, options: tuple[str, ...] = OPTIONS) -> int:
    """The letter's index among the problem's choices, `-1` when it is not one of them."""
    return options.index(letter) if letter in options[:num_choices] else -1


def score_scienceqa(
    base_dir: PathLike,
    result_file: PathLike,
    output_file: PathLike | None = None,
    output_result: PathLike | None = None,
    split: str = "test",
) -> dict:
    r"""
    ScienceQA accuracy, as `llava/eval/eval_science_qa.py --base-dir --result-file --output-file --output-result`.

    Args:
        base_dir (`str` or `os.PathLike`): The folder of ScienceQA's `problems.json` and `pid_splits.json`.
        result_file (`str` or `os.PathLike`): The model's answers (`question_id` = the problem id).
        output_file (`str` or `os.PathLike`, *optional*): Where to write the per-problem analysis
            (`{"correct": [...], "incorrect": [...]}`), as the original.
        output_result (`str` or `os.PathLike`, *optional*): Where to write `{"acc", "correct", "count", "results",
            "outputs"}`, as the original.
        split (`str`, *optional*, defaults to `"test"`): The split of `pid_splits.json`.

    Returns:
        `dict`: `score` (SQA-I: accuracy on problems with an image, percent), `accuracy` (all problems, percent),
        `img_accuracy`, `correct`, `count`, `img_correct`, `img_count`, `num_failed` (answers whose letter could not be
        read), `num_missing` (problems without an answer).
    """
    split_ids = read_json(os.path.join(base_dir, "pid_splits.json"), "ScienceQA pid_splits.json")[split]
    problems = read_json(os.path.join(base_dir, "problems.json"), "ScienceQA problems.json")
    predictions = {answer["question_id"]: answer for answer in read_answers(result_file, "ScienceQA result file")}
    analysis = {"correct": [], "incorrect": []}
    sqa_results = {"acc": None, "correct": None, "count": None, "results": {}, "outputs": {}}
    num_failed = num_missing = 0
    for problem_id in dict.fromkeys(split_ids):  # once each, as the original's dict
        problem = problems[problem_id]
        prediction = predictions.get(problem_id)
        if prediction is None:
            num_missing += 1
            prediction = {"text": "FAILED", "prompt": "Unknown"}
        text = prediction["text"]
        letter = parse_scienceqa_answer(text)
        num_failed += letter == "FAILED"
        index = choice_index(letter, len(problem["choices"]))
        record = {
            "question_id": problem_id,
            "parsed_ans": letter,
            "ground_truth": OPTIONS[problem["answer"]],
            "question": prediction.get("prompt", ""),
            "pred": text,
            "is_multimodal": "<image>" in prediction.get("prompt", ""),
        }
        sqa_results["results"][problem_id] = index
        sqa_results["outputs"][problem_id] = text
        analysis["correct" if index == problem["answer"] else "incorrect"].append(record)

    correct, count = len(analysis["correct"]), len(analysis["correct"]) + len(analysis["incorrect"])
    img_correct = sum(record["is_multimodal"] for record in analysis["correct"])
    img_count = img_correct + sum(record["is_multimodal"] for record in analysis["incorrect"])
    sqa_results.update(acc=percent(correct, count), correct=correct, count=count)
    output = {
        "benchmark": "scienceqa",
        "score": percent(img_correct, img_count),
        "accuracy": percent(correct, count),
        "img_accuracy": percent(img_correct, img_count),
        "correct": correct,
        "count": count,
        "img_correct": img_correct,
        "img_count": img_count,
        "num_failed": num_failed,
        "num_missing": num_missing,
    }
    if output_file is not None:
        output["output_file"] = write_json(output_file, analysis, indent=2)
    if output_result is not None:
        output["output_result"] = write_json(output_result, sqa_results, indent=2)
    return output
