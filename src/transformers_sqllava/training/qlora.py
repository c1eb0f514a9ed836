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
"""QLoRA for SQ-LLaVA: a 4-bit language model under the stage-2 LoRA, the image path in full precision."""

import torch
from transformers import BitsAndBytesConfig

from ..modeling_sqllava import SQLlavaForConditionalGeneration



# Only the language model's linears are quantized: the vision tower and the extractor + projector train (ViT LoRA,
# modules_to_save) and the routing is kept in full precision, as the original's 4-bit path; `lm_head` stays precise.
# Paths from the model's root (docs/training.md#with-trl-ddp-and-bitsandbytes).
QLORA_SKIP_MODULES = list(SQLlavaForConditionalGeneration._default_llm_int8_skip_modules)


def qlora_quantization_config(compute_dtype: torch.dtype = torch.bfloat16) -> BitsAndBytesConfig:
    """NF4 with double quantization (QLoRA's settings), the vision tower, extractor + projector and `lm_head` skipped."""
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
        llm_int8_skip_modules=list(QLORA_SKIP_MODULES),
    )


def load_qlora_base(
    pretrained_model_name_or_path: str,
    *,
    compute_dtype: torch.dtype = torch.bfloat16,
    **from_pretrained_kwargs,
) -> SQLlavaForConditionalGeneration:
    """
    Loads an SQ-LLaVA checkpoint with a 4-bit language model for QLoRA; follow with [`prepare_stage2`].

    Through TRL, train with `bf16=True`: `SFTTrainer` casts the trainable parameters of a quantized model to bf16.
    """
    from_pretrained_kwargs.setdefault("quantization_config", qlora_quantization_config(compute_dtype))
    # `SQLlavaForConditionalGeneration.from_pretrained` keeps the extractor, projector, tower and LM head in full
    # precision and switches bitsandbytes' CPU weight repacking off after a 4-bit load.
    return SQLlavaForConditionalGeneration.from_pretrained(pretrained_model_name_or_path, **from_pretrained_kwargs)


__all__ = ["QLORA_SKIP_MODULES", "load_qlora_base", "qlora_quantization_config"]
