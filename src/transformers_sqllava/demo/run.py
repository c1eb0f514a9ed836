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
"""The offline demo: the tiny SQ-LLaVA describes held-out scenes, answers questions, and asks its own.

[`run_demo`] loads a checkpoint written by `demo/train.py` (by default the committed one) with `from_pretrained`
(`local_files_only=True`: the demo is offline), and measures on scenes it never saw in training:

- **answer accuracy**: single-turn questions of the scene language, greedy, judged by the checker ([`is_correct`]),
  in the order the model was trained with: `USER: Q\\n<image> ASSISTANT:` for the committed checkpoint
  (`question_before_image` in its record), LLaVA's `USER: <image>\\nQ ASSISTANT:` otherwise;
- **self-questioning** (the package's [`self_question`]): the model describes the scene, then asks questions after
  the `[vusr]:` marker and answers them; a question counts as *valid* when the checker parses it and it is
  answerable for that scene ([`parse_question`], [`is_answerable`]), and its answer is judged like any other.

[`format_report`] prints a few scenes in full (their PNGs are saved for a person to look at) and the totals.
Everything is batched and seeded: the same checkpoint and arguments print the same report.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..modeling_sqllava import SQLlavaForConditionalGeneration
from ..processing_sqllava import SQLlavaProcessor
from ..self_questioning import SelfQuestioningConfig, generate_from_conversations, self_question
from .checker import is_correct, parse_caption, parse_question
from .data import scene_id, split_scenes
from .record import DEFAULT_CHECKPOINT, load_training_record
from .scenes import DESCRIBE_QUESTION, Scene, is_answerable, sample_question

# Every prompt uses the system prompt the checkpoint was trained with (its record's `system_prompt`): a model this
# small has seen no other. Checkpoints from before that setting were trained with v1_sq, as the reference
# (docs/original.md#which-system-prompt-where).
DEFAULT_SYSTEM_PROMPT = "v1_sq"
# Generation budgets, in tokens: scene words are one token each. A 4-object caption is ~40 tokens, a question <= 12.
DESCRIPTION_MAX_NEW_TOKENS = 64
QUESTION_MAX_NEW_TOKENS = 16
ANSWER_MAX_NEW_TOKENS = 8
# Question sampling: the reference demo's temperature 1.2 and top-p 0.95 (top-k 300 is larger than the vocabulary).
QUESTION_SAMPLING = {"do_sample": True, "temperature": 1.2, "top_p": 0.95, "top_k": 0}


@dataclass
class JudgedAnswer:
    """A question and the model's answer, marked by the checker."""

    question: str
    answer: str
    correct: bool


@dataclass
class SelfAskedQuestion:
    """A question the model asked itself, whether the checker accepts it for the scene, and the model's answer.

    `correct` is `None` when the question is not valid: an unanswerable question has no right answer.
    """

    question: str
    answer: str
    valid: bool
    correct: bool | None


@dataclass
class SceneResult:
    """Everything the model said about one scene."""

    scene: Scene
    description: str
    description_correct: bool
    answers: list[JudgedAnswer] = field(default_factory=list)
    self_asked: list[SelfAskedQuestion] = field(default_factory=list)
    image_path: Path | None = None


@dataclass
class DemoReport:
    r"""
    What [`run_demo`] measured.

    Args:
        shown (`list[SceneResult]`): the scenes printed in full.
        answers (`list[JudgedAnswer]`): the held-out questions and the model's answers.
        self_asked (`list[SelfAskedQuestion]`): every self-asked question of the self-questioning scenes.
        num_descriptions_correct (`int`), num_descriptions (`int`): descriptions that list exactly the scene's objects.
        checkpoint (`str`), seconds (`float`): what ran, and how long it took (loading included).
    """

    shown: list[SceneResult]
    answers: list[JudgedAnswer]
    self_asked: list[SelfAskedQuestion]
    num_descriptions_correct: int
    num_descriptions: int
    checkpoint: str
    seconds: float = 0.0

    @property
    def answer_accuracy(self) -> float:
        return sum(item.correct for item in self.answers) / max(len(self.answers), 1)

    @property
    def valid_question_share(self) -> float:
        return sum(item.valid for item in self.self_asked) / max(len(self.self_asked), 1)

    @property
    def self_answer_accuracy(self) -> float:
        valid = [item for item in self.self_asked if item.valid]
        return sum(bool(item.correct) for item in valid) / max(len(valid), 1)


# --- Loading --------------------------------------------------------------------------------------------------------


def load_demo_model(
    checkpoint: str | Path = DEFAULT_CHECKPOINT,
) -> tuple[SQLlavaForConditionalGeneration, SQLlavaProcessor, dict[str, Any]]:
    """The model (eval mode), its processor and its training record, from a folder written by `demo/train.py`.

    Nothing is looked up on the Hub (`local_files_only=True`): the demo runs offline, and a file missing from the
    folder is an error here, not a download.
    """
    checkpoint = Path(checkpoint)
    record = load_training_record(checkpoint)  # raises with the fix if this is not a demo checkpoint
    model = SQLlavaForConditionalGeneration.from_pretrained(checkpoint, local_files_only=True).eval()
    processor = SQLlavaProcessor.from_pretrained(checkpoint, local_files_only=True)
    return model, processor, record


def held_out_scenes(record: dict[str, Any], count: int) -> list[Scene]:
    """The first `count` held-out scenes of the checkpoint's split: none equals a training scene."""
    config = record["training_config"]
    split = split_scenes(config["num_train_scenes"], count, image_size=config["image_size"])
    return split.held_out


# --- Asking the model -----------------------------------------------------------------------------------------------


def _batches(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def generate_answers(
    model,
    processor,
    images: Sequence,
    questions: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 64,
    question_before_image: bool = False,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
) -> list[str]:
    """Greedy answers to single-turn questions, one image per question, batched: `USER: <image>\\nQ ASSISTANT:`, or
    `USER: Q\\n<image> ASSISTANT:` with `question_before_image` (as the model was trained, see its record)."""
    conversations = []
    for image, question in zip(images, questions):
        blocks = [{"type": "image", "image": image}, {"type": "text", "text": question}]
        conversations.append([{"role": "user", "content": blocks[::-1] if question_before_image else blocks}])
    texts = []
    for batch in _batches(conversations, batch_size):
        texts += generate_from_conversations(
            model, processor, batch, "assistant", system_prompt, images_first=not question_before_image,
            do_sample=False, max_new_tokens=max_new_tokens,
        )  # fmt: skip
    return texts


def sample_questions(scenes: Sequence[Scene], per_scene: int, seed: int) -> list[tuple[int, str]]:
    """`per_scene` distinct questions of the scene language about each scene: (scene index, question text)."""
    rng = random.Random(seed)
    questions = []
    for index, scene in enumerate(scenes):
        asked: set[str] = set()
        for _ in range(per_scene):
            question = sample_question(rng, scene, exclude=asked)
            asked.add(question.text)
            questions.append((index, question.text))
    return questions


def judge_answers(scenes: Sequence[Scene], questions: Sequence[tuple[int, str]], answers: Sequence[str]):
    """The checker's verdict on each (question, answer)."""
    return [
        JudgedAnswer(question, answer, is_correct(question, answer, scenes[index]))
        for (index, question), answer in zip(questions, answers)
    ]


def judge_self_asked(scene: Scene, question: str, answer: str) -> SelfAskedQuestion:
    """Valid = in the scene language and answerable for this scene; only valid questions have a right answer."""
    parsed = parse_question(question)
    valid = parsed is not None and is_answerable(parsed, scene)
    return SelfAskedQuestion(question, answer, valid, is_correct(parsed, answer, scene) if valid else None)


def self_question_scenes(
    model,
    processor,
    scenes: Sequence[Scene],
    images: Sequence,
    num_questions: int,
    batch_size: int = 32,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
) -> tuple[list[str], list[list[SelfAskedQuestion]]]:
    """Describe each scene, ask `num_questions` questions after the description and answer them (package's
    [`self_question`]); returns the descriptions and the judged questions per scene."""
    config = SelfQuestioningConfig(
        num_questions=num_questions,
        answer_questions=True,
        description_prompt=DESCRIBE_QUESTION,  # the wording the demo model was trained on
        system_prompt=system_prompt,
        description_generation_kwargs={"max_new_tokens": DESCRIPTION_MAX_NEW_TOKENS},
        question_generation_kwargs={**QUESTION_SAMPLING, "max_new_tokens": QUESTION_MAX_NEW_TOKENS},
        answer_generation_kwargs={"max_new_tokens": ANSWER_MAX_NEW_TOKENS},
    )
    descriptions, judged = [], []
    for start in range(0, len(scenes), batch_size):
        results = self_question(model, processor, list(images[start : start + batch_size]), config)
        for scene, result in zip(scenes[start : start + batch_size], results):
            descriptions.append(result.description)
            judged.append([judge_self_asked(scene, item.question, item.answer) for item in result.dialogues])
    return descriptions, judged


# --- The demo -------------------------------------------------------------------------------------------------------


def run_demo(
    checkpoint: str | Path = DEFAULT_CHECKPOINT,
    output_dir: str | Path | None = "sqllava-demo-output",
    num_shown: int = 3,
    num_eval_scenes: int = 100,
    questions_per_scene: int = 3,
    num_self_questioning_scenes: int = 50,
    questions_asked_per_scene: int = 3,
    seed: int = 0,
) -> DemoReport:
    r"""
    Run the demo on held-out scenes and return what it measured ([`format_report`] prints it).

    Args:
        checkpoint (`str` or `Path`, *optional*): a folder from `demo/train.py`; defaults to the committed one.
        output_dir (`str` or `Path`, *optional*, defaults to `"sqllava-demo-output"`): where the shown scenes' PNGs
            go (`None`: not saved).
        num_shown (`int`, *optional*, defaults to 3): scenes printed in full (the first self-questioning scenes).
        num_eval_scenes (`int`, *optional*, defaults to 100): held-out scenes for answer accuracy.
        questions_per_scene (`int`, *optional*, defaults to 3): questions asked about each of them (100 x 3 = 300).
        num_self_questioning_scenes (`int`, *optional*, defaults to 50): held-out scenes the model describes and asks
            about (the same scenes as the first evaluation scenes).
        questions_asked_per_scene (`int`, *optional*, defaults to 3): questions the model asks about each.
        seed (`int`, *optional*, defaults to 0): seeds the evaluation questions and the question sampling.
    """
    started = time.perf_counter()
    model, processor, record = load_demo_model(checkpoint)
    system_prompt = record["training_config"].get("system_prompt", DEFAULT_SYSTEM_PROMPT)
    scenes = held_out_scenes(record, max(num_eval_scenes, num_self_questioning_scenes, num_shown))
    images = [scene.render() for scene in scenes]

    eval_scenes = scenes[:num_eval_scenes]
    questions = sample_questions(eval_scenes, questions_per_scene, seed)
    answers = generate_answers(
        model, processor, [images[index] for index, _ in questions], [q for _, q in questions], ANSWER_MAX_NEW_TOKENS,
        question_before_image=record["training_config"].get("question_before_image", False),
        system_prompt=system_prompt,
    )  # fmt: skip
    judged = judge_answers(eval_scenes, questions, answers)

    torch.manual_seed(seed)  # the questions are sampled
    sq_count = max(num_self_questioning_scenes, num_shown)
    descriptions, self_asked = self_question_scenes(
        model, processor, scenes[:sq_count], images[:sq_count], questions_asked_per_scene, system_prompt=system_prompt
    )
    descriptions_correct = [parse_caption(text) == scene.objects for text, scene in zip(descriptions, scenes)]

    shown = []
    for index in range(num_shown):
        result = SceneResult(
            scene=scenes[index],
            description=descriptions[index],
            description_correct=descriptions_correct[index],
            answers=[item for (scene_index, _), item in zip(questions, judged) if scene_index == index],
            self_asked=self_asked[index],
        )
        if output_dir is not None:
            result.image_path = save_scene_image(images[index], scenes[index], index, output_dir)
        shown.append(result)
    return DemoReport(
        shown=shown,
        answers=judged,
        self_asked=[item for per_scene in self_asked for item in per_scene],
        num_descriptions_correct=sum(descriptions_correct),
        num_descriptions=len(descriptions_correct),
        checkpoint=str(checkpoint),
        seconds=time.perf_counter() - started,
    )


def save_scene_image(image, scene: Scene, index: int, output_dir: str | Path) -> Path:
    """Save a scene's PNG as `output_dir/scene-<seed>.png`, upscaled 4x (nearest) so a person can see it."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / f"{scene_id(scene, index)}.png"
    image.resize((image.width * 4, image.height * 4), resample=0).save(path)
    return path


# --- Printing -------------------------------------------------------------------------------------------------------


def _mark(correct: bool | None) -> str:
    return {True: "right", False: "WRONG", None: "-"}[correct]


def format_scene(number: int, result: SceneResult) -> list[str]:
    """One shown scene: the truth, the description, the answers and the self-asked questions, each marked."""
    lines = [f"Scene {number}" + (f" ({result.image_path})" if result.image_path else "")]
    lines.append(f"  truth:       {result.scene.caption()}")
    lines.append(f"  description: {result.description}  [{_mark(result.description_correct)}]")
    lines.append("  answers:")
    for item in result.answers:
        lines.append(f"    Q: {item.question}  A: {item.answer}  [{_mark(item.correct)}]")
    lines.append("  self-asked (after its description):")
    for item in result.self_asked:
        validity = "valid" if item.valid else "INVALID or unanswerable"
        lines.append(f"    [vusr]: {item.question}  [{validity}]  A: {item.answer}  [{_mark(item.correct)}]")
    return lines


def format_report(report: DemoReport) -> str:
    """The demo's printout: shown scenes, then the held-out totals."""
    lines = [f"SQ-LLaVA tiny demo: checkpoint {report.checkpoint}", ""]
    for number, result in enumerate(report.shown, start=1):
        lines += format_scene(number, result) + [""]
    num_correct = sum(item.correct for item in report.answers)
    num_valid = sum(item.valid for item in report.self_asked)
    num_valid_right = sum(bool(item.correct) for item in report.self_asked)
    lines += [
        "Held-out results (scenes never seen in training):",
        f"  answer accuracy:                {report.answer_accuracy:.1%} "
        f"({num_correct}/{len(report.answers)} questions)",
        f"  self-asked questions valid:     {report.valid_question_share:.1%} "
        f"({num_valid}/{len(report.self_asked)}: in the scene language and answerable for the scene)",
        f"  its answers to valid ones:      {report.self_answer_accuracy:.1%} ({num_valid_right}/{num_valid})",
        f"  descriptions exactly right:     {report.num_descriptions_correct / max(report.num_descriptions, 1):.1%} "
        f"({report.num_descriptions_correct}/{report.num_descriptions})",
        f"  time: {report.seconds:.1f} s",
    ]
    return "\n".join(lines)


__all__ = [
    "DemoReport",
    "JudgedAnswer",
    "SceneResult",
    "SelfAskedQuestion",
    "format_report",
    "generate_answers",
    "held_out_scenes",
    "judge_self_asked",
    "load_demo_model",
    "run_demo",
    "sample_questions",
    "self_question_scenes",
]
