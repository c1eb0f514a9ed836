"""MMBench's upload sheet against LLaVA's convert_mmbench_for_submission.py (its .xlsx on
tests/fixtures/scoring/mmbench/ read back cell for cell), the local circular estimate worked by hand, and SEED-Bench
against convert_seed_for_submission.py, which prints on tests/fixtures/scoring/seed/ (checked there): Scene
Understanding 50.00%, Instance Identity 100.00%, Action Recognition 50.00%, Total 60.00%, image 66.67%, video 50.00%.
"""

import json
from pathlib import Path

import pytest

from transformers_sqllava.evaluation.scoring.multiple_choice import infer_option_letter, score_mmbench, score_seed


FIXTURES = Path(__file__).parent / "fixtures" / "scoring"
CHOICES = {"A": "cat", "B": "dog", "C": "bird", "D": "fish"}


@pytest.mark.parametrize(
    "prediction, letter",
    [
        ("B", "B"),
        ("C.", "C"),
        ("(D) fish", "D"),
        ("The answer is C.", "C"),
        ("It is a dog.", "B"),  # no letter: the one option whose text it holds
        ("A cat or a dog", None),  # "A" as an article, two option texts
        ("I cannot tell.", None),
        ("", None),
    ],
)
def test_infer_option_letter(prediction, letter):
    assert infer_option_letter(prediction, CHOICES) == letter


def test_mmbench_sheet_equals_the_original(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    result = score_mmbench(
        FIXTURES / "mmbench" / "mmbench_dev_20230712.tsv",
        result_dir=FIXTURES / "mmbench",
        upload_dir=tmp_path / "upload",
        experiment="answers",
    )
    rows = list(openpyxl.load_workbook(result["submission_file"]).active.iter_rows(values_only=True))
    assert Path(result["submission_file"]) == tmp_path / "upload" / "answers.xlsx"
    assert rows == [
        ("index", "question", "A", "B", "C", "D", "prediction", "answer", "split"),
        (0, "What is the main object?", "cat", "dog", "bird", "fish", "A", "A", "dev"),
        (1000000, "What is the main object?", "dog", "bird", "fish", "cat", "D", "D", "dev"),
        (2000000, "What is the main object?", "bird", "fish", "cat", "dog", "C.", "C", "dev"),
        (1, "How many people?", "1", "2", None, None, "B", "B", "dev"),
        (1000001, "How many people?", "2", "1", None, None, "B", "A", "dev"),
        (2, "Which season is it?", "summer", "winter", None, None, "It is winter.", "B", "dev"),
        (3, "Is it day?", "yes", "no", None, None, None, "A", "dev"),
    ]


def test_mmbench_local_circular_estimate():
    result = score_mmbench(
        FIXTURES / "mmbench" / "mmbench_dev_20230712.tsv", result_file=FIXTURES / "mmbench" / "answers.jsonl"
    )
    # Question 0: right in all three rotations; 1: wrong after rotation; 2: right by the option's text; 3: no answer.
    assert result["score"] == 50.0 and result["official"] is False
    assert (result["num_questions"], result["num_rows"], result["num_unmatched"]) == (4, 7, 1)
    assert result["per_category"] == {"attribute_recognition": 0.0, "counting": 0.0, "image_scene": 100.0}
    assert "submission_file" not in result


def test_mmbench_test_split_has_no_local_score(tmp_path):
    lines = (FIXTURES / "mmbench" / "mmbench_dev_20230712.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    column = header.index("answer")
    blanked = [
        "\t".join(value if i != column else "" for i, value in enumerate(line.split("\t"))) for line in lines[1:]
    ]
    (tmp_path / "test.tsv").write_text("\n".join([lines[0], *blanked]) + "\n")
    result = score_mmbench(tmp_path / "test.tsv", result_file=FIXTURES / "mmbench" / "answers.jsonl")
    assert result["score"] is None and "server" in result["notes"][0]


def test_mmbench_needs_the_official_columns(tmp_path):
    (tmp_path / "bad.tsv").write_text("index\tquestion\n0\tq\n")
    (tmp_path / "answers.jsonl").write_text(json.dumps({"question_id": 0, "text": "A"}) + "\n")
    with pytest.raises(ValueError, match="lacks the column"):
        score_mmbench(
            tmp_path / "bad.tsv", result_file=tmp_path / "answers.jsonl", result_upload_file=tmp_path / "x.xlsx"
        )


def test_seed_equals_the_original(tmp_path):
    result = score_seed(
        FIXTURES / "seed" / "SEED-Bench.json", FIXTURES / "seed" / "answers.jsonl", tmp_path / "upload.jsonl"
    )
    assert result["per_question_type"] == pytest.approx(
        {"Scene Understanding": 50.0, "Instance Identity": 100.0, "Action Recognition": 50.0}
    )  # "B." is not "B": exact match
    assert (result["accuracy"], result["image_accuracy"], result["video_accuracy"]) == pytest.approx(
        (60.0, 200 / 3, 50.0)
    )
    assert result["score"] == result["image_accuracy"]
    rows = [json.loads(line) for line in (tmp_path / "upload.jsonl").read_text().splitlines()]
    assert rows[0] == {"question_id": "101669", "prediction": "A"} and rows[-1] == {
        "question_id": "v2",
        "prediction": "B",
    }


def test_seed_missing_answer_counts_wrong(tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_text("\n".join((FIXTURES / "seed" / "answers.jsonl").read_text().splitlines()[1:]) + "\n")
    result = score_seed(FIXTURES / "seed" / "SEED-Bench.json", answers)
    assert result["per_question_type"]["Scene Understanding"] == 0.0
    with pytest.raises(ValueError, match="101669"):
        score_seed(FIXTURES / "seed" / "SEED-Bench.json", answers, tmp_path / "upload.jsonl")
