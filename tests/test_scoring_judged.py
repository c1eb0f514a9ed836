"""LLaVA-Bench and MM-Vet with fake judges (no network), against the originals run on the same fixtures with the
same fake replies (tests/fixtures/scoring/llava_bench/, mmvet/; checked there):

- eval_gpt_review_bench.py writes the review lines of `EXPECTED_REVIEWS`, and summarize_gpt_review.py prints
  `all 69.6 57.5 40.0`, `llava_bench_complex 37.5 80.0 30.0`, `llava_bench_conv 83.3 30.0 25.0`,
  `llava_bench_detail 88.9 90.0 80.0`;
- mm-vet_evaluator.py grades 1.0, 0.5, 0.0, 0.0, 0.2 and reports rec 23.3, ocr 50.0, math 50.0, know 0.0, spat 20.0,
  total 34.0; per integration ocr_math 50.0, rec 50.0, know_rec 0.0, rec_spat 20.0.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from transformers_sqllava.evaluation.scoring.judged import (
    grade_mmvet_sample,
    parse_review_scores,
    score_llava_bench,
    score_mmvet,
)
from transformers_sqllava.evaluation.scoring.judges import OpenAIChatJudge, load_judge


FIXTURES = Path(__file__).parent / "fixtures" / "scoring"
BENCH = FIXTURES / "llava_bench"
EXPECTED_REVIEWS = [
    {"id": 1, "question_id": 0, "answer1_id": "gpt4-0", "answer2_id": "sq-0", "category": "llava_bench_conv", "content": "7,6\nFine.", "tuple": [7.0, 6.0]},
    {"id": 2, "question_id": 1, "answer1_id": "gpt4-1", "answer2_id": "sq-1", "category": "llava_bench_detail", "content": "9 8\nBoth are good.", "tuple": [9.0, 8.0]},
    {"id": 3, "question_id": 2, "answer1_id": "gpt4-2", "answer2_id": "sq-2", "category": "llava_bench_complex", "content": "8 3\nAssistant 2 is wrong.", "tuple": [8.0, 3.0]},
    {"id": 4, "question_id": 3, "answer1_id": "gpt4-3", "answer2_id": "sq-3", "category": "llava_bench_conv", "content": "Assistant 1: 8\nAssistant 2: 5", "tuple": [-1, -1]},
]  # fmt: skip


class FakeBenchJudge:
    """Replies by the model's answer (Assistant 2); records every request."""

    model = "fake-gpt-4"

    def __init__(self):
        self.requests = []

    def __call__(self, messages, *, temperature, max_tokens):
        self.requests.append((messages, temperature, max_tokens))
        answer = messages[1]["content"].split("[Assistant 2]\n")[1].split("\n\n[End of Assistant 2]")[0]
        if "detailed" in answer:
            return "9 8\nBoth are good."
        if "wrong" in answer:
            return "8 3\nAssistant 2 is wrong."
        if "??" in answer:
            return "Assistant 1: 8\nAssistant 2: 5"  # unparsable: [-1, -1]
        return "7,6\nFine."


class FakeGrader:
    """Replies by the prediction (the third field of the request's last table row); records temperatures."""

    def __init__(self):
        self.temperatures = []

    def __call__(self, messages, *, temperature, max_tokens):
        assert max_tokens == 3
        self.temperatures.append(temperature)
        lines = messages[0]["content"].rstrip("\n").split("\n")
        retry = lines[-1].startswith("Predict the correctness")
        prediction = (lines[-2] if retry else lines[-1]).split(" | ")[2]
        replies = {"x = -1 or x = -5": "1.0", "It is blue.": "0.5 because", "The total is 41.": "1.5"}
        if prediction == "A cat.":
            return "0.0" if retry else "Correctness: 0.0"
        return replies.get(prediction, "0.2")


@pytest.mark.parametrize(
    "review, scores",
    [("8 6\nbecause", [8.0, 6.0]), ("8,6", [8.0, 6.0]), ("8, 6", [-1, -1]), ("Scores: 8 6", [-1, -1]), ("", [-1, -1])],
)
def test_parse_review_scores(review, scores):
    # "8, 6" becomes "8  6", three pieces: unparsed, as in the original.
    assert parse_review_scores(review) == scores


def bench_arguments(tmp_path):
    return dict(
        question=BENCH / "questions.jsonl",
        context=BENCH / "context.jsonl",
        answer_list=[BENCH / "answers_gpt4.jsonl", BENCH / "answers_sqllava.jsonl"],
        output=tmp_path / "reviews.jsonl",
    )


def test_llava_bench_equals_the_original(tmp_path):
    judge = FakeBenchJudge()
    result = score_llava_bench(**bench_arguments(tmp_path), judge=judge)
    reviews = [json.loads(line) for line in (tmp_path / "reviews.jsonl").read_text().splitlines()]
    assert reviews == EXPECTED_REVIEWS
    assert result["score"] == 69.6
    assert result["categories"] == {
        "all": {"relative": 69.6, "gpt4": 57.5, "model": 40.0},
        "llava_bench_complex": {"relative": 37.5, "gpt4": 80.0, "model": 30.0},
        "llava_bench_conv": {"relative": 83.3, "gpt4": 30.0, "model": 25.0},
        "llava_bench_detail": {"relative": 88.9, "gpt4": 90.0, "model": 80.0},
    }
    assert result["num_unparsed"] == 1
    # The review request: system prompt, context (a list of captions joined by newlines), both answers, the rule.
    messages, temperature, max_tokens = judge.requests[2]
    assert messages[0]["content"] == "You are a helpful and precise assistant for checking the quality of the answer."
    assert messages[1]["content"].startswith(
        "[Context]\nA mural on a brick wall.\nA sign reads 'Welcome'.\n\n[Question]\nWhat might be the purpose of this "
        "artwork?\n\n[Assistant 1]\nReference answer 2.\n\n[End of Assistant 1]\n\n[Assistant 2]\nThis answer is "
        "wrong.\n\n[End of Assistant 2]\n\n[System]\nWe would like to request your feedback"
    )
    assert (temperature, max_tokens) == (0.2, 1024)


def test_llava_bench_resumes_and_summarises(tmp_path):
    arguments = bench_arguments(tmp_path)
    (tmp_path / "reviews.jsonl").write_text("".join(json.dumps(review) + "\n" for review in EXPECTED_REVIEWS[:2]))
    judge = FakeBenchJudge()
    result = score_llava_bench(**arguments, judge=judge)
    assert len(judge.requests) == 2 and result["num_reviews"] == 4 and result["score"] == 69.6
    summary = score_llava_bench(files=[tmp_path / "reviews.jsonl"], ignore=["3"])
    assert summary["categories"]["all"] == {"relative": 70.8, "gpt4": 80.0, "model": 56.7}


def test_llava_bench_unknown_category(tmp_path):
    rule = tmp_path / "rule.json"
    rule.write_text(json.dumps({"llava_bench_conv": {"role": "Assistant", "prompt": "p"}}))
    with pytest.raises(ValueError, match="llava_bench_detail"):
        score_llava_bench(**bench_arguments(tmp_path), rule=rule, judge=FakeBenchJudge())


def test_mmvet_equals_the_original(tmp_path):
    grader = FakeGrader()
    result = score_mmvet(
        FIXTURES / "mmvet", src=FIXTURES / "mmvet" / "answers.jsonl", result_file=tmp_path / "sqllava-7b.json",
        result_path=tmp_path, judge=grader,
    )  # fmt: skip
    assert json.loads((tmp_path / "sqllava-7b.json").read_text())["v1_1"] == "It is blue."
    assert result["capabilities"] == {"rec": 23.3, "ocr": 50.0, "math": 50.0, "know": 0.0, "spat": 20.0, "total": 34.0}
    assert result["capability_integrations"] == {
        "math_ocr": 50.0,
        "rec": 50.0,
        "know_rec": 0.0,
        "rec_spat": 20.0,
        "total": 34.0,
    }
    assert (result["score"], result["std"], result["runs"]) == (34.0, 0.0, [34.0])
    grades = json.loads(Path(result["grade_file"]).read_text())
    assert Path(result["grade_file"]).name == "sqllava-7b_gpt-4-0613-grade-1runs.json"
    assert {key: (grade["content"], grade["score"]) for key, grade in grades.items()} == {
        "v1_0": (["1.0"], [1.0]), "v1_1": (["0.5"], [0.5]), "v1_2": (["0.0"], [0.0]), "v1_3": (["1.5"], [0.0]),
        "v1_4": (["0.2"], [0.2]),
    }  # fmt: skip
    # One call each, a re-ask for "Correctness: 0.0", five re-asks (temperature 0, 0.5, ...) for the out-of-range 1.5.
    assert grader.temperatures == [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 0.0]
    # Grading resumes from the grade file: nothing is asked again.
    again = FakeGrader()
    assert (
        score_mmvet(FIXTURES / "mmvet", result_file=tmp_path / "sqllava-7b.json", result_path=tmp_path, judge=again)[
            "score"
        ]
        == 34.0
    )
    assert again.temperatures == []


def test_mmvet_bard_subset(tmp_path):
    result = score_mmvet(
        FIXTURES / "mmvet",
        src=FIXTURES / "mmvet" / "answers.jsonl",
        result_path=None,
        use_sub_set=True,
        judge=FakeGrader(),
    )
    assert result["capabilities"]["total"] == 50.0 and result["grade_file"] is None  # (1.0 + 0.5 + 0.0) / 3


def test_mmvet_empty_reply_is_reasked():
    replies = iter([None, "", "0.7"])
    content, score = grade_mmvet_sample(
        {"question": "q", "answer": "a"}, "p", lambda messages, **kwargs: next(replies)
    )
    assert (content, score) == ("0.7", 0.7)


def test_load_judge(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        load_judge("openai", "gpt-4-0613")
    assert load_judge("json:dumps", "m") is json.dumps
    with pytest.raises(ValueError, match="package.module:function"):
        load_judge("json", "m")


class _ChatHandler(BaseHTTPRequestHandler):
    requests = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _ChatHandler.requests.append((self.path, self.headers["Authorization"], body))
        if len(_ChatHandler.requests) == 1:  # rate-limited once
            self.send_response(429)
            self.end_headers()
            return
        reply = json.dumps(
            {"model": body["model"], "choices": [{"message": {"role": "assistant", "content": "9 7\nok"}}]}
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(reply.encode())

    def log_message(self, *args):
        pass


def test_openai_judge_on_a_local_endpoint(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _ChatHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.server_port}/v1/")
        judge = OpenAIChatJudge("gpt-4-0314", retry_wait=0.01)
        reply = judge([{"role": "user", "content": "hi"}], temperature=0.2, max_tokens=5)
    finally:
        server.shutdown()
        server.server_close()
    assert reply == "9 7\nok"
    path, authorization, body = _ChatHandler.requests[-1]
    assert (path, authorization, len(_ChatHandler.requests)) == ("/v1/chat/completions", "Bearer test-key", 2)
    assert body == {
        "model": "gpt-4-0314",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.2,
        "max_tokens": 5,
    }
