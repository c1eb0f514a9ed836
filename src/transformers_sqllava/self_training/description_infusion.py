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
"""STIC stage 2, description-infused fine-tuning data: the model's own description goes before each instruction.

The stage-1 model describes the image of every sample of a small instruction subset (`stic/generate_des_stage2.py`
L163-190: one of the plain description requests, drawn per image), and the first user turn becomes
`Image description:\\n{description}\\n\\n{question}` after the image (`stic/add_des_to_data.py` L25). Fine-tuning on
these rows with the package's SFT collator teaches the model to use a description of its own as context, which is
what `sqllava eval run --mode describe` then gives it at test time.

Two forms of the same step: [`infuse_descriptions`] rewrites TRL vision rows (`{"images", "messages"}`, what
`load_llava_dataset` returns and the collators take), [`infuse_llava_json`] a LLaVA JSON file, as STIC's script
does. Samples without an image are kept as they are: there is nothing to describe (STIC's script would prefix a
description from a variable it never sets, L27).
"""

from __future__ import annotations

import copy
import json
import os
import random
from collections.abc import Sequence
from typing import Any

from ..self_questioning import generate_from_conversations
from .prompts import DESCRIPTION_INFUSED_TEMPLATE, STIC_PROMPTS, PromptSet

IMAGE_PLACEHOLDER = "<image>\n"  # LLaVA JSON's image marker in the first human turn


def describe_images(
    model,
    processor,
    images: Sequence,
    prompts: PromptSet = STIC_PROMPTS,
    system_prompt: str = "v1",
    generation_kwargs: dict[str, Any] | None = None,
    batch_size: int = 8,
    seed: int = 0,
    keys: Sequence[str] | None = None,
) -> list[str]:
    r"""
    One description per image, each asked with a plain request drawn per image (seeded by `seed` and the image's
    key, so the same image gets the same request in any batch), in batches of `batch_size`.
    """
    generation_kwargs = {"do_sample": False, "max_new_tokens": 1024, **(generation_kwargs or {})}
    keys = list(keys) if keys is not None else [str(index) for index in range(len(images))]
    requests = [random.Random(f"describe|{seed}|{key}").choice(prompts.plain) for key in keys]
    descriptions = []
    for start in range(0, len(images), batch_size):
        conversations = [
            [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": request}]}]
            for image, request in zip(images[start : start + batch_size], requests[start : start + batch_size])
        ]
        descriptions += generate_from_conversations(
            model, processor, conversations, "assistant", system_prompt, **generation_kwargs
        )
    return descriptions


def infuse_text(question: str, description: str) -> str:
    """`Image description:\\n{description}\\n\\n{question}` (STIC's template)."""
    return DESCRIPTION_INFUSED_TEMPLATE.format(description=description, question=question)


def _first_user_text_block(messages: list[dict]) -> dict | None:
    for message in messages:
        if message["role"] == "user" and isinstance(message["content"], list):
            return next((block for block in message["content"] if block.get("type") == "text"), None)
        if message["role"] == "user":
            return None
    return None


def infuse_descriptions(model, processor, rows: Sequence[dict], **describe_kwargs) -> list[dict]:
    r"""
    TRL vision rows with the model's description of each row's image put before its first question.

    Rows are copied, not changed; rows without images come back unchanged. `describe_kwargs` go to
    [`describe_images`] (prompts, system prompt, generation settings, batch size, seed).
    """
    with_image = [index for index, row in enumerate(rows) if row.get("images")]
    images = [rows[index]["images"][0] for index in with_image]
    descriptions = describe_images(model, processor, images, keys=[str(i) for i in with_image], **describe_kwargs)
    infused = [copy.deepcopy(dict(row)) for row in rows]
    for index, description in zip(with_image, descriptions):
        block = _first_user_text_block(infused[index]["messages"])
        if block is None:
            raise ValueError(f"Row {index} has an image but no user text to describe it for.")
        block["text"] = infuse_text(block["text"], description)
    return infused


def infuse_llava_json(
    model, processor, data_path: str | os.PathLike, image_folder: str | os.PathLike, output_path: str | os.PathLike,
    **describe_kwargs,
) -> int:  # fmt: skip
    r"""
    A LLaVA JSON file with each image sample's first human turn rewritten as STIC's `add_des_to_data.py` does:
    `<image>\\n{question}` -> `<image>\\nImage description:\\n{description}\\n\\n{question}`. Returns the number of
    samples described.
    """
    from ..image_processing_sqllava import open_image_file

    with open(data_path, encoding="utf-8") as file:
        samples = json.load(file)
    if not isinstance(samples, list):
        raise ValueError(f"{data_path}: expected a LLaVA JSON list of samples.")  # noqa: TRY004
    described = [index for index, sample in enumerate(samples) if sample.get("image")]
    images = [open_image_file(os.path.join(image_folder, samples[index]["image"])) for index in described]
    keys = [samples[index]["image"] for index in described]
    descriptions = describe_images(model, processor, images, keys=keys, **describe_kwargs)
    for index, description in zip(described, descriptions):
        turn = samples[index]["conversations"][0]
        question = (
            turn["value"].replace(IMAGE_PLACEHOLDER, "", 1) if IMAGE_PLACEHOLDER in turn["value"] else turn["value"]
        )
        turn["value"] = IMAGE_PLACEHOLDER + infuse_text(question.replace("<image>", "").strip(), description)
    with open(output_path, "w", encoding="utf-8") as file:
        json.dump(samples, file, indent=1)
    return len(described)


__all__ = ["describe_images", "infuse_descriptions", "infuse_llava_json", "infuse_text"]
