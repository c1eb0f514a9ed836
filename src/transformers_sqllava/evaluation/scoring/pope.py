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
"""POPE (object hallucination), as LLaVA's `llava/eval/eval_pope.py`.

Per category (`adversarial`, `popular`, `random`: the `coco_pope_<category>.json` files of the annotation folder) the
model's answers to that category's questions are compared, in order, with the file's labels. An answer is read as LLaVA
reads it: only its first sentence (up to the first `.`), commas removed, split on spaces; it is "no" when a word is
`No`, `no` or `not`, and "yes" otherwise, so an answer that is neither (or empty) counts as "yes". The paper's POPE
number is the mean F1 of the three categories.

`answer_parsing="lmms-eval"` reads answers as lmms-eval's `pope` task does instead: the whole answer, lower-cased and
stripped, must be exactly `yes` or `no`; anything else is wrong in the accuracy and left out of precision and recall.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._files import PathLike, read_answers, read_jsonl


ANSWER_PARSINGS = ("llava", "lmms-eval")


def parse_pope_answer(text: str, answer_parsing: str = "llava") -> str:
    r"""
    Read a POPE answer as `"yes"`, `"no"` (or, with `answer_parsing="lmms-eval"`, `"other"`).

    ```python
    >>> parse_pope_answer("No, there is not.")
    'no'
    >>> parse_pope_answer("There is a dog. It is not a cat.")  # only the first sentence counts
    'yes'
    >>> parse_pope_answer("Maybe")  # neither: "yes" in LLaVA's reading
    'yes'
    >>> parse_pope_answer("Yes.", answer_parsing="lmms-eval")  # lmms-eval wants the bare word
    'other'
    ```
    """
    if answer_parsing == "lmms-eval":
        text = text.lower().strip()
        return text if text in ("yes", "no") else "other"
    if answer_parsing != "llava":
        raise ValueError(f"Unknown POPE answer parsing {answer_parsing!r}: use one of {ANSWER_PARSINGS}.")
    first_sentence = text.split(".")[0]
    words = first_sentence.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def pope_metrics(predictions: list[str], labels: list[str]) -> dict:
    r"""
    Confusion counts and scores of parsed answers against labels (`"yes"` is the positive class), paired in order;
    as in the original, a label that is not `"no"` counts as `"yes"`, and extra answers or labels are ignored.

    Returns:
        `dict`: `TP`, `FP`, `TN`, `FN`, `accuracy`, `precision`, `recall`, `f1`, `yes_ratio` (the share of answers read
        as "yes"), `num_samples`, and `num_other` (answers that are neither, lmms-eval parsing only). Ratios in [0, 1];
        a ratio with nothing to divide is `None` (the original raises `ZeroDivisionError`).
    """
    tp = fp = tn = fn = 0
    for prediction, label in zip(predictions, labels):
        positive_label = label != "no"
        if prediction == "yes":
            tp, fp = tp + positive_label, fp + (not positive_label)
        elif prediction == "no":
            fn, tn = fn + positive_label, tn + (not positive_label)
    num_samples = min(len(predictions), len(labels))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    # TP + TN + FP + FN in the original, where every answer is "yes" or "no".
    accuracy = (tp + tn) / num_samples if num_samples else None
    yes_ratio = predictions.count("yes") / len(predictions) if predictions else None
    return {
        "TP": tp, "FP": fp, "TN": tn, "FN": fn, "accuracy": accuracy, "precision": precision, "recall": recall,
        "f1": f1, "yes_ratio": yes_ratio, "num_samples": num_samples,
        "num_other": sum(p not in ("yes", "no") for p in predictions[:num_samples]),
    }  # fmt: skip


def score_pope(
    annotation_dir: PathLike, question_file: PathLike, result_file: PathLike, answer_parsing: str = "llava"
) -> dict:
    r"""
    POPE, as `python -m llava.eval.eval_pope --annotation-dir --question-file --result-file`.

    Args:
        annotation_dir (`str` or `os.PathLike`): The folder of `coco_pope_<category>.json` files (JSON Lines of
            `{"question_id", "image", "text", "label"}`).
        question_file (`str` or `os.PathLike`): `llava_pope_test.jsonl`, which gives each question's `category`.
        result_file (`str` or `os.PathLike`): The model's answers.
        answer_parsing (`str`, *optional*, defaults to `"llava"`): `"llava"` (the original) or `"lmms-eval"`.

    Returns:
        `dict`: `score` (mean F1 over the categories, in percent: the paper's POPE number), `accuracy` (mean
        accuracy, percent), and `categories`, each with [`pope_metrics`]'s numbers.
    """
    questions = {row["question_id"]: row for row in read_jsonl(question_file, "POPE question file")[0]}
    answers = read_answers(result_file, "POPE result file")
    unknown = [answer["question_id"] for answer in answers if answer["question_id"] not in questions]
    if unknown:
        raise ValueError(f"{len(unknown)} answer(s) have question ids not in {question_file} (first: {unknown[:5]}).")
    annotation_files = sorted(name for name in os.listdir(annotation_dir) if name.endswith(".json"))
    strays = [name for name in annotation_files if not name.startswith("coco_pope_")]
    if strays or not annotation_files:
        raise ValueError(
            f"{annotation_dir} must hold only coco_pope_<category>.json files (found {annotation_files}); the "
            "original asserts every file is one."
        )
    categories = {}
    for name in annotation_files:
        category = name[len("coco_pope_") : -len(".json")]
        labels = [row["label"] for row in read_jsonl(Path(annotation_dir) / name, "POPE annotation file")[0]]
        texts = [answer["text"] for answer in answers if questions[answer["question_id"]]["category"] == category]
        predictions = [parse_pope_answer(text, answer_parsing) for text in texts]
        categories[category] = pope_metrics(predictions, labels)
    f1s = [metrics["f1"] for metrics in categories.values() if metrics["f1"] is not None]
    accuracies = [metrics["accuracy"] for metrics in categories.values() if metrics["accuracy"] is not None]
    return {
        "benchmark": "pope",
        "score": 100.0 * sum(f1s) / len(f1s) if f1s else None,
        "accuracy": 100.0 * sum(accuracies) / len(accuracies) if accuracies else None,
        "answer_parsing": answer_parsing,
        "categories": categories,
    }
