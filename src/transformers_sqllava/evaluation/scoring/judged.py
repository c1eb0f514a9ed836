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
"""Benchmarks graded by a language model: LLaVA-Bench (in-the-wild) and MM-Vet, with a pluggable judge
(`judges.py`).

- [`score_llava_bench`] equals LLaVA's `llava/eval/eval_gpt_review_bench.py` (the review prompt: context, question,
  the GPT-4 answer as "Assistant 1" and the model's as "Assistant 2", then the rule's instruction; reviews resumed
  from the output file; the two scores read from the review's first line, `[-1, -1]` when that fails) followed by
  `summarize_gpt_review.py` (per category and overall: the model's mean score relative to GPT-4's, in percent,
  from means rounded to 3 decimals). LLaVA-W, the paper's number, is the overall relative score.
- [`score_mmvet`] equals MM-Vet's `mm-vet_evaluator.py` (the few-shot grading prompt, the score read from the reply's
  first word, up to five re-asks with rising temperature and then 0, per-capability and per-integration means) on a
  result file as LLaVA's `scripts/convert_mmvet_for_eval.py` writes it.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from ._files import PathLike, read_answers, read_json, read_jsonl, write_json
from .judges import Judge, load_judge
from .submission import mmvet_results, write_mmvet_results


# ------------------------------------------------------------------------------------------------------ LLaVA-Bench
LLAVA_BENCH_SYSTEM_PROMPT = "You are a helpful and precise assistant for checking the quality of the answer."
LLAVA_BENCH_JUDGE_MODEL = "gpt-4-0314"
_LLAVA_BENCH_INSTRUCTION = (
    "We would like to request your feedback on the performance of two AI assistants in response to the user "
    "question displayed above. The user asks the question on observing an image. For your reference, the visual "
    "content in the image is represented with a few sentences describing the image. \nPlease rate the helpfulness, "
    "relevance, accuracy, level of details of their responses. Each assistant receives an overall score on a scale "
    "of 1 to 10, where a higher score indicates better overall performance.\nPlease first output a single line "
    "containing only two values indicating the scores for Assistant 1 and 2, respectively. The two scores are "
    "separated by a space.\nIn the subsequent line, please provide a comprehensive explanation of your evaluation, "
    "avoiding any potential bias and ensuring that the order in which the responses were presented does not affect "
    "your judgment."
)
# The `llava_bench_*` entries of LLaVA's `llava/eval/table/rule.json`.
LLAVA_BENCH_RULES = {
    f"llava_bench_{category}": {"role": "Assistant", "prompt": _LLAVA_BENCH_INSTRUCTION}
    for category in ("conv", "detail", "complex")
}


def llava_bench_review_content(context: str, question: str, answer1: str, answer2: str, rule: dict) -> str:
    """The review request: context, question, the two answers and the rule's instruction."""
    role = rule["role"]
    return (
        f"[Context]\n{context}\n\n[Question]\n{question}\n\n"
        f"[{role} 1]\n{answer1}\n\n[End of {role} 1]\n\n[{role} 2]\n{answer2}\n\n[End of {role} 2]\n\n"
        f"[System]\n{rule['prompt']}\n\n"
    )


def parse_review_scores(review: str) -> list[float]:
    """
    The two scores on a review's first line (commas count as spaces), `[-1, -1]` unless there are exactly two.

    ```python
    >>> parse_review_scores("8 6\\nAssistant 1 ...")
    [8.0, 6.0]
    >>> parse_review_scores("8,6")
    [8.0, 6.0]
    >>> parse_review_scores("Scores: 8 6")
    [-1, -1]
    ```
    """
    try:
        parts = review.split("\n")[0].replace(",", " ").split(" ")
        return [float(parts[0]), float(parts[1])] if len(parts) == 2 else [-1, -1]
    except (ValueError, AttributeError):
        return [-1, -1]


def review_llava_bench(
    question: PathLike,
    context: PathLike,
    answer_list: list[PathLike],
    judge: Judge,
    rule: PathLike | None = None,
    output: PathLike | None = None,
    max_tokens: int = 1024,
) -> list[dict]:
    r"""
    Review the model's answers against the reference answers, as `eval_gpt_review_bench.py`. Reviews already in
    `output` are kept and not asked again (questions are matched by position, as in the original); new ones are
    appended to it.

    Returns:
        `list[dict]`: every review (`id`, `question_id`, `answer1_id`, `answer2_id`, `category`, `content`, `tuple`).
    """
    if len(answer_list) != 2:
        raise ValueError("LLaVA-Bench needs --answer-list REFERENCE_ANSWERS MODEL_ANSWERS (two files).")
    questions = read_jsonl(question, "LLaVA-Bench question file")[0]
    reference_answers = read_jsonl(answer_list[0], "LLaVA-Bench reference answers")[0]
    model_answers = read_jsonl(answer_list[1], "LLaVA-Bench model answers")[0]
    rules = read_json(rule, "rule file (rule.json)") if rule is not None else LLAVA_BENCH_RULES
    contexts = {row["image"]: row for row in read_jsonl(context, "LLaVA-Bench context file")[0]}
    reviews = read_jsonl(output, "review file")[0] if output is not None and Path(output).is_file() else []
    done = len(reviews)
    new_file = open(output, "a", encoding="utf-8") if output is not None else None
    try:
        for index, (item, reference, answer) in enumerate(zip(questions, reference_answers, model_answers)):
            if index < done:
                continue
            caption = contexts[item["image"]]["caption"]
            caption = "\n".join(caption) if isinstance(caption, list) else caption
            category = "llava_bench_" + item["category"]
            if category not in rules:
                raise ValueError(f"Visual QA category not found in the rule file: {category}.")
            content = llava_bench_review_content(
                caption, item["text"], reference["text"], answer["text"], rules[category]
            )
            messages = [{"role": "system", "content": LLAVA_BENCH_SYSTEM_PROMPT}, {"role": "user", "content": content}]
            review_text = judge(messages, temperature=0.2, max_tokens=max_tokens)
            review = {
                "id": index + 1,
                "question_id": item["question_id"],
                "answer1_id": reference.get("answer_id", reference["question_id"]),
                "answer2_id": answer.get("answer_id", answer.get("question_id")),
                "category": category,
                "content": review_text,
                "tuple": parse_review_scores(review_text),
            }
            reviews.append(review)
            if new_file is not None:
                new_file.write(json.dumps(review) + "\n")
                new_file.flush()
    finally:
        if new_file is not None:
            new_file.close()
    return reviews


def summarize_llava_bench_reviews(reviews: list[dict], ignore: tuple = ()) -> dict:
    r"""
    `summarize_gpt_review.py`'s numbers for one review file.

    Returns:
        `dict`: category (and `"all"`) -> `{"relative": model / GPT-4 in percent, "gpt4": GPT-4's mean score x 10,
        "model": the model's mean score x 10}`, each rounded to 1 decimal as the original prints them.
    """
    scores = defaultdict(list)
    for review in reviews:
        if review["question_id"] in ignore:
            continue
        if "category" in review:
            scores[review["category"]].append(review["tuple"])
            scores["all"].append(review["tuple"])
        else:
            scores["all"].append(review["tuple"] if "tuple" in review else review["score"])
    summary = {}
    for key, values in sorted(scores.items()):
        reference, model = [round(value, 3) for value in np.asarray(values).mean(0).tolist()]
        summary[key] = {
            "relative": round(model / reference * 100, 1) if reference else None,
            "gpt4": round(reference * 10, 1),
            "model": round(model * 10, 1),
        }
    return summary


def score_llava_bench(
    question: PathLike | None = None,
    context: PathLike | None = None,
    answer_list: list[PathLike] | None = None,
    rule: PathLike | None = None,
    output: PathLike | None = None,
    max_tokens: int = 1024,
    judge: str | Judge | None = None,
    judge_model: str = LLAVA_BENCH_JUDGE_MODEL,
    files: list[PathLike] | None = None,
    ignore: list | None = None,
) -> dict:
    r"""
    LLaVA-Bench (in-the-wild): review with a judge (`eval_gpt_review_bench.py -q -c -a -r -o`), then summarise
    (`summarize_gpt_review.py -f`); with `files` only, summarise existing review files.

    Args:
        question, context (`str` or `os.PathLike`): `questions.jsonl`, `context.jsonl`.
        answer_list (`list`): `[answers_gpt4.jsonl, <model answers>.jsonl]`.
        rule (`str` or `os.PathLike`, *optional*): LLaVA's `rule.json`; defaults to its LLaVA-Bench entries.
        output (`str` or `os.PathLike`, *optional*): The review file (resumed, appended to).
        max_tokens (`int`, *optional*, defaults to 1024): The review's length limit.
        judge (`str` or callable, *optional*): See [`load_judge`]; an OpenAI-compatible endpoint by default.
        judge_model (`str`, *optional*, defaults to `"gpt-4-0314"`): The original's reviewer (since retired by OpenAI).
        files (`list`, *optional*): Review files to summarise instead.
        ignore (`list`, *optional*): Question ids to leave out of the summary (`-i`).

    Returns:
        `dict`: `score` (the overall relative score: LLaVA-W), `categories` (see [`summarize_llava_bench_reviews`]),
        `num_reviews`, `num_unparsed` (reviews scored `[-1, -1]`, which the original averages in); with several
        `files`, `files` maps each to its summary.
    """
    ignore = tuple(int(value) for value in (ignore or ()))
    if files:
        summaries = {}
        for path in files:
            reviews = read_jsonl(path, "review file")[0]
            summaries[Path(path).name.replace("gpt4_text_", "").replace(".jsonl", "")] = _bench_summary(
                reviews, ignore
            )
        if len(summaries) == 1:
            return {"benchmark": "llava-bench", **next(iter(summaries.values()))}
        return {"benchmark": "llava-bench", "score": None, "files": summaries}
    if question is None or context is None or not answer_list:
        raise ValueError(
            "LLaVA-Bench needs --question, --context and --answer-list (or --files to summarise reviews)."
        )
    reviews = review_llava_bench(
        question, context, answer_list, load_judge(judge, judge_model), rule=rule, output=output, max_tokens=max_tokens
    )
    output_dict = {"benchmark": "llava-bench", **_bench_summary(reviews, ignore)}
    if output is not None:
        output_dict["review_file"] = str(output)
    return output_dict


def _bench_summary(reviews: list[dict], ignore: tuple) -> dict:
    categories = summarize_llava_bench_reviews(reviews, ignore)
    return {
        "score": categories.get("all", {}).get("relative"),
        "categories": categories,
        "num_reviews": len(reviews),
        "num_unparsed": sum(list(review.get("tuple", [])) == [-1, -1] for review in reviews),
    }


# ----------------------------------------------------------------------------------------------------------- MM-Vet
MMVET_JUDGE_MODEL = "gpt-4-0613"
# MM-Vet's grading prompt, verbatim (the evaluator's `prompt`), wrapped here for line length.
MMVET_PROMPT = (
    "Compare the ground truth and prediction from AI models, to give a correctness score for the "
    "prediction. <AND> in the ground truth means it is totally right only when all elements in the ground"
    " truth are present in the prediction, and <OR> means it is totally right when any one element in the"
    " ground truth is present in the prediction. The correctness score is 0.0 (totally wrong), 0.1, 0.2, "
    "0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, or 1.0 (totally right). Just complete the last space of the "
    "correctness score.\n"
    "\n"
    "Question | Ground truth | Prediction | Correctness\n"
    "--- | --- | --- | ---\n"
    "What is x in the equation? | -1 <AND> -5 | x = 3 | 0.0\n"
    "What is x in the equation? | -1 <AND> -5 | x = -1 | 0.5\n"
    "What is x in the equation? | -1 <AND> -5 | x = -5 | 0.5\n"
    "What is x in the equation? | -1 <AND> -5 | x = -5 or 5 | 0.5\n"
    "What is x in the equation? | -1 <AND> -5 | x = -1 or x = -5 | 1.0\n"
    "Can you explain this meme? | This meme is poking fun at the fact that the names of the countries "
    "Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green "
    "landscapes, while Greenland is mostly covered in ice and snow. The meme is saying that the person "
    "has trust issues because the names of these countries do not accurately represent their landscapes. "
    "| The meme talks about Iceland and Greenland. It's pointing out that despite their names, Iceland is"
    " not very icy and Greenland isn't very green. | 0.4\n"
    "Can you explain this meme? | This meme is poking fun at the fact that the names of the countries "
    "Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green "
    "landscapes, while Greenland is mostly covered in ice and snow. The meme is saying that the person "
    "has trust issues because the names of these countries do not accurately represent their landscapes. "
    "| The meme is using humor to point out the misleading nature of Iceland's and Greenland's names. "
    "Iceland, despite its name, has lush green landscapes while Greenland is mostly covered in ice and "
    "snow. The text 'This is why I have trust issues' is a playful way to suggest that these "
    "contradictions can lead to distrust or confusion. The humor in this meme is derived from the "
    "unexpected contrast between the names of the countries and their actual physical characteristics. | "
    "1.0\n"
)
_MMVET_RETRY_SUFFIX = "\nPredict the correctness of the answer (digit): "
MMVET_MAX_TRIES = 5


def mmvet_grading_question(sample: dict, prediction: str, prompt: str = MMVET_PROMPT) -> str:
    """The grading request: the few-shot prompt, then `question | ground truth | prediction | `."""
    ground_truth = sample["answer"].replace("<AND>", " <AND> ").replace("<OR>", " <OR> ")
    return prompt + "\n" + " | ".join([sample["question"], ground_truth, prediction, ""])


def grade_mmvet_sample(sample: dict, prediction: str, judge: Judge, prompt: str = MMVET_PROMPT) -> tuple[str, float]:
    r"""
    Grade one answer as the evaluator does: the reply's first word must be a number in [0, 1]; otherwise the judge is
    asked again with a request for a digit (the first re-ask at temperature 0, then 0.5, 1.0, ...), and after five
    re-asks the score is 0.

    Returns:
        `tuple[str, float]`: the reply as recorded in the grade file, and the score.
    """
    question = mmvet_grading_question(sample, prediction, prompt)
    temperature = 0.0
    content = judge([{"role": "user", "content": question}], temperature=temperature, max_tokens=3)
    tries = 1
    while True:
        try:
            content = content.split(" ")[0].strip()
            score = float(content)
            if 0.0 <= score <= 1.0 or math.isnan(score):  # a NaN passes the original's range check too
                return content, score
        except (ValueError, AttributeError):  # not a number, or no text at all
            pass
        retry = [{"role": "user", "content": question + _MMVET_RETRY_SUFFIX}]
        content = judge(retry, temperature=temperature, max_tokens=3)
        tries += 1
        temperature += 0.5
        if tries > MMVET_MAX_TRIES:
            return content, 0.0


def mmvet_capability_scores(data: dict, grades: dict, num_run: int, decimal_places: int, subset=None) -> dict:
    r"""
    `export_result`'s numbers: per capability (a sample counts for each of its capabilities), per capability
    integration (the sample's exact set) and in total, each the mean over runs of `100 * sum(scores) / count`, rounded.

    Returns:
        `dict`: `capabilities` (most common first, then `total`), `capability_integrations` (named by the sorted
        capabilities joined by `_`, most common first), `std` (of the total over runs), `runs` (the totals).
    """
    samples = {key: value for key, value in data.items() if subset is None or key in subset}
    counter = Counter()
    integrations: list[frozenset] = []
    integration_counts = Counter()
    for sample in samples.values():
        capabilities = frozenset(sample["capability"])
        counter.update(capabilities)
        if capabilities not in integration_counts:
            integrations.append(capabilities)
        integration_counts[capabilities] += 1
    capability_sums = {name: np.zeros(num_run) for name, _ in counter.most_common()}
    capability_sums["total"] = np.zeros(num_run)
    integration_sums = {capabilities: np.zeros(num_run) for capabilities in integrations}
    integration_total = np.zeros(num_run)
    for key, grade in grades.items():
        if key not in samples:
            continue
        capabilities = frozenset(samples[key]["capability"])
        for run in range(num_run):
            score = grade["score"][run]
            for name in capabilities:
                capability_sums[name][run] += score
            capability_sums["total"][run] += score
            integration_sums[capabilities][run] += score
            integration_total[run] += score
    counts = {**counter, "total": len(samples)}
    per_run = {name: sums / counts[name] * 100 for name, sums in capability_sums.items()}
    ordered = sorted(integrations, key=lambda capabilities: -integration_counts[capabilities])
    integration_scores = {
        "_".join(sorted(capabilities)): _numpy_round(
            np.mean(integration_sums[capabilities] / integration_counts[capabilities] * 100), decimal_places
        )
        for capabilities in ordered
    }
    integration_scores["total"] = _numpy_round(np.mean(integration_total / len(samples) * 100), decimal_places)
    return {
        "capabilities": {name: _numpy_round(values.mean(), decimal_places) for name, values in per_run.items()},
        "capability_integrations": integration_scores,
        "std": _numpy_round(per_run["total"].std(), decimal_places),
        "runs": [_numpy_round(value, decimal_places) for value in per_run["total"]],
    }


def _numpy_round(value, decimal_places: int) -> float:
    """Round as the evaluator does (`round` of a NumPy float is NumPy's rounding, not Python's)."""
    return float(np.round(np.float64(value), decimal_places))


def score_mmvet(
    mmvet_path: PathLike,
    result_file: PathLike | None = None,
    src: PathLike | None = None,
    result_path: PathLike | None = "results",
    gpt_model: str = MMVET_JUDGE_MODEL,
    use_sub_set: bool = False,
    decimal_places: int = 1,
    num_run: int = 1,
    judge: str | Judge | None = None,
) -> dict:
    r"""
    MM-Vet, as MM-Vet's `mm-vet_evaluator.py --mmvet_path --result_file --result_path --gpt_model --num_run`
    (`--src` converts LLaVA's answers first, as `convert_mmvet_for_eval.py --src --dst`, `--result_file` being the
    destination).

    Args:
        mmvet_path (`str` or `os.PathLike`): The MM-Vet folder (`mm-vet.json`, and `bard_set.json` for
            `use_sub_set`).
        result_file (`str` or `os.PathLike`, *optional*): The results (`{"v1_0": answer, ...}`).
        src (`str` or `os.PathLike`, *optional*): LLaVA's answers (`llava-mm-vet.jsonl`'s answers) to convert.
        result_path (`str` or `os.PathLike`, *optional*, defaults to `"results"`): Where the grade file
            `<model>_<gpt_model>-grade-<num_run>runs.json` is kept (grading resumes from it); `None`: not kept.
        gpt_model (`str`, *optional*, defaults to `"gpt-4-0613"`): The grader (the OpenAI judge's model).
        use_sub_set (`bool`, *optional*): Only the Bard subset.
        decimal_places (`int`, *optional*, defaults to 1), num_run (`int`, *optional*, defaults to 1): As the original.
        judge (`str` or callable, *optional*): See [`load_judge`].

    Returns:
        `dict`: `score` (the total), [`mmvet_capability_scores`]'s numbers, `grade_file`.
    """
    if src is not None:
        results = mmvet_results(read_answers(src, "MM-Vet answers"))
        if result_file is not None:
            write_mmvet_results(result_file, results)
        model = Path(result_file or src).stem
    elif result_file is not None:
        results = read_json(result_file, "MM-Vet result file")
        model = Path(result_file).stem
    else:
        raise ValueError("MM-Vet needs --result_file (converted results) or --src (LLaVA's answers).")
    data = read_json(os.path.join(mmvet_path, "mm-vet.json"), "MM-Vet metadata (mm-vet.json)")
    subset = read_json(os.path.join(mmvet_path, "bard_set.json"), "MM-Vet bard_set.json") if use_sub_set else None
    grade_file = None
    grades: dict = {}
    if result_path is not None:
        grade_file = os.path.join(result_path, f"{model}_{gpt_model}-grade-{num_run}runs.json")
        if os.path.exists(grade_file):
            grades = read_json(grade_file, "MM-Vet grade file")
    judge_callable = None
    for run in range(num_run):
        for key, sample in data.items():
            if (subset is not None and key not in subset) or len(grades.get(key, {}).get("score", [])) >= run + 1:
                continue
            if key not in results:
                raise ValueError(f"MM-Vet sample {key!r} has no answer in the results.")
            judge_callable = judge_callable or load_judge(judge, gpt_model)
            content, score = grade_mmvet_sample(sample, results[key], judge_callable)
            grade = grades.setdefault(key, {"model": [], "content": [], "score": []})
            fields = {"model": getattr(judge_callable, "model", gpt_model), "content": content, "score": score}
            for name, value in fields.items():
                if len(grade[name]) >= run + 1:
                    grade[name][run] = value
                else:
                    grade[name].append(value)
            if grade_file is not None:
                write_json(grade_file, grades, indent=4)
    scores = mmvet_capability_scores(data, grades, num_run, decimal_places, subset)
    return {"benchmark": "mm-vet", "score": scores["capabilities"]["total"], **scores, "grade_file": grade_file}
