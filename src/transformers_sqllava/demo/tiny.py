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
"""Tiny SQ-LLaVA configs: a CLIP vision tower and a Llama language model at toy sizes, built offline.

[`tiny_sqllava_config`] is the one builder of the project's tiny models: the demo model
(`demo/train.py::build_demo_model_config`), the training examples' `--model_name_or_path tiny`
(`examples/tiny_setup.py`) and the tests' fixtures (`tests/conftest.py::tiny_config`) pass it their sizes.
"""

from __future__ import annotations

from typing import Any

from ..configuration_sqllava import SQLlavaConfig


def tiny_sqllava_config(
    *,
    image_size: int,
    patch_size: int,
    vision_hidden_size: int,
    vision_intermediate_size: int,
    vision_layers: int,
    text_hidden_size: int,
    text_intermediate_size: int,
    text_layers: int,
    vocab_size: int,
    image_token_index: int,
    pad_token_id: int,
    bos_token_id: int,
    eos_token_id: int,
    num_prototypes: int,
    vision_attention_heads: int = 4,
    text_attention_heads: int = 4,
    text_key_value_heads: int | None = None,
    max_position_embeddings: int = 512,
    tie_word_embeddings: bool = False,
    image_seq_length: int | None = None,
    vision_config: dict[str, Any] | None = None,
    text_config: dict[str, Any] | None = None,
    **kwargs,
) -> SQLlavaConfig:
    r"""
    An [`SQLlavaConfig`] with a `clip_vision_model` vision tower and a `llama` language model of the given sizes.

    Args:
        image_size (`int`), patch_size (`int`): the vision tower's input side and ViT patch side, in pixels.
        vision_hidden_size (`int`), vision_intermediate_size (`int`), vision_layers (`int`): CLIP width, MLP width
            and depth.
        text_hidden_size (`int`), text_intermediate_size (`int`), text_layers (`int`): Llama width, MLP width and
            depth.
        vocab_size (`int`), image_token_index (`int`), pad_token_id (`int`), bos_token_id (`int`),
            eos_token_id (`int`): the vocabulary; [`processor_vocabulary`] gives them for a processor.
        num_prototypes (`int`): prototypes of the extractor (at most `image_seq_length`).
        vision_attention_heads (`int`, *optional*, defaults to 4): CLIP attention heads.
        text_attention_heads (`int`, *optional*, defaults to 4): Llama attention heads.
        text_key_value_heads (`int`, *optional*): Llama key/value heads; defaults to `text_attention_heads` (no
            grouped-query attention).
        max_position_embeddings (`int`, *optional*, defaults to 512): Llama's longest sequence.
        tie_word_embeddings (`bool`, *optional*, defaults to `False`): share the Llama's input and output embeddings.
        image_seq_length (`int`, *optional*): image tokens per image; defaults to `(image_size // patch_size) ** 2`,
            what the vision tower gives.
        vision_config (`dict`, *optional*), text_config (`dict`, *optional*): entries that override the sub-configs
            built from the sizes above.
        kwargs: the other arguments of [`SQLlavaConfig`] (`prototype_iterations`, `vision_feature_layer`, ...).
    """
    vision = {
        "model_type": "clip_vision_model",
        "hidden_size": vision_hidden_size,
        "intermediate_size": vision_intermediate_size,
        "num_hidden_layers": vision_layers,
        "num_attention_heads": vision_attention_heads,
        "image_size": image_size,
        "patch_size": patch_size,
    }
    text = {
        "model_type": "llama",
        "hidden_size": text_hidden_size,
        "intermediate_size": text_intermediate_size,
        "num_hidden_layers": text_layers,
        "num_attention_heads": text_attention_heads,
        "num_key_value_heads": text_attention_heads if text_key_value_heads is None else text_key_value_heads,
        "tie_word_embeddings": tie_word_embeddings,
        "vocab_size": vocab_size,
        "max_position_embeddings": max_position_embeddings,
        "pad_token_id": pad_token_id,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
    }
    return SQLlavaConfig(
        vision_config={**vision, **(vision_config or {})},
        text_config={**text, **(text_config or {})},
        image_token_index=image_token_index,
        image_seq_length=(image_size // patch_size) ** 2 if image_seq_length is None else image_seq_length,
        num_prototypes=num_prototypes,
        **kwargs,
    )


def processor_vocabulary(processor) -> dict[str, int]:
    """The vocabulary arguments of [`tiny_sqllava_config`] for a model that fits `processor`'s tokenizer exactly
    (its added `<image>`, `<pad>` and vuser tokens included, so no embedding resize is needed)."""
    tokenizer = processor.tokenizer
    return {
        "vocab_size": len(tokenizer),
        "image_token_index": processor.image_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


__all__ = ["processor_vocabulary", "tiny_sqllava_config"]
