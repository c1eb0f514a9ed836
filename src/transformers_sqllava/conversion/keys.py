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
"""Key names: how every original tensor is renamed, which ones are dropped and why, and the strictness errors.

A mapping goes from an original name prefix to ours; an entry without a trailing "." is an exact name. Every source
tensor must be renamed by one of these tables or dropped by one of the `DROPPED_*` rules.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field


logger = logging.getLogger(__name__)

# The reference's `LlavaLlamaForCausalLM` keeps Llama's names (docs/original.md#release-layout).
LANGUAGE_MODEL_KEY_MAPPING = {
    "model.embed_tokens.": "model.language_model.embed_tokens.",
    "model.layers.": "model.language_model.layers.",
    "model.norm.": "model.language_model.norm.",
    "lm_head.": "lm_head.",
}

# The reference `Clustering` (docs/original.md#prototype-extractor) -> `SQLlavaMultiModalProjector`: names that say
# what the parameters do.
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
# `Vit-lora/`: a PeftModel around the reference's `CLIPVisionTower`, whose CLIP is at `.vision_tower`
# (docs/original.md#release-layout).
VIT_LORA_KEY_MAPPING = {"vision_tower.vision_model.": "model.vision_tower."}
# The copy of the ViT LoRA inside the top-level adapter (training saved every `lora_` parameter of the model,
# docs/original.md#release-layout).
TOP_LEVEL_VIT_LORA_KEY_MAPPING = {"model.vision_tower.vision_tower.vision_model.": "model.vision_tower."}

ROTARY_BUFFERS = {r"\.rotary_emb\.inv_freq$": "rotary-embedding buffer (recomputed from the config)"}
DROPPED_PROJECTOR_KEYS = {
    r"^model\.mm_projector\.ln_1\.(weight|bias)$": "`Clustering.ln_1`: the reference forward never calls it (docs/original.md#prototype-extractor)",
}
# A LLaVA-style base LLM (e.g. ShareGPT4V's, `model_type "share4v"`) carries its own stage-1 projector and sometimes a
# vision tower; the reference replaces the former with non_lora_trainables.bin and ignores the latter
# (docs/original.md#loading-a-release).
DROPPED_BASE_KEYS = {
    **ROTARY_BUFFERS,
    r"^model\.mm_projector\.": "the base LLM's own projector (SQ-LLaVA's comes from non_lora_trainables.bin, docs/original.md#loading-a-release)",
    r"^model\.vision_tower\.": "a vision tower inside the base LLM (the tower comes from `mm_vision_tower`, docs/original.md#loading-a-release)",
}
DROPPED_MERGED_KEYS = {
    **ROTARY_BUFFERS,
    **DROPPED_PROJECTOR_KEYS,
    r"^model\.vision_tower\.vision_tower\.vision_model\.": (
        "the unmerged CLIP copy written by merge_lora_weights.py (the reference reloads `mm_vision_tower`, docs/original.md#merge-scripts-and-conversion-facts)"
    ),
}
DROPPED_CLIP_KEYS = {
    r"^text_model\.": "CLIP text tower (LLaVA uses only the vision tower)",
    r"^(text_projection|visual_projection)\.": "CLIP contrastive projections (unused by LLaVA)",
    r"^logit_scale$": "CLIP contrastive temperature (unused by LLaVA)",
    r"\.position_ids$": "position-id buffer (recomputed)",
}
# The release's ViT LoRA: its B matrices are all zero (its tower was trained under no_grad), so it changes nothing.
DROPPED_ZERO_VIT_LORA = "ViT LoRA with all-zero B (no effect, reference docs/original.md#the-vit-lora-never-trains)"


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
    """Our prefix -> the original one, to name the original tensor in an error about a converted one."""
    return {new: old for old, new in mapping.items()}


def drop_reason(name: str, dropped_keys: dict[str, str]) -> str | None:
    """Why the tensor `name` is dropped, or None if no rule of `dropped_keys` matches it."""
    for pattern, reason in dropped_keys.items():
        if re.search(pattern, name):
            return reason
    return None


def raise_for_unexpected(names: list[str], source: str, hint: str):
    """Stop the conversion, naming (at most 20 of) `names`, when any tensor of `source` has no place to go."""
    if names:
        listed = "\n  ".join(names[:20]) + (f"\n  ... ({len(names)} in all)" if len(names) > 20 else "")
        raise ValueError(f"Unexpected tensor(s) in {source}:\n  {listed}\n{hint}")


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
