"""POPE against LLaVA's eval_pope.py, whose output on tests/fixtures/scoring/pope/ was checked by running it there:

Category: adversarial  TP 3 FP 1 TN 2 FN 0  F1 0.857 acc 0.833 precision 0.750 recall 1.000 yes ratio 0.667
Category: random       TP 2 FP 1 TN 2 FN 1  F1 0.667 acc 0.667 precision 0.667 recall 0.667 yes ratio 0.500
"""

import json
from pathlib import Path

import pytest

from transformers_sqllava.evaluation.scoring.pope import parse_pope_answer, pope_metrics, score_pope


POPE = Path(__file__).parent / "fixtures" / "scoring" / "pope"


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("Yes, there is a dog in the image.", "yes"),
        ("No, there is not.", "no"),
        ("no", "no"),
        ("I do not see any cat.", "no"),
        ("The image shows no umbrella. There is a car.", "no"),  # "no" in the first sentence
        ("There is a dog. It is not a cat.", "yes"),  # only the first sentence counts
        ("Not sure.", "yes"),  # "Not" is none of No / no / not
        ("There is a bench.", "yes"),  # neither yes nor no: yes
        ("Maybe", "yes"),
        ("", "yes"),  # an empty answer: yes
    ],
)
def test_llava_parsing(text, parsed):
    assert parse_pope_answer(text) == parsed


@pytest.mark.parametrize("text, parsed", [("yes", "yes"), (" No ", "no"), ("Yes.", "other"), ("", "other")])
def test_lmms_eval_parsing(text, parsed):
    assert parse_pope_answer(text, answer_parsing="lmms-eval") == parsed


def test_unknown_parsing():
    with pytest.raises(ValueError, match="Unknown POPE answer parsing"):
        parse_pope_answer("yes", answer_parsing="strict")


def test_equals_eval_pope():
    result = score_pope(POPE / "coco", POPE / "llava_pope_test.jsonl", POPE / "answers.jsonl")
    adversarial, random = result["categories"]["adversarial"], result["categories"]["random"]
    assert (adversarial["TP"], adversarial["FP"], adversarial["TN"], adversarial["FN"]) == (3, 1, 2, 0)
    assert (random["TP"], random["FP"], random["TN"], random["FN"]) == (2, 1, 2, 1)
    assert adversarial["f1"] == pytest.approx(0.8571428571428571)
    assert adversarial["accuracy"] == pytest.approx(0.8333333333333334)
    assert (adversarial["precision"], adversarial["recall"]) == pytest.approx((0.75, 1.0))
    assert adversarial["yes_ratio"] == pytest.approx(4 / 6)
    assert random["f1"] == pytest.approx(2 / 3) and random["yes_ratio"] == pytest.approx(0.5)
    # The paper's POPE number: the mean F1 of the categories.
    assert result["score"] == pytest.approx(100 * (0.8571428571428571 + 2 / 3) / 2)
    assert result["accuracy"] == pytest.approx(100 * (5 / 6 + 4 / 6) / 2)


def test_lmms_eval_reading_of_the_same_answers():
    result = score_pope(
        POPE / "coco", POPE / "llava_pope_test.jsonl", POPE / "answers.jsonl", answer_parsing="lmms-eval"
    )
    random = result["categories"]["random"]
    # Only "no" (a no label) and "Yes" (a no label) are bare words; "Yes." and the sentences are "other".
    assert (random["TP"], random["FP"], random["TN"], random["FN"], random["num_other"]) == (0, 1, 1, 0, 4)
    assert random["accuracy"] == pytest.approx(1 / 6)


def test_metrics_with_nothing_to_divide():
    metrics = pope_metrics(["no", "no"], ["no", "no"])
    assert metrics["precision"] is None and metrics["f1"] is None and metrics["accuracy"] == 1.0


def test_answers_are_paired_with_labels_in_order(tmp_path):
    # As in the original: the n-th answer of a category meets the n-th label of its file; extra answers are ignored.
    metrics = pope_metrics(["yes", "no", "yes"], ["yes", "no"])
    assert (metrics["TP"], metrics["TN"], metrics["num_samples"]) == (1, 1, 2)


def test_unknown_question_and_stray_file(tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"question_id": 999, "text": "yes"}) + "\n")
    with pytest.raises(ValueError, match="not in"):
        score_pope(POPE / "coco", POPE / "llava_pope_test.jsonl", answers)
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "labels.json").write_text("")
    with pytest.raises(ValueError, match="coco_pope_"):
        score_pope(tmp_path / "coco", POPE / "llava_pope_test.jsonl", POPE / "answers.jsonl")
