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
"""The new state dict: each source's tensors renamed, dropped, merged with their LoRA and cast, then checked against
the model built from the converted config. Both steps are strict: a tensor with no place to go stops the conversion.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch
from torch import nn

from .keys import (
    LANGUAGE_MODEL_KEY_MAPPING,
    PROJECTOR_KEY_MAPPING,
    RESHAPED_KEYS,
    VISION_TOWER_KEY_MAPPING,
    ConversionRecord,
    drop_reason,
    invert_mapping,
    raise_for_unexpected,
    rename_key,
)
from .lora import LoraAdapter


logger = logging.getLogger(__name__)


def convert_tensors(
    tensors: Iterator[tuple[str, torch.Tensor]],
    key_mapping: dict[str, str],
    dropped_keys: dict[str, str],
    source: str,
    dtype: torch.dtype,
    record: ConversionRecord,
    lora: LoraAdapter | None = None,
    merge_lora: bool = True,
) -> dict[str, torch.Tensor]:
    r"""
    Rename every tensor of one source, drop the listed ones, merge `lora` (in fp32) and cast to `dtype`.

    Raises if a tensor is neither renamed nor dropped, if a LoRA module has no weight in this source, or if a module
    that the LoRA's `target_modules` names has no LoRA weights.

    Args:
        tensors (`Iterator[tuple[str, torch.Tensor]]`):
            The (original name, tensor) pairs of the source, read lazily.
        key_mapping (`dict[str, str]`):
            Original name prefix -> ours (see `keys.py`).
        dropped_keys (`dict[str, str]`):
            Regex -> reason, for the tensors of this source that the new model does not use.
        source (`str`):
            What the tensors are, for the log and the errors.
        dtype (`torch.dtype`):
            The output dtype.
        record (`ConversionRecord`):
            Counts the converted tensors and collects the dropped ones.
        lora (`LoraAdapter`, *optional*):
            The LoRA over this source's weights.
        merge_lora (`bool`, *optional*, defaults to `True`):
            `False` checks `lora` against the weights but leaves them unmerged (`--no-merge`).

    Returns:
        `dict[str, torch.Tensor]`: the converted tensors under our names.
    """
    converted, unexpected, merged, missing_lora = {}, [], set(), []
    for name, tensor in tensors:
        # Dropping comes first: `model.layers.0.self_attn.rotary_emb.inv_freq` also starts like an LLM weight.
        reason = drop_reason(name, dropped_keys)
        if reason is not None:
            record.drop(name, reason)
            continue
        new_name = rename_key(name, key_mapping)
        if new_name is None:
            unexpected.append(name)
            continue
        if new_name in RESHAPED_KEYS:
            tensor = tensor.reshape(-1)
        module = new_name.removesuffix(".weight")
        if lora is not None and new_name.endswith(".weight") and module in lora.lora_A:
            lora.check_shape(module, tensor, name, source)
            if merge_lora:
                tensor = tensor.float() + lora.delta(module)
            merged.add(module)
        elif lora is not None and new_name.endswith(".weight") and tensor.dim() == 2:
            peft_name = lora.targeted_peft_name(module)
            if peft_name is not None:
                missing_lora.append(peft_name)
        converted[new_name] = tensor.to(dtype)
        record.converted += 1
    raise_for_unexpected(
        unexpected, source, "Is it the right checkpoint? If the tensors are known to be unused, list them in this "
        "converter's DROPPED_* rules with the reason."
    )
    if lora is not None:
        action = "Merged" if merge_lora else "Kept apart (--no-merge)"
        logger.info(f"{action}: {lora.source}, {len(merged)} weight(s) of {source}.")
        orphans = sorted(lora.peft_names[m] for m in lora.lora_A.keys() - merged)
        if orphans:
            raise ValueError(f"{lora.source} has LoRA weights for modules that {source} does not have: {orphans[:10]}")
        if missing_lora:
            raise ValueError(
                f"{lora.source}: `target_modules` {lora.config.get('target_modules')} names {len(missing_lora)} "
                f"module(s) of {source} that have no LoRA weights in the file, e.g. {missing_lora[:5]}. The adapter "
                "file is incomplete or belongs to another model."
            )
    return converted


def check_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]):
    """Every parameter of the new model has exactly one source tensor of the right shape."""
    expected = model.state_dict()
    to_original = invert_mapping({**LANGUAGE_MODEL_KEY_MAPPING, **PROJECTOR_KEY_MAPPING, **VISION_TOWER_KEY_MAPPING})
    missing = [f"{name} (original: {rename_key(name, to_original)})" for name in expected if name not in state_dict]
    if missing:
        raise ValueError(
            "Missing tensor(s), needed by the converted model:\n  " + "\n  ".join(missing[:20])
            + "\nCheck that the checkpoint files are complete and that `--model-base` / `--vision-tower` are the ones "
            "the checkpoint was trained with."
        )
    unexpected = [f"{rename_key(name, to_original)} (renamed {name})" for name in sorted(state_dict.keys() - expected)]
    raise_for_unexpected(
        unexpected, "the checkpoint", "The model built from the config has no such parameter: the right checkpoint?"
    )
    for name, tensor in state_dict.items():
        if tensor.shape != expected[name].shape:
            raise ValueError(
                f"`{name}` (original: {rename_key(name, to_original)}) has shape {tuple(tensor.shape)} in the "
                f"checkpoint but {tuple(expected[name].shape)} in the model built from its config. Wrong "
                "`--model-base` or `--vision-tower`?"
            )
