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
"""The original sources converted to our names: the language model and projector from either original layout (the LoRA
release on its base LLM, or a merged checkpoint), and the CLIP vision tower with its ViT LoRA."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import CLIPVisionConfig, LlamaConfig

from .checkpoint_io import has_tokenizer, iterate_checkpoint, projector_tensors, read_json, resolve_checkpoint
from .keys import (
    DROPPED_BASE_KEYS,
    DROPPED_CLIP_KEYS,
    DROPPED_MERGED_KEYS,
    DROPPED_PROJECTOR_KEYS,
    LANGUAGE_MODEL_KEY_MAPPING,
    PROJECTOR_KEY_MAPPING,
    VISION_TOWER_KEY_MAPPING,
    ConversionRecord,
)
from .lora import LoraAdapter, select_vision_lora, split_release_adapter
from .state_dict import convert_tensors


logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------------
# 1. The language model and the projector, from either original layout
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class LanguageModelWeights:
    """The converted language model and projector, and what the later steps need to know about their source."""

    state_dict: dict[str, torch.Tensor]
    text_config: LlamaConfig
    tokenizer_dir: Path
    lora: LoraAdapter | None = None  # the LLM LoRA of the release
    vision_lora_copy: dict[str, torch.Tensor] = field(default_factory=dict)  # the top-level adapter's ViT LoRA

    @property
    def is_lora_release(self) -> bool:
        return self.lora is not None


def text_config_from(original: dict) -> LlamaConfig:
    """A `LlamaConfig` from a Llama-like `config.json` (Vicuna, ShareGPT4V's "share4v", or the flat "llava" one)."""
    llama_fields = set(LlamaConfig().to_dict()) | {"rope_theta", "rope_scaling"}
    not_copied = {"architectures", "model_type", "_name_or_path", "dtype", "torch_dtype", "transformers_version"}
    return LlamaConfig.from_dict({k: v for k, v in original.items() if k in llama_fields and k not in not_copied})


def convert_lora_release(
    model_dir: Path, base_dir: Path | None, dtype: torch.dtype, record: ConversionRecord, merge: bool
) -> LanguageModelWeights:
    """The base LLM with the release's LLM LoRA, and the projector of `non_lora_trainables.bin`."""
    if base_dir is None:
        raise ValueError(
            f"{model_dir} is a LoRA checkpoint: pass the base LLM it was trained on with `--model-base` (for the "
            "release: Lin-Chen/ShareGPT4V-7B_Pretrained_vit-large336-l12_vicuna-7b-v1.5, or its 13B "
            "counterpart Lin-Chen/ShareGPT4V-13B_Pretrained_vit-large336-l12_vicuna-13b-v1.5)."
        )
    logger.info(f"LoRA release in {model_dir}, base LLM {base_dir}.")
    llm_lora, vision_lora_copy = split_release_adapter(model_dir)
    state_dict = convert_tensors(
        iterate_checkpoint(base_dir), LANGUAGE_MODEL_KEY_MAPPING, DROPPED_BASE_KEYS, f"the base LLM {base_dir}",
        dtype, record, lora=llm_lora, merge_lora=merge,
    )
    state_dict |= convert_tensors(
        projector_tensors(model_dir), PROJECTOR_KEY_MAPPING, DROPPED_PROJECTOR_KEYS,
        f"{model_dir}/non_lora_trainables", dtype, record,
    )
    text_config = text_config_from(read_json(base_dir / "config.json"))
    return LanguageModelWeights(state_dict, text_config, base_dir, llm_lora, vision_lora_copy)


def convert_merged_checkpoint(
    model_dir: Path, base_dir: Path | None, original_config: dict, dtype: torch.dtype, record: ConversionRecord
) -> LanguageModelWeights:
    """The language model and projector of a checkpoint written by the original `merge_lora_weights.py`."""
    logger.info(f"Merged checkpoint in {model_dir}.")
    state_dict = convert_tensors(
        iterate_checkpoint(model_dir), LANGUAGE_MODEL_KEY_MAPPING | PROJECTOR_KEY_MAPPING, DROPPED_MERGED_KEYS,
        f"the merged checkpoint {model_dir}", dtype, record,
    )
    # `--model-base` is only needed for a merged checkpoint saved without its tokenizer.
    tokenizer_dir = model_dir if has_tokenizer(model_dir) or base_dir is None else base_dir
    return LanguageModelWeights(state_dict, text_config_from(original_config), tokenizer_dir)


# --------------------------------------------------------------------------------------------------------------------
# 2. The vision tower and its LoRA
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class VisionTowerWeights:
    """The converted CLIP tower, where it came from, and the ViT LoRA applied to it (None when skipped or absent)."""

    state_dict: dict[str, torch.Tensor]
    source: str | Path  # as the user or the original config named it
    folder: Path
    config: CLIPVisionConfig
    lora: LoraAdapter | None


def convert_vision_tower(
    model_dir: Path,
    original_config: dict,
    vision_tower: str | Path | None,
    vision_lora: str | Path | None,
    vision_lora_copy: dict[str, torch.Tensor],
    dtype: torch.dtype,
    record: ConversionRecord,
    merge: bool,
) -> VisionTowerWeights:
    """The CLIP tower (`vision_tower`, else the original config's `mm_vision_tower`) with its ViT LoRA."""
    source = vision_tower or original_config.get("mm_vision_tower") or original_config.get("vision_tower")
    if source is None:
        raise ValueError(f"{model_dir}/config.json names no `mm_vision_tower`: pass `--vision-tower`.")
    # The authors' config may name a path on their machine (as their adapter_config.json does, reference
    # docs/original.md#release-layout).
    hint = "" if vision_tower else (
        "It comes from `mm_vision_tower` in the original config.json; pass `--vision-tower` (for the release, "
        "presumably Lin-Chen/ShareGPT4V-7B_Pretrained_vit-large336-l12 or its 13B counterpart, reference docs/original.md#vision-tower)."
    )
    folder = resolve_checkpoint(source, "vision tower", hint)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"No config.json in the vision tower folder {folder}: is it a CLIP checkpoint? {hint}")
    try:
        config = CLIPVisionConfig.from_pretrained(folder)
    except Exception as error:  # malformed JSON, a config of another model
        raise ValueError(f"Cannot read the vision tower's {folder / 'config.json'}: {error}") from error
    lora = select_vision_lora(model_dir, vision_lora, vision_lora_copy, record)
    state_dict = convert_tensors(
        iterate_checkpoint(folder), VISION_TOWER_KEY_MAPPING, DROPPED_CLIP_KEYS, f"the vision tower {folder}",
        dtype, record, lora=lora, merge_lora=merge,
    )
    return VisionTowerWeights(state_dict, source, folder, config, lora)
