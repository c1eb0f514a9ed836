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
"""Preference pairs a model makes from unlabeled images: STIC's descriptions, and SQ-LLaVA's own questions.

[`build_preferences`] asks the model about each image and writes one JSON line per pair, resumably. Three kinds, any
mix of which can share one file (one `DPOTrainer` run trains on all of them):

- `stic` (STIC stage 1, `stic/generate_pref.py` L202-228): chosen = the model's answer to the detailed description
  request on the clean image; rejected = its answer to a hallucination-inducing request on the clean image, or to a
  plain request on a corrupted image (1/2 each); the pair is stored under a plain request. The corruption is applied
  here (STIC's script forgets to, [`corrupt_image`]).
- `sq-question` (new): chosen = a question the model asks as the virtual user after its description of the clean
  image; rejected = a question it asks after a misleading context: its description of a corrupted image, or its
  answer to a hallucination-inducing request (1/2 each). Both are stored under the clean image and its clean
  description, so the preference is between two questions about the same image.
- `sq-answer` (new, optional): chosen = the model's answer to its own clean question on the clean image; rejected =
  its answer to the same question given the corrupted image and that image's description.

Pairs whose two sides are the same text carry no preference and are not written; they are counted
([`PreferenceBuildSummary`]). Rows are in TRL's conversational preference format with an image column:
`{"id", "image", "kind", "prompt": [messages], "chosen": [message], "rejected": [message], "metadata"}`, read back
by [`load_preference_dataset`] for `SQLlavaPreferenceCollator`.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..self_questioning import (
    SelfQuestioningConfig,
    answer_conversation,
    generate_from_conversations,
    self_question,
)
from .corruption import corrupt_image
from .prompts import STIC_PROMPTS, PromptSet

PREFERENCE_KINDS = ("stic", "sq-question", "sq-answer")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# STIC samples every answer at temperature 0.2 (`generate_pref.py` L151: `do_sample=True if temperature > 0`).
STIC_ANSWER_GENERATION = {"do_sample": True, "temperature": 0.2, "top_p": None, "max_new_tokens": 1024}


@dataclass
class PreferenceBuildConfig:
    r"""
    What [`build_preferences`] asks and how.

    Args:
        kinds (`tuple[str, ...]`, *optional*, defaults to `("stic",)`): Any of [`PREFERENCE_KINDS`].
        prompts ([`PromptSet`], *optional*): STIC's by default; `DEMO_PROMPTS` for the demo world.
        system_prompt (`str`, *optional*, defaults to `"v1"`): As in `generate_from_conversations`.
        answer_generation (`dict`, *optional*): `generate` kwargs of descriptions and answers (STIC's: sampled at
            temperature 0.2, at most 1024 tokens).
        question_generation (`dict`, *optional*): `generate` kwargs of the virtual user's questions (the package's
            self-questioning defaults when empty).
        seed (`int`, *optional*, defaults to 0): Seeds every draw (prompt, branch, corruption) per image, and torch's
            sampling once per run.
    """

    kinds: tuple[str, ...] = ("stic",)
    prompts: PromptSet = STIC_PROMPTS
    system_prompt: str = "v1"
    answer_generation: dict[str, Any] = field(default_factory=lambda: dict(STIC_ANSWER_GENERATION))
    question_generation: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self):
        self.kinds = tuple(self.kinds)
        unknown = [kind for kind in self.kinds if kind not in PREFERENCE_KINDS]
        if unknown or not self.kinds:
            raise ValueError(
                f"Unknown preference kinds {unknown or self.kinds}: use some of {list(PREFERENCE_KINDS)}."
            )
        if "sq-answer" in self.kinds and "sq-question" not in self.kinds:
            raise ValueError(
                "`sq-answer` pairs answer the `sq-question` pairs' questions: add 'sq-question' to kinds."
            )


@dataclass
class PreferenceBuildSummary:
    r"""
    What [`build_preferences`] wrote.

    Args:
        num_images (`int`): Images in the folder (after `limit`).
        num_already_done (`int`): Images whose pairs were already in the output and were skipped.
        num_written (`dict[str, int]`): Pairs written, per kind.
        num_identical (`dict[str, int]`): Pairs not written because both sides were the same text, per kind.
        seconds (`float`): Time spent generating.
    """

    num_images: int
    num_already_done: int = 0
    num_written: dict[str, int] = field(default_factory=dict)
    num_identical: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def list_images(image_folder: str | os.PathLike, limit: int | None = None) -> list[str]:
    """The image files of a folder (sorted names, subfolders included), the first `limit` of them."""
    root = Path(image_folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"--image-folder {image_folder}: no such folder.")
    names = sorted(
        path.relative_to(root).as_posix() for path in root.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES
    )
    if not names:
        raise ValueError(f"--image-folder {image_folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it.")
    return names[:limit] if limit is not None else names


def _text(role: str, text: str) -> dict:
    # Every content is a list of blocks: `datasets` (Arrow) cannot hold strings and lists in one column.
    return {"role": role, "content": [{"type": "text", "text": text}]}


def _user_with_image(text: str) -> dict:
    return {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}


def _image_rng(seed: int, name: str) -> random.Random:
    return random.Random(f"preferences|{seed}|{name}")  # a string seed: stable across runs and processes


def _done_images(output: Path) -> set[str]:
    if not output.is_file():
        return set()
    data = output.read_bytes()
    if data and not data.endswith(b"\n"):  # a run killed mid-write: drop the half line, redo that image
        with open(output, "r+b") as file:
            file.truncate(data.rfind(b"\n") + 1)
        data = data[: data.rfind(b"\n") + 1]
    done = set()
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if line.strip():
            try:
                done.add(json.loads(line)["image"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{output}, line {number}: not a preference row; pass another --output.") from None
    return done


class _Generator:
    """The rounds the builder needs, each one batched `generate` call."""

    def __init__(self, model, processor, config: PreferenceBuildConfig):
        self.model, self.processor, self.config = model, processor, config

    def answers(self, images: Sequence, prompts: Sequence[str]) -> list[str]:
        conversations = [
            [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": prompt}]}]
            for image, prompt in zip(images, prompts)
        ]
        return generate_from_conversations(
            self.model, self.processor, conversations, "assistant", self.config.system_prompt,
            **self.config.answer_generation,
        )  # fmt: skip

    def questions(self, images: Sequence, descriptions: Sequence[str], answer: bool) -> list:
        sq_config = SelfQuestioningConfig(
            num_questions=1,
            answer_questions=answer,
            description_prompt=self.config.prompts.description,
            system_prompt=self.config.system_prompt,
            question_generation_kwargs=self.config.question_generation,
            answer_generation_kwargs=self.config.answer_generation,
        )
        return self_question(self.model, self.processor, list(images), sq_config, descriptions=list(descriptions))

    def answers_to(self, images: Sequence, descriptions: Sequence[str], questions: Sequence[str]) -> list[str]:
        prompt = self.config.prompts.description
        conversations = [answer_conversation(i, d, q, prompt) for i, d, q in zip(images, descriptions, questions)]
        return generate_from_conversations(
            self.model, self.processor, conversations, "assistant", self.config.system_prompt,
            **self.config.answer_generation,
        )  # fmt: skip


def _batch_rows(generator: _Generator, names: list[str], images: list, config: PreferenceBuildConfig) -> list[dict]:
    prompts = config.prompts
    rngs = [_image_rng(config.seed, name) for name in names]
    # Draw order as STIC's loop: the stored prompt, the branch, then the corruption (and its own draws).
    plain = [rng.choice(prompts.plain) for rng in rngs]
    misleading = [rng.random() > 0.5 for rng in rngs]
    hallucination = [rng.choice(prompts.hallucination) for rng in rngs]
    corrupted = [corrupt_image(image, rng) for image, rng in zip(images, rngs)]
    rows: list[dict] = []

    clean_descriptions = generator.answers(images, [prompts.description] * len(images))
    if "stic" in config.kinds:
        preferred = generator.answers(images, [prompts.preferred] * len(images))
        rejected_images = [image if mislead else corrupt for image, mislead, (corrupt, _) in
                           zip(images, misleading, corrupted)]  # fmt: skip
        rejected_prompts = [h if mislead else p for h, p, mislead in zip(hallucination, plain, misleading)]
        rejected = generator.answers(rejected_images, rejected_prompts)
        for i, name in enumerate(names):
            metadata = {"branch": "hallucination_prompt" if misleading[i] else "corrupted_image",
                        "rejected_prompt": rejected_prompts[i],
                        "corruption": None if misleading[i] else corrupted[i][1]}  # fmt: skip
            rows.append(_row(name, "stic", [_user_with_image(plain[i])], _text("assistant", preferred[i]),
                             _text("assistant", rejected[i]), metadata))  # fmt: skip
    if "sq-question" in config.kinds:
        clean = generator.questions(images, clean_descriptions, answer="sq-answer" in config.kinds)
        corrupted_images = [corrupt for corrupt, _ in corrupted]
        corrupted_descriptions = generator.answers(corrupted_images, [prompts.description] * len(images))
        hallucinated = generator.answers(images, hallucination)
        contexts = [(image, h) if mislead else (corrupt, d) for image, corrupt, h, d, mislead in
                    zip(images, corrupted_images, hallucinated, corrupted_descriptions, misleading)]  # fmt: skip
        misled = generator.questions([c[0] for c in contexts], [c[1] for c in contexts], answer=False)
        prompt_turns = [[_user_with_image(prompts.description), _text("assistant", d)] for d in clean_descriptions]
        for i, name in enumerate(names):
            metadata = {"branch": "misleading_description" if misleading[i] else "corrupted_image",
                        "rejected_context": contexts[i][1],
                        "corruption": None if misleading[i] else corrupted[i][1]}  # fmt: skip
            rows.append(_row(name, "sq-question", prompt_turns[i], _text("vuser", clean[i].questions[0]),
                             _text("vuser", misled[i].questions[0]), metadata))  # fmt: skip
        if "sq-answer" in config.kinds:
            questions = [result.questions[0] for result in clean]
            wrong = generator.answers_to(corrupted_images, corrupted_descriptions, questions)
            for i, name in enumerate(names):
                turns = [*prompt_turns[i], _text("vuser", questions[i])]
                rows.append(_row(name, "sq-answer", turns, _text("assistant", clean[i].dialogues[0].answer),
                                 _text("assistant", wrong[i]), {"corruption": corrupted[i][1]}))  # fmt: skip
    return rows


def _row(name: str, kind: str, prompt: list, chosen: dict, rejected: dict, metadata: dict) -> dict:
    return {"id": f"{name}#{kind}", "image": name, "kind": kind, "prompt": prompt, "chosen": [chosen],
            "rejected": [rejected], "metadata": metadata}  # fmt: skip


def build_preferences(
    model,
    processor,
    image_folder: str | os.PathLike,
    output: str | os.PathLike,
    config: PreferenceBuildConfig | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    progress: bool | None = None,
) -> PreferenceBuildSummary:
    r"""
    Build preference pairs from the images of `image_folder` (no labels) and append them to `output` (JSON Lines).

    Images whose pairs are already in `output` are skipped, and each batch's rows are flushed, so a killed run
    resumes where it stopped. See the module docstring for the kinds.

    Args:
        model, processor: The model (eval mode) that makes the pairs, and its processor.
        image_folder (`str` or `os.PathLike`): Unlabeled images (any of [`IMAGE_SUFFIXES`], subfolders included).
        output (`str` or `os.PathLike`): The preference file.
        config ([`PreferenceBuildConfig`], *optional*): Kinds, prompts, generation settings, seed.
        batch_size (`int`, *optional*, defaults to 8): Images per `generate` call.
        limit (`int`, *optional*): Use the first `limit` images (sorted by name).
        progress (`bool`, *optional*): Show a progress bar; by default only on a terminal.
    """
    from tqdm.auto import tqdm

    config = config or PreferenceBuildConfig()
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch-size must be an int >= 1, got {batch_size!r}.")
    names = list_images(image_folder, limit)
    output = Path(output).expanduser()
    output.parent.mkdir(parents=True, exist_ok=True)
    done = _done_images(output)
    pending = [name for name in names if name not in done]
    summary = PreferenceBuildSummary(num_images=len(names), num_already_done=len(names) - len(pending))
    summary.num_written = dict.fromkeys(config.kinds, 0)
    summary.num_identical = dict.fromkeys(config.kinds, 0)
    generator = _Generator(model, processor, config)
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    bar = tqdm(total=len(names), initial=summary.num_already_done, unit="image",
               disable=None if progress is None else not progress)  # fmt: skip
    with bar, open(output, "a", encoding="utf-8") as file:
        for start in range(0, len(pending), batch_size):
            batch = pending[start : start + batch_size]
            images = [processor.image_processor.fetch_images(os.path.join(image_folder, name)) for name in batch]
            for row in _batch_rows(generator, batch, images, config):
                if row["chosen"][0]["content"][0]["text"].strip() == row["rejected"][0]["content"][0]["text"].strip():
                    summary.num_identical[row["kind"]] += 1
                    continue
                file.write(json.dumps(row) + "\n")
                summary.num_written[row["kind"]] += 1
            file.flush()
            bar.update(len(batch))
    summary.seconds = time.perf_counter() - started
    return summary


def load_preference_dataset(
    path: str | os.PathLike,
    image_folder: str | os.PathLike,
    kinds: Sequence[str] = (),
    system_message: str | None = None,
):
    r"""
    A preference file as a `datasets.Dataset` for `DPOTrainer` with `SQLlavaPreferenceCollator`: the columns
    `images` (the row's image, opened), `prompt`, `chosen` and `rejected`; only `kinds` if given.

    `system_message` is put first in every prompt: for a model trained with a system prompt of its own (the offline
    demo's), which the collator's named prompts (`v1`, `v1_sq`) do not cover. It should be the one the pairs were
    generated under.
    """
    system = [_text("system", system_message)] if system_message else []
    from datasets import Dataset
    from PIL import Image

    rows = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                keep = not kinds or row["kind"] in kinds
                image = row["image"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(
                    f"{path}, line {number}: not a preference row written by build_preferences."
                ) from None
            if keep:
                with Image.open(os.path.join(image_folder, image)) as opened:
                    rows.append({"images": [opened.convert("RGB")], "prompt": system + row["prompt"],
                                 "chosen": row["chosen"],
                                 "rejected": row["rejected"]})  # fmt: skip
    if not rows:
        raise ValueError(f"{path}: no preference rows{' of kinds ' + str(list(kinds)) if kinds else ''}.")
    return Dataset.from_list(rows)


__all__ = [
    "PREFERENCE_KINDS",
    "PreferenceBuildConfig",
    "PreferenceBuildSummary",
    "build_preferences",
    "list_images",
    "load_preference_dataset",
]
