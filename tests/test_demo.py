"""The offline demo: `sqllava demo` on the committed checkpoint, and a smoke run of the training script.

The full demo (300 held-out questions, 150 self-asked ones) is what the README quotes; here a reduced run checks the
same code path, the report's sections, the PNGs, and accuracies consistent with the full run's recorded numbers.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from sqllava_tiny import single_torch_thread
from transformers import AutoModelForImageTextToText, AutoProcessor

from transformers_sqllava import SQLlavaConfig, SQLlavaForConditionalGeneration, SQLlavaProcessor
from transformers_sqllava.cli import main as sqllava_main
from transformers_sqllava.demo import checker, generate_scene
from transformers_sqllava.demo.record import DEFAULT_CHECKPOINT, TRAINING_RECORD, format_targets
from transformers_sqllava.demo.run import format_report, judge_self_asked, load_demo_model, run_demo
from transformers_sqllava.demo.train import (
    DemoTrainingConfig,
    build_demo_model_config,
    build_demo_processor,
    train_demo_model,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with single_torch_thread():
        yield


def test_committed_checkpoint_is_small_complete_and_loads_from_the_package():
    files = {path.name for path in DEFAULT_CHECKPOINT.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "demo_training.json"} <= files
    size_mb = (DEFAULT_CHECKPOINT / "model.safetensors").stat().st_size / 2**20
    assert size_mb < 15
    card = (DEFAULT_CHECKPOINT / "README.md").read_text()
    assert card.startswith("---\n") and "pipeline_tag: image-text-to-text" in card
    assert "answer accuracy" in card  # the card quotes the demo's numbers
    model, processor, record = load_demo_model()
    assert isinstance(model, SQLlavaForConditionalGeneration) and isinstance(processor, SQLlavaProcessor)
    assert model.config.model_type == "sqllava" and processor.vuser_token == "[vusr]"
    assert record["training_config"]["sq_ratio"] == 0.5
    with safe_open(DEFAULT_CHECKPOINT / "model.safetensors", "pt") as weights:
        assert any("prototype_extractor" in name for name in weights.keys())


def assert_holds_no_remote_code(folder: Path):
    """No code files, and no `auto_map` naming any: the folder is loaded with the installed package."""
    assert not list(folder.glob("*.py"))
    for name in ("config.json", "processor_config.json", "tokenizer_config.json"):
        assert "auto_map" not in (folder / name).read_text(), name


def test_committed_checkpoint_holds_no_remote_code_and_loads_with_the_auto_classes():
    assert_holds_no_remote_code(DEFAULT_CHECKPOINT)
    model = AutoModelForImageTextToText.from_pretrained(DEFAULT_CHECKPOINT)
    processor = AutoProcessor.from_pretrained(DEFAULT_CHECKPOINT)
    assert isinstance(model, SQLlavaForConditionalGeneration) and isinstance(processor, SQLlavaProcessor)


def test_demo_model_config_is_the_committed_checkpoints():
    # What a retrain builds is what is committed, but for what `save_pretrained` and loading add.
    saved_or_loaded = {"architectures", "dtype", "transformers_version", "_name_or_path"}
    built, committed = (
        {key: value for key, value in config.to_dict().items() if key not in saved_or_loaded}
        for config in (
            build_demo_model_config(DemoTrainingConfig(), build_demo_processor()),
            SQLlavaConfig.from_pretrained(DEFAULT_CHECKPOINT),
        )
    )
    assert built == committed


def test_targets_are_the_records_and_the_cards():
    evaluation = load_demo_model()[2]["evaluation"]
    assert format_targets(evaluation["answer_accuracy"], evaluation["valid_question_share"]) == (
        "Targets: answer accuracy >= 90%: met; valid self-asked questions >= 80%: met."
    )
    assert format_targets(0.5, 0.8).startswith("Targets: answer accuracy >= 90%: NOT met;")
    card = (DEFAULT_CHECKPOINT / "README.md").read_text()
    assert "at least 90% and at least 80% valid self-asked questions; this checkpoint meets both." in card


def test_self_asked_questions_are_judged_by_the_checker():
    scene = generate_scene(3)  # a small purple triangle (top right) and a large purple square (bottom right)
    assert judge_self_asked(scene, "How many squares are there?", "One.").correct is True
    invalid = judge_self_asked(scene, "What shape is the purple object?", "Square.")  # two purple objects
    assert (invalid.valid, invalid.correct) == (False, None)
    assert judge_self_asked(scene, "How many square?", "One.").valid is False  # not in the language
    assert checker.parse_question("Where is the triangle?") is not None


def test_demo_on_the_committed_checkpoint(tmp_path):
    report = run_demo(
        output_dir=tmp_path,
        num_shown=2,
        num_eval_scenes=40,
        questions_per_scene=2,
        num_self_questioning_scenes=12,
        questions_asked_per_scene=2,
    )
    assert len(report.answers) == 80 and len(report.self_asked) == 24
    # Consistent with the full run recorded next to the weights (300 questions, 150 self-asked), with a margin for
    # the smaller sample; a broken loading or prompting path falls far below it.
    full_run = load_demo_model()[2]["evaluation"]
    assert report.answer_accuracy >= full_run["answer_accuracy"] - 0.15
    assert report.valid_question_share >= full_run["valid_question_share"] - 0.25
    pngs = sorted(tmp_path.glob("*.png"))
    assert len(pngs) == 2 and all(result.image_path in pngs for result in report.shown)
    text = format_report(report)
    for section in ("Scene 1", "truth:", "description:", "answers:", "self-asked", "[vusr]:", "answer accuracy:"):
        assert section in text
    assert "self-asked questions valid:" in text and ("[right]" in text or "[WRONG]" in text)


def test_sqllava_demo_command(tmp_path, capsys):
    exit_code = sqllava_main(
        ["demo", "--output-dir", str(tmp_path), "--num-shown", "1", "--num-eval-scenes", "8",
         "--questions-per-scene", "1", "--num-self-questioning-scenes", "2", "--questions-asked-per-scene", "1"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert exit_code == 0
    assert "Held-out results" in printed and "Targets:" in printed and "Scene 1" in printed
    assert len(list(tmp_path.glob("*.png"))) == 1


def test_training_script_smoke(tmp_path):
    """A handful of steps of both stages on a tiny config: the real script, SFTTrainer and both collators."""
    config = DemoTrainingConfig(
        image_size=48, patch_size=16, vision_hidden_size=32, vision_layers=2, text_hidden_size=32,
        text_intermediate_size=64, text_layers=2, num_prototypes=4, num_train_scenes=16, vision_pretraining_steps=2,
        vision_pretraining_batch_size=4, alignment_steps=2, max_steps=3, batch_size=4, threads=1,
    )  # fmt: skip
    train_demo_model(config, tmp_path / "a", evaluate=False, log_every=1)
    record = json.loads((tmp_path / "a" / TRAINING_RECORD).read_text())
    assert record["training_config"]["max_steps"] == 3
    assert set(record["vision_pretraining"]) == {"loss", "seconds", "colour", "shape", "size", "cell"}
    assert record["collator_stats"]["num_vuser_turns"] > 0  # the self-questioning collator drew vuser turns
    assert (tmp_path / "a" / "README.md").read_text().startswith("---\n")
    assert_holds_no_remote_code(tmp_path / "a")  # as the committed folder: a retrain reproduces its files
    model = SQLlavaForConditionalGeneration.from_pretrained(tmp_path / "a")
    # Seeded: a second run gives the same weights.
    train_demo_model(config, tmp_path / "b", evaluate=False, log_every=1)
    again = SQLlavaForConditionalGeneration.from_pretrained(tmp_path / "b")
    for (name, weight), other in zip(model.state_dict().items(), again.state_dict().values()):
        torch.testing.assert_close(weight, other, msg=name)
    report = run_demo(tmp_path / "a", output_dir=None, num_shown=1, num_eval_scenes=2, questions_per_scene=1,
                      num_self_questioning_scenes=1, questions_asked_per_scene=1)  # fmt: skip
    assert len(report.answers) == 2 and Path(report.checkpoint) == tmp_path / "a"


def test_training_options_reach_the_data_and_the_model():
    """Every `DemoTrainingConfig` field is a flag of the script; the turn range and the model options take effect."""
    from transformers_sqllava.demo.train import build_demo_model, build_demo_processor, build_train_rows, parse_args

    _, config = parse_args(
        ["--output-dir", "x", "--min-turns", "6", "--max-turns", "6", "--description-first", "0", "--num-train-scenes",
         "8", "--text-hidden-size", "32", "--text-intermediate-size", "64", "--text-attention-heads", "8",
         "--tie-word-embeddings", "true", "--alignment-batch-size", "7"]
    )  # fmt: skip
    assert config.tie_word_embeddings is True and config.alignment_batch_size == 7
    assert parse_args(["--output-dir", "x", "--tie-word-embeddings", "false"])[1].tie_word_embeddings is False
    with pytest.raises(SystemExit):  # a typo is an argparse error, not a silent False
        parse_args(["--output-dir", "x", "--tie-word-embeddings", "flase"])
    rows = build_train_rows(config, stage=2)
    # The demo's short system message, then six user turns each, none of them the description, and the first
    # question before the image.
    system_message = {"role": "system", "content": [{"type": "text", "text": config.system_prompt}]}
    assert all(row["messages"][0] == system_message for row in rows)
    assert all(sum(message["role"] == "user" for message in row["messages"]) == 6 for row in rows)
    first_turns = [row["messages"][1]["content"] for row in rows]
    assert all([block["type"] for block in content] == ["text", "image"] for content in first_turns)
    assert all(content[0]["text"] != "Describe the image." for content in first_turns)
    # The reference's named prompt is the collator's to add, not a message of the rows.
    _, named = parse_args(["--output-dir", "x", "--system-prompt", "v1_sq", "--num-train-scenes", "2"])
    assert all(row["messages"][0]["role"] == "user" for row in build_train_rows(named, stage=2))
    processor = build_demo_processor()
    model = build_demo_model(config, processor)
    assert model.config.text_config.num_attention_heads == 8
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    with pytest.raises(ValueError, match="num_turns"):
        build_train_rows(DemoTrainingConfig(num_train_scenes=2, min_turns=3, max_turns=2), stage=2)
