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
"""The offline demo benchmark: the paper's kinds of benchmark, built from held-out demo scenes in the benchmarks'
official file formats.

The demo model (a tiny SQ-LLaVA trained on scenes of coloured shapes) cannot be asked real benchmark images, but it
can be evaluated through exactly the code that evaluates a real checkpoint: `sqllava eval run` answers each task's
question file, and the benchmark's own scorer (`scoring.registry.score`, `sqllava eval score`) scores the answers
against ground truth in that benchmark's format. A format mismatch between the runner, the files and the scorers
then shows on a model anyone can run offline in a minute.

| task | stands for | questions (default sizes) | scorer | headline |
|---|---|---|---|---|
| `pope` | POPE (3 categories) | 15 images x 6 x 3 = 270 "Is there a COLOUR SHAPE?" | `pope` | F1 per category, mean |
| `vqa` | VQAv2 (official accuracy) | 50 scenes x 4 short-answer questions = 200 | `vqav2` | accuracy |
| `caption` | COCO captions | 50 "Describe the image." | `caption` | CIDEr-D, BLEU-4 (x 100) |
| `mme` | MME (`existence`, `color`) | 40 images x 2 tasks x 2 yes/no = 160 | `mme` | Perception (of 400) |
| `multiple-choice` | MMBench dev (local estimate) | 100 lettered questions | `mmbench` | accuracy |

That is 780 generations, 730 of at most 8 tokens and 50 captions of at most 64: the committed checkpoint answers
them all in about 6 seconds on 2 CPU cores (batches of 64), and scoring takes about a second. The question texts are
the demo's scene language only, without the benchmarks' prompt suffixes, which the demo model never saw; the runner
formats the prompt as the checkpoint was trained (the committed one: question before the image, except "Describe the
image.", see `demo/data.py`). `demo_benchmark_files.py` writes the files and says how each follows its benchmark.

Scenes: the held-out scenes of the checkpoint's split (`held_out_scenes(load_training_record(checkpoint), n)`: none
equals a training scene), cut into consecutive ranges, one per task in the order of [`TASK_NAMES`], so that no image
is in two tasks. POPE's range is 4 times its image count, of which it takes the first scenes with at least 3
colour-shapes (POPE's images have at least 3 objects). POPE's popular and adversarial objects come from the training
scenes' statistics. Everything is deterministic from `seed` (and the checkpoint's split).

Example:

```python
>>> tasks = build_demo_benchmark("demo-benchmark")  # doctest: +SKIP
>>> pope = tasks[0]  # doctest: +SKIP
>>> # sqllava eval run --question-file {pope.question_file} --image-folder {pope.image_folder} ...
>>> pope.headline(pope.score("answers/pope.jsonl"))  # doctest: +SKIP
{'f1': 100.0, 'accuracy': 100.0, 'f1_adversarial': 100.0, 'f1_popular': 100.0, 'f1_random': 100.0}
```
"""

from __future__ import annotations

import functools
import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..demo.data import split_scenes
from ..demo.record import DEFAULT_CHECKPOINT, load_training_record
from ..demo.scenes import Scene
from .demo_benchmark_files import (
    POPE_CATEGORIES,
    POPE_OBJECTS_PER_IMAGE,
    ObjectStatistics,
    WrittenFiles,
    colour_shapes,
    object_statistics,
    write_captions,
    write_mme,
    write_multiple_choice,
    write_pope,
    write_vqa,
)
from .scoring._files import PathLike


TASK_NAMES = ("pope", "vqa", "caption", "mme", "multiple-choice")
# Each task's scorer (a key of `scoring.registry.SCORERS`) and question file format (`sqllava eval run
# --question-format`: LLaVA's JSON Lines, model_cap.py's captions, MMBench's TSV).
BENCHMARKS = {"pope": "pope", "vqa": "vqav2", "caption": "caption", "mme": "mme", "multiple-choice": "mmbench"}
QUESTION_FORMATS = {
    "pope": "llava",
    "vqa": "llava",
    "caption": "caption",
    "mme": "llava",
    "multiple-choice": "mmbench",
}
# Generation budgets, the demo's own (demo/run.py): scene words are one token each; an answer is 1-3 words, a
# 4-object caption about 40 tokens.
SHORT_ANSWER_MAX_NEW_TOKENS = 8
CAPTION_MAX_NEW_TOKENS = 64
# Default sizes, for 780 generations in all (see the module docstring).
POPE_NUM_IMAGES = 15
VQA_NUM_SCENES = 50
VQA_QUESTIONS_PER_SCENE = 4
CAPTION_NUM_SCENES = 50
MME_NUM_IMAGES = 40
MULTIPLE_CHOICE_NUM_SCENES = 100
# About half of the held-out scenes have 3 colour-shapes or more: POPE scans 4 times as many as it needs.
POPE_SCENE_POOL_FACTOR = 4
# The caption scorer truncates predictions to 20 words (COCO captions are ~10) and references to 50; a demo caption
# has up to 37 words, so predictions are truncated to the references' 50, or a perfect caption would not score 100.
CAPTION_MAX_WORDS = 50
# BLEU, ROUGE-L and CIDEr-D; METEOR and SPICE are Java programs (SPICE also needs CoreNLP, downloaded): not offline
# everywhere, and slow to start for 50 captions.
CAPTION_METRICS = ("BLEU", "ROUGE-L", "CIDEr-D")
# Written next to the task folders: what was built, from which split; a later build replaces only folders it wrote.
MANIFEST = "demo_benchmark.json"


@dataclass(frozen=True)
class DemoBenchmarkSizes:
    r"""
    How many scenes (and questions) each task takes.

    Args:
        pope_images (`int`, *optional*, defaults to 15): POPE images; 6 questions each per category.
        vqa_scenes (`int`, *optional*, defaults to 50), vqa_questions_per_scene (`int`, *optional*, defaults to 4).
        caption_scenes (`int`, *optional*, defaults to 50).
        mme_images (`int`, *optional*, defaults to 40): images per MME task; 2 questions each.
        multiple_choice_scenes (`int`, *optional*, defaults to 100): one question each.
    """

    pope_images: int = POPE_NUM_IMAGES
    vqa_scenes: int = VQA_NUM_SCENES
    vqa_questions_per_scene: int = VQA_QUESTIONS_PER_SCENE
    caption_scenes: int = CAPTION_NUM_SCENES
    mme_images: int = MME_NUM_IMAGES
    multiple_choice_scenes: int = MULTIPLE_CHOICE_NUM_SCENES

    def scene_ranges(self) -> dict[str, range]:
        """Each task's range of held-out scene positions (consecutive, disjoint, in [`TASK_NAMES`]' order)."""
        counts = (self.pope_images * POPE_SCENE_POOL_FACTOR, self.vqa_scenes, self.caption_scenes, self.mme_images,
                  self.multiple_choice_scenes)  # fmt: skip
        if any(not isinstance(count, int) or count < 1 for count in counts) or self.vqa_questions_per_scene < 1:
            raise ValueError(f"Every demo benchmark size must be a positive int, got {self}.")
        ranges, start = {}, 0
        for name, count in zip(TASK_NAMES, counts):
            ranges[name], start = range(start, start + count), start + count
        return ranges


@dataclass(frozen=True)
class DemoBenchmarkTask:
    r"""
    One task of the demo benchmark: what `sqllava eval run` answers, and how its scorer scores the answers.

    Args:
        name (`str`): One of [`TASK_NAMES`].
        question_file (`Path`): The questions.
        image_folder (`Path`): `--image-folder` (the MMBench TSV holds its images; then the TSV's folder).
        question_format (`str`): `--question-format`: `"llava"`, `"caption"` or `"mmbench"`.
        max_new_tokens (`int`): Enough for the answers: 8 for short answers, 64 for captions.
        benchmark (`str`): The scorer, a key of `scoring.registry.SCORERS`.
        annotation (`Path`): The ground truth as the scorer takes it (POPE's annotation folder, VQA's annotation
            file, the COCO caption file, MME's release folder, the MMBench TSV).
        num_questions (`int`): Questions in the file, i.e. answers to generate.
        scene_seeds (`tuple[int, ...]`): The held-out scenes asked about (their `generate_scene` seeds).
    """

    name: str
    question_file: Path
    image_folder: Path
    question_format: str
    max_new_tokens: int
    benchmark: str
    annotation: Path
    num_questions: int
    scene_seeds: tuple[int, ...]

    def score_arguments(self, answers_file: PathLike) -> dict[str, Any]:
        r"""
        The keyword arguments of `scoring.registry.score(self.benchmark, **arguments)` for an answers file (the
        runner's JSON Lines). The VQAv2 upload file and MME's converted `<task>.txt` files, which those scorers write,
        go next to it (`<answers>_vqav2_upload.json`, `<answers>_mme_results/`).
        """
        answers = Path(answers_file)
        if self.benchmark == "pope":
            return {"annotation_dir": str(self.annotation), "question_file": str(self.question_file),
                    "result_file": str(answers)}  # fmt: skip
        if self.benchmark == "vqav2":
            return {"result_file": str(answers), "test_split": str(self.question_file),
                    "result_upload_file": str(answers.with_name(f"{answers.stem}_vqav2_upload.json")),
                    "annotation_file": str(self.annotation)}  # fmt: skip
        if self.benchmark == "caption":
            return {"answers_file": str(answers), "annotation": str(self.annotation), "max_words": CAPTION_MAX_WORDS,
                    "metrics": list(CAPTION_METRICS)}  # fmt: skip
        if self.benchmark == "mme":
            return {"answers_file": str(answers), "data_path": str(self.annotation),
                    "results_dir": str(answers.with_name(f"{answers.stem}_mme_results"))}  # fmt: skip
        if self.benchmark == "mmbench":
            return {"annotation_file": str(self.annotation), "result_file": str(answers)}
        raise ValueError(f"Task {self.name!r} has no demo scorer setup for benchmark {self.benchmark!r}.")

    def score(self, answers_file: PathLike) -> dict[str, Any]:
        """Score an answers file with the benchmark's scorer; returns the scorer's result."""
        from .scoring.registry import score

        return score(self.benchmark, **self.score_arguments(answers_file))

    def headline(self, result: dict[str, Any]) -> dict[str, float | None]:
        r"""
        The numbers to report from the scorer's `result`, on the papers' scales: percentages for accuracy and F1,
        CIDEr-D and BLEU-4 times 100 (as COCO caption tables print them), MME's points (a task is out of 200).

        - `pope`: `f1` (the mean over categories: the paper's POPE number), `accuracy`, `f1_<category>`;
        - `vqa`, `multiple-choice`: `accuracy`;
        - `caption`: `CIDEr-D`, `BLEU-4`;
        - `mme`: `perception` (the total) and one entry per task.
        """
        if self.benchmark == "pope":
            categories = result["categories"]
            per_category = {f"f1_{name}": _percent(categories[name]["f1"]) for name in POPE_CATEGORIES}
            return {"f1": result["score"], "accuracy": result["accuracy"], **per_category}
        if self.benchmark in ("vqav2", "mmbench"):
            return {"accuracy": result["accuracy"]}
        if self.benchmark == "caption":
            return {"CIDEr-D": _percent(result["CIDEr-D"]), "BLEU-4": _percent(result["BLEU-4"])}
        if self.benchmark == "mme":
            return {
                "perception": result["perception"],
                **{name: task["score"] for name, task in result["tasks"].items()},
            }
        raise ValueError(f"Task {self.name!r} has no headline for benchmark {self.benchmark!r}.")


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else 100.0 * fraction


@functools.lru_cache(maxsize=4)
def _held_out_split(num_train: int, num_held_out: int, image_size: int) -> tuple[tuple[Scene, ...], ObjectStatistics]:
    # The split `held_out_scenes` makes (same call), plus the training scenes' POPE statistics. Generating 160,000
    # training scenes takes seconds; kept per process (the held-out scenes and counts only, not the training scenes).
    split = split_scenes(num_train, num_held_out, image_size=image_size)
    return tuple(split.held_out), object_statistics(split.train)


def _rng(task: str, seed: int) -> random.Random:
    # A string seed is hashed with SHA-512 by `random`: the same on every run, whatever PYTHONHASHSEED.
    return random.Random(f"demo-benchmark|{task}|{seed}")


def _clear_task_folders(output_dir: Path) -> None:
    existing = [output_dir / name for name in TASK_NAMES if (output_dir / name).exists()]
    if existing and not (output_dir / MANIFEST).is_file():
        raise FileExistsError(
            f"{output_dir} already holds {[path.name for path in existing]} but no {MANIFEST}: it was not written by "
            "build_demo_benchmark, so nothing is replaced. Pass an empty or new output folder."
        )
    for path in existing:  # a smaller rebuild must not leave stale files (POPE reads every file of its folder)
        shutil.rmtree(path)


def build_demo_benchmark(
    output_dir: PathLike,
    checkpoint: PathLike = DEFAULT_CHECKPOINT,
    sizes: DemoBenchmarkSizes | None = None,
    seed: int = 0,
) -> list[DemoBenchmarkTask]:
    r"""
    Write the demo benchmark's tasks (question files, images, ground truth) under `output_dir`.

    Args:
        output_dir (`str` or `os.PathLike`): Created if missing; gets one folder per task and [`MANIFEST`]. Task
            folders of an earlier build there are replaced.
        checkpoint (`str` or `os.PathLike`, *optional*): A demo checkpoint folder; only its training record is read,
            for its train/held-out split. Defaults to the committed checkpoint.
        sizes ([`DemoBenchmarkSizes`], *optional*): Scenes per task; the defaults make 780 questions.
        seed (`int`, *optional*, defaults to 0): Seeds the questions, absent objects and options (the scenes are the
            checkpoint's held-out scenes, whatever the seed).

    Returns:
        `list[DemoBenchmarkTask]`: one per task, in [`TASK_NAMES`]' order.
    """
    sizes = sizes or DemoBenchmarkSizes()
    config = load_training_record(checkpoint)["training_config"]
    ranges = sizes.scene_ranges()
    total = ranges[TASK_NAMES[-1]].stop
    held_out, statistics = _held_out_split(config["num_train_scenes"], total, config["image_size"])
    scenes = {name: list(held_out[ranges[name].start : ranges[name].stop]) for name in TASK_NAMES}
    scenes["pope"] = [scene for scene in scenes["pope"] if len(colour_shapes(scene)) >= POPE_OBJECTS_PER_IMAGE]
    if len(scenes["pope"]) < sizes.pope_images:
        raise ValueError(
            f"Only {len(scenes['pope'])} of POPE's {len(ranges['pope'])} held-out scenes have "
            f"{POPE_OBJECTS_PER_IMAGE} colour-shapes, for {sizes.pope_images} images: ask for fewer POPE images."
        )
    scenes["pope"] = scenes["pope"][: sizes.pope_images]

    output_dir = Path(output_dir)
    _clear_task_folders(output_dir)
    written: dict[str, WrittenFiles] = {
        "pope": write_pope(output_dir / "pope", scenes["pope"], statistics, _rng("pope", seed)),
        "vqa": write_vqa(output_dir / "vqa", scenes["vqa"], sizes.vqa_questions_per_scene, _rng("vqa", seed)),
        "caption": write_captions(output_dir / "caption", scenes["caption"]),
        "mme": write_mme(output_dir / "mme", scenes["mme"], _rng("mme", seed)),
        "multiple-choice": write_multiple_choice(
            output_dir / "multiple-choice", scenes["multiple-choice"], _rng("multiple-choice", seed)
        ),
    }
    tasks = [
        DemoBenchmarkTask(
            name=name,
            question_file=written[name].question_file,
            image_folder=written[name].image_folder,
            question_format=QUESTION_FORMATS[name],
            max_new_tokens=CAPTION_MAX_NEW_TOKENS if name == "caption" else SHORT_ANSWER_MAX_NEW_TOKENS,
            benchmark=BENCHMARKS[name],
            annotation=written[name].annotation,
            num_questions=written[name].num_questions,
            scene_seeds=tuple(scene.seed for scene in scenes[name]),
        )
        for name in TASK_NAMES
    ]
    manifest = {
        "seed": seed,
        "num_train_scenes": config["num_train_scenes"],
        "image_size": config["image_size"],
        "sizes": asdict(sizes),
        "tasks": [_task_entry(task, output_dir) for task in tasks],
    }
    (output_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return tasks


def _task_entry(task: DemoBenchmarkTask, output_dir: Path) -> dict[str, Any]:
    entry = asdict(task)
    for key in ("question_file", "image_folder", "annotation"):  # relative: the folder can move
        entry[key] = Path(entry[key]).relative_to(output_dir).as_posix()
    entry["scene_seeds"] = list(task.scene_seeds)
    return entry


def load_demo_benchmark(output_dir: PathLike) -> list[DemoBenchmarkTask]:
    """The tasks of a benchmark [`build_demo_benchmark`] wrote to `output_dir` (from its [`MANIFEST`])."""
    output_dir = Path(output_dir)
    path = output_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"No {MANIFEST} in {output_dir}: build the demo benchmark there first.")
    tasks = []
    for entry in json.loads(path.read_text(encoding="utf-8"))["tasks"]:
        for key in ("question_file", "image_folder", "annotation"):
            entry[key] = output_dir / entry[key]
        tasks.append(DemoBenchmarkTask(**{**entry, "scene_seeds": tuple(entry["scene_seeds"])}))
    return tasks


__all__ = [
    "BENCHMARKS",
    "TASK_NAMES",
    "DemoBenchmarkSizes",
    "DemoBenchmarkTask",
    "build_demo_benchmark",
    "load_demo_benchmark",
]
