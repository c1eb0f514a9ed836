"""`sqllava ablate`: the Table 3 ablation on the demo world, end to end on a tiny budget.

One module-scoped run trains three variants (baseline, no-vit-lora, full) at one seed, with a few steps per stage and a
tiny benchmark; the tests then read what it wrote: the table's structure, each checkpoint's switches (projector,
vuser turns, vision tower), the cache and resume, and the plot.
"""

import argparse
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from sqllava_tiny import single_torch_thread

from transformers_sqllava import SQLlavaConfig, SQLlavaForConditionalGeneration
from transformers_sqllava.demo.ablate import (
    VARIANTS,
    run_ablation,
    stages_0_1_folder,
    stages_0_1_key,
    variant_training_config,
)
from transformers_sqllava.demo.ablation_report import (
    AVERAGE_COLUMNS,
    COLUMNS,
    PLOT_SIZE,
    build_ablation_table,
    format_ablation_markdown,
    run_columns,
)
from transformers_sqllava.demo.train import DemoTrainingConfig
from transformers_sqllava.evaluation.demo_benchmark import DemoBenchmarkSizes

# A few steps per stage at the demo's sizes and batches, so that `sqllava ablate` can name the same budget by flags.
TINY_FLAGS = {"vision_pretraining_steps": 2, "alignment_steps": 2, "threads": 1}
TINY_STEPS = 3
TINY_SIZES = DemoBenchmarkSizes(pope_images=1, vqa_scenes=2, vqa_questions_per_scene=1, caption_scenes=1,
                                mme_images=1, multiple_choice_scenes=2)  # fmt: skip
TESTED = ("baseline", "no-vit-lora", "full")


def tiny_ablation(output_dir: Path, **overrides):
    base = DemoTrainingConfig(**TINY_FLAGS)
    arguments = {
        "seeds": (0,),
        "variants": TESTED,
        "steps": TINY_STEPS,
        "base_config": base,
        "benchmark_sizes": TINY_SIZES,
        "self_questioning_scenes": 2,
        "eval_batch_size": 16,
        "log_every": 1,
    }
    return run_ablation(output_dir, **{**arguments, **overrides})  # fmt: skip


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("ablation")
    with single_torch_thread():
        yield output_dir, tiny_ablation(output_dir)


def test_variants_are_the_papers_rows_and_switches():
    assert list(VARIANTS) == ["baseline", "no-proto", "no-sq", "no-vit-lora", "full"]
    assert VARIANTS["baseline"].switches() == {"prototype_extractor": False, "self_questioning": False,
                                               "vision_lora": False}  # fmt: skip
    assert all(VARIANTS["full"].switches().values())
    for name, switch in (
        ("no-proto", "prototype_extractor"),
        ("no-sq", "self_questioning"),
        ("no-vit-lora", "vision_lora"),
    ):
        assert [key for key, on in VARIANTS[name].switches().items() if not on] == [switch]
    full, no_sq = (variant_training_config(VARIANTS[name], seed=1, steps=10) for name in ("full", "no-sq"))
    assert (full.sq_ratio, no_sq.sq_ratio, full.seed, full.max_steps) == (0.5, 0.0, 1, 10)
    # One fresh scene per stage-2 sample, and at least the scenes stage 1 renders.
    longer = variant_training_config(VARIANTS["full"], seed=1, steps=2000)
    assert longer.num_train_scenes == 2000 * longer.batch_size
    assert full.num_train_scenes == full.alignment_steps * full.alignment_batch_size
    # Stages 0-1 do not depend on stage 2's budget or SQ, only on the seed and the projector.
    assert stages_0_1_key(full, True) == stages_0_1_key(no_sq, True) == stages_0_1_key(longer, True)
    assert stages_0_1_key(full, True) != stages_0_1_key(full, False)
    assert stages_0_1_folder(Path("x"), full, True) != stages_0_1_folder(Path("x"), full, False)
    with pytest.raises(ValueError, match="Unknown variants"):
        run_ablation("unused", variants=("full", "no-everything"))


def test_table_has_the_papers_layout(ablation):
    output_dir, result = ablation
    table = json.loads((output_dir / "ablation.json").read_text())
    assert [row["variant"] for row in table["rows"]] == list(TESTED) and table["baseline"] == "baseline"
    assert [column["key"] for column in table["columns"]] == ["pope", "vqa", "caption", "mme", "mc", "sq"]
    rows = {row["variant"]: row for row in table["rows"]}
    for row in rows.values():
        numbers = row["per_seed"]["0"]
        assert numbers["average"] == pytest.approx(sum(numbers[key] or 0.0 for key in AVERAGE_COLUMNS) / 5)
        assert row["summary"]["average"]["mean"] == pytest.approx(numbers["average"])
    assert rows["baseline"]["delta_to_baseline"] is None
    delta = rows["full"]["delta_to_baseline"]
    expected = rows["full"]["per_seed"]["0"]["average"] - rows["baseline"]["per_seed"]["0"]["average"]
    assert delta["mean"] == pytest.approx(expected) and delta["exceeds_spread"] is None  # one seed: no spread
    markdown = (output_dir / "ablation.md").read_text()
    assert "| variant | Proto | SQ | ViT LoRA | POPE F1 |" in markdown and "Δ Avg vs baseline" in markdown
    assert "| baseline | – | – | – |" in markdown and "| full | ✓ | ✓ | ✓ |" in markdown
    assert "| no-vit-lora | ✓ | ✓ | – |" in markdown
    assert set(result.files) == {"json", "markdown", "plot"} and table["budget"]["stage_2_steps"] == TINY_STEPS


def run_of(output_dir: Path, variant: str) -> tuple[Path, dict]:
    checkpoint = output_dir / "seed0" / variant / "checkpoint"
    return checkpoint, json.loads((checkpoint / "demo_training.json").read_text())


def test_each_checkpoint_has_its_switches(ablation):
    output_dir, _ = ablation
    baseline, baseline_record = run_of(output_dir, "baseline")
    full, full_record = run_of(output_dir, "full")
    assert SQLlavaConfig.from_pretrained(baseline).use_prototype_extractor is False
    assert SQLlavaConfig.from_pretrained(full).use_prototype_extractor is True
    model = SQLlavaForConditionalGeneration.from_pretrained(baseline)
    assert model.model.multi_modal_projector.prototype_extractor is None
    assert not any("prototype_extractor" in name for name in load_file(baseline / "model.safetensors"))
    assert any("prototype_extractor" in name for name in load_file(full / "model.safetensors"))
    # SQ off: the collator drew no vuser turn, from the same rows in the same order as the full variant's.
    baseline_stats, full_stats = baseline_record["collator_stats"], full_record["collator_stats"]
    assert baseline_record["training_config"]["sq_ratio"] == 0.0 and baseline_stats["num_vuser_turns"] == 0
    assert full_stats["num_vuser_turns"] > 0
    for count in ("num_samples", "num_eligible_turns", "num_answer_tokens"):
        assert baseline_stats[count] == full_stats[count], count
    assert full_record["ablation"]["vision_lora"] is True and "vision_lora_settings" in full_record["ablation"]


def test_vit_lora_is_merged_into_the_vision_tower_and_only_there(ablation):
    output_dir, _ = ablation

    def weights(folder: Path, part: str) -> dict[str, torch.Tensor]:
        return {name: value for name, value in load_file(folder / "model.safetensors").items() if part in name}

    for variant, adapted in (("full", True), ("no-vit-lora", False), ("baseline", False)):
        checkpoint, record = run_of(output_dir, variant)
        start = output_dir / "stages-0-1" / record["ablation"]["stages_0_1"]
        before, after = weights(start, "vision_tower"), weights(checkpoint, "vision_tower")
        assert set(before) == set(after) and not any("lora" in name for name in after)  # merged: plain names
        changed = {name for name in before if not torch.equal(before[name], after[name])}
        if adapted:
            # The LoRA's layers (those feeding the features) moved; the last layer, which feeds nothing, did not.
            assert changed and all(".layers.2." not in name for name in changed), sorted(changed)
        else:
            assert not changed, sorted(changed)
        # The language model trains fully in every variant, as in the demo.
        llm_before, llm_after = weights(start, "language_model"), weights(checkpoint, "language_model")
        assert all(not torch.equal(llm_before[name], llm_after[name]) for name in llm_before if "layers" in name)


def test_rerun_reuses_everything_and_the_command_does_too(ablation, capsys):
    from transformers_sqllava.commands.ablate import add_parser, run

    output_dir, first = ablation
    assert len(first.trained_runs) == 3 and len(first.trained_stages_0_1) == 2  # (seed 0) x (proto on, off)
    weights = output_dir / "seed0" / "full" / "checkpoint" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    with single_torch_thread():
        again = tiny_ablation(output_dir)
    assert again.trained_runs == [] and again.trained_stages_0_1 == []
    for row, first_row in zip(again.table["rows"], first.table["rows"]):  # the same numbers, read back
        assert (row["per_seed"], row["delta_to_baseline"]) == (first_row["per_seed"], first_row["delta_to_baseline"])
    # `sqllava ablate` with the same budget: what `cli.py` registers, on a fresh parser.
    parser = argparse.ArgumentParser(prog="sqllava")
    add_parser(parser.add_subparsers(dest="command"), help="ablation")
    args = parser.parse_args(
        ["ablate", "--output-dir", str(output_dir), "--seeds", "0", "--variants", *TESTED, "--steps", str(TINY_STEPS),
         "--vision-pretraining-steps", "2", "--alignment-steps", "2", "--threads", "1"]
    )  # fmt: skip
    assert args.func is run
    with single_torch_thread():
        assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "| full | ✓ | ✓ | ✓ |" in printed and "ablation.png" in printed
    assert weights.stat().st_mtime_ns == stamp  # nothing trained again
    # Another budget in the same folder is refused rather than mixed in.
    with single_torch_thread(), pytest.raises(ValueError, match="trained with other settings"):
        tiny_ablation(output_dir, steps=TINY_STEPS + 1, variants=("baseline",))


def test_plot_is_a_png(ablation):
    output_dir, _ = ablation
    with Image.open(output_dir / "ablation.png") as image:
        image.verify()
    with Image.open(output_dir / "ablation.png") as image:
        assert image.format == "PNG" and image.size == PLOT_SIZE
        assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 3  # bars, text and grid, not blank


def test_table_over_seeds_pairs_differences_and_scores_missing_numbers_zero():
    def run(variant, seed, pope, others, switches):
        headlines = {"pope": {"f1": pope}, "vqa": {"accuracy": others}, "caption": {"CIDEr-D": others * 10},
                     "mme": {"perception": others * 4}, "multiple-choice": {"accuracy": others},
                     "self-questioning": {"valid_questions": 50.0}}  # fmt: skip
        return {"variant": variant, "seed": seed, "headlines": headlines, "switches": switches}

    off = dict.fromkeys(("prototype_extractor", "self_questioning", "vision_lora"), False)
    on = dict.fromkeys(off, True)
    runs = [run("baseline", 0, 50.0, 50.0, off), run("baseline", 1, None, 40.0, off),
            run("full", 0, 60.0, 60.0, on), run("full", 1, 50.0, 50.0, on)]  # fmt: skip
    assert run_columns(runs[1]["headlines"])["pope"] is None
    assert run_columns(runs[1]["headlines"])["average"] == pytest.approx(4 * 40.0 / 5)  # POPE n/a counts 0
    assert len(COLUMNS) == 6
    table = build_ablation_table(runs)
    full = table["rows"][1]
    # Seed 0: 60 - 50 = 10; seed 1: 50 - 32 = 18. Mean 14 > std 5.66.
    assert full["delta_to_baseline"]["per_seed"] == {0: pytest.approx(10.0), 1: pytest.approx(18.0)}
    assert full["delta_to_baseline"]["exceeds_spread"] is True
    assert table["rows"][0]["summary"]["pope"]["n"] == 1  # the missing F1 is not averaged over seeds
    markdown = format_ablation_markdown(table)
    assert "| full | ✓ | ✓ | ✓ | 55.0 ± 7.1 |" in markdown and "+14.0 ± 5.7 | yes |" in markdown
