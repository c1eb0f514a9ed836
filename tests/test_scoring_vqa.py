"""VQA-family scorers against numbers the original scripts compute on the same fixtures (tests/fixtures/scoring/).

Every expected value was worked out by hand from the official code and checked by running the original script on the
fixture (LLaVA's eval_textvqa.py, convert_vqav2_for_submission.py, convert_vizwiz_for_submission.py,
convert_gqa_for_eval.py; the official VQA API's vqaEval.py); none of that code is part of this repository.
"""

import json
from pathlib import Path

import pytest

from transformers_sqllava.evaluation.scoring.answer_processing import (
    CONTRACTIONS,
    normalize_answer,
    process_digits_and_articles,
    process_punctuation,
    soft_accuracy,
)
from transformers_sqllava.evaluation.scoring.vqa import (
    score_gqa,
    score_textvqa,
    score_vizwiz,
    score_vqav2,
    textvqa_question_from_prompt,
)


FIXTURES = Path(__file__).parent / "fixtures" / "scoring"


@pytest.mark.parametrize(
    "answer, normalized",
    [
        ("Two.", "2"),  # the period goes, the number word becomes a digit
        ("2", "2"),
        ("The answer is 3.5", "answer is 3.5"),  # a period before a digit stays; articles go
        ("No, there is not.", "no there is not"),
        ("dont", "don't"),  # contractions get their apostrophe
        ("The dog's bone", "dog 's bone"),
        ("yes/no", "yes no"),  # a mark not touching a space becomes a space
        ("red - blue", "red blue"),  # ... one touching a space is deleted
        ("1,000", "1000"),
        ("Hello?!", "hello"),
        ("", ""),
        ("A\tcan\nof soup", "can of soup"),
    ],
)
def test_normalize_answer_matches_evalai(answer, normalized):
    assert normalize_answer(answer) == normalized


def test_period_removal_stops_at_32_like_the_original():
    # `re.sub(pattern, "", text, re.UNICODE)` passes 32 as the count.
    text = ".".join("x" * 40)
    assert normalize_answer(text) == "x" * 33 + ".x" * 7


def test_official_steps_and_tables():
    assert process_punctuation("white/blue") == "white blue"
    assert process_punctuation("pizza, cheese") == "pizza cheese"
    assert process_digits_and_articles("An Apple and THE two cats") == "apple and 2 cats"
    assert CONTRACTIONS["somebody'd"] == "somebodyd"  # the table's oddities are kept
    assert len(CONTRACTIONS) == 120


def test_soft_accuracy():
    assert soft_accuracy("2", ["2"] * 10) == 1.0
    assert soft_accuracy("a", ["a"] * 3 + ["b"] * 7) == pytest.approx(0.9)  # 3 x 2/3 + 7 x 1, over 10
    assert soft_accuracy("a", ["a"] + ["b"] * 9) == pytest.approx(0.3)
    assert soft_accuracy("c", ["a"] * 10) == 0.0
    assert soft_accuracy("a", []) == 0.0


@pytest.mark.parametrize(
    "prompt, question",
    [
        ("What is it?\nReference OCR token: A, B\nAnswer the question using a single word or phrase.", "what is it?"),
        ("Reference OCR token: A\nWhat is it?\nAnswer the question using a single word or phrase.", "what is it?"),
        ("What is it?\nAnswer the question using a single word or phrase.", "what is it?"),  # lmms-eval's prompt
        ("OCR tokens: A, B Question: What is it? Short answer:", "what is it?"),
    ],
)
def test_textvqa_question_from_prompt(prompt, question):
    assert textvqa_question_from_prompt(prompt) == question


def test_textvqa_prompt_without_a_question_is_an_error():
    with pytest.raises(ValueError, match="Cannot find the question"):
        textvqa_question_from_prompt("one line only")


def test_textvqa_equals_eval_textvqa():
    # "Dakota Digital." 0.9 (3 of 10 agree), "Two." vs "2"/"two" 1.0, "STOP" 1.0, "35 MPH" 1.0, "" 0 -> 78.00%.
    result = score_textvqa(FIXTURES / "textvqa" / "TextVQA_0.5.1_val.json", FIXTURES / "textvqa" / "answers.jsonl")
    assert result["score"] == pytest.approx(78.0)
    assert result["num_samples"] == 5


def test_textvqa_result_dir(tmp_path):
    (tmp_path / "run.jsonl").write_text((FIXTURES / "textvqa" / "answers.jsonl").read_text())
    (tmp_path / "notes.txt").write_text("skipped")
    result = score_textvqa(FIXTURES / "textvqa" / "TextVQA_0.5.1_val.json", result_dir=tmp_path)
    assert result["experiments"] == {"run": {"accuracy": pytest.approx(78.0), "num_samples": 5}}


VQAV2_UPLOAD = [
    {"question_id": 262144000, "answer": "yes"},
    {"question_id": 262144001, "answer": "swing bat"},
    {"question_id": 262144002, "answer": "2"},
    {"question_id": 393225000, "answer": "white and blue"},
    {"question_id": 393225001, "answer": ""},  # its line in merge.jsonl is broken: skipped, answered ""
    {"question_id": 393225002, "answer": "pizza cheese"},
]


def test_vqav2_upload_and_official_accuracy(tmp_path):
    upload = tmp_path / "upload.json"
    result = score_vqav2(
        dir=FIXTURES / "vqav2",
        ckpt="sqllava-7b",
        split="llava_vqav2_mscoco_test-dev2015",
        result_upload_file=upload,
        annotation_file=FIXTURES / "vqav2" / "v2_mscoco_val2014_annotations.json",
    )
    assert json.loads(upload.read_text()) == VQAV2_UPLOAD
    assert (result["num_questions"], result["num_missing"], result["num_error_lines"]) == (6, 1, 1)
    # vqaEval.py: 100, 100, 100, 90 (3 of 10 say "white and blue"), 0, 30 ("pizza, cheese" once) -> 70.0.
    assert result["score"] == pytest.approx(70.0)
    assert result["per_answer_type"] == pytest.approx({"number": 100.0, "other": 220 / 3, "yes/no": 50.0})
    assert result["per_question_type"]["what is on the"] == pytest.approx(30.0)


def test_vqav2_original_paths(tmp_path):
    data = tmp_path / "vqav2"
    answers = data / "answers" / "test-dev" / "run"
    answers.mkdir(parents=True)
    (answers / "merge.jsonl").write_text(
        (FIXTURES / "vqav2/answers/llava_vqav2_mscoco_test-dev2015/sqllava-7b/merge.jsonl").read_text()
    )
    (data / "llava_vqav2_mscoco_test2015.jsonl").write_text(
        (FIXTURES / "vqav2/llava_vqav2_mscoco_test2015.jsonl").read_text()
    )
    result = score_vqav2(dir=data, ckpt="run", split="test-dev")
    assert result["submission_file"] == str(data / "answers_upload" / "test-dev" / "run.json")
    assert json.loads(Path(result["submission_file"]).read_text()) == VQAV2_UPLOAD
    assert result["score"] is None and "EvalAI" in result["notes"][0]


def test_vqav2_needs_a_run():
    with pytest.raises(ValueError, match="--ckpt and --split"):
        score_vqav2()


def test_vizwiz_upload(tmp_path):
    result = score_vizwiz(
        FIXTURES / "vizwiz" / "llava_test.jsonl",
        FIXTURES / "vizwiz" / "answers.jsonl",
        tmp_path / "up" / "vizwiz.json",
    )
    assert json.loads(Path(result["submission_file"]).read_text()) == [
        {"image": "VizWiz_test_00000000.jpg", "answer": "can of soup"},
        {"image": "VizWiz_test_00000001.jpg", "answer": "unanswerable"},
        {"image": "VizWiz_test_00000002.jpg", "answer": "3"},
        {"image": "VizWiz_test_00000003.jpg", "answer": "don't panic"},
    ]


def test_vizwiz_needs_every_answer(tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_text("\n".join((FIXTURES / "vizwiz" / "answers.jsonl").read_text().splitlines()[:3]) + "\n")
    with pytest.raises(ValueError, match="1 VizWiz question"):
        score_vizwiz(FIXTURES / "vizwiz" / "llava_test.jsonl", answers, tmp_path / "up.json")


def test_gqa_conversion_and_eval(tmp_path):
    result = score_gqa(
        src=FIXTURES / "gqa" / "answers.jsonl",
        dst=tmp_path / "testdev_balanced_predictions.json",
        questions=FIXTURES / "gqa" / "testdev_balanced_questions.json",
    )
    predictions = json.loads((tmp_path / "testdev_balanced_predictions.json").read_text())
    assert [row["prediction"] for row in predictions] == ["no", "the woman", "no", "white", "blue", "yes"]
    # "the woman" != "woman" and "blue" != "red": 4 of 6; binary 3/3; open (query) 1/3.
    assert result["score"] == pytest.approx(400 / 6)
    assert (result["binary"], result["open"]) == pytest.approx((100.0, 100 / 3))
    # Chi-square per global group: person (0-1)^2/1 = 1 over 1, color 1 over 2 -> 3 / 3, over 100.
    assert result["distribution"] == pytest.approx(0.01)


def test_gqa_missing_prediction(tmp_path):
    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps([{"questionId": "201307251", "prediction": "no"}]))
    with pytest.raises(ValueError, match="5 balanced GQA question"):
        score_gqa(predictions=predictions, questions=FIXTURES / "gqa" / "testdev_balanced_questions.json")
