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
"""Writing the release's LoRAs as one PEFT adapter over our module names (`sqllava convert --no-merge`)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from safetensors.torch import save_file

from .lora import LoraAdapter


def lora_target_regex(modules: set[str], all_modules: set[str]) -> str:
    """A regex over full module names selecting exactly `modules`, for PEFT's `target_modules`.

    PEFT full-matches a string against every module name, so an LLM LoRA cannot land on CLIP's `q_proj`
    (docs/training.md#with-trl-ddp-and-bitsandbytes). The short form generalises the layer index; if that would select
    anything else, the names are listed.
    """
    pieces = defaultdict(set)
    for module in sorted(modules):
        match = re.fullmatch(r"(?P<stack>.+\.layers)\.\d+\.(?P<leaf>.+)", module)
        if match is None:
            pieces = None
            break
        pieces[match["stack"]].add(match["leaf"])
    if pieces:
        short = "|".join(
            rf"{re.escape(stack)}\.\d+\.({'|'.join(re.escape(leaf) for leaf in sorted(leaves))})"
            for stack, leaves in sorted(pieces.items())
        )
        short = f"({short})"
        if {name for name in all_modules if re.fullmatch(short, name)} == modules:
            return short
    return "(" + "|".join(re.escape(module) for module in sorted(modules)) + ")"


def _lora_alpha(rank: int, scaling: float) -> float | int:
    """The `lora_alpha` that gives `scaling` at `rank` (PEFT's plain alpha / r), as an int when it is one."""
    value = rank * scaling
    return int(value) if float(value).is_integer() else value


def save_peft_adapter(
    folder: Path, adapters: list[LoraAdapter], all_modules: set[str], base_model_name_or_path: str
) -> Path:
    r"""
    Write `adapters` as one PEFT LoRA adapter over our module names (`--no-merge`).

    `r` and `lora_alpha` are the most common (rank, scaling) of the first adapter (the LLM's); any module with
    another one (the ViT LoRA's r=32) gets a `rank_pattern` / `alpha_pattern` entry, so PEFT applies exactly the
    scalings the merge would. The tensors keep their stored dtype (bf16 in the release: lossless).

    Args:
        folder (`Path`):
            Where to write `adapter_config.json` and `adapter_model.safetensors`.
        adapters (`list[LoraAdapter]`):
            The LLM LoRA first, then the ViT LoRA if any.
        all_modules (`set[str]`):
            Every module name of the converted model with a weight, so that `target_modules` selects no other.
        base_model_name_or_path (`str`):
            The converted model the adapter applies to, written in the adapter config.

    Returns:
        `Path`: `folder`.
    """
    from peft import LoraConfig

    rank_and_scaling = {}
    state_dict = {}
    for adapter in adapters:
        for module in adapter.lora_A:
            rank_and_scaling[module] = (adapter.lora_A[module].shape[0], adapter.scaling[module])
            state_dict[f"base_model.model.{module}.lora_A.weight"] = adapter.lora_A[module].contiguous()
            state_dict[f"base_model.model.{module}.lora_B.weight"] = adapter.lora_B[module].contiguous()
    # The defaults are the first adapter's (the LLM's, whose config is r=128, alpha=256 in the release).
    first = adapters[0]
    counts = defaultdict(int)
    for module in first.lora_A:
        counts[rank_and_scaling[module]] += 1
    default_rank, default_scaling = max(counts, key=counts.get)

    rank_pattern, alpha_pattern = {}, {}
    for value in sorted(set(rank_and_scaling.values()) - {(default_rank, default_scaling)}):
        modules = {module for module, other in rank_and_scaling.items() if other == value}
        pattern = lora_target_regex(modules, all_modules)
        rank_pattern[pattern], alpha_pattern[pattern] = value[0], _lora_alpha(*value)

    config = LoraConfig(
        r=default_rank,
        lora_alpha=_lora_alpha(default_rank, default_scaling),
        target_modules=lora_target_regex(set(rank_and_scaling), all_modules),
        rank_pattern=rank_pattern,
        alpha_pattern=alpha_pattern,
        lora_dropout=first.config.get("lora_dropout", 0.0),
        bias="none",
        base_model_name_or_path=base_model_name_or_path,
        inference_mode=True,
    )
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    save_file(state_dict, folder / "adapter_model.safetensors", metadata={"format": "pt"})
    return folder
