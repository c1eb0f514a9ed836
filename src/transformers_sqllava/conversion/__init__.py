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

The original code writes two layouts (docs/original.md#release-layout):

- **the LoRA release** (`ZachSun/sqllava-lora-7b`, `ZachSun/sqllava-lora-13b`): `config.json`, `adapter_config.json`,
  `adapter_model.bin|safetensors` (the LLM LoRA, plus a copy of the ViT LoRA), `non_lora_trainables.bin` (the
  `Clustering` projector) and `Vit-lora/` (the ViT LoRA and its own config), on top of a base LLM (`--model-base`);
- **a merged checkpoint** written by the original `scripts/merge_lora_weights.py`: the LLM with its LoRA merged,
  `model.mm_projector.*`, and an unmerged copy of CLIP that the reference ignores
  (docs/original.md#merge-scripts-and-conversion-facts); possibly sharded.

In both, the vision tower is the CLIP checkpoint named by the original config's `mm_vision_tower`.

The conversion is strict: every source tensor is either renamed into the new model or listed as dropped with its
reason, and a missing or unexpected tensor stops it with its name. `.bin` files are read with
`torch.load(weights_only=True)`; the output is safetensors only. Every read error names its file, and nothing is
written until every source has been read (docs/errors.md#conversion).

The modules, in the order a conversion uses them:

- `checkpoint_io`: local folders or Hub ids, weight files and shards, the original `config.json`;
- `keys`: every original name -> ours, the dropped tensors with their reasons, the strictness errors;
- `lora`: the release's LoRA adapters, their scalings, which ViT LoRA to use;
- `state_dict`: one source renamed, dropped, merged and cast; the result checked against the model;
- `sources`: the language model from either layout, the vision tower;
- `peft_adapter`, `model_card`: the `--no-merge` PEFT adapter and the card of the output folder;
- `output_folder`: the output folder is never a source and never holds other files; `overwrite` replaces a previous
  conversion, its stale `adapter/` included;
- `convert`: `convert_sqllava_checkpoint`, which runs them. Its command line is `sqllava convert`
  (`transformers_sqllava.commands.convert`).
"""

from .convert import SUPPORTED_DTYPES, convert_sqllava_checkpoint
from .keys import (
    LANGUAGE_MODEL_KEY_MAPPING,
    PROJECTOR_KEY_MAPPING,
    VISION_TOWER_KEY_MAPPING,
)


__all__ = [
    "LANGUAGE_MODEL_KEY_MAPPING",
    "PROJECTOR_KEY_MAPPING",
    "SUPPORTED_DTYPES",
    "VISION_TOWER_KEY_MAPPING",
    "convert_sqllava_checkpoint",
]
