# Copyright 2026 The transformers-sqllava authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""The paper's Table 3 ablation on the demo world: which of prototype extractor, self-questioning and ViT LoRA helps.

The paper starts from LLaVA-1.5 trained with SQ-LLaVA's recipe and adds the ViT LoRA, self-questioning (SQ) and the
prototype extractor (Proto). Here each [`VARIANTS`] entry is the demo model ([`DemoTrainingConfig`]) trained with the
package's own switches, nothing special-cased:

- Proto: `SQLlavaConfig(use_prototype_extractor=...)`; off is LLaVA-1.5's plain MLP projector;
- SQ: the collator's `SQLlavaSelfQuestioningCollator(sq_ratio=...)`; 0 draws no vuser turn;
- ViT LoRA: a PEFT LoRA on the vision layers that feed the image features during stage 2 ([`add_vision_lora`], the
  recipe's `vision_lora_target_regex` and [`SQLlavaStage2Config`] rank, alpha and dropout), merged before saving.
  The demo's stage 2 trains the language model fully with the image path frozen after stage 0; with the LoRA it still
  does, and the LoRA is the only thing of the image path that moves.

Every variant sees the same seeds, the same rows in the same order and the same step budget. Stages 0 and 1 depend
only on the seed and the projector, so they are trained once per (seed, Proto) and cached under the output folder;
each variant's stage 2 starts from a copy. A finished variant (its `evaluation.json`) is not trained again, so an
interrupted run resumes. Each checkpoint is scored by [`evaluate_on_demo_benchmark`], and the table, its Markdown and
a bar plot are written by `ablation_report.py` (docs/ablation.md).

```bash
python -m transformers_sqllava.demo.ablate --output-dir sqllava-ablation --seeds 0 1   # ~1 h on 2 CPU cores
```
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .ablation_report import build_ablation_table, write_ablation_report
from .record import TRAINING_RECORD, remove_remote_code, write_training_record
from .train import DemoTrainingConfig, build_demo_processor, train_stage_2, train_stages_0_1
from .vision_pretraining import freeze_image_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AblationVariant:
    r"""
    One row of the ablation: which of the paper's three additions to LLaVA-1.5 are on.

    Args:
        name (`str`): The row's name (a key of [`VARIANTS`]).
        prototype_extractor (`bool`): `SQLlavaConfig.use_prototype_extractor`.
        self_questioning (`bool`): The collator's `sq_ratio` is the recipe's (the demo's 0.5) rather than 0.
        vision_lora (`bool`): A LoRA on the vision tower trains in stage 2.
    """

    name: str
    prototype_extractor: bool
    self_questioning: bool
    vision_lora: bool

    def switches(self) -> dict[str, bool]:
        return {"prototype_extractor": self.prototype_extractor, "self_questioning": self.self_questioning,
                "vision_lora": self.vision_lora}  # fmt: skip


# Table 3's rows: LLaVA-1.5 with the same recipe, full SQ-LLaVA without each addition, and full SQ-LLaVA.
VARIANTS: dict[str, AblationVariant] = {
    variant.name: variant
    for variant in (
        AblationVariant("baseline", prototype_extractor=False, self_questioning=False, vision_lora=False),
        AblationVariant("no-proto", prototype_extractor=False, self_questioning=True, vision_lora=True),
        AblationVariant("no-sq", prototype_extractor=True, self_questioning=False, vision_lora=True),
        AblationVariant("no-vit-lora", prototype_extractor=True, self_questioning=True, vision_lora=False),
        AblationVariant("full", prototype_extractor=True, self_questioning=True, vision_lora=True),
    )
}
BASELINE = "baseline"
DEFAULT_SEEDS = (0, 1)
# Stage-2 steps per variant. Measured on 2 CPU cores (docs/ablation.md#budget): 5 variants x 2 seeds at this budget,
# the 4 cached stage-0/1 runs and the 10 evaluations fit in an hour; the committed checkpoint has 5000.
DEFAULT_STAGE2_STEPS = 300
DEFAULT_OUTPUT_DIR = "sqllava-ablation"
# torch threads. One: on 2 cores shared with other work, 2 threads stalled stages 0-1 past 9 minutes where 1 thread
# took 95-107 s, and on its own the tiny model gains little from a second thread (stage 0: 28 s vs the committed 23 s).
DEFAULT_THREADS = 1
STAGES_0_1_FOLDER = "stages-0-1"
CHECKPOINT_FOLDER = "checkpoint"
EVALUATION_FILE = "evaluation.json"  # written last: a variant with it is finished
# The `SQLlavaStage2Config` fields the ViT LoRA takes (recorded with each run that has one).
VISION_LORA_SETTINGS = ("vision_lora_r", "vision_lora_alpha", "vision_lora_dropout", "vision_target_modules")
# Stage-2 fields of `DemoTrainingConfig` (what `train_stages_0_1` does not read) and `threads`, which changes float
# rounding, not the experiment: left out of the stage-0/1 cache key.
_NOT_STAGES_0_1 = ("max_steps", "batch_size", "learning_rate", "sq_ratio", "system_prompt", "threads")


@dataclass
class AblationRun:
    r"""
    One variant at one seed, trained (or found finished) by [`run_ablation`].

    Args:
        variant (`str`), seed (`int`): Which run.
        checkpoint (`str`): Its merged checkpoint folder (loads as a plain `SQLlavaForConditionalGeneration`).
        headlines (`dict`): [`DemoBenchmarkReport.headlines`] of its evaluation.
        collator_stats (`dict`): Stage 2's collator counts (`num_vuser_turns` is 0 without SQ).
        seconds (`dict`): `stages_0_1` (its cached start's training), `stage_2` and `evaluation`.
        trained (`bool`): Whether this call trained it (`False`: found finished).
    """

    variant: str
    seed: int
    checkpoint: str
    headlines: dict[str, dict[str, float | None]]
    collator_stats: dict[str, int]
    seconds: dict[str, float]
    trained: bool

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "switches": VARIANTS[self.variant].switches()}


@dataclass
class AblationResult:
    r"""
    What [`run_ablation`] did and measured.

    Args:
        runs (`list[AblationRun]`): Every (variant, seed), in the table's order.
        table (`dict`): [`build_ablation_table`]'s table (also `ablation.json`).
        trained_stages_0_1 (`list[str]`): The stage-0/1 caches this call trained (empty when all were reused).
        files (`dict[str, Path]`): `json`, `markdown` and `plot`.
    """

    runs: list[AblationRun]
    table: dict[str, Any]
    trained_stages_0_1: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def trained_runs(self) -> list[AblationRun]:
        return [run for run in self.runs if run.trained]


def variant_training_config(
    variant: AblationVariant, seed: int, steps: int, base: DemoTrainingConfig | None = None
) -> DemoTrainingConfig:
    r"""
    The [`DemoTrainingConfig`] of one run: `base` (the demo's defaults) at `seed`, `steps` stage-2 steps, and
    `base.sq_ratio` with self-questioning or 0 without. One fresh scene per stage-2 sample, as the committed recipe
    (160000 scenes for 5000 steps of 32): `num_train_scenes = steps * batch_size`, the same for every variant, and at
    least the scenes stage 1 renders, so that a small stage-2 budget leaves stages 0-1 (and their cache) as they are.
    """
    base = base or DemoTrainingConfig()
    if steps < 1:
        raise ValueError(f"The stage-2 budget must be at least 1 step, got {steps}.")
    if variant.self_questioning and not base.sq_ratio > 0:
        raise ValueError(f"Variant {variant.name!r} self-questions: it needs the base config's sq_ratio > 0.")
    stage_1_scenes = base.alignment_steps * base.alignment_batch_size
    scenes = max(1, steps * base.batch_size // base.samples_per_scene, stage_1_scenes)
    sq_ratio = base.sq_ratio if variant.self_questioning else 0.0
    return replace(base, seed=seed, max_steps=steps, sq_ratio=sq_ratio, num_train_scenes=scenes)


def stages_0_1_key(config: DemoTrainingConfig, prototype_extractor: bool) -> dict[str, Any]:
    """What stages 0 and 1 depend on: every field they read, and the projector. Stage 1 renders only the first
    `alignment_steps * alignment_batch_size` training scenes, so a larger `num_train_scenes` gives the same run."""
    key = {name: value for name, value in asdict(config).items() if name not in _NOT_STAGES_0_1}
    key["num_train_scenes"] = min(
        config.num_train_scenes, max(1, config.alignment_steps * config.alignment_batch_size)
    )
    key["use_prototype_extractor"] = prototype_extractor
    return key


def stages_0_1_folder(output_dir: Path, config: DemoTrainingConfig, prototype_extractor: bool) -> Path:
    """`OUTPUT/stages-0-1/seed<S>-proto-<on|off>-<hash of the key>`: another budget never reuses a stale cache."""
    key = stages_0_1_key(config, prototype_extractor)
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    name = f"seed{config.seed}-proto-{'on' if prototype_extractor else 'off'}-{digest}"
    return output_dir / STAGES_0_1_FOLDER / name


def _save_folder(model, processor, folder: Path, record: dict[str, Any]) -> None:
    """A demo checkpoint folder (weights, processor, training record; no remote code), written next to `folder` and
    renamed into place, so an interrupted run never leaves a half-written one that looks finished."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    processor.save_pretrained(partial)
    remove_remote_code(partial)
    write_training_record(partial, record)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)


def ensure_stages_0_1(
    output_dir: Path, config: DemoTrainingConfig, prototype_extractor: bool, log_every: int = 50
) -> tuple[Path, bool]:
    """The cached stage-0/1 folder for `config`'s seed and the projector, trained first if missing.

    Returns:
        `tuple`: the folder and whether it was trained now.
    """

    folder = stages_0_1_folder(output_dir, config, prototype_extractor)
    if (folder / TRAINING_RECORD).is_file():
        return folder, False
    folder.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model, processor, stages = train_stages_0_1(config, log_every, use_prototype_extractor=prototype_extractor)
    record = {
        # No stage 2 in this folder: `max_steps` 0 says so to anyone who points `sqllava eval demo` at it.
        "training_config": {**asdict(config), "max_steps": 0},
        "stages_0_1_key": stages_0_1_key(config, prototype_extractor),
        **stages,
        "seconds": round(time.perf_counter() - started, 1),
        "torch_threads": torch.get_num_threads(),
    }
    _save_folder(model, processor, folder, record)
    return folder, True


def add_vision_lora(model, settings=None):
    r"""
    A PEFT LoRA on the vision layers that feed the image features (the recipe's [`vision_lora_target_regex`]:
    q/k/v/out and fc1/fc2 of every layer before `vision_feature_layer`), with [`SQLlavaStage2Config`]'s vision rank,
    alpha and dropout. Whatever trained before still trains: PEFT freezes every non-LoRA weight, and the demo's
    stage 2 trains the language model fully, so those weights are handed back their gradients. Merge with
    `merge_and_unload()` before saving.

    Args:
        model ([`SQLlavaForConditionalGeneration`]): The stage-0/1 model (image path frozen).
        settings ([`SQLlavaStage2Config`], *optional*): The LoRA's `vision_lora_r`, `vision_lora_alpha`,
            `vision_lora_dropout` and `vision_target_modules`; the recipe's by default.

    Returns:
        `peft.PeftModel`.
    """
    from peft import LoraConfig, get_peft_model

    from ..training.recipe import SQLlavaStage2Config, vision_lora_target_regex

    settings = settings or SQLlavaStage2Config()
    target = vision_lora_target_regex(model, settings)
    if target is None:
        raise ValueError("The vision tower has no layer feeding `vision_feature_layer`: there is nothing to adapt.")
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    lora = LoraConfig(
        r=settings.vision_lora_r, lora_alpha=settings.vision_lora_alpha, lora_dropout=settings.vision_lora_dropout,
        target_modules=target, bias="none",
    )  # fmt: skip
    with warnings.catch_warnings():
        # PEFT 0.21 reads transformers' deprecated `is_gradient_checkpointing`: a FutureWarning nobody can act on.
        warnings.filterwarnings("ignore", message=r"`(is_)?gradient_checkpointing", category=FutureWarning)
        peft_model = get_peft_model(model, lora)
    for parameter in trainable:
        parameter.requires_grad_(True)
    return peft_model


def _load_stages_0_1(folder: Path, config: DemoTrainingConfig):
    from ..modeling_sqllava import SQLlavaForConditionalGeneration

    model = SQLlavaForConditionalGeneration.from_pretrained(folder, local_files_only=True)
    if config.vision_pretraining_steps > 0:  # as `train_stages_0_1` left it: the image path frozen after stage 0
        freeze_image_path(model)
    return model, build_demo_processor(config.image_size, config.patch_size)


def _expected_ablation_entry(variant: AblationVariant, stage2_settings) -> dict[str, Any]:
    entry = {"variant": variant.name, **variant.switches()}
    if variant.vision_lora:
        settings = {name: getattr(stage2_settings, name) for name in VISION_LORA_SETTINGS}
        entry["vision_lora_settings"] = {**settings, "vision_target_modules": list(settings["vision_target_modules"])}
    return entry


def _finished_run(folder: Path, config: DemoTrainingConfig, entry: dict[str, Any]) -> dict[str, Any] | None:
    """The record of a finished run in `folder` (None if unfinished); an error if it was trained otherwise."""
    record_path = folder / CHECKPOINT_FOLDER / TRAINING_RECORD
    if not (folder / EVALUATION_FILE).is_file() or not record_path.is_file():
        return None
    record = json.loads(record_path.read_text())
    trained = {key: value for key, value in record["training_config"].items() if key != "threads"}
    expected = {key: value for key, value in asdict(config).items() if key != "threads"}
    ablation = {key: value for key, value in record.get("ablation", {}).items() if key != "stages_0_1"}
    if trained != expected or ablation != entry:
        raise ValueError(
            f"{folder} holds a {entry['variant']} run trained with other settings (budget, sizes or LoRA): use "
            "another --output-dir, or delete that folder to train it again."
        )
    return record


def train_variant(
    output_dir: Path, variant: AblationVariant, config: DemoTrainingConfig, stage2_settings=None, log_every: int = 50
) -> tuple[Path, dict[str, Any], bool]:
    """Stage 2 of one variant from a copy of its cached stage 0+1, merged and saved to `OUTPUT/seed<S>/<variant>/
    checkpoint`. Returns the checkpoint, its training record and whether the stage-0/1 cache was trained now."""
    from ..training.recipe import SQLlavaStage2Config

    stage2_settings = stage2_settings or SQLlavaStage2Config()
    start, trained_start = ensure_stages_0_1(output_dir, config, variant.prototype_extractor, log_every)
    model, processor = _load_stages_0_1(start, config)
    if variant.vision_lora:
        model = add_vision_lora(model, stage2_settings)
    started = time.perf_counter()
    loss, collator = train_stage_2(model, processor, config, log_every)
    seconds = time.perf_counter() - started
    if variant.vision_lora:
        model = model.merge_and_unload()  # the LoRA folded into the tower: a plain checkpoint
    start_record = json.loads((start / TRAINING_RECORD).read_text())
    record = {
        "training_config": asdict(config),
        "ablation": {**_expected_ablation_entry(variant, stage2_settings), "stages_0_1": start.name},
        "vision_pretraining": start_record["vision_pretraining"],
        "alignment_loss": start_record["alignment_loss"],
        "train_loss": round(loss, 4),
        "stages_0_1_seconds": start_record["seconds"],
        "stage_2_seconds": round(seconds, 1),
        "training_minutes": round((start_record["seconds"] + seconds) / 60, 1),
        "torch_threads": torch.get_num_threads(),
        "num_parameters": model.num_parameters(),
        "collator_stats": collator.stats.as_log(prefix=""),
    }
    checkpoint = output_dir / f"seed{config.seed}" / variant.name / CHECKPOINT_FOLDER
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    _save_folder(model, processor, checkpoint, record)
    return checkpoint, record, trained_start


def run_ablation(
    output_dir: str | Path = DEFAULT_OUTPUT_DIR,
    seeds: tuple[int, ...] | list[int] = DEFAULT_SEEDS,
    variants: tuple[str, ...] | list[str] = tuple(VARIANTS),
    steps: int = DEFAULT_STAGE2_STEPS,
    base_config: DemoTrainingConfig | None = None,
    stage2_settings=None,
    benchmark_sizes=None,
    self_questioning_scenes: int = 50,
    eval_batch_size: int = 32,
    eval_seed: int = 0,
    log_every: int = 50,
) -> AblationResult:
    r"""
    Train and evaluate every (variant, seed), then write the table (`ablation.json`, `ablation.md`) and the plot
    (`ablation.png`) to `output_dir`. Finished runs and cached stages 0+1 are reused (see the module docstring).

    Args:
        output_dir (`str` or `Path`, *optional*): Where everything goes (created).
        seeds (`tuple[int, ...]`, *optional*, defaults to `(0, 1)`): Training seeds (weights, data order, vuser draws).
        variants (`tuple[str, ...]`, *optional*): Keys of [`VARIANTS`]; all five by default.
        steps (`int`, *optional*, defaults to 300): Stage-2 steps of every variant.
        base_config ([`DemoTrainingConfig`], *optional*): Sizes, stage-0/1 budget and optimisation (the demo's by
            default, with 1 torch thread); its `seed`, `max_steps`, `sq_ratio` and `num_train_scenes` are set per run
            ([`variant_training_config`]). torch uses its `threads` (the caller's count is restored afterwards).
        stage2_settings ([`SQLlavaStage2Config`], *optional*): The ViT LoRA's settings (the recipe's by default).
        benchmark_sizes ([`DemoBenchmarkSizes`], *optional*): The benchmark's sizes (the default ones by default).
        self_questioning_scenes (`int`, *optional*, defaults to 50): Scenes each model asks its own questions about.
        eval_batch_size (`int`, *optional*, defaults to 32): Questions per `generate` call.
        eval_seed (`int`, *optional*, defaults to 0): The benchmark's seed: the same questions for every run, so the
            spread over seeds is the training's.
        log_every (`int`, *optional*, defaults to 50): Steps between loss logs.

    Returns:
        [`AblationResult`].
    """
    from ..training.recipe import SQLlavaStage2Config

    unknown = [name for name in variants if name not in VARIANTS]
    if unknown or not variants:
        raise ValueError(f"Unknown variants {unknown}: choose among {list(VARIANTS)}.")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"Give distinct seeds, got {list(seeds)}.")
    output_dir = Path(output_dir)
    base_config = base_config or replace(DemoTrainingConfig(), threads=DEFAULT_THREADS)
    stage2_settings = stage2_settings or SQLlavaStage2Config()
    threads = torch.get_num_threads()
    torch.set_num_threads(base_config.threads)
    try:
        runs, trained_starts = _train_and_evaluate(
            output_dir, seeds, variants, steps, base_config, stage2_settings, log_every,
            {"batch_size": eval_batch_size, "seed": eval_seed, "sizes": benchmark_sizes,
             "self_questioning_scenes": self_questioning_scenes},
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)  # the caller's, as before
    table = build_ablation_table([run.to_dict() for run in runs], baseline=BASELINE)
    budget = {key: getattr(base_config, key) for key in ("vision_pretraining_steps", "alignment_steps", "batch_size")}
    table["budget"] = {"stage_2_steps": steps, **budget, "seeds": list(seeds), "eval_seed": eval_seed,
                       "threads": base_config.threads}  # fmt: skip
    files = write_ablation_report(table, output_dir)
    return AblationResult(runs=runs, table=table, trained_stages_0_1=trained_starts, files=files)


def _train_and_evaluate(
    output_dir, seeds, variants, steps, base_config, stage2_settings, log_every, evaluation_kwargs
):
    """[`run_ablation`]'s loop: every (seed, variant) trained and evaluated, or read back when finished."""
    from ..evaluation.demo_evaluation import evaluate_on_demo_benchmark, write_demo_benchmark_report

    runs, trained_starts = [], []
    for seed in seeds:
        for name in [name for name in VARIANTS if name in variants]:  # the table's order, whatever was asked
            variant = VARIANTS[name]
            config = variant_training_config(variant, seed, steps, base_config)
            folder = output_dir / f"seed{seed}" / name
            entry = _expected_ablation_entry(variant, stage2_settings)
            record = _finished_run(folder, config, entry)
            trained = record is None
            if trained:
                logger.info("Training %s, seed %d (%d stage-2 steps)", name, seed, steps)
                checkpoint, record, trained_start = train_variant(output_dir, variant, config, stage2_settings,
                                                                  log_every)  # fmt: skip
                if trained_start:
                    trained_starts.append(record["ablation"]["stages_0_1"])
                report = evaluate_on_demo_benchmark(checkpoint, **evaluation_kwargs)
                write_demo_benchmark_report(report, folder / EVALUATION_FILE)
            evaluation = json.loads((folder / EVALUATION_FILE).read_text())
            runs.append(AblationRun(
                variant=name, seed=seed, checkpoint=str(folder / CHECKPOINT_FOLDER), headlines=evaluation["headlines"],
                collator_stats=record["collator_stats"], trained=trained,
                seconds={"stages_0_1": record["stages_0_1_seconds"], "stage_2": record["stage_2_seconds"],
                         "evaluation": round(evaluation["seconds"], 1)},
            ))  # fmt: skip
    return runs, trained_starts


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of `python -m transformers_sqllava.demo.ablate` and `sqllava ablate`."""
    defaults = DemoTrainingConfig()
    parser.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR, help="checkpoints, evaluations, table and plot")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS), help="training seeds")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="VARIANT",
                        help=f"rows of the table, among: {', '.join(VARIANTS)}")  # fmt: skip
    parser.add_argument("--steps", type=int, default=DEFAULT_STAGE2_STEPS, help="stage-2 steps of every variant")
    parser.add_argument("--vision-pretraining-steps", type=int, default=defaults.vision_pretraining_steps,
                        help="stage-0 steps (cached per seed and projector)")  # fmt: skip
    parser.add_argument("--alignment-steps", type=int, default=defaults.alignment_steps,
                        help="stage-1 steps (cached per seed and projector)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="torch CPU threads (the same count gives the same weights)")  # fmt: skip
    parser.add_argument("--self-questioning-scenes", type=int, default=50,
                        help="held-out scenes each model asks its own questions about")  # fmt: skip
    parser.add_argument("--eval-batch-size", type=int, default=32, help="benchmark questions per generate call")
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run the ablation from parsed flags and print the table."""
    for flag, value in (
        ("--steps", args.steps),
        ("--threads", args.threads),
        ("--eval-batch-size", args.eval_batch_size),
    ):
        if value < 1:
            raise ValueError(f"{flag} {value}: must be at least 1.")
    for flag, value in (("--vision-pretraining-steps", args.vision_pretraining_steps),
                        ("--alignment-steps", args.alignment_steps),
                        ("--self-questioning-scenes", args.self_questioning_scenes)):  # fmt: skip
        if value < 0:
            raise ValueError(f"{flag} {value}: must be 0 or more.")
    base = replace(DemoTrainingConfig(), vision_pretraining_steps=args.vision_pretraining_steps,
                   alignment_steps=args.alignment_steps, threads=args.threads)  # fmt: skip
    result = run_ablation(
        args.output_dir, seeds=args.seeds, variants=args.variants, steps=args.steps, base_config=base,
        self_questioning_scenes=args.self_questioning_scenes, eval_batch_size=args.eval_batch_size,
    )  # fmt: skip
    print((result.files["markdown"]).read_text())
    print(f"Wrote {', '.join(str(path) for path in result.files.values())}.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m transformers_sqllava.demo.ablate",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    args = add_arguments(parser).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ..commands._logging import quiet_bitsandbytes_cpu_kernel_notice

    # TRL imports peft, which imports bitsandbytes: its CPU 4-bit kernel notice does not apply (see `_logging`).
    with quiet_bitsandbytes_cpu_kernel_notice():
        return run_from_args(args)


__all__ = [
    "BASELINE",
    "DEFAULT_STAGE2_STEPS",
    "VARIANTS",
    "AblationResult",
    "AblationRun",
    "AblationVariant",
    "add_vision_lora",
    "ensure_stages_0_1",
    "run_ablation",
    "stages_0_1_key",
    "train_variant",
    "variant_training_config",
]


if __name__ == "__main__":
    raise SystemExit(main())
