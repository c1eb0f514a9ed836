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
r"""Convert the released SQ-LLaVA checkpoints (github.com/heliossun/SQ-LLaVA) to transformers-sqllava.

The original code writes two layouts (sqllava-reference.md §6):

- **the LoRA release** (`ZachSun/sqllava-lora-7b`, `ZachSun/sqllava-lora-13b`): `config.json`, `adapter_config.json`,
  `adapter_model.bin|safetensors` (the LLM LoRA, plus a copy of the ViT LoRA), `non_lora_trainables.bin` (the
  `Clustering` projector) and `Vit-lora/` (the ViT LoRA and its own config), on top of a base LLM (`--model-base`);
- **a merged checkpoint** written by the original `scripts/merge_lora_weights.py`: the LLM with its LoRA merged,
  `model.mm_projector.*`, and an unmerged copy of CLIP that the reference ignores (§6.5); possibly sharded.

In both, the vision tower is the CLIP checkpoint named by the original config's `mm_vision_tower`.

The conversion is strict: every source tensor is either renamed into the new model or listed as dropped with its
reason, and a missing or unexpected tensor stops it with its name. `.bin` files are read with
`torch.load(weights_only=True)`; the output is safetensors only.

Usage:

```bash
sqllava convert --model-path ZachSun/sqllava-lora-7b \
    --model-base Lin-Chen/ShareGPT4V-7B_Pretrained_vit-large336-l12_vicuna-7b-v1.5 \
    --output-dir sqllava-7b-hf
```
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoTokenizer, CLIPVisionConfig, GenerationConfig, LlamaConfig

from .configuration_sqllava import SQLlavaConfig
from .hub import push_folder_to_hub, render_model_card
from .modeling_sqllava import SQLlavaForConditionalGeneration
from .processing_sqllava import (
    ORIGINAL_VUSER_MARKER,
    SQLlavaImageProcessor,
    SQLlavaProcessor,
    resize_embeddings_for_processor,
)


logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------------------------
# Key names. Original name prefix -> our name prefix; an entry without a trailing "." is an exact name. Every source
# tensor must be renamed by one of these tables or dropped by one of the `DROPPED_*` rules below.
# --------------------------------------------------------------------------------------------------------------------

# The reference's `LlavaLlamaForCausalLM` keeps Llama's names (reference §6.2).
LANGUAGE_MODEL_KEY_MAPPING = {
    "model.embed_tokens.": "model.language_model.embed_tokens.",
    "model.layers.": "model.language_model.layers.",
    "model.norm.": "model.language_model.norm.",
    "lm_head.": "lm_head.",
}

# The reference `Clustering` (§1.3) -> `SQLlavaMultiModalProjector`: names that say what the parameters do.
_EXTRACTOR = "model.multi_modal_projector.prototype_extractor."
PROJECTOR_KEY_MAPPING = {
    "model.mm_projector.sim_alpha": _EXTRACTOR + "gate_scale",
    "model.mm_projector.sim_beta": _EXTRACTOR + "gate_bias",
    "model.mm_projector.c.": _EXTRACTOR + "prototype_proj.",  # re-applied to the prototypes every iteration
    "model.mm_projector.v.": _EXTRACTOR + "key_proj.",  # the "key" side of the soft assignment
    "model.mm_projector.f.": _EXTRACTOR + "value_proj.",  # the features that get aggregated
    "model.mm_projector.mlp.0.": "model.multi_modal_projector.linear_1.",
    "model.mm_projector.mlp.2.": "model.multi_modal_projector.linear_2.",
}
# `sim_alpha` and `sim_beta` are [1, 1, 1] in the reference (broadcast against [B, N, L]); ours are [1].
RESHAPED_KEYS = {_EXTRACTOR + "gate_scale", _EXTRACTOR + "gate_bias"}

# A CLIP checkpoint: a `CLIPVisionModel` or a full `CLIPModel` (openai/clip-vit-large-patch14-336) as the Hub stores
# them, `vision_model.*`, or a `CLIPVisionModel` saved by transformers 5, which has no `vision_model.` level. In our
# model (transformers 5) the tower has no `vision_model.` level either.
VISION_TOWER_KEY_MAPPING = {
    "vision_model.": "model.vision_tower.",
    "embeddings.": "model.vision_tower.embeddings.",
    "pre_layrnorm.": "model.vision_tower.pre_layrnorm.",
    "encoder.": "model.vision_tower.encoder.",
    "post_layernorm.": "model.vision_tower.post_layernorm.",
}

# PEFT module names inside each adapter file (without the `base_model.model.` prefix) -> our module names.
LLM_LORA_KEY_MAPPING = {"model.layers.": "model.language_model.layers."}
# `Vit-lora/`: a PeftModel around the reference's `CLIPVisionTower`, whose CLIP is at `.vision_tower` (§6.2).
VIT_LORA_KEY_MAPPING = {"vision_tower.vision_model.": "model.vision_tower."}
# The copy of the ViT LoRA inside the top-level adapter (training saved every `lora_` parameter of the model, §6.1).
TOP_LEVEL_VIT_LORA_KEY_MAPPING = {"model.vision_tower.vision_tower.vision_model.": "model.vision_tower."}

ROTARY_BUFFERS = {r"\.rotary_emb\.inv_freq$": "rotary-embedding buffer (recomputed from the config)"}
DROPPED_PROJECTOR_KEYS = {
    r"^model\.mm_projector\.ln_1\.(weight|bias)$": "`Clustering.ln_1`: the reference forward never calls it (§1.3)",
}
# A LLaVA-style base LLM (e.g. ShareGPT4V's, `model_type "share4v"`) carries its own stage-1 projector and sometimes
# a vision tower; the reference replaces the former with non_lora_trainables.bin and ignores the latter (§6.4).
DROPPED_BASE_KEYS = {
    **ROTARY_BUFFERS,
    r"^model\.mm_projector\.": "the base LLM's own projector (SQ-LLaVA's comes from non_lora_trainables.bin, §6.4)",
    r"^model\.vision_tower\.": "a vision tower inside the base LLM (the tower comes from `mm_vision_tower`, §6.4)",
}
DROPPED_MERGED_KEYS = {
    **ROTARY_BUFFERS,
    **DROPPED_PROJECTOR_KEYS,
    r"^model\.vision_tower\.vision_tower\.vision_model\.": (
        "the unmerged CLIP copy written by merge_lora_weights.py (the reference reloads `mm_vision_tower`, §6.5)"
    ),
}
DROPPED_CLIP_KEYS = {
    r"^text_model\.": "CLIP text tower (LLaVA uses only the vision tower)",
    r"^(text_projection|visual_projection)\.": "CLIP contrastive projections (unused by LLaVA)",
    r"^logit_scale$": "CLIP contrastive temperature (unused by LLaVA)",
    r"\.position_ids$": "position-id buffer (recomputed)",
}

LORA_KEY_PATTERN = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<matrix>[AB])(?:\.[^.]+)?\.weight$")

SUPPORTED_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}

# Files that mark the two original layouts.
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
CHECKPOINT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
CHECKPOINT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")


# --------------------------------------------------------------------------------------------------------------------
# Renaming and bookkeeping
# --------------------------------------------------------------------------------------------------------------------


def rename_key(name: str, mapping: dict[str, str]) -> str | None:
    """`name` with its original prefix replaced by ours, or None if no entry of `mapping` covers it."""
    for old, new in mapping.items():
        if old.endswith("."):
            if name.startswith(old):
                return new + name[len(old) :]
        elif name == old:
            return new
    return None


def invert_mapping(mapping: dict[str, str]) -> dict[str, str]:
    return {new: old for old, new in mapping.items()}


@dataclass
class ConversionRecord:
    """What happened to every source tensor: renamed (counted) or dropped (name and reason, for the log)."""

    dropped: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    converted: int = 0

    def drop(self, name: str, reason: str):
        self.dropped[reason].append(name)

    def log_summary(self):
        logger.info(f"Converted {self.converted} tensors.")
        for reason, names in self.dropped.items():
            shown = ", ".join(names[:3]) + (f", ... ({len(names)} in all)" if len(names) > 3 else "")
            logger.info(f"Dropped {len(names)} tensor(s), {reason}: {shown}")


def drop_reason(name: str, dropped_keys: dict[str, str]) -> str | None:
    for pattern, reason in dropped_keys.items():
        if re.search(pattern, name):
            return reason
    return None


def raise_for_unexpected(names: list[str], source: str, hint: str):
    if names:
        listed = "\n  ".join(names[:20]) + (f"\n  ... ({len(names)} in all)" if len(names) > 20 else "")
        raise ValueError(f"Unexpected tensor(s) in {source}:\n  {listed}\n{hint}")


# --------------------------------------------------------------------------------------------------------------------
# Reading checkpoints
# --------------------------------------------------------------------------------------------------------------------


def resolve_checkpoint(name_or_path: str | Path, what: str, hint: str = "") -> Path:
    """A local folder as is; anything else is a Hub repo id, downloaded with `snapshot_download`. `hint` is added to
    the error when neither works.

    Only the files a conversion reads are fetched: configs, tokenizer files, and one weights format (safetensors when
    the repo has them, else `.bin`), so a repo that ships both is not downloaded twice.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists() or str(name_or_path).startswith((".", "/", "~")) or str(name_or_path).count("/") != 1:
        raise FileNotFoundError(
            f"The {what} {str(name_or_path)!r} is not a directory, nor a Hub repo id of the form `owner/name`. {hint}"
        )
    from huggingface_hub import HfApi, snapshot_download

    try:
        files = HfApi().list_repo_files(str(name_or_path))
        weights = "*.safetensors" if any(file.endswith(".safetensors") for file in files) else "*.bin"
        folder = snapshot_download(
            str(name_or_path), allow_patterns=["*.json", "*.model", "*.txt", weights, f"*/{weights}", "*/*.json"]
        )
    except Exception as error:  # network, authentication, missing repo: say which input it was
        raise OSError(
            f"The {what} {str(name_or_path)!r} is not a local directory and could not be downloaded from the Hub "
            f"({type(error).__name__}: {error}). Download it yourself and pass the local folder. {hint}"
        ) from error
    return Path(folder)


def load_torch_file(path: Path) -> dict[str, torch.Tensor]:
    """A `.bin` state dict, unpickled safely (tensors only), or a `.safetensors` file."""
    if path.suffix == ".safetensors":
        with safe_open(path, framework="pt") as file:
            return {name: file.get_tensor(name) for name in file.keys()}
    try:
        # mmap keeps a multi-GB shard out of memory until its tensors are read.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) pickles cannot be memory-mapped
        return torch.load(path, map_location="cpu", weights_only=True)


def checkpoint_shards(folder: Path) -> list[Path]:
    """The weight files of a transformers checkpoint folder, single-file or sharded with an index."""
    for index_name in CHECKPOINT_INDEXES:
        if (folder / index_name).is_file():
            weight_map = json.loads((folder / index_name).read_text())["weight_map"]
            return [folder / shard for shard in sorted(set(weight_map.values()))]
    for file_name in CHECKPOINT_FILES:
        if (folder / file_name).is_file():
            return [folder / file_name]
    raise FileNotFoundError(
        f"No weights in {folder}: expected one of {CHECKPOINT_FILES + CHECKPOINT_INDEXES}. Is it the right folder?"
    )


def iterate_torch_file(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs of one weights file, each tensor read when it is needed and not kept by the reader, so
    a multi-GB shard is never held twice (source dtype and output dtype) while it is converted."""
    if path.suffix == ".safetensors":
        with safe_open(path, framework="pt") as file:
            for name in file.keys():
                yield name, file.get_tensor(name)
        return
    state_dict = load_torch_file(path)
    for name in list(state_dict):
        yield name, state_dict.pop(name)


def iterate_checkpoint(folder: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs of a checkpoint folder, shard by shard."""
    for shard in checkpoint_shards(folder):
        yield from iterate_torch_file(shard)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def read_original_config(model_dir: Path) -> dict:
    """The original `config.json`, read as JSON.

    It is a flat Llama config with `model_type "llava"`, which modern transformers maps to its own `LlavaConfig` and
    would mis-parse (reference §8.2 item 12), so it is never given to `AutoConfig`.
    """
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"No config.json in {model_dir}: `--model-path` must be an SQ-LLaVA checkpoint folder."
        )
    config = read_json(model_dir / "config.json")
    projector_type = config.get("mm_projector_type", "linear")
    if projector_type != "cluster":
        raise ValueError(
            f"{model_dir}/config.json has `mm_projector_type={projector_type!r}`; SQ-LLaVA checkpoints have "
            "\"cluster\" (the prototype extractor). This converter handles SQ-LLaVA checkpoints only."
        )
    if config.get("mm_use_im_start_end") or config.get("mm_use_im_patch_token"):
        raise ValueError(
            f"{model_dir}/config.json sets `mm_use_im_start_end` or `mm_use_im_patch_token`: extra image tokens that "
            "the released SQ-LLaVA checkpoints do not use (reference §3.5) and this converter does not support."
        )
    if config.get("mm_vision_select_feature", "patch") not in ("patch", "cls_patch"):
        raise ValueError(f"Unknown `mm_vision_select_feature` {config['mm_vision_select_feature']!r} in config.json.")
    return config


def text_config_from(original: dict) -> LlamaConfig:
    """A `LlamaConfig` from a Llama-like `config.json` (Vicuna, ShareGPT4V's "share4v", or the flat "llava" one)."""
    llama_fields = set(LlamaConfig().to_dict()) | {"rope_theta", "rope_scaling"}
    not_copied = {"architectures", "model_type", "_name_or_path", "dtype", "torch_dtype", "transformers_version"}
    return LlamaConfig.from_dict({k: v for k, v in original.items() if k in llama_fields and k not in not_copied})


# --------------------------------------------------------------------------------------------------------------------
# LoRA
# --------------------------------------------------------------------------------------------------------------------


def get_pattern_key(pattern_keys, module_name: str) -> str | None:
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
        # In fp32 whatever the stored dtype: the release stores bf16 A and B (reference §6.4, merge numerics).
        return self.scaling[module] * (self.lora_B[module].float() @ self.lora_A[module].float())


def read_adapter(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """`adapter_config.json` and the tensors of `adapter_model.safetensors|bin` in `folder`."""
    if not (folder / "adapter_config.json").is_file():
        raise FileNotFoundError(f"No adapter_config.json in {folder}: it is needed for each LoRA's r and lora_alpha.")
    config = read_json(folder / "adapter_config.json")
    for weights_name in ADAPTER_WEIGHTS:
        if (folder / weights_name).is_file():
            return config, load_torch_file(folder / weights_name)
    raise FileNotFoundError(f"No adapter weights in {folder}: expected one of {ADAPTER_WEIGHTS}.")


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
        lora_A[module], lora_B[module] = pair["A"], pair["B"]
        scaling[module] = lora_scaling(config, peft_names[module], rank=pair["A"].shape[0], source=source)
    return LoraAdapter(source, config, key_mapping, peft_names, lora_A, lora_B, scaling)


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


# --------------------------------------------------------------------------------------------------------------------
# Converting one source: rename, drop, merge, cast
# --------------------------------------------------------------------------------------------------------------------


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
    """Rename every tensor of one source, drop the listed ones, merge `lora` (in fp32, unless `merge_lora=False`) and
    cast to `dtype`.

    Raises if a tensor is neither renamed nor dropped, if a LoRA module has no weight in this source, or if a module
    that the LoRA's `target_modules` names has no LoRA weights.
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
            lora_shape = (lora.lora_B[module].shape[0], lora.lora_A[module].shape[1])
            if lora_shape != tuple(tensor.shape):
                raise ValueError(
                    f"{lora.source}: the LoRA of `{lora.peft_names[module]}` is {lora_shape} but the weight "
                    f"`{name}` of {source} is {tuple(tensor.shape)}. The adapter was trained on another model."
                )
            if merge_lora:
                tensor = tensor.float() + lora.delta(module)
            merged.add(module)
        elif lora is not None and new_name.endswith(".weight") and tensor.dim() == 2:
            # (`layers_to_transform` restricts the targets to some layers: then a module without LoRA is expected.)
            peft_name = None if lora.config.get("layers_to_transform") else rename_key(
                module, invert_mapping(lora.key_mapping)
            )
            if peft_name is not None and targets_module(lora.config.get("target_modules") or [], peft_name):
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




# --------------------------------------------------------------------------------------------------------------------
# The two original layouts
# --------------------------------------------------------------------------------------------------------------------


def is_lora_release(model_dir: Path) -> bool:
    return any((model_dir / name).is_file() for name in ADAPTER_WEIGHTS)


def split_release_adapter(model_dir: Path) -> tuple[LoraAdapter, dict[str, torch.Tensor]]:
    """The top-level adapter of the LoRA release: the LLM LoRA, and the copy of the ViT LoRA it also holds.

    Training saved every `lora_` parameter of the model there, the ViT's included (reference §6.1); the LLM adapter's
    config (r=128, alpha=256) does not describe the ViT ones, so they are returned apart, untouched.
    """
    config, tensors = read_adapter(model_dir)
    vit_prefix = "base_model.model.model.vision_tower."
    vit_tensors = {name: tensor for name, tensor in tensors.items() if name.startswith(vit_prefix)}
    llm_tensors = {name: tensor for name, tensor in tensors.items() if not name.startswith(vit_prefix)}
    llm_lora = build_lora_adapter(f"the LLM LoRA in {model_dir}", config, llm_tensors, LLM_LORA_KEY_MAPPING)
    return llm_lora, vit_tensors


def projector_tensors(model_dir: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """`non_lora_trainables.bin` without its PEFT prefix (`base_model.model.model.mm_projector.*` becomes
    `model.mm_projector.*`).

    The reference strips `base_model.`, then one `model.` if the keys start with `model.model.` (§6.4); this accepts
    the same two spellings.
    """
    for file_name in ("non_lora_trainables.bin", "non_lora_trainables.safetensors"):
        if (model_dir / file_name).is_file():
            for name, tensor in load_torch_file(model_dir / file_name).items():
                yield name.removeprefix("base_model.model."), tensor
            return
    raise FileNotFoundError(
        f"No non_lora_trainables.bin in {model_dir}: the LoRA release keeps the projector (`model.mm_projector.*`) "
        "there. Download the whole repository."
    )


def select_vision_lora(
    model_dir: Path, vision_lora: str | Path | None, top_level_copy: dict[str, torch.Tensor], record: ConversionRecord
) -> LoraAdapter | None:
    """The ViT LoRA to merge, or None when there is none or its B matrices are all zero.

    Its own folder (`--vision-lora`, else `Vit-lora/`) is used, with its own config (r=32, alpha=64 for 7B). Without
    one, the copy inside the top-level adapter cannot be scaled: the top-level config describes the LLM LoRA (r=128,
    alpha=256), not these tensors. That is fine when B = 0 (the release, §5.4: the ViT LoRA never got a gradient)
    and an error otherwise.
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
        logger.warning(
            f"The ViT LoRA in {model_dir}/adapter_model has all-zero B matrices (expected for the release: its vision "
            "tower ran under no_grad, reference §5.4), so it changes nothing: not merged."
        )
        for name in top_level_copy:
            record.drop(name, "ViT LoRA with all-zero B (no effect, reference §5.4)")
        return None

    config, tensors = read_adapter(folder)
    adapter = build_lora_adapter(f"the ViT LoRA in {folder}", config, tensors, VIT_LORA_KEY_MAPPING)
    for name in top_level_copy:
        record.drop(name, f"copy of the ViT LoRA in the top-level adapter ({folder} is used, with its own config)")
    if top_level_copy and not top_level_matches(top_level_copy, adapter):
        logger.warning(
            f"The ViT LoRA copy inside {model_dir}/adapter_model differs from {folder}; {folder} is used. In the "
            "release both are the same tensors (reference §6.1): check that the folders belong together."
        )
    if adapter.is_zero:
        logger.warning(
            f"The ViT LoRA in {folder} has all-zero B matrices (expected for the release: its vision tower ran under "
            "no_grad, reference §5.4), so it changes nothing: not merged."
        )
        for module in adapter.lora_A:
            for matrix in ("A", "B"):
                record.drop(f"base_model.model.{adapter.peft_names[module]}.lora_{matrix}.weight",
                            "ViT LoRA with all-zero B (no effect, reference §5.4)")
        return None
    return adapter


def top_level_matches(top_level_copy: dict[str, torch.Tensor], adapter: LoraAdapter) -> bool:
    for name, tensor in top_level_copy.items():
        match = LORA_KEY_PATTERN.match(name)
        module = rename_key(match["module"], TOP_LEVEL_VIT_LORA_KEY_MAPPING) if match else None
        matrices = adapter.lora_A if match and match["matrix"] == "A" else adapter.lora_B
        if module not in matrices or not torch.equal(matrices[module], tensor):
            return False
    return True


# --------------------------------------------------------------------------------------------------------------------
# The output folder
# --------------------------------------------------------------------------------------------------------------------


def build_config(
    original_config: dict,
    text_config: LlamaConfig,
    vision_config: CLIPVisionConfig,
    image_token_index: int,
    num_prototypes: int,
    prototype_iterations: int,
) -> SQLlavaConfig:
    if original_config.get("mm_hidden_size", vision_config.hidden_size) != vision_config.hidden_size:
        raise ValueError(
            f"The checkpoint's projector expects {original_config['mm_hidden_size']}-wide vision features but the "
            f"vision tower is {vision_config.hidden_size} wide: pass the right `--vision-tower`."
        )
    keep_cls = original_config.get("mm_vision_select_feature", "patch") == "cls_patch"
    num_patches = (vision_config.image_size // vision_config.patch_size) ** 2
    return SQLlavaConfig(
        vision_config=vision_config.to_dict(),
        text_config=text_config.to_dict(),
        image_token_index=image_token_index,
        image_seq_length=num_patches + int(keep_cls),
        vision_feature_layer=original_config.get("mm_vision_select_layer", -2),
        vision_feature_select_strategy="full" if keep_cls else "default",
        projector_hidden_act="quick_gelu",
        num_prototypes=num_prototypes,
        prototype_iterations=prototype_iterations,
    )


def build_processor(tokenizer_dir: Path, vision_dir: Path, vision_config: CLIPVisionConfig, original_config: dict,
                    image_seq_length: int) -> SQLlavaProcessor:
    """The base's tokenizer (legacy sentencepiece behaviour kept) with `<image>` and `<pad>` added, the faithful chat
    template with the plain-text `VUSER` marker the release learned, and CLIP preprocessing with pad-to-square."""
    if not any((tokenizer_dir / name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(
            f"No tokenizer (tokenizer.model or tokenizer.json) in {tokenizer_dir}. Vicuna-v1.5's tokenizer is "
            "Llama 2's: copy the tokenizer files of lmsys/vicuna-7b-v1.5 into that folder."
        )
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, legacy=True)
    # The reference pads to a square when `image_aspect_ratio == "pad"` (every released checkpoint, §6.3) and does so
    # at training time; its demo does not, which we do not copy (pad-to-square everywhere).
    image_processor_kwargs = {"do_pad": original_config.get("image_aspect_ratio", "pad") == "pad"}
    clip_preprocessor = vision_dir / "preprocessor_config.json"
    if clip_preprocessor.is_file():
        # The reference preprocesses with the tower's own `CLIPImageProcessor` (§1.2).
        clip = read_json(clip_preprocessor)
        fields = ("image_mean", "image_std", "size", "crop_size", "resample", "do_center_crop", "rescale_factor")
        image_processor_kwargs.update({key: clip[key] for key in fields if key in clip})
    else:
        side = vision_config.image_size
        image_processor_kwargs.update(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    image_processor = SQLlavaImageProcessor(**image_processor_kwargs)
    return SQLlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_length=image_seq_length,
        vuser_token=ORIGINAL_VUSER_MARKER,
    )


def check_state_dict(model: SQLlavaForConditionalGeneration, state_dict: dict[str, torch.Tensor]):
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


def lora_target_regex(modules: set[str], all_modules: set[str]) -> str:
    """A regex over full module names selecting exactly `modules`, for PEFT's `target_modules`.

    PEFT full-matches a string against every module name, so an LLM LoRA cannot land on CLIP's `q_proj` (design.md
    §6). The short form generalises the layer index; if that would select anything else, the names are listed.
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


def save_peft_adapter(
    folder: Path, adapters: list[LoraAdapter], all_modules: set[str], base_model_name_or_path: str
) -> Path:
    """Write `adapters` as one PEFT LoRA adapter over our module names (`--no-merge`).

    `r` and `lora_alpha` are the most common (rank, scaling) of the first adapter (the LLM's); any module with
    another one (the ViT LoRA's r=32) gets a `rank_pattern` / `alpha_pattern` entry, so PEFT applies exactly the
    scalings the merge would. The tensors keep their stored dtype (bf16 in the release: lossless).
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

    def alpha(rank: int, scaling: float) -> float | int:
        value = rank * scaling
        return int(value) if float(value).is_integer() else value

    rank_pattern, alpha_pattern = {}, {}
    for value in sorted(set(rank_and_scaling.values()) - {(default_rank, default_scaling)}):
        modules = {module for module, other in rank_and_scaling.items() if other == value}
        pattern = lora_target_regex(modules, all_modules)
        rank_pattern[pattern], alpha_pattern[pattern] = value[0], alpha(*value)

    llm_config = adapters[0].config
    config = LoraConfig(
        r=default_rank,
        lora_alpha=alpha(default_rank, default_scaling),
        target_modules=lora_target_regex(set(rank_and_scaling), all_modules),
        rank_pattern=rank_pattern,
        alpha_pattern=alpha_pattern,
        lora_dropout=llm_config.get("lora_dropout", 0.0),
        bias="none",
        base_model_name_or_path=base_model_name_or_path,
        inference_mode=True,
    )
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    save_file(state_dict, folder / "adapter_model.safetensors", metadata={"format": "pt"})
    return folder


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


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"`dtype` must be one of {list(SUPPORTED_DTYPES)}, got {dtype!r}.")
    return SUPPORTED_DTYPES[dtype]


# --------------------------------------------------------------------------------------------------------------------
# The conversion
# --------------------------------------------------------------------------------------------------------------------


def convert_sqllava_checkpoint(
    model_path: str | Path,
    output_dir: str | Path,
    model_base: str | Path | None = None,
    vision_tower: str | Path | None = None,
    vision_lora: str | Path | None = None,
    dtype: str | torch.dtype = "float16",
    merge: bool = True,
    push_to_hub: str | None = None,
    *,
    private: bool | None = None,
    num_prototypes: int = 256,
    prototype_iterations: int = 2,
) -> Path:
    r"""
    Convert an original SQ-LLaVA checkpoint to a transformers-sqllava folder (model, processor, remote code, card).

    Args:
        model_path (`str` or `Path`):
            The original checkpoint: the LoRA release (`config.json`, `adapter_config.json`, `adapter_model.*`,
            `non_lora_trainables.bin`, optional `Vit-lora/`), or a merged one from `merge_lora_weights.py`. A local
            folder or a Hub repo id (e.g. `"ZachSun/sqllava-lora-7b"`).
        output_dir (`str` or `Path`):
            Where to write the converted folder.
        model_base (`str` or `Path`, *optional*):
            The base LLM the LoRA was trained on; required for the LoRA release (reference §6.6: the ShareGPT4V
            Vicuna of the same size). For a merged checkpoint, only used for the tokenizer if the checkpoint has none.
        vision_tower (`str` or `Path`, *optional*):
            The CLIP checkpoint; defaults to the original config's `mm_vision_tower`.
        vision_lora (`str` or `Path`, *optional*):
            The ViT LoRA folder; defaults to `Vit-lora/` inside `model_path` when present. Skipped, with a warning,
            when its B matrices are all zero (the release, §5.4).
        dtype (`str` or `torch.dtype`, *optional*, defaults to `"float16"`):
            The output dtype, `"float16"` (the reference's inference dtype), `"bfloat16"` or `"float32"`. LoRA merges
            are computed in fp32 and then cast.
        merge (`bool`, *optional*, defaults to `True`):
            Merge the LoRAs (W + alpha / r * B @ A). `False` writes the unmerged base model plus a PEFT adapter in
            `output_dir/adapter` (our module names, `target_modules` a regex over full names).
        push_to_hub (`str`, *optional*):
            A Hub repo id: upload the whole output folder (weights, processor, remote code, card) in one commit.
        private (`bool`, *optional*):
            Visibility of a repo created by `push_to_hub`.
        num_prototypes (`int`, *optional*, defaults to 256), prototype_iterations (`int`, *optional*, defaults to 2):
            The reference hard-codes 256 and 2 (§1.3; `num_latents` in its config is never read). Change them only for
            test-sized checkpoints.

    Returns:
        `Path`: the output folder.
    """
    torch_dtype = parse_dtype(dtype)
    output_dir = Path(output_dir)
    record = ConversionRecord()
    model_dir = resolve_checkpoint(model_path, "--model-path")
    original_config = read_original_config(model_dir)
    base_dir = resolve_checkpoint(model_base, "--model-base") if model_base is not None else None

    # 1. The language model and the projector.
    lora_release = is_lora_release(model_dir)
    if lora_release:
        if base_dir is None:
            raise ValueError(
                f"{model_dir} is a LoRA checkpoint: pass the base LLM it was trained on with `--model-base` (for the "
                "release: Lin-Chen/ShareGPT4V-7B_Pretrained_vit-large336-l12_vicuna-7b-v1.5, or its 13B "
                "counterpart Lin-Chen/ShareGPT4V-13B_Pretrained_vit-large336-l12_vicuna-13b-v1.5)."
            )
        logger.info(f"LoRA release in {model_dir}, base LLM {base_dir}.")
        llm_lora, top_level_vit_lora = split_release_adapter(model_dir)
        weights = convert_tensors(
            iterate_checkpoint(base_dir), LANGUAGE_MODEL_KEY_MAPPING, DROPPED_BASE_KEYS, f"the base LLM {base_dir}",
            torch_dtype, record, lora=llm_lora, merge_lora=merge,
        )
        weights |= convert_tensors(
            projector_tensors(model_dir), PROJECTOR_KEY_MAPPING, DROPPED_PROJECTOR_KEYS,
            f"{model_dir}/non_lora_trainables", torch_dtype, record,
        )
        text_config = text_config_from(read_json(base_dir / "config.json"))
        tokenizer_dir = base_dir
    else:
        logger.info(f"Merged checkpoint in {model_dir}.")
        llm_lora, top_level_vit_lora = None, {}
        weights = convert_tensors(
            iterate_checkpoint(model_dir), LANGUAGE_MODEL_KEY_MAPPING | PROJECTOR_KEY_MAPPING, DROPPED_MERGED_KEYS,
            f"the merged checkpoint {model_dir}", torch_dtype, record,
        )
        text_config = text_config_from(original_config)
        has_tokenizer = any((model_dir / name).is_file() for name in TOKENIZER_FILES)
        tokenizer_dir = model_dir if has_tokenizer or base_dir is None else base_dir

    # 2. The vision tower and its LoRA.
    vision_source = vision_tower or original_config.get("mm_vision_tower") or original_config.get("vision_tower")
    if vision_source is None:
        raise ValueError(f"{model_dir}/config.json names no `mm_vision_tower`: pass `--vision-tower`.")
    # The authors' config may name a path on their machine (as their adapter_config.json does, reference §6.6).
    vision_hint = "" if vision_tower else (
        "It comes from `mm_vision_tower` in the original config.json; pass `--vision-tower` (for the release, "
        "presumably Lin-Chen/ShareGPT4V-7B_Pretrained_vit-large336-l12 or its 13B counterpart, reference §1.2)."
    )
    vision_dir = resolve_checkpoint(vision_source, "vision tower", vision_hint)
    vision_config = CLIPVisionConfig.from_pretrained(vision_dir)
    vision_lora_adapter = select_vision_lora(model_dir, vision_lora, top_level_vit_lora, record)
    weights |= convert_tensors(
        iterate_checkpoint(vision_dir), VISION_TOWER_KEY_MAPPING, DROPPED_CLIP_KEYS, f"the vision tower {vision_dir}",
        torch_dtype, record, lora=vision_lora_adapter, merge_lora=merge,
    )
    record.log_summary()

    # 3. Processor and config: `<image>` and `<pad>` are appended to the base vocabulary (32000 and 32001 for Vicuna).
    text_config.vocab_size = weights["model.language_model.embed_tokens.weight"].shape[0]
    image_seq_length = (vision_config.image_size // vision_config.patch_size) ** 2 + int(
        original_config.get("mm_vision_select_feature", "patch") == "cls_patch"
    )
    processor = build_processor(tokenizer_dir, vision_dir, vision_config, original_config, image_seq_length)
    config = build_config(
        original_config, text_config, vision_config, processor.image_token_id, num_prototypes, prototype_iterations
    )

    # 4. The model: built on the meta device and given the converted tensors as they are (no second copy in memory).
    with torch.device("meta"):
        model = SQLlavaForConditionalGeneration(config)
    check_state_dict(model, weights)
    model.load_state_dict(weights, strict=True, assign=True)
    resize_embeddings_for_processor(model, processor)  # new rows = mean of the old ones
    model.config.text_config.pad_token_id = processor.tokenizer.pad_token_id
    model.config.dtype = torch_dtype
    model.generation_config = GenerationConfig(
        bos_token_id=processor.tokenizer.bos_token_id,
        eos_token_id=processor.tokenizer.eos_token_id,
        pad_token_id=processor.tokenizer.pad_token_id,
        do_sample=False,  # the reference's answers are greedy (§3.6, §7.2)
        max_new_tokens=1024,
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir, max_shard_size="5GB")
    processor.save_pretrained(output_dir)

    adapters = [adapter for adapter in (llm_lora, vision_lora_adapter) if adapter is not None]
    if not merge and adapters:
        all_modules = {name.removesuffix(".weight") for name in weights if name.endswith(".weight")}
        save_peft_adapter(output_dir / "adapter", adapters, all_modules, push_to_hub or str(output_dir))

    if vision_lora_adapter is not None:
        vision_lora_status = "merged" if merge else "adapter"
    else:
        vision_lora_status = "all-zero" if lora_release else "absent"
    size = model_size_name(text_config)
    card = render_model_card(
        f"sqllava-{size}" if size else "sqllava",
        repo_id=push_to_hub,
        source_checkpoint=display_name(model_path),
        base_llm=display_name(model_base),
        vision_tower=display_name(vision_source),
        vision_lora=vision_lora_status,
        dtype=str(torch_dtype).removeprefix("torch."),
        merged=merge or not adapters,
        lora_release=lora_release,
        image_token_id=processor.image_token_id,
        pad_token_id=processor.tokenizer.pad_token_id,
    )
    card.save(output_dir / "README.md")
    logger.info(f"Wrote {output_dir}.")

    if push_to_hub:
        push_folder_to_hub(output_dir, push_to_hub, private=private)
    return output_dir


# --------------------------------------------------------------------------------------------------------------------
# `sqllava convert`
# --------------------------------------------------------------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert",
        help="convert a released SQ-LLaVA checkpoint to a transformers folder (and push it to the Hub)",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--model-path", required=True, help="original checkpoint: folder or Hub id (LoRA or merged)")
    parser.add_argument("--model-base", help="base LLM of a LoRA checkpoint (folder or Hub id)")
    parser.add_argument("--vision-tower", help="CLIP checkpoint; defaults to the original config's mm_vision_tower")
    parser.add_argument("--vision-lora", help="ViT LoRA folder; defaults to MODEL_PATH/Vit-lora when present")
    parser.add_argument("--output-dir", required=True, help="where to write the converted folder")
    parser.add_argument("--dtype", default="float16", choices=list(SUPPORTED_DTYPES), help="output dtype")
    parser.add_argument("--no-merge", action="store_true", help="write the base model + a PEFT adapter instead")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the output folder to this Hub repo")
    parser.add_argument("--private", action="store_true", default=None, help="create the Hub repo as private")
    # The reference hard-codes 256 prototypes and 2 iterations (§1.3); these exist for test-sized checkpoints only.
    parser.add_argument("--num-prototypes", type=int, default=256, help=argparse.SUPPRESS)
    parser.add_argument("--prototype-iterations", type=int, default=2, help=argparse.SUPPRESS)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    output_dir = convert_sqllava_checkpoint(
        args.model_path,
        args.output_dir,
        model_base=args.model_base,
        vision_tower=args.vision_tower,
        vision_lora=args.vision_lora,
        dtype=args.dtype,
        merge=not args.no_merge,
        push_to_hub=args.push_to_hub,
        private=args.private,
        num_prototypes=args.num_prototypes,
        prototype_iterations=args.prototype_iterations,
    )
    print(f"Converted checkpoint written to {output_dir}")
    return 0
