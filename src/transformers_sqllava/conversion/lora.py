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
"""The LoRA adapters of the release: reading them, their scalings as PEFT computes them, and which ViT LoRA to use.

The release holds two LoRAs: the LLM's (r=128, alpha=256) in the top-level adapter, and the ViT's (r=32, alpha=64
for 7B) in `Vit-lora/`, with a copy of the latter in the top-level adapter too.
"""

from __future__ import annotations

import logging
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint_io import ADAPTER_WEIGHTS, load_torch_file, read_json, resolve_checkpoint
from .keys import (
    DROPPED_ZERO_VIT_LORA,
    LLM_LORA_KEY_MAPPING,
    TOP_LEVEL_VIT_LORA_KEY_MAPPING,
    VIT_LORA_KEY_MAPPING,
    ConversionRecord,
    invert_mapping,
    raise_for_unexpected,
    rename_key,
)


logger = logging.getLogger(__name__)

LORA_KEY_PATTERN = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<matrix>[AB])(?:\.[^.]+)?\.weight$")
# Where the top-level adapter of the release keeps its copy of the ViT LoRA.
TOP_LEVEL_VIT_LORA_PREFIX = "base_model.model.model.vision_tower."


def get_pattern_key(pattern_keys: Iterable[str], module_name: str) -> str | None:
    """The `rank_pattern` / `alpha_pattern` key that applies to `module_name`: the same rule as PEFT's."""
    for pattern in pattern_keys:
        if re.match(rf"(.*\.)?({pattern})$", module_name):
            return pattern
    return None


def targets_module(target_modules: str | list[str], module_name: str) -> bool:
    """Whether PEFT would put a LoRA on `module_name`: a regex over the full name, or a list of name suffixes."""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, module_name) is not None
    return any(module_name == target or module_name.endswith("." + target) for target in target_modules)


@dataclass
class LoraAdapter:
    """One LoRA adapter read from an original checkpoint, keyed by our module names.

    `lora_A[m]` is `[r, in]`, `lora_B[m]` is `[out, r]`; the merged weight is `W + scaling[m] * B @ A`.
    """

    source: str
    config: dict
    key_mapping: dict[str, str]  # PEFT module-name prefix in the original model -> ours
    peft_names: dict[str, str]  # our module name -> the module name PEFT saw in the original model
    lora_A: dict[str, torch.Tensor]
    lora_B: dict[str, torch.Tensor]
    scaling: dict[str, float]

    @property
    def is_zero(self) -> bool:
        return all(not bool(b.any()) for b in self.lora_B.values())

    def delta(self, module: str) -> torch.Tensor:
        # In fp32 whatever the stored dtype: the release stores bf16 A and B (the reference
        # (docs/original.md#loading-a-release), merge numerics).
        return self.scaling[module] * (self.lora_B[module].float() @ self.lora_A[module].float())

    def check_shape(self, module: str, weight: torch.Tensor, weight_name: str, weight_source: str):
        """Raise unless `B @ A` of `module` has the shape of its base weight `weight_name` of `weight_source`."""
        lora_shape = (self.lora_B[module].shape[0], self.lora_A[module].shape[1])
        if lora_shape != tuple(weight.shape):
            raise ValueError(
                f"{self.source}: the LoRA of `{self.peft_names[module]}` is {lora_shape} but the weight "
                f"`{weight_name}` of {weight_source} is {tuple(weight.shape)}. The adapter was trained on another "
                "model."
            )

    def targeted_peft_name(self, module: str) -> str | None:
        """The PEFT name of `module` if the adapter's `target_modules` names it (it should then have LoRA weights)."""
        # `layers_to_transform` restricts the targets to some layers: then a module without LoRA is expected.
        if self.config.get("layers_to_transform"):
            return None
        peft_name = rename_key(module, invert_mapping(self.key_mapping))
        if peft_name is not None and targets_module(self.config.get("target_modules") or [], peft_name):
            return peft_name
        return None


def check_adapter_config(config: dict, path: Path):
    """Raise a `ValueError` naming `path` and the key unless `config` describes a LoRA this converter can apply."""

    def fail(problem: str):
        raise ValueError(f"{path}: {problem}. It must be the adapter_config.json that PEFT saved with these weights.")

    if config.get("peft_type", "LORA") != "LORA":
        fail(f"`peft_type` is {config['peft_type']!r}; only LoRA adapters can be converted")
    for key in ("r", "lora_alpha"):
        if key not in config:
            fail(f"no `{key}` (each LoRA's scaling is lora_alpha / r)")
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            fail(f"`{key}` must be a positive number, got {value!r}")
    for key in ("rank_pattern", "alpha_pattern"):
        if not isinstance(config.get(key) or {}, dict):
            fail(f"`{key}` must be a dict of module-name pattern -> value, got {config[key]!r}")
    targets = config.get("target_modules")
    if targets is not None and not isinstance(targets, str) and not (
        isinstance(targets, list) and all(isinstance(target, str) for target in targets)
    ):
        fail(f"`target_modules` must be a regex or a list of module names, got {targets!r}")


def read_adapter(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """`adapter_config.json` (checked) and the tensors of `adapter_model.safetensors|bin` in `folder`."""
    if not (folder / "adapter_config.json").is_file():
        raise FileNotFoundError(f"No adapter_config.json in {folder}: it is needed for each LoRA's r and lora_alpha.")
    config = read_json(folder / "adapter_config.json")
    check_adapter_config(config, folder / "adapter_config.json")
    for weights_name in ADAPTER_WEIGHTS:
        if (folder / weights_name).is_file():
            return config, load_torch_file(folder / weights_name)
    raise FileNotFoundError(f"No adapter weights in {folder}: expected one of {ADAPTER_WEIGHTS}.")


def lora_scaling(config: dict, peft_name: str, rank: int, source: str) -> float:
    """alpha / r (alpha / sqrt(r) with `use_rslora`), honouring `rank_pattern` and `alpha_pattern` as PEFT does."""
    rank_pattern, alpha_pattern = config.get("rank_pattern") or {}, config.get("alpha_pattern") or {}
    rank_key, alpha_key = get_pattern_key(rank_pattern, peft_name), get_pattern_key(alpha_pattern, peft_name)
    r = rank_pattern[rank_key] if rank_key is not None else config["r"]
    alpha = alpha_pattern[alpha_key] if alpha_key is not None else config["lora_alpha"]
    if r != rank:
        raise ValueError(
            f"{source}: adapter_config.json gives `{peft_name}` r={r} but its lora_A has rank {rank}. The config does "
            "not describe these weights: pass the adapter folder they were saved with."
        )
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def build_lora_adapter(
    source: str, config: dict, tensors: dict[str, torch.Tensor], key_mapping: dict[str, str]
) -> LoraAdapter:
    """Pair up the A and B matrices of `tensors` (PEFT keys), rename their modules and compute each scaling."""
    if config.get("use_dora"):
        raise ValueError(f"{source} is a DoRA adapter (`use_dora: true`); only plain LoRA can be merged here.")
    if config.get("fan_in_fan_out"):
        raise ValueError(f"{source} sets `fan_in_fan_out`, which Llama and CLIP linears never need: a wrong adapter?")
    matrices: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
    peft_names = {}
    unexpected = []
    for key, tensor in tensors.items():
        match = LORA_KEY_PATTERN.match(key)
        module = rename_key(match["module"], key_mapping) if match else None
        if module is None:
            unexpected.append(key)
            continue
        matrices[module][match["matrix"]] = tensor
        peft_names[module] = match["module"]
    raise_for_unexpected(
        unexpected, source, "Only `lora_A` / `lora_B` weights of the language model or the ViT are expected there."
    )

    lora_A, lora_B, scaling = {}, {}, {}
    for module, pair in matrices.items():
        if set(pair) != {"A", "B"}:
            missing = "lora_B" if "A" in pair else "lora_A"
            raise ValueError(
                f"{source}: `{peft_names[module]}` has no {missing} matrix; the adapter file is incomplete."
            )
        if pair["A"].dim() != 2 or pair["B"].dim() != 2 or pair["B"].shape[1] != pair["A"].shape[0]:
            raise ValueError(
                f"{source}: `{peft_names[module]}` has lora_A {tuple(pair['A'].shape)} and lora_B "
                f"{tuple(pair['B'].shape)}; a LoRA pair is A [r, in] and B [out, r]. The adapter file is damaged."
            )
        lora_A[module], lora_B[module] = pair["A"], pair["B"]
        scaling[module] = lora_scaling(config, peft_names[module], rank=pair["A"].shape[0], source=source)
    return LoraAdapter(source, config, key_mapping, peft_names, lora_A, lora_B, scaling)


# --------------------------------------------------------------------------------------------------------------------
# The release's two LoRAs
# --------------------------------------------------------------------------------------------------------------------


def split_release_adapter(model_dir: Path) -> tuple[LoraAdapter, dict[str, torch.Tensor]]:
    """The top-level adapter of the LoRA release: the LLM LoRA, and the copy of the ViT LoRA it also holds.

    Training saved every `lora_` parameter of the model there, the ViT's included (docs/original.md#release-layout);
    the LLM adapter's config (r=128, alpha=256) does not describe the ViT ones, so they are returned apart, untouched.
    """
    config, tensors = read_adapter(model_dir)
    vit_tensors = {name: tensor for name, tensor in tensors.items() if name.startswith(TOP_LEVEL_VIT_LORA_PREFIX)}
    llm_tensors = {name: tensor for name, tensor in tensors.items() if not name.startswith(TOP_LEVEL_VIT_LORA_PREFIX)}
    llm_lora = build_lora_adapter(f"the LLM LoRA in {model_dir}", config, llm_tensors, LLM_LORA_KEY_MAPPING)
    return llm_lora, vit_tensors


def select_vision_lora(
    model_dir: Path, vision_lora: str | Path | None, top_level_copy: dict[str, torch.Tensor], record: ConversionRecord
) -> LoraAdapter | None:
    """The ViT LoRA to merge, or None when there is none or its B matrices are all zero.

    Its own folder (`--vision-lora`, else `Vit-lora/`) is used, with its own config (r=32, alpha=64 for 7B). Without
    one, the copy inside the top-level adapter cannot be scaled: the top-level config describes the LLM LoRA (r=128,
    alpha=256), not these tensors. That is fine when B = 0 (the release, docs/original.md#the-vit-lora-never-trains:
    the ViT LoRA never got a gradient) and an error otherwise.
    """
    folder = None
    if vision_lora is not None:
        folder = resolve_checkpoint(vision_lora, "--vision-lora")
    elif (model_dir / "Vit-lora").is_dir():
        folder = model_dir / "Vit-lora"

    if folder is None:
        if not top_level_copy:
            return None
        if any(bool(t.any()) for name, t in top_level_copy.items() if ".lora_B" in name):
            raise ValueError(
                f"The adapter in {model_dir} holds ViT LoRA weights with non-zero B matrices but there is no "
                "Vit-lora/ folder with their own adapter_config.json: their lora_alpha is unknown (the top-level "
                "config describes the LLM LoRA). Pass `--vision-lora DIR` (the folder the ViT LoRA was saved to)."
            )
        skip_zero_vision_lora(f"{model_dir}/adapter_model", top_level_copy, record)
        return None

    config, tensors = read_adapter(folder)
    adapter = build_lora_adapter(f"the ViT LoRA in {folder}", config, tensors, VIT_LORA_KEY_MAPPING)
    for name in top_level_copy:
        record.drop(name, f"copy of the ViT LoRA in the top-level adapter ({folder} is used, with its own config)")
    if top_level_copy and not top_level_matches(top_level_copy, adapter):
        logger.warning(
            f"The ViT LoRA copy inside {model_dir}/adapter_model differs from {folder}; {folder} is used. In the "
            "release both are the same tensors (docs/original.md#release-layout): check that the folders belong together."
        )
    if adapter.is_zero:
        names = [
            f"base_model.model.{adapter.peft_names[module]}.lora_{matrix}.weight"
            for module in adapter.lora_A
            for matrix in ("A", "B")
        ]
        skip_zero_vision_lora(str(folder), names, record)
        return None
    return adapter


def skip_zero_vision_lora(location: str, names: Iterable[str], record: ConversionRecord):
    """Say that the ViT LoRA in `location` is not merged, and record its tensors `names` as dropped."""
    logger.warning(
        f"The ViT LoRA in {location} has all-zero B matrices (expected for the release: its vision tower ran under "
        "no_grad, reference docs/original.md#the-vit-lora-never-trains), so it changes nothing: not merged."
    )
    for name in names:
        record.drop(name, DROPPED_ZERO_VIT_LORA)


def top_level_matches(top_level_copy: dict[str, torch.Tensor], adapter: LoraAdapter) -> bool:
    """Whether the ViT LoRA copy in the top-level adapter holds exactly the tensors of `adapter` (from `Vit-lora/`)."""
    for name, tensor in top_level_copy.items():
        match = LORA_KEY_PATTERN.match(name)
        module = rename_key(match["module"], TOP_LEVEL_VIT_LORA_KEY_MAPPING) if match else None
        matrices = adapter.lora_A if match and match["matrix"] == "A" else adapter.lora_B
        if module not in matrices or not torch.equal(matrices[module], tensor):
            return False
    return True
