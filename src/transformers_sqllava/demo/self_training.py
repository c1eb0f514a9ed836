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
"""Self-training the demo checkpoint from unlabeled scenes, measured on the offline demo benchmark.

`python -m transformers_sqllava.demo.self_training --variants stic stic+stage2 sq --seeds 0 1` starts every run from
the shipped checkpoint and uses only *images* of held-in (training-split) scenes: no caption, no answer and no
checker is in the loop. The variants:

- `stic`: STIC stage 1. The model builds `stic` preference pairs ([`build_preferences`]: its description of the clean
  image over its answer to a hallucination-inducing request or its description of a corrupted image), then DPO with
  STIC's loss (sigmoid + NLL) through a fresh LoRA on the language model ([`stic_dpo_trainer`]), merged after.
- `stic+stage2`: then STIC stage 2. The DPO'd model describes the images of a slice of the demo's own instruction
  data (held-in conversations, as STIC uses 5k of LLaVA's), each first question becomes `Image description:\\n...
  \\n\\n{question}`, and SFT continues with the package's self-questioning collator (image path frozen, as in the
  demo's stage 2).
- `sq`: self-questioning preferences. The model's questions about the clean image (after its own description) over
  its questions after a misleading context, plus its answers to its own questions on the clean over the corrupted
  image (`sq-question`, `sq-answer`); the same DPO recipe.

Each run is evaluated with [`evaluate_on_demo_benchmark`] and compared with the shipped checkpoint's numbers. The
learning rate is the toy model's, not STIC's 1e-7 for a 7B LoRA (docs/self_training.md#the-demo-world-experiment).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..evaluation.demo_evaluation import evaluate_on_demo_benchmark
from .data import build_trl_rows, split_scenes
from .record import DEFAULT_CHECKPOINT, load_training_record
from .train import DemoTrainingConfig, run_sft, save_demo_checkpoint
from .vision_pretraining import freeze_image_path

VARIANTS = ("stic", "stic+stage2", "sq")
VARIANT_KINDS = {"stic": ("stic",), "stic+stage2": ("stic",), "sq": ("sq-question", "sq-answer")}
# The demo model's generation settings (`demo/run.py`): captions fit 64 tokens, questions 16; questions are sampled
# as the demo samples them.
DESCRIPTION_GENERATION = {"do_sample": False, "max_new_tokens": 64}
QUESTION_GENERATION = {"do_sample": True, "temperature": 1.2, "top_p": 0.95, "top_k": 0, "max_new_tokens": 16}
# The numbers the table compares (task, metric) and their labels.
COLUMNS = (
    ("self-questioning", "valid_questions", "valid own questions"),
    ("self-questioning", "answers_to_valid", "answers to them"),
    ("vqa", "accuracy", "VQA"),
    ("pope", "f1", "POPE F1"),
    ("caption", "CIDEr-D", "CIDEr-D"),
    ("mme", "perception", "MME"),
    ("multiple-choice", "accuracy", "MC"),
)


@dataclass
class DemoSelfTrainingConfig:
    r"""
    One self-training run on the demo world. The sizes fit a run in a few minutes on 2 CPU cores.

    Args:
        variant (`str`): One of [`VARIANTS`].
        seed (`int`, *optional*, defaults to 0): Seeds the pairs' draws and sampling, the LoRA and the data order.
        num_images (`int`, *optional*, defaults to 1000): Unlabeled held-in scenes the pairs are made from.
        dpo_steps (`int`, *optional*, defaults to 500), dpo_batch_size (`int`, *optional*, defaults to 8).
        dpo_learning_rate (`float`, *optional*, defaults to 3e-4): The toy model's (STIC: 1e-7 for a 7B LoRA r 128);
            at 5e-5 the DPO loss stays within 0.01 of ln 2 in 250 steps, at 1e-3 VQA accuracy falls 13 points.
        lora_r (`int`, *optional*, defaults to 16), lora_alpha (`int`, *optional*, defaults to 32): the DPO LoRA on
            the language model (STIC: 128 / 256 on a 4096-wide model; the demo's is 128 wide).
        stage2_rows (`int`, *optional*, defaults to 1000): Instruction conversations for stage 2.
        stage2_steps (`int`, *optional*, defaults to 100), stage2_learning_rate (`float`, *optional*, defaults to
            2e-4), stage2_batch_size (`int`, *optional*, defaults to 32).
        threads (`int`, *optional*, defaults to 2): torch CPU threads.
    """

    variant: str = "stic"
    seed: int = 0
    num_images: int = 1000
    dpo_steps: int = 500
    dpo_batch_size: int = 8
    dpo_learning_rate: float = 3e-4
    lora_r: int = 16
    lora_alpha: int = 32
    stage2_rows: int = 1000
    stage2_steps: int = 100
    stage2_learning_rate: float = 2e-4
    stage2_batch_size: int = 32
    threads: int = 2

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"Unknown self-training variant {self.variant!r}: use one of {list(VARIANTS)}.")


def _write_images(scenes, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for scene in scenes:
        scene.render().save(folder / f"scene-{scene.seed}.png")


def _dpo(model, processor, preferences: Path, images: Path, config: DemoSelfTrainingConfig, system: str, work: Path):
    from ..commands._logging import quiet_bitsandbytes_cpu_kernel_notice

    with quiet_bitsandbytes_cpu_kernel_notice():  # TRL and PEFT import bitsandbytes (see `commands/_logging.py`)
        from peft import LoraConfig
        from trl import DPOConfig

    from ..self_training import load_preference_dataset
    from ..training import stic_dpo_config_kwargs, stic_dpo_trainer
    from ..training.recipe import _without_peft_checkpointing_deprecation, llm_lora_target_regex

    dataset = load_preference_dataset(preferences, images, kinds=VARIANT_KINDS[config.variant], system_message=system)
    args = DPOConfig(
        **stic_dpo_config_kwargs(
            output_dir=str(work / "dpo"), max_steps=config.dpo_steps, per_device_train_batch_size=config.dpo_batch_size,
            gradient_accumulation_steps=1, learning_rate=config.dpo_learning_rate, use_cpu=True, bf16=False,
            activation_checkpointing=False, logging_steps=25, save_strategy="no", report_to="none", seed=config.seed,
            data_seed=config.seed, dataloader_num_workers=0, disable_tqdm=True,
        )
    )  # fmt: skip
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.05,
                      target_modules=llm_lora_target_regex(), bias="none", task_type="CAUSAL_LM")  # fmt: skip
    trainer = stic_dpo_trainer(model, processor, dataset, args, peft_config=lora, images_first=True)
    with _without_peft_checkpointing_deprecation():  # PEFT reads the deprecated name while training starts
        result = trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    return trainer.model.merge_and_unload(), {
        "pairs": len(dataset), "train_loss": round(result.training_loss, 4),
        "first_logged_loss": logs[0]["loss"] if logs else None, "last_logged_loss": logs[-1]["loss"] if logs else None,
        "loss_weights": list(args.loss_weights or []),
    }  # fmt: skip


def _stage2(model, processor, record: dict, config: DemoSelfTrainingConfig):
    from ..self_training import DEMO_PROMPTS, infuse_descriptions
    from ..training import SQLlavaSelfQuestioningCollator

    training = DemoTrainingConfig(**record["training_config"])
    # Held-in scenes after the ones the pairs were made from: instruction data the checkpoint was trained on, as
    # STIC's 5k are LLaVA's own instruction data.
    scenes = split_scenes(config.num_images + config.stage2_rows, 0, image_size=training.image_size).train
    rows = build_trl_rows(scenes[config.num_images :], stage=2, num_turns=(training.min_turns, training.max_turns),
                          description_first=0.0, question_before_image=training.question_before_image)  # fmt: skip
    system = {"role": "system", "content": [{"type": "text", "text": training.system_prompt}]}
    rows = [{**row, "messages": [system, *row["messages"]]} for row in rows]
    model.eval()
    rows = infuse_descriptions(model, processor, rows, prompts=DEMO_PROMPTS, system_prompt=training.system_prompt,
                               generation_kwargs=DESCRIPTION_GENERATION, batch_size=64, seed=config.seed)  # fmt: skip
    # The merged DPO model comes back frozen (PEFT froze the base); the demo's stage 2 trains the language model fully.
    model.requires_grad_(True)
    freeze_image_path(model)
    collator = SQLlavaSelfQuestioningCollator(processor, sq_ratio=training.sq_ratio, system_prompt="v1_sq",
                                              images_first=not training.question_before_image)  # fmt: skip
    stage2 = DemoTrainingConfig(**{**asdict(training), "seed": config.seed})
    loss = run_sft(model, processor, rows, collator, config.stage2_steps, config.stage2_learning_rate,
                   config.stage2_batch_size, stage2, log_every=25)  # fmt: skip
    return model, {"rows": len(rows), "train_loss": round(loss, 4)}


def self_train_demo(config: DemoSelfTrainingConfig, output_dir: str | Path, checkpoint=DEFAULT_CHECKPOINT) -> Path:
    r"""
    Run one self-training variant from `checkpoint` and save the result as a demo checkpoint in `output_dir` (its
    training record gains a `self_training` entry: the config, the pairs, the losses, the time).
    """
    from ..commands.generate import checkpoint_prompt_format, load_model_and_processor
    from ..self_training import DEMO_PROMPTS, PreferenceBuildConfig, build_preferences

    torch.set_num_threads(config.threads)
    started = time.perf_counter()
    record = load_training_record(checkpoint)
    trained = checkpoint_prompt_format(str(checkpoint))
    model, processor = load_model_and_processor(str(checkpoint), device="cpu", dtype="float32")
    output_dir = Path(output_dir)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        image_size = record["training_config"]["image_size"]
        _write_images(split_scenes(config.num_images, 0, image_size=image_size).train, work / "images")
        build = PreferenceBuildConfig(kinds=VARIANT_KINDS[config.variant], prompts=DEMO_PROMPTS,
                                      system_prompt=trained["system_prompt"], answer_generation=DESCRIPTION_GENERATION,
                                      question_generation=QUESTION_GENERATION, seed=config.seed)  # fmt: skip
        built = build_preferences(model, processor, work / "images", work / "preferences.jsonl", build, batch_size=64,
                                  progress=False)  # fmt: skip
        preference_minutes = (time.perf_counter() - started) / 60
        model, dpo = _dpo(model, processor, work / "preferences.jsonl", work / "images", config,
                          trained["system_prompt"], work)  # fmt: skip
        stage2 = None
        if config.variant == "stic+stage2":
            model, stage2 = _stage2(model, processor, record, config)
    record = {**record, "evaluation": None, "self_training": {
        "config": asdict(config), "pairs_written": built.num_written, "pairs_identical": built.num_identical,
        "preference_minutes": round(preference_minutes, 1), "dpo": dpo, "stage2": stage2,
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "started_from": "demo" if Path(checkpoint).resolve() == DEFAULT_CHECKPOINT.resolve() else str(checkpoint),
    }}  # fmt: skip
    save_demo_checkpoint(model.eval(), processor, output_dir, record)
    return output_dir


def run_experiment(
    output_dir: str | Path, variants=VARIANTS, seeds=(0, 1), evaluation_kwargs: dict | None = None, **config_kwargs
) -> dict[str, Any]:
    r"""
    Every variant at every seed (resumable: a run whose `evaluation.json` exists is not redone), plus the shipped
    checkpoint's own numbers; writes `self_training.json` and `self_training.md` in `output_dir`.

    `evaluation_kwargs` go to [`evaluate_on_demo_benchmark`] (smaller `sizes` for a quick check); `config_kwargs` to
    every run's [`DemoSelfTrainingConfig`].
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    evaluation_kwargs = evaluation_kwargs or {}
    results = {"start": _evaluated(DEFAULT_CHECKPOINT, output_dir / "start-evaluation.json", evaluation_kwargs)}
    for variant in variants:
        for seed in seeds:
            run = output_dir / f"{variant}-seed{seed}"
            if not (run / "evaluation.json").is_file():
                shutil.rmtree(run, ignore_errors=True)
                self_train_demo(DemoSelfTrainingConfig(variant=variant, seed=seed, **config_kwargs), run)
            results[f"{variant}/{seed}"] = _evaluated(run, run / "evaluation.json", evaluation_kwargs)
    summary = {"runs": results, "table": table_rows(results, variants, seeds)}
    (output_dir / "self_training.json").write_text(json.dumps(summary, indent=1) + "\n")
    (output_dir / "self_training.md").write_text(format_table(summary["table"]) + "\n")
    return summary


def _evaluated(checkpoint: Path, path: Path, evaluation_kwargs: dict) -> dict[str, Any]:
    if not path.is_file():
        report = evaluate_on_demo_benchmark(checkpoint, **evaluation_kwargs)
        minutes = load_training_record(checkpoint).get("self_training", {}).get("minutes")
        path.write_text(json.dumps({"headlines": report.headlines, "training_minutes": minutes}, indent=1) + "\n")
    return json.loads(path.read_text())


def table_rows(results: dict[str, Any], variants, seeds) -> list[dict[str, Any]]:
    """One row per variant: each column's mean over seeds, its spread (max - min), and the change from the start."""
    start = results["start"]["headlines"]
    rows = [{"variant": "start (shipped checkpoint)", "columns": {label: (start[task][metric], 0.0, 0.0)
             for task, metric, label in COLUMNS}, "minutes": None}]  # fmt: skip
    for variant in variants:
        runs = [results[f"{variant}/{seed}"] for seed in seeds]
        columns = {}
        for task, metric, label in COLUMNS:
            values = [run["headlines"][task][metric] for run in runs]
            columns[label] = (statistics.mean(values), max(values) - min(values),
                              statistics.mean(values) - start[task][metric])  # fmt: skip
        minutes = [run["training_minutes"] for run in runs if run.get("training_minutes") is not None]
        rows.append({"variant": variant, "columns": columns, "minutes": max(minutes) if minutes else None})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: mean over seeds (spread, change from the start) per column."""
    labels = [label for _, _, label in COLUMNS]
    lines = ["| variant | " + " | ".join(labels) + " | minutes per run |", "|---" * (len(labels) + 2) + "|"]
    for row in rows:
        cells = []
        for label in labels:
            mean, spread, change = row["columns"][label]
            cells.append(f"{mean:.1f}" if row["minutes"] is None and spread == 0 else
                         f"{mean:.1f} (±{spread / 2:.1f}, {change:+.1f})")  # fmt: skip
        minutes = "" if row["minutes"] is None else f"{row['minutes']:.1f}"
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + f" | {minutes} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m transformers_sqllava.demo.self_training", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--output-dir", required=True, help="runs, evaluations and the table")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    for name, default in asdict(DemoSelfTrainingConfig()).items():
        if name not in ("variant", "seed"):
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    args = vars(parser.parse_args(argv))
    output_dir, variants, seeds = args.pop("output_dir"), args.pop("variants"), args.pop("seeds")
    summary = run_experiment(output_dir, variants, seeds, **args)
    print(format_table(summary["table"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
