"""MME against LLaVA's convert_answer_to_mme.py and MME's eval_tool/calculation.py. Run on
tests/fixtures/scoring/mme/ (checked there), the conversion writes the same task files and calculation.py prints:
Perception 1475.0 (existence 125, count 50, position 200, color 50, posters 200, celebrity 200, scene 200,
landmark 50, artwork 200, OCR 200), Cognition 600.0 (commonsense_reasoning 200, numerical_calculation 0,
text_translation 200, code_reasoning 200)."""

import shutil
from pathlib import Path

import pytest

from transformers_sqllava.evaluation.scoring.mme import (
    convert_answers_to_mme,
    mme_ground_truth,
    mme_task_metrics,
    parse_mme_answer,
    score_mme,
)


MME = Path(__file__).parent / "fixtures" / "scoring" / "mme"
EXPECTED_TASKS = {
    "existence": 125.0, "count": 50.0, "position": 200.0, "color": 50.0, "posters": 200.0, "celebrity": 200.0,
    "scene": 200.0, "landmark": 50.0, "artwork": 200.0, "OCR": 200.0, "commonsense_reasoning": 200.0,
    "numerical_calculation": 0.0, "text_translation": 200.0, "code_reasoning": 200.0,
}  # fmt: skip


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("Yes", "yes"),
        ("no", "no"),
        ("Yes, there is.", "yes"),
        ("Not at all.", "no"),  # "not " holds "no"
        ("Eyes closed", "yes"),  # "eyes" holds "yes": MME reads only the first four characters
        ("There is no yellow coat.", "other"),
        ("Two.", "other"),
        ("", "other"),
    ],
)
def test_parse(text, parsed):
    assert parse_mme_answer(text) == parsed


def test_an_image_with_one_of_its_two_answers_wrong():
    rows = [
        ("a.txt", "q1", "Yes", "Yes"), ("a.txt", "q2", "No", "No"),
        ("b.txt", "q3", "Yes", "Yes"), ("b.txt", "q4", "No", "Yes, there is."),
    ]  # fmt: skip
    metrics = mme_task_metrics(rows)
    # accuracy 3/4, accuracy+ (both answers right) 1/2: 75 + 50.
    assert (metrics["accuracy"], metrics["accuracy_plus"], metrics["score"]) == (0.75, 0.5, 125.0)
    assert (metrics["TP"], metrics["TN"], metrics["FP"], metrics["FN"]) == (2, 1, 1, 0)


def test_odd_rows_are_an_error():
    with pytest.raises(ValueError, match="two questions"):
        mme_task_metrics([("a.txt", "q", "Yes", "Yes")])


def test_equals_calculation_py_from_answers(tmp_path):
    result = score_mme(
        answers_file=MME / "answers" / "sqllava-7b.jsonl",
        data_path=MME / "MME_Benchmark_release_version",
        results_dir=tmp_path / "eval_tool" / "answers" / "sqllava-7b",
    )
    assert {task: metrics["score"] for task, metrics in result["tasks"].items()} == EXPECTED_TASKS
    assert (result["score"], result["perception"], result["cognition"]) == (1475.0, 1475.0, 600.0)
    assert result["missing_tasks"] == []
    # The converted files, as convert_answer_to_mme.py writes them (two spaces where the release has two).
    ocr = (tmp_path / "eval_tool" / "answers" / "sqllava-7b" / "OCR.txt").read_text().splitlines()
    assert (
        ocr[1]
        == '0001.txt\tIs the word in the logo "high tite cofeee shop"?  Please answer yes or no.\tNo\tNot at all.'
    )
    # ... which calculation.py's reading scores the same.
    again = score_mme(results_dir=tmp_path / "eval_tool" / "answers" / "sqllava-7b")
    assert again["tasks"] == result["tasks"]


def test_missing_tasks_are_reported(tmp_path):
    results = tmp_path / "results"
    score_mme(
        answers_file=MME / "answers" / "sqllava-7b.jsonl",
        data_path=MME / "MME_Benchmark_release_version",
        results_dir=results,
    )
    for task in ("OCR", "code_reasoning"):
        (results / f"{task}.txt").unlink()
    result = score_mme(results_dir=results)
    assert result["missing_tasks"] == ["OCR", "code_reasoning"]
    assert (result["perception"], result["cognition"]) == (1275.0, 400.0)
    assert "only the tasks present" in result["notes"][0]


def test_ground_truth_layouts():
    ground_truth = mme_ground_truth(MME / "MME_Benchmark_release_version")
    assert (
        ground_truth[
            ("artwork", "10002.txt", "Does this artwork belong to the type of religious? Please answer yes or no.")
        ]
        == "Yes"
    )
    assert len(ground_truth) == 30


def test_unknown_question(tmp_path):
    with pytest.raises(ValueError, match="No MME ground truth"):
        convert_answers_to_mme([{"question_id": "count/x.jpg", "prompt": "?", "text": "yes"}], {})


def test_broken_result_line(tmp_path):
    shutil.copytree(MME / "MME_Benchmark_release_version", tmp_path / "release")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "count.txt").write_text("a.txt\tq\tYes\tYes\tand a tab\n")
    with pytest.raises(ValueError, match="5 tab-separated fields"):
        score_mme(results_dir=tmp_path / "results")


def test_needs_some_input():
    with pytest.raises(ValueError, match="--results_dir"):
        score_mme()
    with pytest.raises(ValueError, match="--data-path"):
        score_mme(answers_file=MME / "answers" / "sqllava-7b.jsonl")
