"""Datasets of scenes for the demo: a train/held-out split, and samples in the two formats the package reads.

- **LLaVA JSON** (what `transformers_sqllava.training.load_llava_dataset` and the original code read): a list of
  `{"id", "image": "<file>.png", "conversations": [{"from": "human", "value": "<image>\\nQ0"}, {"from": "gpt",
  "value": "A0"}, {"from": "human", "value": "Q1"}, ...]}` written next to a folder of PNGs
  ([`write_llava_dataset`]).
- **TRL vision rows**, in memory: `{"id", "images": [PIL.Image], "messages": [{"role": "user", "content":
  [{"type": "image"}, {"type": "text", "text": Q0}]}, {"role": "assistant", "content": [{"type": "text", "text":
  A0}]}, {"role": "user", "content": [{"type": "text", "text": Q1}]}, ...]}` ([`build_trl_rows`];
  `datasets.Dataset.from_list(rows)` turns them into a dataset).

Both come in two stages, as the paper's recipe: `stage=1` gives one caption pair per scene ("Describe the image." ->
caption, for projector alignment), `stage=2` multi-turn conversations (for instruction tuning; the self-questioning
collator turns some later user turns into vuser turns). Only user and assistant turns are written: which questions
become the model's own is the collator's choice, redrawn every time a sample is seen.

Example:

```python
>>> split = split_scenes(num_train=1000, num_held_out=200)
>>> rows = build_trl_rows(split.train, stage=2)
>>> path = write_llava_dataset(split.held_out, "demo_data", json_name="held_out.json")

```
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from .scenes import DEFAULT_IMAGE_SIZE, DESCRIBE_QUESTION, Scene, generate_scene


# Training scenes come from seeds 0, 1, 2, ...; held-out scenes from this seed on. The ranges cannot meet for any
# realistic training set, and `split_scenes` also drops held-out scenes that equal a training scene by content.
TRAIN_SEED_START = 0
HELD_OUT_SEED_START = 1_000_000

Turns = list[tuple[str, str]]


@dataclass
class SceneSplit:
    """Training and held-out scenes; no held-out scene equals (by content) a training scene.

    Args:
        train (`list[Scene]`): scenes from seeds `TRAIN_SEED_START, TRAIN_SEED_START + 1, ...`.
        held_out (`list[Scene]`): scenes from seeds `HELD_OUT_SEED_START, ...`, minus the repeats.
        num_held_out_repeats (`int`): how many held-out seeds were passed over because their scene is also a training
            scene. With 270 possible one-object scenes, a large training set contains most of them, so repeats are
            almost always one-object scenes.
    """

    train: list[Scene]
    held_out: list[Scene]
    num_held_out_repeats: int


def split_scenes(num_train: int, num_held_out: int, image_size: int = DEFAULT_IMAGE_SIZE) -> SceneSplit:
    """Generate `num_train` training scenes and `num_held_out` held-out scenes that never occur in training.

    Deterministic: the same arguments always give the same scenes. Generating scenes is cheap (no rendering).
    """
    if num_train < 0 or num_held_out < 0:
        raise ValueError(f"Scene counts must be non-negative, got num_train={num_train}, num_held_out={num_held_out}.")
    if num_train > HELD_OUT_SEED_START - TRAIN_SEED_START:
        raise ValueError(f"num_train={num_train} would reach the held-out seeds: use at most {HELD_OUT_SEED_START}.")
    train = [generate_scene(TRAIN_SEED_START + index, image_size=image_size) for index in range(num_train)]
    seen = set(train)
    held_out, repeats, seed = [], 0, HELD_OUT_SEED_START
    while len(held_out) < num_held_out:
        scene = generate_scene(seed, image_size=image_size)
        seed += 1
        if scene in seen:
            repeats += 1
            continue
        seen.add(scene)  # no duplicates within the held-out set either
        held_out.append(scene)
    return SceneSplit(train=train, held_out=held_out, num_held_out_repeats=repeats)


# --- Conversations ----------------------------------------------------------------------------------------------


def scene_id(scene: Scene, index: int) -> str:
    """A sample id: `"scene-0001234"` from the seed, or `"scene-i12"` from the position for a hand-built scene."""
    return f"scene-{scene.seed:07d}" if scene.seed is not None else f"scene-i{index}"


def scene_turns(
    scene: Scene,
    stage: int = 2,
    num_turns: tuple[int, int] = (2, 5),
    description_first: float = 0.5,
    variant: int = 0,
) -> Turns:
    """The (question, answer) turns of one sample about `scene`.

    Args:
        scene (`Scene`): the scene.
        stage (`int`, *optional*, defaults to 2): 1 for the caption pair `[("Describe the image.", caption)]`,
            2 for a multi-turn conversation.
        num_turns (`tuple[int, int]`, *optional*, defaults to `(2, 5)`): inclusive range of the number of turns.
        description_first (`float`, *optional*, defaults to 0.5): probability that the conversation opens with
            "Describe the image." (as the reference's self-questioning demo does, so the model learns to ask after a
            description).
        variant (`int`, *optional*, defaults to 0): another number gives another conversation about the same scene.

    The randomness comes from the scene's content and `variant`, so the same scene always gets the same turns.
    """
    if stage == 1:
        return [(DESCRIBE_QUESTION, scene.caption())]
    if stage != 2:
        raise ValueError(f"stage must be 1 (caption pairs) or 2 (conversations), got {stage!r}.")
    low, high = num_turns
    if not 1 <= low <= high:
        raise ValueError(f"num_turns must be a range (low, high) with 1 <= low <= high, got {num_turns}.")
    # A string seed is hashed with SHA-512 by `random`, so it does not depend on PYTHONHASHSEED.
    rng = random.Random(f"conversation|{scene.caption()}|{variant}")
    count = rng.randint(low, high)
    return scene.conversations(rng, count, start_with_description=rng.random() < description_first)


def to_llava_conversations(turns: Turns) -> list[dict[str, str]]:
    """Turns as LLaVA JSON: `human`/`gpt` values, `"<image>\\n"` before the first question."""
    conversations = []
    for index, (question, answer) in enumerate(turns):
        conversations.append({"from": "human", "value": ("<image>\n" if index == 0 else "") + question})
        conversations.append({"from": "gpt", "value": answer})
    return conversations


def to_trl_messages(turns: Turns, question_before_image: bool = False) -> list[dict[str, Any]]:
    """Turns as TRL vision messages: an image block in the first user turn, text blocks everywhere.

    With `question_before_image`, the first turn's image block comes after its question (render with
    `images_first=False` to keep that order), except for "Describe the image.", which keeps the image first.
    """
    messages = []
    for index, (question, answer) in enumerate(turns):
        content = [{"type": "text", "text": question}]
        if index == 0:
            image_last = question_before_image and question != DESCRIBE_QUESTION
            content = content + [{"type": "image"}] if image_last else [{"type": "image"}] + content
        messages.append({"role": "user", "content": content})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


# --- Writing datasets -----------------------------------------------------------------------------------------------


def _samples(scenes: Sequence[Scene], samples_per_scene: int, **turn_kwargs):
    """(index, scene, sample id, turns) for every sample, `samples_per_scene` conversations per scene."""
    if samples_per_scene < 1:
        raise ValueError(f"samples_per_scene must be at least 1, got {samples_per_scene}.")
    for index, scene in enumerate(scenes):
        for variant in range(samples_per_scene):
            sample_id = scene_id(scene, index) + (f"-{variant}" if samples_per_scene > 1 else "")
            yield index, scene, sample_id, scene_turns(scene, variant=variant, **turn_kwargs)


def write_llava_dataset(
    scenes: Sequence[Scene],
    output_dir: str | Path,
    json_name: str = "data.json",
    image_folder: str = "images",
    stage: int = 2,
    num_turns: tuple[int, int] = (2, 5),
    description_first: float = 0.5,
    samples_per_scene: int = 1,
) -> Path:
    """Render the scenes to `output_dir/image_folder/*.png` and write their samples as LLaVA JSON.

    Args:
        scenes (`Sequence[Scene]`): the scenes, e.g. `split_scenes(...).train`.
        output_dir (`str` or `Path`): created if missing.
        json_name (`str`, *optional*, defaults to `"data.json"`): the JSON file's name inside `output_dir`.
        image_folder (`str`, *optional*, defaults to `"images"`): the PNG folder inside `output_dir`; each sample's
            `"image"` is a file name relative to it (pass it as the loader's image folder).
        stage, num_turns, description_first: see [`scene_turns`].
        samples_per_scene (`int`, *optional*, defaults to 1): conversations per scene (one PNG each scene).

    Returns:
        `Path` of the JSON file.
    """
    output_dir = Path(output_dir)
    (output_dir / image_folder).mkdir(parents=True, exist_ok=True)
    samples, written = [], set()
    turn_kwargs = {"stage": stage, "num_turns": num_turns, "description_first": description_first}
    for index, scene, sample_id, turns in _samples(scenes, samples_per_scene, **turn_kwargs):
        image_file = scene_id(scene, index) + ".png"
        if image_file not in written:
            scene.render().save(output_dir / image_folder / image_file)
            written.add(image_file)
        samples.append({"id": sample_id, "image": image_file, "conversations": to_llava_conversations(turns)})
    json_path = output_dir / json_name
    json_path.write_text(json.dumps(samples, indent=1))
    return json_path


def build_trl_rows(
    scenes: Sequence[Scene],
    stage: int = 2,
    num_turns: tuple[int, int] = (2, 5),
    description_first: float = 0.5,
    samples_per_scene: int = 1,
    question_before_image: bool = False,
) -> list[dict[str, Any]]:
    """The scenes' samples as in-memory TRL vision rows `{"id", "images": [PIL.Image], "messages": [...]}`.

    Same samples (ids and turns) as [`write_llava_dataset`] with the same arguments. The samples of one scene share
    one rendered image. Arguments as in [`write_llava_dataset`], and `question_before_image` as in
    [`to_trl_messages`].
    """
    rows = []
    images: dict[int, Image.Image] = {}
    turn_kwargs = {"stage": stage, "num_turns": num_turns, "description_first": description_first}
    for index, scene, sample_id, turns in _samples(scenes, samples_per_scene, **turn_kwargs):
        if index not in images:
            images[index] = scene.render()
        messages = to_trl_messages(turns, question_before_image=question_before_image)
        rows.append({"id": sample_id, "images": [images[index]], "messages": messages})
    return rows


__all__ = [
    "HELD_OUT_SEED_START",
    "TRAIN_SEED_START",
    "SceneSplit",
    "build_trl_rows",
    "scene_id",
    "scene_turns",
    "split_scenes",
    "to_llava_conversations",
    "to_trl_messages",
    "write_llava_dataset",
]
