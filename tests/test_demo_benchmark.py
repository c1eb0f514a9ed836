"""The offline demo benchmark: its files are in the official formats (the runner's reader and the scorers read them),
the ground truth answered back scores perfectly through `scoring.registry.score`, a model that always says "Yes" gets
the expected numbers, POPE's absent objects follow POPE's definitions (checked against counts made here), and the
build is deterministic and uses held-out scenes only.

Most tests use a copy of the committed checkpoint's training record with a smaller training split (building the
160,000 training scenes of the real one takes seconds); one builds the real one.
"""

import base64
import io
import itertools
import json
import re
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from PIL import Image

from transformers_sqllava.demo.checker import parse_question
from transformers_sqllava.demo.data import HELD_OUT_SEED_START, split_scenes
from transformers_sqllava.demo.record import DEFAULT_CHECKPOINT, TRAINING_RECORD, load_training_record
from transformers_sqllava.demo.run import held_out_scenes
from transformers_sqllava.demo.scenes import COLOURS, SHAPES, QuestionKind, answer, generate_scene
from transformers_sqllava.evaluation.demo_benchmark import (
    TASK_NAMES,
    DemoBenchmarkSizes,
    build_demo_benchmark,
    load_demo_benchmark,
)
from transformers_sqllava.evaluation.question_files import load_question_image, read_questions
from transformers_sqllava.evaluation.scoring.registry import SCORERS, score
from transformers_sqllava.evaluation.scoring.submission import read_mmbench_table


NUM_TRAIN_SCENES = 3000  # the small split's training scenes
LLAVA_SUFFIXES = ("Answer the question using a single word or phrase.", "Please answer yes or no.")


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    """A folder with only a training record (all the builder reads): the committed one, with a smaller split."""
    folder = tmp_path_factory.mktemp("checkpoint")
    record = load_training_record(DEFAULT_CHECKPOINT)
    record["training_config"]["num_train_scenes"] = NUM_TRAIN_SCENES
    (folder / TRAINING_RECORD).write_text(json.dumps(record))
    return folder


@pytest.fixture(scope="module")
def built(small_checkpoint, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("benchmark")
    return output_dir, {task.name: task for task in build_demo_benchmark(output_dir, small_checkpoint)}


def image_size(checkpoint) -> int:
    return load_training_record(checkpoint)["training_config"]["image_size"]


def scene_of(image_name: str, size: int):
    return generate_scene(int(re.search(r"scene-(\d+)\.png", image_name).group(1)), image_size=size)


def question_rows(task) -> list[dict]:
    if task.question_format == "mmbench":
        return read_mmbench_table(task.question_file)[1]
    return [json.loads(line) for line in task.question_file.read_text().splitlines()]


def write_answers(path: Path, rows: list[dict], texts: list[str]) -> Path:
    """An answers file as the runner writes it (model_vqa_loader.py's keys; `prompt` = the question's text)."""
    with open(path, "w") as file:
        for number, (row, text) in enumerate(zip(rows, texts)):
            question_id = int(row["index"]) if "index" in row else row["question_id"]
            prompt = row.get("text", row.get("question"))
            record = {"question_id": question_id, "prompt": prompt, "text": text, "answer_id": str(number),
                      "model_id": "ground-truth", "metadata": {}}  # fmt: skip
            file.write(json.dumps(record) + "\n")
    return path


def ground_truth(task, size: int) -> list[str]:
    """The canonical answers, from the scenes themselves (not from the annotation files)."""
    rows = question_rows(task)
    if task.question_format == "mmbench":
        return [row["answer"] for row in rows]
    return [answer(parse_question(row["text"]), scene_of(row["image"], size)) for row in rows]


def test_the_tasks_and_their_sizes(built):
    _, tasks = built
    assert list(tasks) == list(TASK_NAMES)
    assert {name: (task.benchmark, task.question_format, task.max_new_tokens) for name, task in tasks.items()} == {
        "pope": ("pope", "llava", 8), "vqa": ("vqav2", "llava", 8), "caption": ("caption", "caption", 64),
        "mme": ("mme", "llava", 8), "multiple-choice": ("mmbench", "mmbench", 8),
    }  # fmt: skip
    assert all(task.benchmark in SCORERS for task in tasks.values())
    assert {name: task.num_questions for name, task in tasks.items()} == {
        "pope": 15 * 6 * 3,
        "vqa": 50 * 4,
        "caption": 50,
        "mme": 40 * 2 * 2,
        "multiple-choice": 100,
    }
    assert 600 <= sum(task.num_questions for task in tasks.values()) <= 900


def test_the_runner_reads_every_question_file_in_the_scene_language(built, small_checkpoint):
    _, tasks = built
    for task in tasks.values():
        questions = read_questions(task.question_file, task.image_folder, task.question_format)
        assert len(questions) == task.num_questions
        assert len({question.key for question in questions}) == len(questions)  # ids are unique
        for question in questions[:: max(1, len(questions) // 20)]:
            image = load_question_image(question, processor=None) if task.question_format == "mmbench" else None
            if image is None:
                image = Image.open(question.image)
            assert image.size == (image_size(small_checkpoint),) * 2
        rows = question_rows(task)
        for row in rows:
            text = row.get("text", row.get("question"))
            assert parse_question(text) is not None and not any(suffix in text for suffix in LLAVA_SUFFIXES)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_the_ground_truth_scores_perfectly(built, small_checkpoint, tmp_path, name):
    _, tasks = built
    task = tasks[name]
    answers = write_answers(
        tmp_path / f"{name}.jsonl", question_rows(task), ground_truth(task, image_size(small_checkpoint))
    )
    result = score(task.benchmark, **task.score_arguments(answers))
    headline = task.headline(result)
    expected = {
        "pope": {"f1": 100.0, "accuracy": 100.0, "f1_adversarial": 100.0, "f1_popular": 100.0, "f1_random": 100.0},
        "vqa": {"accuracy": 100.0},
        "caption": {"CIDEr-D": 1000.0, "BLEU-4": 100.0},  # CIDEr-D is at most 10 (x 100) with one reference
        "mme": {"perception": 400.0, "existence": 200.0, "color": 200.0},
        "multiple-choice": {"accuracy": 100.0},
    }[name]
    assert headline == pytest.approx(expected)
    assert task.score(answers)["score"] == pytest.approx(result["score"])


def test_vqa_accepts_every_form_of_a_right_answer(built, small_checkpoint, tmp_path):
    task = built[1]["vqa"]
    rows, truth = question_rows(task), ground_truth(task, image_size(small_checkpoint))
    counts = [i for i, row in enumerate(rows) if parse_question(row["text"]).kind is QuestionKind.COUNT]
    assert counts and any(truth[i] == "Two." for i in counts)
    number_words = ("Zero.", "One.", "Two.", "Three.", "Four.")
    forms = {
        "digits": [str(number_words.index(text)) if i in counts else text for i, text in enumerate(truth)],
        "lower case, no period": [text.lower().rstrip(".") for text in truth],
    }
    for form, texts in forms.items():
        answers = write_answers(tmp_path / "vqa.jsonl", rows, texts)
        assert task.headline(task.score(answers)) == {"accuracy": pytest.approx(100.0)}, form
    wrong = [("Three." if text == "Two." else text) for text in truth]
    answers = write_answers(tmp_path / "vqa.jsonl", rows, wrong)
    expected = 100 * (1 - truth.count("Two.") / len(truth))
    assert task.headline(task.score(answers))["accuracy"] == pytest.approx(expected)


def test_multiple_choice_reads_an_answer_by_its_option_text(built, small_checkpoint, tmp_path):
    task = built[1]["multiple-choice"]
    rows = question_rows(task)
    canonical = [answer(parse_question(row["question"]), generate_scene(seed, image_size(small_checkpoint)))
                 for row, seed in zip(rows, task.scene_seeds)]  # fmt: skip
    assert all(row[row["answer"]] == text.rstrip(".") for row, text in zip(rows, canonical))
    answers = write_answers(tmp_path / "mc.jsonl", rows, canonical)  # "Top left." instead of the letter
    result = task.score(answers)
    assert result["accuracy"] == pytest.approx(100.0) and result["num_unmatched"] == 0
    for row, seed in zip(rows, task.scene_seeds):  # the TSV's image is the scene's
        image = Image.open(io.BytesIO(base64.b64decode(row["image"])))
        assert image.tobytes() == generate_scene(seed, image_size(small_checkpoint)).render().tobytes()
    options = [[row[letter] for letter in "ABCD" if row[letter]] for row in rows]
    assert all(len(option) == (3 if row["category"] == "shape" else 4) for row, option in zip(rows, options))
    assert not any(
        a != b and a.lower() in b.lower() for option in options for a, b in itertools.permutations(option, 2)
    )
    assert Counter(row["answer"] for row in rows).keys() == {"A", "B", "C", "D"}  # shuffled


def test_always_yes(built, tmp_path):
    _, tasks = built
    pope, mme = tasks["pope"], tasks["mme"]
    pope_result = pope.score(
        write_answers(tmp_path / "pope.jsonl", question_rows(pope), ["Yes."] * pope.num_questions)
    )
    assert pope_result["accuracy"] == pytest.approx(50.0)
    assert all(metrics["accuracy"] == pytest.approx(0.5) for metrics in pope_result["categories"].values())
    mme_result = mme.score(write_answers(tmp_path / "mme.jsonl", question_rows(mme), ["Yes"] * mme.num_questions))
    # Each task: accuracy 0.5 (every Yes question right, every No wrong) and accuracy+ 0 -> 50 of 200.
    assert mme.headline(mme_result) == {"perception": 100.0, "existence": 50.0, "color": 50.0}


def pope_blocks(task, category: str):
    """(image, positives, negatives) per image of a category's annotation file: 3 yes lines, then 3 no lines."""
    lines = [json.loads(line) for line in (task.annotation / f"coco_pope_{category}.json").read_text().splitlines()]
    for start in range(0, len(lines), 6):
        block = lines[start : start + 6]
        assert [line["label"] for line in block] == ["yes"] * 3 + ["no"] * 3
        assert len({line["image"] for line in block}) == 1
        items = [(parse_question(line["text"]).colour, parse_question(line["text"]).shape) for line in block]
        yield block[0]["image"], items[:3], items[3:]


def test_pope_follows_pope(built, small_checkpoint):
    task = built[1]["pope"]
    size = image_size(small_checkpoint)
    # The training scenes' statistics, counted here as POPE counts them: per scene holding the colour-shape(s).
    train = split_scenes(NUM_TRAIN_SCENES, 0, image_size=size).train
    frequency, co_occurrence = Counter(), defaultdict(Counter)
    for scene in train:
        present = {(obj.colour, obj.shape) for obj in scene.objects}
        frequency.update(present)
        for first in present:
            co_occurrence[first].update(present - {first})
    questions = {row["question_id"]: row for row in question_rows(task)}
    for category in ("adversarial", "popular", "random"):
        lines = [
            json.loads(line) for line in (task.annotation / f"coco_pope_{category}.json").read_text().splitlines()
        ]
        assert all(questions[line["question_id"]]["category"] == category for line in lines)
        assert all(questions[line["question_id"]]["text"] == line["text"] for line in lines)
        for image, positives, negatives in pope_blocks(task, category):
            scene = scene_of(image, size)
            present = [(obj.colour, obj.shape) for obj in scene.objects]
            assert positives == list(dict.fromkeys(present))[:3]
            assert len(set(negatives)) == 3 and not set(negatives) & set(present)  # really absent
            absent = [item for item in itertools.product(COLOURS, SHAPES) if item not in present]
            if category == "popular":  # the most frequent absent ones
                top = sorted((frequency[item] for item in absent), reverse=True)[:3]
                assert [frequency[item] for item in negatives] == top
            if category == "adversarial":  # per positive, the absent one co-occurring most often with it
                for index, (positive, negative) in enumerate(zip(positives, negatives)):
                    left = [item for item in absent if item not in negatives[:index]]
                    assert co_occurrence[positive][negative] == max(co_occurrence[positive][item] for item in left)
    random_negatives = [n for _, _, ns in pope_blocks(task, "random") for n in ns]
    popular_negatives = [n for _, _, ns in pope_blocks(task, "popular") for n in ns]
    assert len(set(random_negatives)) > len(set(popular_negatives))  # random spreads, popular concentrates


def test_held_out_scenes_only(built, small_checkpoint):
    _, tasks = built
    size = image_size(small_checkpoint)
    used = [seed for task in tasks.values() for seed in task.scene_seeds]
    assert len(set(used)) == len(used)  # no image in two tasks
    held_out = held_out_scenes(load_training_record(small_checkpoint), max(used) - HELD_OUT_SEED_START + 1)
    training = set(split_scenes(NUM_TRAIN_SCENES, 0, image_size=size).train)
    by_seed = {scene.seed: scene for scene in held_out}
    for seed in used:
        assert seed in by_seed and by_seed[seed] not in training
    # The images written are those scenes.
    for task in (tasks["pope"], tasks["vqa"], tasks["caption"]):
        for path in list((task.image_folder).glob("*.png"))[:5]:
            assert Image.open(path).tobytes() == scene_of(path.name, size).render().tobytes()
            assert int(re.search(r"(\d+)", path.name).group(1)) in task.scene_seeds


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_deterministic(built, small_checkpoint, tmp_path):
    output_dir, tasks = built
    build_demo_benchmark(tmp_path / "again", small_checkpoint)
    assert file_bytes(tmp_path / "again") == file_bytes(output_dir)
    other = build_demo_benchmark(tmp_path / "other", small_checkpoint, seed=1)
    assert other[1].question_file.read_bytes() != tasks["vqa"].question_file.read_bytes()
    assert [task.scene_seeds for task in other] == [task.scene_seeds for task in tasks.values()]  # same scenes


def test_rebuild_and_load(small_checkpoint, tmp_path):
    tasks = build_demo_benchmark(tmp_path, small_checkpoint, sizes=DemoBenchmarkSizes(pope_images=2))
    assert load_demo_benchmark(tmp_path) == tasks
    smaller = build_demo_benchmark(tmp_path, small_checkpoint, sizes=DemoBenchmarkSizes(pope_images=1))
    assert smaller[0].num_questions == 18 and len(list((tmp_path / "pope" / "images").iterdir())) == 1
    shutil.rmtree(tmp_path / "vqa")
    (tmp_path / "demo_benchmark.json").unlink()
    with pytest.raises(FileExistsError, match="not written by build_demo_benchmark"):
        build_demo_benchmark(tmp_path, small_checkpoint)
    with pytest.raises(ValueError, match="positive int"):
        build_demo_benchmark(tmp_path / "new", small_checkpoint, sizes=DemoBenchmarkSizes(caption_scenes=0))


def test_the_committed_checkpoint(tmp_path):
    tasks = build_demo_benchmark(tmp_path, DEFAULT_CHECKPOINT)
    assert [task.num_questions for task in tasks] == [270, 200, 50, 160, 100]
    seeds = [seed for task in tasks for seed in task.scene_seeds]
    assert min(seeds) >= HELD_OUT_SEED_START and len(set(seeds)) == len(seeds)
    size = image_size(DEFAULT_CHECKPOINT)
    rows = question_rows(tasks[2])
    assert Image.open(tasks[2].image_folder / rows[0]["image"]).size == (size, size)
