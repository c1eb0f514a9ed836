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
"""Open-answer VQA: TextVQA (scored here), VQAv2 and VizWiz (upload files, and VQAv2's official accuracy where val
annotations are at hand), GQA (the official `eval.py` accuracy).

- [`score_textvqa`] equals LLaVA's `llava/eval/eval_textvqa.py` (its `TextVQAAccuracyEvaluator`): the question is
  recovered from the prompt (with or without OCR tokens), predictions and the 10 human answers go through
  [`normalize_answer`], and each prediction scores the VQA soft accuracy.
- [`score_vqav2`] writes `convert_vqav2_for_submission.py`'s upload file (test-dev is scored by the EvalAI server);
  given official VQA annotations (e.g. val2014), it also scores the uploaded answers as the official `vqaEval.py` does.
- [`score_vizwiz`] writes `convert_vizwiz_for_submission.py`'s upload file (test-dev is scored by the server).
- [`score_gqa`] converts answers as `convert_gqa_for_eval.py` and scores them as GQA's `eval.py --tier
  testdev_balanced` (accuracy, binary, open, distribution, per question type).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

from ._files import PathLike, percent, read_answers, read_json, read_jsonl
from .answer_processing import normalize_answer, process_digits_and_articles, process_punctuation, soft_accuracy
from .submission import (
    gqa_prediction_rows,
    read_question_file,
    vizwiz_upload_rows,
    vqav2_upload_rows,
    write_gqa_predictions,
    write_vizwiz_upload,
    write_vqav2_upload,
)


# ----------------------------------------------------------------------------------------------------------- TextVQA
_OCR_PROMPT_QUESTION = re.compile(r"Question: (.*?) Short answer:", re.DOTALL)


def textvqa_question_from_prompt(prompt: str) -> str:
    r"""
    The question of a TextVQA prompt, lower-cased, as `eval_textvqa.py`'s `prompt_processor` recovers it:

    - `"OCR tokens: ... Question: <q> Short answer:"` (the old LLaVA prompt);
    - three lines with `"Reference OCR token: "` (LLaVA-1.5's `llava_textvqa_val_v051_ocr.jsonl`): the line that is not
      the OCR line or the instruction;
    - two lines (`"<q>\nAnswer the question using a single word or phrase."`, also lmms-eval's default prompt).
    """
    lines = prompt.split("\n")
    if prompt.startswith("OCR tokens: "):
        match = _OCR_PROMPT_QUESTION.search(prompt)
        if match is None:
            raise ValueError(
                f"TextVQA prompt {prompt[:80]!r} starts with 'OCR tokens: ' but has no 'Question: ... Short answer:'."
            )
        question = match.group(1)
    elif "Reference OCR token: " in prompt and len(lines) == 3:
        question = lines[1] if prompt.startswith("Reference OCR token:") else lines[0]
    elif len(lines) == 2:
        question = lines[0]
    else:
        raise ValueError(
            f"Cannot find the question in the TextVQA prompt {prompt[:120]!r}: expected 'OCR tokens: ... Question: "
            "... Short answer:', three lines with 'Reference OCR token: ', or '<question>\\n<instruction>' (the "
            "original eval_textvqa.py asserts the same)."
        )
    return question.lower()


def textvqa_accuracy(annotation_file: PathLike, result_file: PathLike) -> dict:
    """Score one result file against TextVQA's annotation (`TextVQA_0.5.1_val.json`)."""
    annotation = read_json(annotation_file, "TextVQA annotation file (TextVQA_0.5.1_val.json)")
    if not isinstance(annotation, dict) or "data" not in annotation:
        raise ValueError(f"{annotation_file} has no 'data' list; expected TextVQA_0.5.1_val.json.")
    by_key = {(entry["image_id"], entry["question"].lower()): entry for entry in annotation["data"]}
    scores = []
    for result in read_answers(result_file):
        key = (result["question_id"], textvqa_question_from_prompt(result.get("prompt", "")))
        if key not in by_key:
            raise ValueError(
                f"No TextVQA annotation for image {key[0]!r} and question {key[1]!r} (from {result_file}); the result "
                "file's question_id must be the annotation's image_id, as in LLaVA's question files."
            )
        answers = by_key[key]["answers"]
        if len(answers) != 10:
            raise ValueError(f"TextVQA question {key} has {len(answers)} answers; the evaluator expects 10.")
        scores.append(soft_accuracy(normalize_answer(result["text"]), [normalize_answer(a) for a in answers]))
    if not scores:
        raise ValueError(f"{result_file} holds no answers.")
    accuracy = percent(sum(scores), len(scores))
    return {"accuracy": accuracy, "num_samples": len(scores)}


def score_textvqa(
    annotation_file: PathLike, result_file: PathLike | None = None, result_dir: PathLike | None = None
) -> dict:
    r"""
    TextVQA accuracy, as LLaVA's `llava/eval/eval_textvqa.py --annotation-file --result-file [--result-dir]`.

    Args:
        annotation_file (`str` or `os.PathLike`): `TextVQA_0.5.1_val.json`.
        result_file (`str` or `os.PathLike`, *optional*): The model's answers (JSON Lines with `question_id` = the
            image id, `prompt`, `text`).
        result_dir (`str` or `os.PathLike`, *optional*): Score every `*.jsonl` in this folder too, as the original.

    Returns:
        `dict`: `score` and `accuracy` (percent, the original prints it with 2 decimals), `num_samples`; with
        `result_dir`, `experiments` maps each file's stem to its own scores.
    """
    if result_file is None and result_dir is None:
        raise ValueError("TextVQA needs --result-file or --result-dir.")
    output: dict = {"benchmark": "textvqa"}
    if result_file is not None:
        scores = textvqa_accuracy(annotation_file, result_file)
        output.update(score=scores["accuracy"], **scores, experiment=Path(result_file).stem)
    if result_dir is not None:
        output["experiments"] = {
            Path(name).stem: textvqa_accuracy(annotation_file, os.path.join(result_dir, name))
            for name in sorted(os.listdir(result_dir))
            if name.endswith(".jsonl")
        }
    return output


# ------------------------------------------------------------------------------------------------------------- VQAv2
def official_vqa_accuracy(upload_rows: list[dict], annotations: list[dict]) -> dict:
    r"""
    The official VQA evaluation (`vqaEval.py`, as of its 2021 "Fixed processing answers bug") of uploaded answers:
    tabs and newlines become spaces; when the human answers are not all the same, they and the prediction go
    through [`process_punctuation`] and [`process_digits_and_articles`] (when they are, neither does); then the soft
    accuracy. Uploads made with [`normalize_answer`] are already in that form.

    Args:
        upload_rows (`list[dict]`): `{"question_id", "answer"}` rows (the upload file).
        annotations (`list[dict]`): The official annotation records (`{"question_id", "answers": [{"answer", ...}],
            "question_type", "answer_type"}`), one per question scored.

    Returns:
        `dict`: `accuracy` (percent; the server rounds it to 2 decimals), `per_answer_type`, `per_question_type`,
        `num_questions`.
    """
    answers_by_id = {row["question_id"]: row["answer"] for row in upload_rows}
    missing = [record["question_id"] for record in annotations if record["question_id"] not in answers_by_id]
    if missing:
        raise ValueError(f"{len(missing)} annotated question(s) have no uploaded answer (first: {missing[:5]}).")
    scores, by_answer_type, by_question_type = [], defaultdict(list), defaultdict(list)
    for record in annotations:
        prediction = answers_by_id[record["question_id"]].replace("\n", " ").replace("\t", " ").strip()
        humans = [entry["answer"].replace("\n", " ").replace("\t", " ").strip() for entry in record["answers"]]
        if len(set(humans)) > 1:
            humans = [process_digits_and_articles(process_punctuation(answer)) for answer in humans]
            prediction = process_digits_and_articles(process_punctuation(prediction))
        score = soft_accuracy(prediction, humans)
        scores.append(score)
        by_answer_type[record.get("answer_type", "unknown")].append(score)
        by_question_type[record.get("question_type", "unknown")].append(score)
    return {
        "accuracy": percent(sum(scores), len(scores)),
        "per_answer_type": {
            name: percent(sum(values), len(values)) for name, values in sorted(by_answer_type.items())
        },
        "per_question_type": {
            name: percent(sum(values), len(values)) for name, values in sorted(by_question_type.items())
        },
        "num_questions": len(scores),
    }


def score_vqav2(
    dir: PathLike = "./playground/data/eval/vqav2",
    ckpt: str | None = None,
    split: str | None = None,
    result_file: PathLike | None = None,
    test_split: PathLike | None = None,
    result_upload_file: PathLike | None = None,
    annotation_file: PathLike | None = None,
) -> dict:
    r"""
    The VQAv2 upload file, as LLaVA's `scripts/convert_vqav2_for_submission.py --dir --ckpt --split`, and optionally
    the official accuracy on annotated questions.

    Args:
        dir (`str` or `os.PathLike`, *optional*): The original's data folder: answers are read from
            `<dir>/answers/<split>/<ckpt>/merge.jsonl`, the test questions from
            `<dir>/llava_vqav2_mscoco_test2015.jsonl`, and the upload written to
            `<dir>/answers_upload/<split>/<ckpt>.json`.
        ckpt (`str`, *optional*), split (`str`, *optional*): The original's run name and split name.
        result_file, test_split, result_upload_file (`str` or `os.PathLike`, *optional*): Explicit paths, overriding
            the ones derived from `dir`, `split` and `ckpt`.
        annotation_file (`str` or `os.PathLike`, *optional*): Official VQA annotations (e.g.
            `v2_mscoco_val2014_annotations.json`): the uploaded answers to the annotated questions are then scored
            as the official evaluation does. Test-dev has none: its score comes from the EvalAI server.

    Returns:
        `dict`: `submission_file`, `num_questions`, `num_missing` (answered `""`), `num_error_lines` (result lines that
        were not JSON, skipped as in the original); with `annotation_file`, `score`/`accuracy` and per-type accuracies.
    """
    if result_file is None or result_upload_file is None:
        if ckpt is None or split is None:
            raise ValueError(
                "VQAv2 needs --ckpt and --split (the original's), or --result-file and --result-upload-file."
            )
        result_file = result_file or os.path.join(dir, "answers", split, ckpt, "merge.jsonl")
        result_upload_file = result_upload_file or os.path.join(dir, "answers_upload", split, f"{ckpt}.json")
    test_split = test_split or os.path.join(dir, "llava_vqav2_mscoco_test2015.jsonl")
    answers, error_lines = read_jsonl(result_file, "VQAv2 result file", skip_bad_lines=True)
    questions = read_question_file(test_split, "VQAv2 test question file (llava_vqav2_mscoco_test2015.jsonl)")
    rows, missing = vqav2_upload_rows(answers, questions)
    output = {
        "benchmark": "vqav2",
        "score": None,
        "submission_file": write_vqav2_upload(result_upload_file, rows),
        "num_questions": len(rows),
        "num_missing": missing,
        "num_error_lines": error_lines,
    }
    if annotation_file is not None:
        annotation = read_json(annotation_file, "VQA annotation file")
        records = annotation["annotations"] if isinstance(annotation, dict) else annotation
        output.update(official_vqa_accuracy(rows, records))
        output["score"] = output["accuracy"]
    else:
        output["notes"] = ["VQAv2 test-dev is scored by the EvalAI server: upload submission_file there."]
    return output


# ------------------------------------------------------------------------------------------------------------ VizWiz
def score_vizwiz(annotation_file: PathLike, result_file: PathLike, result_upload_file: PathLike) -> dict:
    r"""
    The VizWiz upload file, as LLaVA's `scripts/convert_vizwiz_for_submission.py --annotation-file --result-file
    --result-upload-file`: one `{"image", "answer"}` per question of `annotation_file` (`llava_test.jsonl`), the
    answer normalised. The score comes from the VizWiz server.

    Returns:
        `dict`: `submission_file`, `num_questions`, `num_error_lines`.
    """
    answers, error_lines = read_jsonl(result_file, "VizWiz result file", skip_bad_lines=True)
    questions = read_question_file(annotation_file, "VizWiz question file (llava_test.jsonl)")
    rows = vizwiz_upload_rows(answers, questions)
    return {
        "benchmark": "vizwiz",
        "score": None,
        "submission_file": write_vizwiz_upload(result_upload_file, rows),
        "num_questions": len(rows),
        "num_error_lines": error_lines,
        "notes": ["VizWiz test-dev is scored by the EvalAI server: upload submission_file there."],
    }


# --------------------------------------------------------------------------------------------------------------- GQA
def gqa_metrics(questions: dict[str, dict], predictions: dict[str, str]) -> dict:
    r"""
    GQA's `eval.py` metrics on the balanced questions: `accuracy` (exact match with `answer`), `binary` and `open`
    (open: structural type `query`), `distribution` (the chi-square of predicted against gold answer distributions
    per global group, over 100; lower is better), and accuracy per structural and semantic type. Percentages.
    """
    balanced = {qid: question for qid, question in questions.items() if question.get("isBalanced", True)}
    missing = [qid for qid in balanced if qid not in predictions]
    if missing:
        raise ValueError(
            f"{len(missing)} balanced GQA question(s) have no prediction (first: {missing[:5]}); GQA's eval.py "
            "requires all of them."
        )
    scores = defaultdict(list)
    structural, semantic = defaultdict(list), defaultdict(list)
    gold_distribution = defaultdict(lambda: defaultdict(int))
    predicted_distribution = defaultdict(lambda: defaultdict(int))
    for qid, question in balanced.items():
        gold, predicted = question["answer"], predictions[qid]
        score = 1.0 if predicted == gold else 0.0
        types = question.get("types", {})
        scores["accuracy"].append(score)
        scores["open" if types.get("structural") == "query" else "binary"].append(score)
        structural[types.get("structural")].append(score)
        semantic[types.get("semantic")].append(score)
        group = question.get("groups", {}).get("global")
        if group is not None:
            gold_distribution[group][gold] += 1
            predicted_distribution[group][predicted] += 1

    def mean_percent(values):
        return 100.0 * sum(values) / len(values) if values else 0.0

    return {
        "accuracy": mean_percent(scores["accuracy"]),
        "binary": mean_percent(scores["binary"]),
        "open": mean_percent(scores["open"]),
        "distribution": _chi_square(gold_distribution, predicted_distribution) / 100,
        "per_structural_type": {str(name): mean_percent(v) for name, v in sorted(structural.items(), key=str)},
        "per_semantic_type": {str(name): mean_percent(v) for name, v in sorted(semantic.items(), key=str)},
        "num_questions": len(balanced),
    }


def _chi_square(gold: dict, predicted: dict) -> float:
    weighted, total = 0.0, 0
    for group, answers in gold.items():
        group_score = sum((predicted[group].get(answer, 0) - count) ** 2 / count for answer, count in answers.items())
        group_total = sum(answers.values())
        weighted += group_score * group_total
        total += group_total
    return weighted / total if total else 0.0


def score_gqa(
    src: PathLike | None = None,
    dst: PathLike | None = None,
    questions: PathLike | None = None,
    predictions: PathLike | None = None,
) -> dict:
    r"""
    GQA, as LLaVA's `scripts/convert_gqa_for_eval.py --src --dst` followed by GQA's `eval.py --tier
    testdev_balanced`.

    Args:
        src (`str` or `os.PathLike`, *optional*): The model's answers (`merge.jsonl`), converted as the original does.
        dst (`str` or `os.PathLike`, *optional*): Where to write the converted predictions
            (`testdev_balanced_predictions.json`).
        questions (`str` or `os.PathLike`, *optional*): GQA's questions (`testdev_balanced_questions.json`); without
            it, only the conversion is done.
        predictions (`str` or `os.PathLike`, *optional*): Already converted predictions, instead of `src`.

    Returns:
        `dict`: with `questions`, `score`/`accuracy` and [`gqa_metrics`]'s other numbers; `predictions_file` with
        `dst`.
    """
    if (src is None) == (predictions is None):
        raise ValueError("GQA needs exactly one of --src (the model's answers) and --predictions (converted ones).")
    if src is not None:
        rows = gqa_prediction_rows(read_answers(src))
    else:
        rows = read_json(predictions, "GQA predictions file")
    output: dict = {"benchmark": "gqa", "score": None, "num_predictions": len(rows)}
    if dst is not None:
        output["predictions_file"] = write_gqa_predictions(dst, rows)
    if questions is not None:
        gqa_questions = read_json(questions, "GQA questions file (testdev_balanced_questions.json)")
        by_id = {str(row["questionId"]): row["prediction"] for row in rows}
        output.update(gqa_metrics({str(qid): question for qid, question in gqa_questions.items()}, by_id))
        output["score"] = output["accuracy"]
    return output
