"""ScienceQA against LLaVA's eval_science_qa.py, which prints on tests/fixtures/scoring/scienceqa/ (checked by
running it there): `Total: 8, Correct: 3, Accuracy: 37.50%, IMG-Accuracy: 40.00%`, and writes the same two files."""

import json
from pathlib import Path

import pytest

from transformers_sqllava.evaluation.scoring.scienceqa import choice_index, parse_scienceqa_answer, score_scienceqa


SQA = Path(__file__).parent / "fixtures" / "scoring" / "scienceqa"


@pytest.mark.parametrize(
    "text, letter",
    [
        ("A", "A"),
        ("B. hat", "B"),
        ("The answer is C.", "C"),
        ("The answer is C", "FAILED"),  # the pattern's last "." needs a character
        ("The answer is A. The answer is A.", "FAILED"),  # two matches
        ("a", "FAILED"),
        ("", "FAILED"),
        ("E", "E"),
    ],
)
def test_parse(text, letter):
    assert parse_scienceqa_answer(text) == letter


def test_letter_beyond_the_choices_is_wrong():
    assert choice_index("E", 3) == -1 and choice_index("C", 3) == 2


def test_equals_eval_science_qa(tmp_path):
    result = score_scienceqa(SQA, SQA / "answers.jsonl", tmp_path / "output.json", tmp_path / "result.json")
    assert (result["correct"], result["count"], result["img_correct"], result["img_count"]) == (3, 8, 2, 5)
    assert result["accuracy"] == pytest.approx(37.5)
    assert result["score"] == pytest.approx(40.0)  # SQA-I
    assert (result["num_failed"], result["num_missing"]) == (4, 1)
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["acc"] == 37.5 and saved["correct"] == 3 and saved["count"] == 8
    assert saved["results"] == {"1": 0, "2": 1, "3": 2, "4": -1, "5": -1, "6": -1, "7": -1, "8": -1}
    assert saved["outputs"]["8"] == "FAILED"
    analysis = json.loads((tmp_path / "output.json").read_text())
    assert [record["question_id"] for record in analysis["correct"]] == ["1", "2", "3"]
    assert analysis["incorrect"][-1] == {
        "question_id": "8", "parsed_ans": "FAILED", "ground_truth": "B", "question": "Unknown", "pred": "FAILED",
        "is_multimodal": False,
    }  # fmt: skip


def test_other_split_and_no_output_files():
    result = score_scienceqa(SQA, SQA / "answers.jsonl", split="train")
    assert result["count"] == 1 and result["num_missing"] == 1 and result["score"] is None
    assert "output_file" not in result
