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
"""The model card of a converted checkpoint: which sources it came from and how its LoRAs were applied."""

from __future__ import annotations

from pathlib import Path

import torch
from huggingface_hub import ModelCard
from transformers import LlamaConfig

from ..hub import render_model_card


def model_size_name(text_config: LlamaConfig) -> str | None:
    """"7b" or "13b" for Vicuna-7B/13B sizes (the released checkpoints), else None."""
    sizes = {(4096, 32): "7b", (5120, 40): "13b"}
    return sizes.get((text_config.hidden_size, text_config.num_hidden_layers))


def display_name(name_or_path: str | Path | None) -> str | None:
    """A Hub id as is; a local folder by its name only (a card should not show the converting machine's paths)."""
    if name_or_path is None:
        return None
    path = Path(name_or_path).expanduser()
    return f"{path.name} (local folder)" if path.exists() else str(name_or_path)


def vision_lora_status(applied: bool, merged: bool, lora_release: bool) -> str:
    """How the card describes the ViT LoRA: `"merged"`, `"adapter"`, `"all-zero"` (skipped) or `"absent"`."""
    if applied:
        return "merged" if merged else "adapter"
    # The release always has a ViT LoRA; when none was applied, it was the all-zero one (skipped: no effect).
    return "all-zero" if lora_release else "absent"


def render_conversion_card(
    text_config: LlamaConfig,
    *,
    repo_id: str | None,
    model_path: str | Path,
    model_base: str | Path | None,
    vision_tower: str | Path,
    vision_lora: str,
    dtype: torch.dtype,
    merged: bool,
    lora_release: bool,
    image_token_id: int,
    pad_token_id: int,
) -> ModelCard:
    r"""
    The card of a converted checkpoint, with the release's results when it has the size of a released one.

    Args:
        text_config (`LlamaConfig`):
            The converted language model's config; its size picks the card (`sqllava-7b`, `sqllava-13b`, `sqllava`).
        repo_id (`str`, *optional*):
            The Hub repo the folder is pushed to, used in the card's code samples.
        model_path (`str` or `Path`), model_base (`str` or `Path`, *optional*), vision_tower (`str` or `Path`):
            The sources as the user named them; local folders are shown by their name only.
        vision_lora (`str`):
            See [`vision_lora_status`].
        dtype (`torch.dtype`):
            The output dtype.
        merged (`bool`):
            Whether the weights have every LoRA merged (no separate adapter).
        lora_release (`bool`):
            Whether the source was the LoRA release rather than a merged checkpoint.
        image_token_id (`int`), pad_token_id (`int`):
            The ids the processor gave `<image>` and `<pad>`.

    Returns:
        [`huggingface_hub.ModelCard`]: the card.
    """
    size = model_size_name(text_config)
    return render_model_card(
        f"sqllava-{size}" if size else "sqllava",
        repo_id=repo_id,
        source_checkpoint=display_name(model_path),
        base_llm=display_name(model_base),
        vision_tower=display_name(vision_tower),
        vision_lora=vision_lora,
        dtype=str(dtype).removeprefix("torch."),
        merged=merged,
        lora_release=lora_release,
        image_token_id=image_token_id,
        pad_token_id=pad_token_id,
    )
