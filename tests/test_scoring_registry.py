"""`sqllava eval score BENCHMARK --<original arguments>` (`registry.main`): every benchmark has a scorer, the
original scripts' argument names parse, and the result is one JSON object on the last line of standard output."""

import inspect
import json
from pathlib import Path

import pytest

from transformers_sqllava.evaluation.scoring import registry
from transformers_sqllava.evaluation.scoring.registry import SCORERS, build_parser, main, score


FIXTURES = Path(__file__).parent / "fixtures" / "scoring"


def run(argv, capsys):
    status = main([str(value) for value in argv])
    captured = capsys.readouterr()
    return status, captured.out.strip().splitlines(), captured.err


def test_every_benchmark_is_registered():
    assert set(SCORERS) == {
        "vqav2", "gqa", "vizwiz", "textvqa", "pope", "scienceqa", "mme", "mmbench", "mmbench-cn", "seed",
        "llava-bench", "mm-vet", "caption",
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_arguments_are_the_scorers_keywords(name):
    scorer = SCORERS[name]
    parameters = inspect.signature(registry.score_mmbench if name == "mmbench-cn" else scorer.function).parameters
    assert {argument.dest for argument in scorer.arguments} <= set(parameters)
    assert scorer.original and scorer.description


def test_original_argument_names_parse():
    parser = build_parser()
    assert (
        parser.parse_args(
            ["pope", "--annotation-dir", "a", "--question-file", "q", "--result-file", "r"]
        ).annotation_dir
        == "a"
    )
    assert parser.parse_args(["textvqa", "--annotation-file", "a", "--result-file", "r"]).result_file == "r"
    args = parser.parse_args(
        ["scienceqa", "--base-dir", "b", "--result-file", "r", "--output-file", "o", "--output-result", "x"]
    )
    assert (args.base_dir, args.output_result, args.split) == ("b", "x", "test")
    assert parser.parse_args(["mme", "--results_dir", "d"]).results_dir == "d"
    args = parser.parse_args(["llava-bench", "-q", "q", "-c", "c", "-a", "g", "m", "-r", "r", "-o", "o"])
    assert args.answer_list == ["g", "m"] and args.judge_model == "gpt-4-0314"
    args = parser.parse_args(["mm-vet", "--mmvet_path", "p", "--result_file", "r", "--num_run", "5", "--use_sub_set"])
    assert (args.num_run, args.use_sub_set, args.gpt_model) == (5, True, "gpt-4-0613")
    args = parser.parse_args(["caption", "--answers-file", "a", "--QA", "q", "--max_words", "30", "--model_name", "m"])
    assert (args.qa, args.max_words, args.model_name, args.dataset) == ("q", 30, "m", "")
    assert parser.parse_args(["vqav2", "--ckpt", "c", "--split", "s"]).dir == "./playground/data/eval/vqav2"


def test_pope_command_prints_json_last(tmp_path, capsys):
    pope = FIXTURES / "pope"
    status, lines, _ = run(
        ["pope", "--annotation-dir", pope / "coco", "--question-file", pope / "llava_pope_test.jsonl",
         "--result-file", pope / "answers.jsonl", "--output-json", tmp_path / "out" / "pope.json"],
        capsys,
    )  # fmt: skip
    result = json.loads(lines[-1])
    assert status == 0 and result["benchmark"] == "pope"
    assert result["score"] == pytest.approx(100 * (6 / 7 + 2 / 3) / 2)
    assert json.loads((tmp_path / "out" / "pope.json").read_text()) == result


def test_textvqa_and_scienceqa_commands(tmp_path, capsys):
    status, lines, _ = run(
        ["textvqa", "--annotation-file", FIXTURES / "textvqa" / "TextVQA_0.5.1_val.json",
         "--result-file", FIXTURES / "textvqa" / "answers.jsonl"],
        capsys,
    )  # fmt: skip
    assert status == 0 and json.loads(lines[-1])["score"] == pytest.approx(78.0)
    sqa = FIXTURES / "scienceqa"
    status, lines, _ = run(
        ["scienceqa", "--base-dir", sqa, "--result-file", sqa / "answers.jsonl",
         "--output-file", tmp_path / "o.json", "--output-result", tmp_path / "r.json"],
        capsys,
    )  # fmt: skip
    assert status == 0 and json.loads(lines[-1])["score"] == pytest.approx(40.0) and (tmp_path / "r.json").is_file()


def test_mme_and_mmbench_cn_commands(tmp_path, capsys):
    status, lines, _ = run(
        ["mme", "--answers-file", FIXTURES / "mme" / "answers" / "sqllava-7b.jsonl",
         "--data-path", FIXTURES / "mme" / "MME_Benchmark_release_version", "--results_dir", tmp_path / "mme"],
        capsys,
    )  # fmt: skip
    assert status == 0 and json.loads(lines[-1])["perception"] == 1475.0
    status, lines, _ = run(["mme", "--results_dir", tmp_path / "mme"], capsys)
    assert json.loads(lines[-1])["cognition"] == 600.0
    status, lines, _ = run(
        ["mmbench-cn", "--annotation-file", FIXTURES / "mmbench" / "mmbench_dev_20230712.tsv",
         "--result-dir", FIXTURES / "mmbench", "--experiment", "answers"],
        capsys,
    )  # fmt: skip
    result = json.loads(lines[-1])
    assert status == 0 and result["benchmark"] == "mmbench-cn" and result["score"] == 50.0


def test_llava_bench_with_a_python_judge(tmp_path, capsys, monkeypatch):
    module = tmp_path / "my_judge.py"
    module.write_text("def judge(messages, temperature, max_tokens):\n    return '8 4\\nok'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    bench = FIXTURES / "llava_bench"
    status, lines, _ = run(
        ["llava-bench", "-q", bench / "questions.jsonl", "-c", bench / "context.jsonl",
         "-a", bench / "answers_gpt4.jsonl", bench / "answers_sqllava.jsonl", "-o", tmp_path / "reviews.jsonl",
         "--judge", "my_judge:judge"],
        capsys,
    )  # fmt: skip
    assert status == 0 and json.loads(lines[-1])["score"] == 50.0
    status, lines, _ = run(["llava-bench", "-f", tmp_path / "reviews.jsonl"], capsys)
    assert json.loads(lines[-1])["categories"]["all"] == {"relative": 50.0, "gpt4": 80.0, "model": 40.0}


def test_errors_exit_1_with_a_message(tmp_path, capsys):
    status, lines, error = run(
        ["textvqa", "--annotation-file", tmp_path / "missing.json", "--result-file", "x"], capsys
    )
    assert status == 1 and lines == [] and error.startswith("error: No TextVQA annotation file")
    status, _, error = run(["gqa"], capsys)
    assert status == 1 and "exactly one of --src" in error
    with pytest.raises(SystemExit):
        main(["not-a-benchmark"])


def test_score_function():
    result = score(
        "seed", annotation_file=FIXTURES / "seed" / "SEED-Bench.json", result_file=FIXTURES / "seed" / "answers.jsonl"
    )
    assert result["accuracy"] == pytest.approx(60.0)
    with pytest.raises(ValueError, match="Unknown benchmark"):
        score("mmmu")


def test_the_sqllava_command_runs_the_same_scorer(tmp_path):
    # `sqllava eval score pope ...` through the installed console script: the same JSON as `registry.main`; a missing
    # file is the CLI's one-line user error (exit 2).
    import subprocess

    pope = FIXTURES / "pope"
    argv = ["pope", "--annotation-dir", pope / "coco", "--question-file", pope / "llava_pope_test.jsonl",
            "--result-file", pope / "answers.jsonl"]  # fmt: skip
    script = "import sys, sqllava_cli; sys.argv[0] = 'sqllava'; raise SystemExit(sqllava_cli.main())"
    command = ["python", "-c", script, "eval", "score", *map(str, argv)]
    result = subprocess.run([sys_executable(), *command[1:]], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == score(
        "pope", annotation_dir=str(pope / "coco"), question_file=str(pope / "llava_pope_test.jsonl"),
        result_file=str(pope / "answers.jsonl"),
    )
    missing = [*command[:3], "eval", "score", "pope", "--annotation-dir", str(tmp_path), "--question-file",
               str(tmp_path / "none.jsonl"), "--result-file", str(tmp_path / "none.jsonl")]  # fmt: skip
    result = subprocess.run([sys_executable(), *missing[1:]], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("sqllava eval: error:")


def sys_executable() -> str:
    import sys

    return sys.executable
