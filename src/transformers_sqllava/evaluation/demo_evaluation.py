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
"""`sqllava eval demo`: a demo checkpoint on the offline demo benchmark, through the code that evaluates a real one.

[`evaluate_on_demo_benchmark`] builds the benchmark's files from the checkpoint's held-out scenes
([`build_demo_benchmark`]), answers every task's question file with [`answer_question_file`] (what `sqllava eval run`
does) and scores the answers with the benchmark's own scorer (what `sqllava eval score` does). One more row measures
what only SQ-LLaVA can be asked: the share of the questions the model asks itself about a scene (after its own
description, as `sqllava demo` asks them) that are valid, i.e. in the scene language and answerable for that scene.

It is the measuring stick of the training work on the demo world (self-training, the ablation): any checkpoint that
`demo/train.py` (or a recipe built on it) wrote can be pointed at, and the table's numbers are comparable across them.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..demo.record import DEFAULT_CHECKPOINT, load_training_record
from .answering import AnsweringConfig
from .demo_benchmark import DemoBenchmarkSizes, DemoBenchmarkTask, build_demo_benchmark
from .runner import answer_question_file
from .scoring._files import PathLike


# What each task stands for, and its headline metric (first in the table; the task's other numbers follow it).
TASK_LABELS = {
    "pope": ("POPE", "f1", "F1, mean of random / popular / adversarial"),
    "vqa": ("VQAv2", "accuracy", "accuracy (official VQA metric)"),
    "caption": ("COCO captions", "CIDEr-D", "CIDEr-D (x100)"),
    "mme": ("MME", "perception", "perception score (existence + color, of 400)"),
    "multiple-choice": ("MMBench", "accuracy", "accuracy (local dev estimate)"),
}
SELF_QUESTIONING_SCENES = 50  # as `sqllava demo`: its 50 held-out scenes, 3 questions each
SELF_QUESTIONS_PER_SCENE = 3
DEFAULT_BATCH_SIZE = 32


@dataclass
class DemoBenchmarkReport:
    r"""
    What [`evaluate_on_demo_benchmark`] measured.

    Args:
        checkpoint (`str`): The checkpoint evaluated.
        headlines (`dict[str, dict[str, float]]`): Per task, the numbers of the table ([`DemoBenchmarkTask.headline`]),
            plus `"self-questioning"`: `valid_questions` (percent) and `answers_to_valid` (percent).
        results (`dict[str, dict]`): Per task, the scorer's full result.
        num_questions (`int`): Benchmark questions answered.
        seconds (`float`): Wall time, loading and building included.
    """

    checkpoint: str
    headlines: dict[str, dict[str, float | None]] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    num_questions: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "headlines": self.headlines, "num_questions": self.num_questions,
                "seconds": self.seconds, "results": self.results}  # fmt: skip


def evaluate_on_demo_benchmark(
    checkpoint: PathLike = DEFAULT_CHECKPOINT,
    output_dir: PathLike | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    sizes: DemoBenchmarkSizes | None = None,
    self_questioning_scenes: int = SELF_QUESTIONING_SCENES,
) -> DemoBenchmarkReport:
    r"""
    Evaluate a demo checkpoint on the offline demo benchmark.

    Args:
        checkpoint (`str` or `os.PathLike`, *optional*): A folder written by `demo/train.py` (it needs the training
            record, `demo_training.json`, for its held-out split and prompt format); defaults to the shipped one.
        output_dir (`str` or `os.PathLike`, *optional*): Where the benchmark's files and the answers go (kept for
            reading); by default a temporary folder, removed afterwards.
        batch_size (`int`, *optional*, defaults to 32): Questions per `generate` call.
        seed (`int`, *optional*, defaults to 0): Seeds the benchmark's questions and the self-asked questions.
        sizes ([`DemoBenchmarkSizes`], *optional*): The tasks' sizes (smaller for a quick check).
        self_questioning_scenes (`int`, *optional*, defaults to 50): Held-out scenes the model asks 3 questions about
            (0 skips the row).
    """
    from ..commands.generate import checkpoint_prompt_format, load_model_and_processor

    started = time.perf_counter()
    load_training_record(checkpoint)  # a folder that is not a demo checkpoint fails here, with the fix
    trained = checkpoint_prompt_format(str(checkpoint))
    model, processor = load_model_and_processor(str(checkpoint), device="cpu", dtype="float32")
    report = DemoBenchmarkReport(checkpoint=str(checkpoint))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(output_dir if output_dir is not None else scratch)
        tasks = build_demo_benchmark(folder / "benchmark", checkpoint, seed=seed, sizes=sizes)
        for task in tasks:
            answers_file = folder / "answers" / f"{task.name}.jsonl"
            answers_file.unlink(missing_ok=True)  # answers of an earlier run (maybe another checkpoint): not resumed
            _answer_task(model, processor, task, answers_file, trained, batch_size)
            report.results[task.name] = task.score(answers_file)
            report.headlines[task.name] = task.headline(report.results[task.name])
            report.num_questions += task.num_questions
    if self_questioning_scenes:
        report.headlines["self-questioning"] = _self_questioning(model, processor, checkpoint, trained, seed,
                                                                 self_questioning_scenes)  # fmt: skip
    report.seconds = time.perf_counter() - started
    return report


def _answer_task(model, processor, task: DemoBenchmarkTask, answers_file: Path, trained: dict, batch_size: int):
    config = AnsweringConfig(
        system_prompt=trained["system_prompt"],
        question_first=trained["question_first"],
        description_prompt=trained["description_prompt"],
        generation_kwargs={"do_sample": False, "max_new_tokens": task.max_new_tokens},
    )
    answer_question_file(
        model, processor, task.question_file, answers_file, task.image_folder, question_format=task.question_format,
        answering=config, batch_size=batch_size, model_id=Path(str(task.question_file)).stem, progress=False,
    )  # fmt: skip


def _self_questioning(model, processor, checkpoint, trained: dict, seed: int, num_scenes: int) -> dict[str, float]:
    from ..demo.run import held_out_scenes, self_question_scenes

    scenes = held_out_scenes(load_training_record(checkpoint), num_scenes)
    torch.manual_seed(seed)  # the questions are sampled, as in `sqllava demo`
    _, judged = self_question_scenes(
        model, processor, scenes, [scene.render() for scene in scenes], SELF_QUESTIONS_PER_SCENE,
        system_prompt=trained["system_prompt"],
    )  # fmt: skip
    asked = [item for per_scene in judged for item in per_scene]
    valid = [item for item in asked if item.valid]
    return {
        "valid_questions": 100.0 * len(valid) / max(len(asked), 1),
        "answers_to_valid": 100.0 * sum(bool(item.correct) for item in valid) / max(len(valid), 1),
    }


def format_demo_benchmark(report: DemoBenchmarkReport) -> str:
    """The one table `sqllava eval demo` prints: a row per task, its headline metric first, then its other numbers."""
    shipped = Path(report.checkpoint).resolve() == DEFAULT_CHECKPOINT.resolve()
    lines = [
        f"Demo benchmark: {'the shipped demo checkpoint' if shipped else report.checkpoint}",
        f"(held-out scenes; {report.num_questions} benchmark questions, answered by `eval run` and scored by "
        f"`eval score`; {report.seconds:.0f} s)",
        "",
        "| task | stands for | headline | value | other numbers |",
        "|---|---|---|---|---|",
    ]
    for name, (stands_for, key, description) in TASK_LABELS.items():
        if name not in report.headlines:
            continue
        numbers = report.headlines[name]
        others = ", ".join(f"{metric} {_number(value)}" for metric, value in numbers.items() if metric != key)
        lines.append(f"| {name} | {stands_for} | {description} | {_number(numbers[key])} | {others} |")
    if "self-questioning" in report.headlines:
        numbers = report.headlines["self-questioning"]
        lines.append(
            f"| self-questioning | SQ-LLaVA's virtual user | valid own questions (%) | "
            f"{_number(numbers['valid_questions'])} | answers to valid ones {_number(numbers['answers_to_valid'])} |"
        )
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def write_demo_benchmark_report(report: DemoBenchmarkReport, path: PathLike) -> None:
    """The report as JSON (headlines, every scorer's result, timing)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")


__all__ = [
    "DemoBenchmarkReport",
    "evaluate_on_demo_benchmark",
    "format_demo_benchmark",
    "write_demo_benchmark_report",
]
