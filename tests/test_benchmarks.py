"""Smoke tests of `benchmarks/`: both scripts run at their `--quick` sizes and report well-formed results.

Speed and memory are measured by the scripts, not asserted here (design §5). What is asserted: every row is there
with finite, positive numbers, and the broadcast re-implementation of the reference `Clustering` in the benchmark
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
    """The instrument sees a model learn: colour alone, on one-object scenes, is learned within 80 steps."""
    module = demo_learnability
    args = module.parse_args(["--kinds", "colour", "--objects", "1", "1", "--steps", "80", "--eval-every", "40",
                              "--eval-scenes", "64"])  # fmt: skip
    threads = torch.get_num_threads()
    curve = module.run(args)["curve"]
    assert torch.get_num_threads() == threads  # later tests compare logits across processes at the default count
    assert [row["step"] for row in curve] == [40, 80]
    assert set(curve[-1]) == {"step", "seconds", "all", "colour"}
    assert curve[-1]["colour"] >= 0.9
