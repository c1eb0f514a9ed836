"""Smoke tests of `benchmarks/`: both scripts run at their `--quick` sizes and report well-formed results.

Speed and memory are measured by the scripts, not asserted here (docs/performance.md). What is asserted: every row is
there with finite, positive numbers, and the broadcast re-implementation of the reference `Clustering` in the benchmark
computes the same outputs and gradients as the package's extractor, so the benchmark compares like with like.
"""

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS_DIR = Path(__file__).resolve().parent.parent / "benchmarks"


def load_benchmark(name: str):
    """Import `benchmarks/<name>.py` (a script folder, not a package; its scripts import `common` as a sibling)."""
    if str(BENCHMARKS_DIR) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS_DIR))
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def prototype_extractor():
    return load_benchmark("prototype_extractor")


@pytest.fixture(scope="module")
def end_to_end():
    return load_benchmark("end_to_end")


@pytest.mark.parametrize("batch_size", [1, 3])
def test_reference_broadcast_matches_package_extractor(prototype_extractor, batch_size):
    check = prototype_extractor.compare_outputs(prototype_extractor.QUICK_SIZES, batch_size)
    assert check["missing_grads"] == []
    assert check["output_max_abs_diff"] <= 1e-5 * max(1.0, check["output_max_abs"])
    assert check["grad_max_abs_diff"] <= 1e-5 * max(1.0, check["grad_max_abs"])


def test_reference_weights_are_copied_into_every_projector(prototype_extractor):
    projectors = prototype_extractor.build_projectors(prototype_extractor.QUICK_SIZES)
    reference = projectors["reference"]
    torch.testing.assert_close(projectors["sqllava"].prototype_extractor.key_proj.weight, reference.v.weight)
    torch.testing.assert_close(projectors["sqllava"].linear_2.weight, reference.mlp[2].weight)
    torch.testing.assert_close(projectors["mlp"].linear_1.bias, reference.mlp[0].bias)
    assert projectors["mlp"].prototype_extractor is None


def test_prototype_extractor_benchmark_report(prototype_extractor):
    module = prototype_extractor
    # In this process, not one per measurement: the real run's fresh interpreters would cost an import each.
    report = module.run_benchmark(module.QUICK_SIZES, batch_sizes=[2], repeats=1, isolate=False, log=lambda _: None)

    assert len(report["results"]) == len(module.IMPLEMENTATIONS) * len(module.PASSES)
    for row in report["results"]:
        assert row["implementation"] in module.IMPLEMENTATIONS and row["pass"] in module.PASSES
        assert len(row["times_ms"]) == 1 and math.isfinite(row["median_ms"]) and row["median_ms"] > 0
        assert math.isfinite(row["peak_memory_mib"]) and row["peak_memory_mib"] >= 0
    assert [check["batch_size"] for check in report["checks"]] == [2]
    assert all(check["output_max_abs_diff"] < 1e-4 for check in report["checks"])

    table = module.to_markdown(report)
    assert table.count("\n| ") == len(report["results"]) + len(report["checks"]) + 1  # + the second header


def test_end_to_end_benchmark_report(end_to_end):
    module = end_to_end
    report = module.run_benchmark(module.QUICK_SIZES, batch_sizes=[2], repeats=1, log=lambda _: None)

    assert len(report["results"]) == len(module.MODELS)
    for row in report["results"]:
        for key in ("image_encoding_ms", "prefill_ms", "generate_ms", "generate_tokens_per_s"):
            assert math.isfinite(row[key]) and row[key] > 0
    # Same weights, no extractor: SQ-LLaVA is LLaVA.
    for check in report["checks"]:
        assert check["sqllava-no-extractor"]["logits_max_abs_diff_vs_llava"] == 0
        assert check["sqllava-no-extractor"]["same_generated_ids_as_llava"]
        assert check["sqllava"]["logits_max_abs_diff_vs_llava"] > 0
    parameters = report["parameters"]
    assert parameters["sqllava"] > parameters["llava"] == parameters["sqllava-no-extractor"]
    assert "| sqllava |" in module.to_markdown(report)


@pytest.fixture(scope="module")
def demo_learnability():
    return load_benchmark("demo_learnability")


def test_demo_learnability_schedule_and_samples(demo_learnability):
    from transformers_sqllava.demo.scenes import COLOURS as COLOUR_NAMES
    from transformers_sqllava.demo.train import build_demo_processor

    module = demo_learnability
    phases = module.parse_schedule("1-1/colour+shape:200,1-2:400")
    assert phases == [((1, 1), ["colour", "shape"], 200), ((1, 2), module.ALL_KINDS, 400)]

    args = module.parse_args(["--quick"])
    processor = build_demo_processor(72, args.patch_size)
    stream = module.QuestionStream(processor, 72)
    batch, kinds = stream.batch(range(6), objects=(1, 1), kinds=["colour"])
    assert kinds == ["colour"] * 6
    # The label is exactly the answer: "Red." is two tokens, the rest of the sequence is masked.
    for labels in batch["labels"]:
        answer_ids = labels[labels != -100].tolist()
        assert processor.tokenizer.decode(answer_ids).rstrip(".").lower() in COLOUR_NAMES
    for input_ids in batch["input_ids"]:
        assert input_ids[0] == processor.tokenizer.bos_token_id
        assert int((input_ids == processor.image_token_id).sum()) == processor.image_seq_length
    assert batch["pixel_values"].shape == (6, 3, 72, 72)


def test_demo_learnability_evaluation_asks_the_same_questions_every_time(demo_learnability):
    """Training draws from the stream's generator in between; the evaluation's scenes and questions do not move."""
    module = demo_learnability
    from transformers_sqllava.demo.train import build_demo_processor

    stream = module.QuestionStream(build_demo_processor(72, 24), 72)
    first, first_kinds = module.evaluation_batch(stream, (1, 4), module.ALL_KINDS, num_scenes=24)
    training, _ = stream.batch(range(24), objects=(1, 4), kinds=module.ALL_KINDS)  # a training step's draws
    again, again_kinds = module.evaluation_batch(stream, (1, 4), module.ALL_KINDS, num_scenes=24)
    assert again_kinds == first_kinds and len(set(first_kinds)) > 2
    torch.testing.assert_close(again["input_ids"], first["input_ids"])
    torch.testing.assert_close(again["labels"], first["labels"])
    assert not torch.equal(training["pixel_values"], first["pixel_values"])  # training scenes are other scenes


def test_demo_learnability_detects_learning(demo_learnability):
    """The instrument sees a model learn: colour alone, on one-object scenes, is learned within 120 steps (at 80, with
    the learning rate decayed to 0 by step 80, it reached 100% or 67% depending on the position embeddings' draw)."""
    module = demo_learnability
    args = module.parse_args(["--kinds", "colour", "--objects", "1", "1", "--steps", "120", "--eval-every", "60",
                              "--eval-scenes", "64"])  # fmt: skip
    threads = torch.get_num_threads()
    curve = module.run(args)["curve"]
    assert torch.get_num_threads() == threads  # later tests compare logits across processes at the default count
    assert [row["step"] for row in curve] == [60, 120]
    assert set(curve[-1]) == {"step", "seconds", "all", "colour"}
    assert curve[-1]["colour"] >= 0.9


def test_demo_learnability_question_before_image_and_oracle_features(demo_learnability):
    """`--question-before-image` moves the image after the question; `--oracle-image-features` feeds the cell codes."""
    module = demo_learnability
    from transformers_sqllava.demo.train import DemoTrainingConfig, build_demo_model, build_demo_processor
    from transformers_sqllava.demo.vision_pretraining import CellCodebook, cell_contents

    processor = build_demo_processor(72, 24)
    image_token = processor.image_token_id
    for question_first in (False, True):
        stream = module.QuestionStream(processor, 72, question_before_image=question_first)
        batch, _ = stream.batch(range(4), objects=(1, 2), kinds=["where"])
        for input_ids, labels in zip(batch["input_ids"], batch["labels"]):
            image_positions = (input_ids == image_token).nonzero().flatten().tolist()
            assert len(image_positions) == 9 and image_positions == list(
                range(image_positions[0], image_positions[-1] + 1)
            )
            question_positions = (input_ids == processor.tokenizer.convert_tokens_to_ids("▁Where")).nonzero()
            assert (question_positions.item() < image_positions[0]) == question_first
            assert labels[: image_positions[-1] + 1].eq(-100).all()  # only the answer is trained
    oracle_stream = module.QuestionStream(processor, 72, oracle=True)
    batch, _ = oracle_stream.batch(range(3), objects=(1, 4), kinds=["colour"])
    scenes = [module.generate_scene(seed, image_size=72, num_objects=(1, 4)) for seed in range(3)]
    assert torch.equal(batch["pixel_values"], torch.stack([cell_contents(scene) for scene in scenes]))
    model = build_demo_model(DemoTrainingConfig(), processor)
    module.use_oracle_image_features(model)
    features = model.model.get_image_features(pixel_values=batch["pixel_values"]).pooler_output
    torch.testing.assert_close(torch.stack(features), CellCodebook(128)(batch["pixel_values"]))


def test_length_grouping_benchmark_report(tmp_path):
    module = load_benchmark("length_grouping")
    threads = torch.get_num_threads()
    report = module.main(["--quick", "--output-dir", str(tmp_path)])
    # The quick run uses one thread; later tests that compare logits across processes need the suite's own count.
    assert torch.get_num_threads() == threads
    random_batches, grouped = report["results"]["random"], report["results"]["group_by_length"]
    # What the grouping is for: the same kind of rows, far less padding (the step time is measured, not asserted).
    assert grouped["padding_share"] < random_batches["padding_share"]
    assert grouped["mean_batch_length"] < random_batches["mean_batch_length"]
    for row in (random_batches, grouped):
        assert len(row["step_seconds"]) == 4 and all(math.isfinite(s) and s > 0 for s in row["step_seconds"])
    assert (tmp_path / "length_grouping_quick.json").exists() and "group_by_length" in (
        tmp_path / "length_grouping_quick.md"
    ).read_text()


def test_eval_throughput_benchmark_report(tmp_path):
    module = load_benchmark("eval_throughput")
    threads = torch.get_num_threads()
    report = module.main(["--quick", "--output-dir", str(tmp_path)])
    assert torch.get_num_threads() == threads
    # The claim the table makes: batching changes the speed, not the greedy answers.
    assert set(report["batch_sizes"]) == {1, 4}
    assert all(row["identical_to_first"] for row in report["batch_sizes"].values())
    modes = report["modes"]
    assert set(modes) == {"answer", "self-question", "describe"}
    # Self-questioning generates a description and three question/answer pairs before the answer.
    assert modes["self-question"]["generated_tokens_per_question"] > modes["describe"]["generated_tokens_per_question"]
    assert modes["describe"]["generated_tokens_per_question"] > modes["answer"]["generated_tokens_per_question"]
    assert "| 4 |" in (tmp_path / "eval_throughput_quick.md").read_text()
