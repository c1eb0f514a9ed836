"""The demo-world self-training experiment end to end at a tiny budget: unlabeled scenes -> self-made pairs -> STIC's
DPO (-> stage 2) -> the demo benchmark, and what each variant may change."""

import json

import pytest
import torch
from safetensors.torch import load_file

from transformers_sqllava.demo.record import DEFAULT_CHECKPOINT, load_training_record
from transformers_sqllava.demo.self_training import COLUMNS, format_table, run_experiment
from transformers_sqllava.evaluation.demo_benchmark import DemoBenchmarkSizes

SMALL = DemoBenchmarkSizes(
    pope_images=2, vqa_scenes=3, vqa_questions_per_scene=2, caption_scenes=2, mme_images=2, multiple_choice_scenes=3
)
TINY = {"num_images": 8, "dpo_steps": 3, "dpo_batch_size": 4, "stage2_rows": 8, "stage2_steps": 2,
        "stage2_batch_size": 4, "threads": 1}  # fmt: skip


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    folder = tmp_path_factory.mktemp("self-training")
    threads = torch.get_num_threads()
    summary = run_experiment(folder, variants=("sq", "stic+stage2"), seeds=(0,),
                             evaluation_kwargs={"sizes": SMALL, "self_questioning_scenes": 3}, **TINY)  # fmt: skip
    torch.set_num_threads(threads)  # the runs set their own count; later tests compare across processes
    return folder, summary


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_table_has_the_start_and_every_variant(experiment):
    folder, summary = experiment
    assert [row["variant"] for row in summary["table"]] == ["start (shipped checkpoint)", "sq", "stic+stage2"]
    for row in summary["table"][1:]:
        assert set(row["columns"]) == {label for _, _, label in COLUMNS}
        for label, (mean, spread, change) in row["columns"].items():
            start = summary["table"][0]["columns"][label][0]
            assert change == pytest.approx(mean - start) and spread == 0  # one seed: no spread
    assert "| sq |" in (folder / "self_training.md").read_text() == format_table(summary["table"]) + "\n"


def test_dpo_moves_the_language_model_only_and_stage2_keeps_the_image_path(experiment):
    folder, _ = experiment
    start = weights(DEFAULT_CHECKPOINT)
    for variant in ("sq", "stic+stage2"):
        tuned = weights(folder / f"{variant}-seed0")
        assert tuned.keys() == start.keys()  # the LoRA was merged: a plain demo checkpoint
        image_path = [name for name in start if "vision_tower" in name or "multi_modal_projector" in name]
        assert image_path and all(torch.equal(tuned[name], start[name]) for name in image_path)
        language = [name for name in start if "language_model" in name and "layers" in name]
        assert any(not torch.equal(tuned[name], start[name]) for name in language)
    record = load_training_record(folder / "stic+stage2-seed0")["self_training"]
    assert record["stage2"]["rows"] == 8 and record["started_from"] == "demo"
    assert sum(record["pairs_written"].values()) == record["dpo"]["pairs"]


def test_only_images_reach_the_sq_pairs(experiment):
    folder, _ = experiment
    record = load_training_record(folder / "sq-seed0")["self_training"]
    assert set(record["pairs_written"]) == {"sq-question", "sq-answer"}
    assert record["stage2"] is None


def test_rerun_resumes_without_training(experiment, monkeypatch):
    folder, summary = experiment
    import transformers_sqllava.demo.self_training as module

    monkeypatch.setattr(module, "self_train_demo", lambda *args, **kwargs: pytest.fail("a finished run was redone"))
    again = run_experiment(folder, variants=("sq", "stic+stage2"), seeds=(0,),
                           evaluation_kwargs={"sizes": SMALL, "self_questioning_scenes": 3}, **TINY)  # fmt: skip
    assert json.loads(json.dumps(again["table"])) == json.loads(json.dumps(summary["table"]))


def test_example_script_builds_pairs_trains_and_merges(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "self_train.py"
    output = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(script), "--model_name_or_path", "demo", "--make_tiny_demo_data", str(tmp_path / "images"),
         "--kinds", "stic", "sq-question", "--prompts", "demo", "--limit", "8", "--output_dir", str(output),
         "--max_steps", "2", "--per_device_train_batch_size", "4", "--learning_rate", "5e-5", "--lora_r", "8",
         "--lora_alpha", "16", "--use_cpu", "--bf16", "false", "--activation_checkpointing", "false",
         "--report_to", "none", "--save_strategy", "no"],
        capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    kinds = {json.loads(line)["kind"] for line in (output / "preferences.jsonl").read_text().splitlines()}
    assert kinds == {"stic", "sq-question"}
    assert (output / "adapter_model.safetensors").is_file() and (output / "merged" / "model.safetensors").is_file()
    assert "FutureWarning" not in result.stderr  # the example's output is quiet
