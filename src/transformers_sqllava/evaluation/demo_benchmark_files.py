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
"""The files of the offline demo benchmark, one writer per task, each in the official layout of the benchmark it
stands for, so that the package's scorers (`evaluation/scoring/`) read them as they read the real ones.

[`demo_benchmark`] picks the held-out scenes and calls these writers; each writer renders its scenes, writes a
question file in the format `sqllava eval run` answers (LLaVA's question JSON Lines, or MMBench's TSV), and the
ground truth in the format the benchmark's scorer reads:

- [`write_pope`]: `coco_pope_<category>.json` files as POPE's `main.py` builds them (3 present and 3 absent "objects"
  per image, the absent ones random, popular or adversarial), and `llava_pope_test.jsonl`. An object is a
  colour-shape ("red circle"): the demo language's "Is there a COLOUR SHAPE?" is POPE's "Is there a OBJECT?".
- [`write_vqa`]: VQA's annotation file (10 answers per question), for the `vqav2` scorer's official accuracy.
- [`write_captions`]: a COCO caption annotation file (`captions_val2014.json`'s layout), the reference being the
  scene's caption.
- [`write_mme`]: an MME release folder (`<task>/<image>.png` and `<task>/<image>.txt` of `question \\t Yes|No` lines,
  as MME's `existence` and `color` folders) and LLaVA's `llava_mme.jsonl`.
- [`write_multiple_choice`]: an MMBench dev TSV (options, `answer`, base64 PNG images).

Every question is in the demo's scene language only ([`Question.text`]): the demo model was trained on nothing else.
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..demo.data import scene_id
from ..demo.scenes import (
    CELLS,
    COLOURS,
    DESCRIBE_QUESTION,
    NUMBER_WORDS,
    SHAPES,
    Question,
    QuestionKind,
    Scene,
    answer,
    sample_question,
)
from .scoring._files import write_json, write_jsonl
from .scoring.answer_processing import normalize_answer


ColourShape = tuple[str, str]
# POPE's object vocabulary, in the demo: every colour-shape, in the vocabulary's order (which breaks ties).
COLOUR_SHAPES: tuple[ColourShape, ...] = tuple(itertools.product(COLOURS, SHAPES))
# POPE's categories (`main.py` builds one file each) and `--sample_num 3`: 3 present and 3 absent objects per image,
# from images with at least 3 objects.
POPE_CATEGORIES = ("adversarial", "popular", "random")
POPE_OBJECTS_PER_IMAGE = 3
# VQA's 10 human answers per question (`answer_id` 1..10), and its question and answer types (the question's first
# words; "yes/no", "number", "other"), as in `v2_mscoco_val2014_annotations.json`.
VQA_NUM_ANSWERS = 10
VQA_QUESTION_TYPES = {
    QuestionKind.COLOUR: "what colour is the", QuestionKind.SHAPE: "what shape is the",
    QuestionKind.SIZE: "what size is the", QuestionKind.WHERE: "where is the", QuestionKind.COUNT: "how many",
    QuestionKind.EXISTS: "is there a",
}  # fmt: skip
VQA_ANSWER_TYPES = {QuestionKind.EXISTS: "yes/no", QuestionKind.COUNT: "number"}  # every other kind: "other"
# The caption scorer reads COCO-format references when the file's name holds `captions_val2014.json`, as the original
# `eval_image_caption.py` does.
CAPTION_ANNOTATION_NAME = "demo_captions_val2014.json"
# MME tasks the scorer counts (Perception), and the release's yes/no answers and question suffix.
MME_TASKS = ("existence", "color")
MME_ANSWERS = {True: "Yes", False: "No"}
MME_QUESTION_SUFFIX = " Please answer yes or no."
# MMBench: the official dev TSV's columns, in its order; its option letters; and the L2 category of attribute
# recognition and object localisation, which the demo's questions are.
MMBENCH_COLUMNS = (
    "index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source", "l2-category",
    "comment", "split",
)  # fmt: skip
MMBENCH_LETTERS = ("A", "B", "C", "D")
MMBENCH_L2_CATEGORY = "finegrained_perception (instance-level)"
MULTIPLE_CHOICE_KINDS = (QuestionKind.COLOUR, QuestionKind.SHAPE, QuestionKind.WHERE, QuestionKind.COUNT)
# A count's distractors: the other counts a generated scene can have (`generate_scene`'s 1 to 4 objects, or none).
MAX_COUNT = 4


@dataclass(frozen=True)
class WrittenFiles:
    r"""
    What a writer wrote.

    Args:
        question_file (`Path`): The questions `sqllava eval run` answers.
        image_folder (`Path`): The folder the question file's image names are relative to.
        annotation (`Path`): The ground truth, as the scorer takes it (a file or a folder).
        num_questions (`int`): Questions in `question_file` (answers expected).
    """

    question_file: Path
    image_folder: Path
    annotation: Path
    num_questions: int


# --- Training statistics (POPE's popular and adversarial objects) ---------------------------------------------------


@dataclass(frozen=True)
class ObjectStatistics:
    r"""
    How often colour-shapes occur in a set of scenes, counted as POPE counts objects: once per image that holds one
    (`generate_ground_truth_objects`), and pairs once per image that holds both (`compute_co_occurrence`).

    Args:
        frequency (`Counter`): colour-shape -> number of scenes holding it.
        co_occurrence (`dict[ColourShape, Counter]`): colour-shape -> other colour-shape -> scenes holding both.
    """

    frequency: Counter
    co_occurrence: dict[ColourShape, Counter]


def colour_shapes(scene: Scene) -> list[ColourShape]:
    """The scene's distinct colour-shapes (its POPE "objects"), in reading order."""
    return list(dict.fromkeys((obj.colour, obj.shape) for obj in scene.objects))


def object_statistics(scenes: Sequence[Scene]) -> ObjectStatistics:
    """[`ObjectStatistics`] of `scenes` (the checkpoint's training scenes)."""
    frequency, co_occurrence = Counter(), defaultdict(Counter)
    for scene in scenes:
        present = colour_shapes(scene)
        frequency.update(present)
        for first, second in itertools.permutations(present, 2):
            co_occurrence[first][second] += 1
    return ObjectStatistics(frequency, dict(co_occurrence))


def pope_absent_objects(
    present: Sequence[ColourShape],
    positives: Sequence[ColourShape],
    category: str,
    statistics: ObjectStatistics,
    rng: random.Random,
) -> list[ColourShape]:
    r"""
    One absent colour-shape per positive, as POPE's `pope()` samples them (never one in the image or already chosen):

    - `random`: any absent colour-shape, uniformly;
    - `popular`: the absent colour-shapes most frequent in training, in order;
    - `adversarial`: for each positive in turn, the absent colour-shape that co-occurs with it in the most training
      scenes (a random one when none co-occurs, as POPE falls back).

    Ties go to the vocabulary's order ([`COLOUR_SHAPES`]), as Python's stable sort keeps POPE's.
    """
    chosen: list[ColourShape] = []
    for positive in positives:
        candidates = [item for item in COLOUR_SHAPES if item not in present and item not in chosen]
        if category == "popular":
            ranked = sorted(candidates, key=lambda item: -statistics.frequency[item])
        elif category == "adversarial":
            counts = statistics.co_occurrence.get(positive, Counter())
            ranked = sorted((item for item in candidates if counts[item] > 0), key=lambda item: -counts[item])
        elif category == "random":
            ranked = []
        else:
            raise ValueError(f"Unknown POPE category {category!r}: use one of {POPE_CATEGORIES}.")
        chosen.append(ranked[0] if ranked else rng.choice(candidates))
    return chosen


# --- Writers ---------------------------------------------------------------------------------------------------------


def save_images(scenes: Sequence[Scene], folder: Path, prefix: str = "") -> list[str]:
    """Render each scene to `folder/<prefix><scene id>.png`; returns the names relative to `folder`."""
    names = []
    for index, scene in enumerate(scenes):
        name = f"{prefix}{scene_id(scene, index)}.png"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        scene.render().save(folder / name)
        names.append(name)
    return names


def _exists_question(colour: str, shape: str, size: str | None = None) -> Question:
    return Question(QuestionKind.EXISTS, colour=colour, shape=shape, size=size)


def write_pope(
    folder: Path, scenes: Sequence[Scene], statistics: ObjectStatistics, rng: random.Random
) -> WrittenFiles:
    r"""
    POPE on `scenes` (each with at least [`POPE_OBJECTS_PER_IMAGE`] colour-shapes): per category, each image's first 3
    colour-shapes (reading order; POPE takes an image's first 3 objects) asked about with label `yes`, then 3 absent
    ones ([`pope_absent_objects`]) with `no`, as the published `coco_pope_*.json` lay them out. Question ids run over
    the whole question file, and each annotation line has its question's id (the scorer pairs them in order).

    Returns:
        [`WrittenFiles`]: `images/`, `llava_pope_test.jsonl` (with `category`), annotation folder `coco/`.
    """
    names = save_images(scenes, folder / "images")
    questions, question_id = [], 0
    for category in POPE_CATEGORIES:
        lines = []
        for scene, name in zip(scenes, names):
            present = colour_shapes(scene)
            positives = present[:POPE_OBJECTS_PER_IMAGE]
            negatives = pope_absent_objects(present, positives, category, statistics, rng)
            for item, label in [(item, "yes") for item in positives] + [(item, "no") for item in negatives]:
                text = _exists_question(*item).text
                lines.append({"question_id": question_id, "image": name, "image_id": scene.seed, "text": text,
                              "label": label})  # fmt: skip
                questions.append({"question_id": question_id, "image": name, "text": text, "category": category})
                question_id += 1
        write_jsonl(folder / "coco" / f"coco_pope_{category}.json", lines)
    write_jsonl(folder / "llava_pope_test.jsonl", questions)
    return WrittenFiles(folder / "llava_pope_test.jsonl", folder / "images", folder / "coco", len(questions))


def write_vqa(folder: Path, scenes: Sequence[Scene], questions_per_scene: int, rng: random.Random) -> WrittenFiles:
    r"""
    Short-answer questions of every kind but DESCRIBE (`sample_question`, distinct per scene), and VQA's annotation
    file: `question_id` = image id x 1000 + k as VQA numbers them, 10 identical answers per question.

    The answers are the canonical answer ("Two.") in the form the official evaluation compares: `vqaEval.py` leaves the
    human answers (and the prediction) unprocessed when all 10 agree, and the uploaded prediction has been through
    [`normalize_answer`], so the annotation holds `normalize_answer("Two.") == "2"`, as VQA's own annotations hold
    "2", not "Two.". A right answer in any form the normalisation maps alike ("Two.", "two", "2") then scores 100.

    Returns:
        [`WrittenFiles`]: `images/`, `llava_demo_vqa.jsonl` (the test split), `demo_vqa_annotations.json`.
    """
    names = save_images(scenes, folder / "images")
    questions, annotations = [], []
    for scene, name in zip(scenes, names):
        asked: set[str] = set()
        for k in range(questions_per_scene):
            question = sample_question(rng, scene, exclude=asked)
            asked.add(question.text)
            question_id = scene.seed * 1000 + k
            truth = normalize_answer(answer(question, scene))
            questions.append({"question_id": question_id, "image": name, "text": question.text,
                              "category": question.kind.value})  # fmt: skip
            annotations.append({
                "question_type": VQA_QUESTION_TYPES[question.kind],
                "multiple_choice_answer": truth,
                "answers": [{"answer": truth, "answer_confidence": "yes", "answer_id": i + 1}
                            for i in range(VQA_NUM_ANSWERS)],
                "image_id": scene.seed,
                "answer_type": VQA_ANSWER_TYPES.get(question.kind, "other"),
                "question_id": question_id,
            })  # fmt: skip
    write_jsonl(folder / "llava_demo_vqa.jsonl", questions)
    annotation = {
        "info": {"description": "SQ-LLaVA offline demo: held-out scenes, VQA-format annotations"},
        "license": {"name": "Apache-2.0"}, "data_type": "demo-scenes", "data_subtype": "held-out",
        "annotations": annotations,
    }  # fmt: skip
    write_json(folder / "demo_vqa_annotations.json", annotation)
    return WrittenFiles(folder / "llava_demo_vqa.jsonl", folder / "images", folder / "demo_vqa_annotations.json",
                        len(questions))  # fmt: skip


def write_captions(folder: Path, scenes: Sequence[Scene]) -> WrittenFiles:
    r"""
    "Describe the image." per scene (`question_id` = the COCO image id = the scene's seed, which the caption scorer
    looks the references up by) and a COCO caption annotation file whose one reference per image is the scene's
    caption.

    Returns:
        [`WrittenFiles`]: `images/`, `llava_demo_caption.jsonl`, [`CAPTION_ANNOTATION_NAME`].
    """
    names = save_images(scenes, folder / "images")
    questions = [{"question_id": scene.seed, "image": name, "text": DESCRIBE_QUESTION}
                 for scene, name in zip(scenes, names)]  # fmt: skip
    annotation = {
        "info": {"description": "SQ-LLaVA offline demo: held-out scenes, COCO-format captions"},
        "licenses": [], "type": "captions",
        "images": [{"id": scene.seed, "file_name": name, "width": scene.image_size, "height": scene.image_size}
                   for scene, name in zip(scenes, names)],
        "annotations": [{"id": index, "image_id": scene.seed, "caption": scene.caption()}
                        for index, scene in enumerate(scenes)],
    }  # fmt: skip
    write_jsonl(folder / "llava_demo_caption.jsonl", questions)
    write_json(folder / CAPTION_ANNOTATION_NAME, annotation)
    return WrittenFiles(folder / "llava_demo_caption.jsonl", folder / "images", folder / CAPTION_ANNOTATION_NAME,
                        len(questions))  # fmt: skip


def mme_pair(task: str, scene: Scene, rng: random.Random) -> tuple[Question, Question]:
    r"""
    An image's two MME questions, the first answered Yes, the second No, phrased in the demo language (whose yes/no
    questions are "Is there a [size] COLOUR SHAPE?"):

    - `existence` (MME: "Is there a dog?" / "Is there a cat?"): a colour-shape in the image, and one that is not;
    - `color` (MME: the same object asked with its colour and with another): "Is there a SIZE COLOUR SHAPE?" about an
      object, and the same size and shape with a colour no such object has.
    """
    target = rng.choice(scene.objects)
    if task == "existence":
        absent = [item for item in COLOUR_SHAPES if item not in colour_shapes(scene)]
        return _exists_question(target.colour, target.shape), _exists_question(*rng.choice(absent))
    if task == "color":
        others = [colour for colour in COLOURS if not scene.find(colour=colour, shape=target.shape, size=target.size)]
        yes = _exists_question(target.colour, target.shape, target.size)
        return yes, _exists_question(rng.choice(others), target.shape, target.size)
    raise ValueError(f"Unknown demo MME task {task!r}: use one of {MME_TASKS}.")


def write_mme(folder: Path, scenes: Sequence[Scene], rng: random.Random) -> WrittenFiles:
    r"""
    An MME release folder `MME_Benchmark_release_version/` with [`MME_TASKS`] laid out as MME's `existence` folder
    (`<task>/<image>.png`, `<task>/<image>.txt` of `question Please answer yes or no.\\tYes|No` lines, the Yes question
    first), and `llava_mme.jsonl` with the questions without the suffix (`convert_answer_to_mme.py` adds it back).

    The two questions of an image share LLaVA's `question_id` `<task>/<image>.png`; here they are told apart by
    `#1` / `#2` after it, since `sqllava eval run` matches answers to questions by id. The conversion reads the task
    before the first `/` and the image's question file from the name before its first `.`, so the suffix changes
    nothing there.

    Returns:
        [`WrittenFiles`]: image folder and annotation = the release folder, `llava_mme.jsonl`.
    """
    release = folder / "MME_Benchmark_release_version"
    questions = []
    for task in MME_TASKS:
        for name, scene in zip(save_images(scenes, release, prefix=f"{task}/"), scenes):
            pair = mme_pair(task, scene, rng)
            lines = []
            for number, (question, expected) in enumerate(zip(pair, (True, False)), start=1):
                if (answer(question, scene) == "Yes.") != expected:  # the pair's construction, checked
                    raise AssertionError(f"{question.text!r} is not answered {MME_ANSWERS[expected]} on {scene}.")
                lines.append(f"{question.text}{MME_QUESTION_SUFFIX}\t{MME_ANSWERS[expected]}\n")
                questions.append({"question_id": f"{name}#{number}", "image": name, "text": question.text,
                                  "category": task})  # fmt: skip
            (release / name).with_suffix(".txt").write_text("".join(lines), encoding="utf-8")
    write_jsonl(folder / "llava_mme.jsonl", questions)
    return WrittenFiles(folder / "llava_mme.jsonl", release, release, len(questions))


def _option_text(word: str) -> str:
    return word[0].upper() + word[1:]


def multiple_choice_options(question: Question, scene: Scene, rng: random.Random) -> tuple[list[str], str]:
    r"""
    The right answer and 3 distractors of the same kind (colours, shapes, cells, counts 0 to [`MAX_COUNT`]),
    shuffled; returns the options (canonical answers without the period: "Top left") and the right one's letter.

    A shape question has 3 options (the demo has 3 shapes; MMBench has questions with 2 to 4). No option is part of
    another ("top" and "top left"), so that the scorer, which also matches an answer by an option's text, reads an
    answer that names one option as that option only.
    """
    right = answer(question, scene).rstrip(".").lower()
    pool = {QuestionKind.COLOUR: tuple(COLOURS), QuestionKind.SHAPE: SHAPES, QuestionKind.WHERE: CELLS,
            QuestionKind.COUNT: NUMBER_WORDS[: MAX_COUNT + 1]}[question.kind]  # fmt: skip
    candidates = [word for word in pool if word != right]
    rng.shuffle(candidates)
    options = [right]
    for word in candidates:
        if len(options) < len(MMBENCH_LETTERS) and not any(word in other or other in word for other in options):
            options.append(word)
    if len(options) < min(len(pool), len(MMBENCH_LETTERS)):
        raise AssertionError(f"Too few options for {question.text!r}: {options}.")
    rng.shuffle(options)
    return [_option_text(word) for word in options], MMBENCH_LETTERS[options.index(right)]


def write_multiple_choice(folder: Path, scenes: Sequence[Scene], rng: random.Random) -> WrittenFiles:
    r"""
    An MMBench dev TSV: one colour / shape / where / count question per scene ([`MULTIPLE_CHOICE_KINDS`]), its
    options ([`multiple_choice_options`]), `answer`, `hint` empty, `category` the question's kind, the image as base64
    PNG, `split` `dev`.

    Returns:
        [`WrittenFiles`]: the TSV as question file and annotation; image folder = `folder` (the images are in the TSV).
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, scene in enumerate(scenes):
        question = sample_question(rng, scene, kinds=MULTIPLE_CHOICE_KINDS)
        options, letter = multiple_choice_options(question, scene, rng)
        buffer = io.BytesIO()
        scene.render().save(buffer, format="PNG")
        image = base64.b64encode(buffer.getvalue()).decode("ascii")
        row = {"index": index, "question": question.text, "hint": "", "answer": letter,
               "category": question.kind.value, "image": image, "source": "sqllava-demo",
               "l2-category": MMBENCH_L2_CATEGORY, "comment": "", "split": "dev"}  # fmt: skip
        row.update(itertools.zip_longest(MMBENCH_LETTERS, options, fillvalue=""))
        rows.append(row)
    path = folder / "mmbench_demo_dev.tsv"
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=MMBENCH_COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return WrittenFiles(path, folder, path, len(rows))


__all__ = [
    "COLOUR_SHAPES",
    "MME_TASKS",
    "POPE_CATEGORIES",
    "ObjectStatistics",
    "WrittenFiles",
    "colour_shapes",
    "mme_pair",
    "multiple_choice_options",
    "object_statistics",
    "pope_absent_objects",
    "write_captions",
    "write_mme",
    "write_multiple_choice",
    "write_pope",
    "write_vqa",
]
