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
"""SQ-LLaVA model configuration.

This file is one of the three "Hub files" (configuration, modeling, processing): it imports only torch,
transformers and its siblings, so `save_pretrained` can ship it as remote code unchanged.
"""

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.models.llava.configuration_llava import LlavaConfig


@strict
class SQLlavaConfig(LlavaConfig):
    r"""
    Configuration of an SQ-LLaVA model ([`SQLlavaForConditionalGeneration`]): LLaVA-1.5 whose projector is a
    prototype extractor (learned clusters that enrich each image token) followed by a two-layer MLP.

    The defaults describe SQ-LLaVA-7B: CLIP ViT-L/14-336 (hidden state -2, CLS dropped, 576 image tokens),
    Vicuna-7B sizes, 256 prototypes refined for 2 iterations, and the reference's QuickGELU projector.

    Args:
        vision_config (`dict` or `PreTrainedConfig`, *optional*, defaults to CLIP ViT-L/14-336):
            The vision tower's config.
        text_config (`dict` or `PreTrainedConfig`, *optional*, defaults to `LlamaConfig()`, i.e. Vicuna-7B sizes):
            The language model's config.
        image_token_index (`int`, *optional*, defaults to 32000):
            The id of the `<image>` placeholder token that the processor repeats `image_seq_length` times.
        image_seq_length (`int`, *optional*, defaults to 576):
            Number of image tokens per image (the prototype extractor keeps the vision tower's token count).
        projector_hidden_act (`str`, *optional*, defaults to `"quick_gelu"`):
            Activation between the two projector linears. The reference's `Clustering` MLP uses QuickGELU,
            x * sigmoid(1.702 x); LLaVA-1.5's own projector uses `"gelu"`.
        vision_feature_select_strategy (`str`, *optional*, defaults to `"default"`):
            `"default"` drops the CLS token, `"full"` keeps it.
        vision_feature_layer (`int`, *optional*, defaults to -2):
            The vision tower hidden state fed to the projector (-2: output of the second-to-last layer, no post-norm).
        multimodal_projector_bias (`bool`, *optional*, defaults to `True`):
            Whether the projector linears have a bias.
        num_prototypes (`int`, *optional*, defaults to 256):
            Number of prototypes (cluster centres). Their initial values are the image tokens average-pooled into
            `num_prototypes` windows (docs/original.md#prototype-extractor), so it must not exceed the number of image
            tokens.
        prototype_iterations (`int`, *optional*, defaults to 2):
            Number of soft-assignment / centre-update rounds before the final hard assignment.
        use_prototype_extractor (`bool`, *optional*, defaults to `True`):
            `False` gives LLaVA-1.5's plain two-layer MLP projector, the baseline of the paper's ablation.
        prototype_extractor_fp32 (`bool`, *optional*, defaults to `True`):
            Compute the extractor's routing (normalisation, soft assignment, cosine gate, arg-max, aggregate) in
            fp32 whatever the model dtype. In fp16 the reference's gate saturates and ties between prototypes, and
            its unnormalised aggregate can overflow; fp32 avoids both. `False` computes in the model dtype like the
            reference's fp16 inference, for bit-level comparisons with it.
        tie_word_embeddings (`bool`, *optional*, defaults to `False`):
            Whether the input and output embeddings are tied.

    Example:

    ```python
    >>> from transformers import CLIPVisionConfig, LlamaConfig
    >>> from transformers_sqllava import SQLlavaConfig, SQLlavaForConditionalGeneration

    >>> config = SQLlavaConfig()  # SQ-LLaVA-7B sizes
    >>> config.num_prototypes, config.image_seq_length
    (256, 576)
    ```"""

    model_type = "sqllava"

    sub_configs_defaults = {
        "vision_config": LlavaConfig.sub_configs_defaults["vision_config"],  # CLIP ViT-L/14-336
        # Vicuna-7B-v1.5 sizes; the vocabulary holds Llama's 32000 pieces + `<image>` (32000) + `<pad>` (32001).
        "text_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="llama",
            init_kwargs={
                "vocab_size": 32002,
                "max_position_embeddings": 4096,
                "rms_norm_eps": 1e-5,
                "pad_token_id": 32001,
            },
        ),
    }

    projector_hidden_act: str = "quick_gelu"
    num_prototypes: int = 256
    prototype_iterations: int = 2
    use_prototype_extractor: bool = True
    prototype_extractor_fp32: bool = True

    def validate_architecture(self):
        """Part of `@strict` validation: every SQ-LLaVA field gets a message that names it and the fix."""
        super().validate_architecture()
        if self.num_prototypes < 1:
            raise ValueError(f"`num_prototypes` must be a positive integer, got {self.num_prototypes}.")
        if self.prototype_iterations < 0:
            raise ValueError(
                f"`prototype_iterations` must be >= 0 (0 keeps the pooled initial prototypes), got "
                f"{self.prototype_iterations}."
            )
        if self.image_seq_length < 1:
            raise ValueError(f"`image_seq_length` must be a positive integer, got {self.image_seq_length}.")
        if self.use_prototype_extractor and self.num_prototypes > self.image_seq_length:
            raise ValueError(
                f"`num_prototypes` ({self.num_prototypes}) must not exceed `image_seq_length` "
                f"({self.image_seq_length}): the initial prototypes are the image tokens average-pooled into "
                "`num_prototypes` windows. Lower `num_prototypes` or set `use_prototype_extractor=False`."
            )
        vision_config = self.vision_config
        if getattr(vision_config, "model_type", None) == "clip_vision_model":
            # The image tokens in the prompt must match the projector's output: (image_size / patch_size)^2 patches,
            # + the CLS token unless the "default" strategy drops it.
            num_patches = (vision_config.image_size // vision_config.patch_size) ** 2
            expected = num_patches + (0 if self.vision_feature_select_strategy == "default" else 1)
            if self.image_seq_length != expected:
                raise ValueError(
                    f"`image_seq_length` is {self.image_seq_length} but the vision tower gives {expected} tokens "
                    f"(image_size {vision_config.image_size}, patch_size {vision_config.patch_size}, "
                    f"vision_feature_select_strategy {self.vision_feature_select_strategy!r}). Set "
                    f"`image_seq_length={expected}`."
                )
        if not isinstance(self.vision_feature_layer, int):
            raise ValueError(
                f"`vision_feature_layer` must be a single int for SQ-LLaVA (the prototype extractor reads one hidden "
                f"state), got {self.vision_feature_layer!r}."
            )


__all__ = ["SQLlavaConfig"]
