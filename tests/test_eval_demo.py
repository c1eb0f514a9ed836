"""`sqllava eval demo`: the offline benchmark answered by `eval run`'s code and scored by `eval score`'s, on the
shipped demo checkpoint at small sizes."""

import json

import pytest

from transformers_sqllava.cli import main
from transformers_sqllava.evaluation.demo_benchmark import TASK_NAMES, DemoBenchmarkSizes, load_demo_benchmark
from transformers_sqllava.evaluation.demo_evaluation import (
    evaluate_on_demo_benchmark,
    format_demo_benchmark,
    write_demo_benchmark_report,
)

SMALL = DemoBenchmarkSizes(
    pope_images=3, vqa_scenes=6, vqa_questions_per_scene=2, caption_scenes=4, mme_images=3, multiple_choice_scenes=6
)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo-benchmark")
    return folder, evaluate_on_demo_benchmark(output_dir=folder, sizes=SMALL, self_questioning_scenes=4)


def test_every_task_is_answered_in_full_and_scored_by_its_benchmark(evaluated):
    folder, report = evaluated
    tasks = load_demo_benchmark(folder / "benchmark")
    assert [task.name for task in tasks] == list(TASK_NAMES)
    for task in tasks:
        answers = [json.loads(line) for line in (folder / "answers" / f"{task.name}.jsonl").read_text().splitlines()]
        assert len(answers) == task.num_questions  # one answer per question, none lost or doubled
        # The table's numbers are the benchmark scorer's on the kept answers file, not a number of its own.
        assert report.headlines[task.name] == task.headline(task.score(folder / "answers" / f"{task.name}.jsonl"))
    assert report.num_questions == sum(task.num_questions for task in tasks)


def test_the_shipped_checkpoint_answers_what_it_was_trained_on(evaluated):
    _, report = evaluated
    # The demo model is trained on these questions (held-out scenes, checkpoint's prompt format): a broken prompt
    # format (image order, system prompt) shows here as chance-level answers. Lettered options it never saw.
    assert report.headlines["vqa"]["accuracy"] >= 80
    assert report.headlines["pope"]["f1"] >= 80
    assert report.headlines["caption"]["BLEU-4"] >= 80
    sq = report.headlines["self-questioning"]
    assert 0 <= sq["valid_questions"] <= 100 and 0 <= sq["answers_to_valid"] <= 100


def test_table_and_json(evaluated, tmp_path):
    _, report = evaluated
    table = format_demo_benchmark(report)
    for row in (*TASK_NAMES, "self-questioning"):
        assert f"| {row} |" in table
    write_demo_benchmark_report(report, tmp_path / "report.json")
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["headlines"] == json.loads(json.dumps(report.headlines))
    assert set(saved["results"]) == set(TASK_NAMES)


def test_command_line_names_a_folder_that_is_not_a_demo_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "demo", "--model-path", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "is not a demo checkpoint" in capsys.readouterr().err
