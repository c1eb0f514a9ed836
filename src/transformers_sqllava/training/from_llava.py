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
"""Turning a LLaVA-1.5 checkpoint into SQ-LLaVA: the same towers, a fresh prototype extractor, a `[vusr]` token.

The result is where the two-stage recipe starts when no SQ-LLaVA release is used: stage 1 (alignment) trains the
new extractor + projector, stage 2 the self-questioning objective (see `training.recipe`).
"""

import logging

import torch
from transformers import LlavaForConditionalGeneration

from ..configuration_sqllava import SQLlavaConfig
from ..modeling_sqllava import SQLlavaForConditionalGeneration, SQLlavaMultiModalProjector
from ..processing_sqllava import NATIVE_VUSER_TOKEN
from ..tokens import add_vuser_token


logger = logging.getLogger(__name__)



def _get_tokenizer(processor_or_tokenizer):
    return getattr(processor_or_tokenizer, "tokenizer", processor_or_tokenizer)


def sqllava_config_from_llava(llava_config, **overrides) -> SQLlavaConfig:
    """An `SQLlavaConfig` with a LLaVA config's towers and settings; LLaVA's projector activation ("gelu") is kept."""
    kwargs = {
        "vision_config": llava_config.vision_config.to_dict(),
        "text_config": llava_config.text_config.to_dict(),
        "image_token_index": llava_config.image_token_id,
        "image_seq_length": llava_config.image_seq_length,
        "projector_hidden_act": llava_config.projector_hidden_act,
        "vision_feature_select_strategy": llava_config.vision_feature_select_strategy,
        "vision_feature_layer": llava_config.vision_feature_layer,
        "multimodal_projector_bias": llava_config.multimodal_projector_bias,
        "tie_word_embeddings": getattr(llava_config, "tie_word_embeddings", False),
    }
    kwargs.update(overrides)
    return SQLlavaConfig(**kwargs)


def sqllava_from_llava(
    llava_model: LlavaForConditionalGeneration | str,
    processor_or_tokenizer=None,
    *,
    vuser_token: str = NATIVE_VUSER_TOKEN,
    **config_overrides,
) -> SQLlavaForConditionalGeneration:
    r"""
    Turns a LLaVA-1.5 model in transformers' format into an SQ-LLaVA model with a fresh prototype extractor.

    The vision tower, language model and `lm_head` modules are reused (not copied: the LLaVA model should not be used
    afterwards), the MLP projector's `linear_1` / `linear_2` weights are copied, and the config keeps LLaVA's
    projector activation ("gelu"), vision feature layer and image token. The prototype extractor is new, initialised
    as the reference initialises it (gate alpha 1, beta 0): its residual changes the image features, so stage 1
    (alignment) is meant to follow. With a processor or tokenizer, `vuser_token` is added as a special token (in
    place) and given an embedding row, see [`add_vuser_token`].

    Args:
        llava_model (`LlavaForConditionalGeneration` or `str`):
            The model, or a local path / Hub id to load it from with `LlavaForConditionalGeneration.from_pretrained`.
        processor_or_tokenizer (`ProcessorMixin` or `PreTrainedTokenizerBase`, *optional*):
            The model's processor (its `.tokenizer` is used) or tokenizer.
        vuser_token (`str`, *optional*, defaults to `"[vusr]"`):
            The virtual-user marker for natively set-up models (docs/original.md#the-vuser-marker).
        **config_overrides:
            [`SQLlavaConfig`] fields, e.g. `num_prototypes`, `prototype_iterations`.

    Returns:
        [`SQLlavaForConditionalGeneration`] in the LLaVA model's dtype and device.
    """
    if isinstance(llava_model, str):
        llava_model = LlavaForConditionalGeneration.from_pretrained(llava_model)
    if not isinstance(llava_model, LlavaForConditionalGeneration):
        raise ValueError(
            f"`sqllava_from_llava` expects a `LlavaForConditionalGeneration`, got {type(llava_model).__name__}. Load "
            "LLaVA-1.5 in transformers' format (e.g. llava-hf/llava-1.5-7b-hf)."
        )
    if getattr(llava_model, "is_quantized", False):
        raise ValueError(
            "Convert the full-precision LLaVA model, then quantize the SQ-LLaVA result (`load_qlora_base`)."
        )
    config = sqllava_config_from_llava(llava_model.config, **config_overrides)
    if not config.use_prototype_extractor:
        logger.warning("use_prototype_extractor=False: the result is LLaVA-1.5 under another name.")

    old_projector = llava_model.model.multi_modal_projector
    reference_weight = old_projector.linear_1.weight
    # Build the shell on the meta device (no memory, no random init of 7B weights), then move the towers in.
    with torch.device("meta"):
        model = SQLlavaForConditionalGeneration(config)
    model.model.vision_tower = llava_model.model.vision_tower
    model.model.language_model = llava_model.model.language_model
    model.lm_head = llava_model.lm_head
    projector = SQLlavaMultiModalProjector(config)  # on the CPU, initialised: the extractor's own `post_init`
    projector.linear_1.load_state_dict(old_projector.linear_1.state_dict())
    projector.linear_2.load_state_dict(old_projector.linear_2.state_dict())
    model.model.multi_modal_projector = projector.to(device=reference_weight.device, dtype=reference_weight.dtype)
    if config.tie_word_embeddings:
        model.tie_weights()
    left_on_meta = [name for name, tensor in model.state_dict().items() if tensor.is_meta]
    if left_on_meta:
        raise RuntimeError(f"Parameters were left uninitialised while converting from LLaVA: {left_on_meta[:5]}.")
    model.generation_config = llava_model.generation_config
    model.train(llava_model.training)

    if processor_or_tokenizer is not None:
        add_vuser_token(model, _get_tokenizer(processor_or_tokenizer), vuser_token)
    return model


__all__ = ["sqllava_config_from_llava", "sqllava_from_llava"]
