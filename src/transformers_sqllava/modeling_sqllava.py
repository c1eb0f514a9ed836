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
"""PyTorch SQ-LLaVA model: LLaVA-1.5 with a prototype extractor in front of the projector.

This file is one of the three "Hub files" (configuration, modeling, processing): it imports only torch,
transformers and its siblings, so `save_pretrained` can ship it as remote code unchanged.

Everything but the projector is transformers' LLaVA: the vision tower, the placeholder scatter, the language model,
the loss and generation. The projector is the reference's `Clustering` module (docs/original.md#prototype-extractor).
"""

import copy
import functools
import importlib.abc
import importlib.util
import inspect
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BitsAndBytesConfig
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.models.auto import AutoModel
from transformers.models.llava.modeling_llava import (
    LlavaForConditionalGeneration,
    LlavaModel,
    LlavaPreTrainedModel,
)
from transformers.utils import torch_compilable_check

from .configuration_sqllava import SQLlavaConfig


class SQLlavaPreTrainedModel(LlavaPreTrainedModel):
    config: SQLlavaConfig
    _no_split_modules = ["SQLlavaPrototypeExtractor"]
    # Quantization: what bitsandbytes keeps in full precision when a `BitsAndBytesConfig` has no
    # `llm_int8_skip_modules` (filled in by `from_pretrained` below). Paths from the model's root: transformers 5
    # matches skip modules as prefixes or suffixes of full names, so under `SQLlavaForConditionalGeneration` a bare
    # "multi_modal_projector" would match nothing.
    _default_llm_int8_skip_modules: list[str] | None = None

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, SQLlavaPrototypeExtractor):
            # The reference's gate starts at sigmoid(0 + 1 * cos) (docs/original.md#prototype-extractor).
            init.ones_(module.gate_scale)
            init.zeros_(module.gate_bias)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        r"""
        [`~transformers.PreTrainedModel.from_pretrained`] with two bitsandbytes defaults for SQ-LLaVA.

        - A `quantization_config=BitsAndBytesConfig(...)` (or its dict) without `llm_int8_skip_modules` gets
          `_default_llm_int8_skip_modules`: the vision tower, the prototype extractor + projector and `lm_head` stay in
          full precision and only the language model's linears are quantized, as in the reference's 4/8-bit path
          (LLaVA `train.py`: `llm_int8_skip_modules=["mm_projector"]`, the CLIP tower is built after quantization).
          Transformers' own default keeps only `lm_head`, which would also quantize the prototype extractor and the
          projector. A list the user passes, even `[]`, is used as given (a quantized extractor works: its projections
          are called as modules). The list is written to `config.quantization_config`, so a saved 4-bit model reloads
          with the same layout.
        - After a 4-bit load, CPU weight repacking is switched off on every `Linear4bit`: see
          [`~SQLlavaPreTrainedModel.disable_bnb_cpu_weight_repacking`].
        """
        quantization_config = kwargs.get("quantization_config")
        default_skip_modules = cls._default_llm_int8_skip_modules
        if default_skip_modules is not None:
            if isinstance(quantization_config, BitsAndBytesConfig):
                if quantization_config.llm_int8_skip_modules is None:
                    quantization_config = copy.deepcopy(quantization_config)  # the caller's object stays untouched
                    quantization_config.llm_int8_skip_modules = list(default_skip_modules)
            elif isinstance(quantization_config, dict) and quantization_config.get("quant_method") == "bitsandbytes":
                if quantization_config.get("llm_int8_skip_modules") is None:
                    quantization_config = {**quantization_config, "llm_int8_skip_modules": list(default_skip_modules)}
            if quantization_config is not None:
                kwargs["quantization_config"] = quantization_config
        loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # `output_loading_info=True` returns a tuple
        if getattr(model, "is_loaded_in_4bit", False):
            model.disable_bnb_cpu_weight_repacking()
        return loaded

    def disable_bnb_cpu_weight_repacking(self) -> int:
        """
        Sets `support_avx512bf16_for_cpu = False` on every bitsandbytes `Linear4bit` and returns how many it found.

        On a CPU with AVX512-BF16, bitsandbytes 0.50 (its fused CPU kernel, bitsandbytes PR #1804) repacks a
        `Linear4bit` weight in place on the first forward in eval mode without gradients, into a layout with bf16
        `absmax`. Afterwards training forwards compute with the repacked bf16 weights, `state_dict()` (hence
        `save_pretrained`) returns a different, lossy `absmax`, and moving the model off the CPU keeps the packed
        layout (bitsandbytes#2078). Layers narrower than the 64-wide quantization block cannot be repacked at all: the
        forward raises.

        `from_pretrained` calls this after every 4-bit load; call it again after building `Linear4bit` layers yourself.
        The price is the slower unfused CPU kernel in inference: to get the fused one back for an inference-only model,
        set the attribute to `True` on the `Linear4bit` modules.

        No bitsandbytes import: the attribute only exists on its `Linear4bit` (and subclasses), so this stays safe for
        remote-code users without bitsandbytes.
        """
        num_layers = 0
        for module in self.modules():
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = False
                num_layers += 1
        return num_layers


def linear_in_dtype(layer: nn.Module, dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
    """
    `layer` (an `nn.Linear`, or the PEFT / bitsandbytes module that replaced it) as a function computing in `dtype`.

    The layer is called as a module, not as `F.linear` on its `.weight`, so whatever wraps it stays in the path: a PEFT
    LoRA (`target_modules="all-linear"` puts one on every extractor projection) gets its gradient, and hooks run.
    Floating-point parameters of another dtype (bf16 weights, fp32 routing) are cast for the call with
    `torch.func.functional_call`, which computes exactly `F.linear(inputs, weight.to(dtype), bias.to(dtype))`. The
    casts are made once, here: applied in several iterations, the function sums the gradient in `dtype` before it
    reaches the original parameter, as one `weight.to(dtype)` does. A quantized layer (bitsandbytes: integer weights)
    casts its input to its compute dtype and its output back itself, so it is used as it is.
    """
    parameters = dict(layer.named_parameters())
    if any(not parameter.is_floating_point() for parameter in parameters.values()):
        return layer
    cast = {name: value.to(dtype) for name, value in parameters.items() if value.dtype != dtype}
    if not cast:
        return layer

    def layer_in_dtype(inputs: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(layer, cast, (inputs,))

    return layer_in_dtype


class SQLlavaPrototypeExtractor(SQLlavaPreTrainedModel):
    r"""
    The prototype extractor of SQ-LLaVA: learned clusters that enrich each image token (reference `Clustering`,
    docs/original.md#prototype-extractor). Tokens in, the same number of tokens out, with the same width.

    For image tokens x of shape `(batch, tokens, channels)`:

    1. initial prototypes: x average-pooled over the token axis into `num_prototypes` windows (not random);
    2. `prototype_iterations` times: prototypes <- `prototype_proj(prototypes)`; soft assignment = softmax over the
       **prototype** axis of normalize(prototypes, channels) @ normalize(`key_proj(x)`, **tokens**); prototypes <-
       assignment @ `value_proj(x)` (an unnormalised sum, as in the reference);
    3. hard assignment of every token to its arg-max prototype, gated by
       gate = sigmoid(`gate_bias` + `gate_scale` * cos(prototype, x));
    4. each cluster's aggregate = (sum of gate * value_proj(x) over its tokens + its pooled value) / (count + 1);
    5. output = x + gate * aggregate of the token's cluster.

    The reference computes steps 4-5 as broadcasts that materialise a batch x prototypes x tokens x channels tensor
    (0.6 GB per image in fp32 at the real size). Since each token belongs to exactly one cluster, the same numbers
    come from a `scatter_add` over tokens and a `gather` back, in O(batch x tokens x channels) memory.

    With `config.prototype_extractor_fp32` (the default) steps 2-5 run in fp32 whatever the module dtype: in fp16 the
    gate saturates and ties between prototypes, and the unnormalised sums can overflow (docs/original.md#fp16-routing).
    """

    def __init__(self, config: SQLlavaConfig):
        super().__init__(config)
        channels = config.vision_config.hidden_size
        self.num_prototypes = config.num_prototypes
        self.prototype_iterations = config.prototype_iterations
        self.compute_in_fp32 = config.prototype_extractor_fp32
        # Reference names: `c` (re-applied to the prototypes every iteration), `v` (the "key" side of the soft
        # assignment), `f` (the "value" features that get aggregated), `sim_alpha`, `sim_beta`.
        self.prototype_proj = nn.Linear(channels, channels)
        self.key_proj = nn.Linear(channels, channels)
        self.value_proj = nn.Linear(channels, channels)
        self.gate_scale = nn.Parameter(torch.ones(1))
        self.gate_bias = nn.Parameter(torch.zeros(1))
        self.post_init()

    def _pool_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        # (batch, tokens, channels) -> (batch, num_prototypes, channels). AdaptiveAvgPool1d windows: with 576 tokens
        # and 256 prototypes every window holds 3 consecutive raster tokens and neighbours overlap by 0 or 1 token.
        return F.adaptive_avg_pool1d(tokens.transpose(1, 2), self.num_prototypes).transpose(1, 2)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """
        Args:
            image_features (`torch.Tensor` of shape `(batch_size, num_tokens, channels)`):
                Vision tower features (576 CLIP patch tokens for the real model).

        Returns:
            `torch.Tensor` of the same shape and dtype: each token plus the gated aggregate of its cluster.
        """
        if image_features.shape[1] < self.num_prototypes:
            raise ValueError(
                f"The prototype extractor got {image_features.shape[1]} image tokens but has {self.num_prototypes} "
                "prototypes: it needs at least one token per prototype. Check `vision_feature_select_strategy` and "
                "the image size, or lower `num_prototypes`."
            )
        input_dtype = image_features.dtype
        # fp32 (float64 stays float64) for the routing; `prototype_extractor_fp32=False` keeps the input dtype.
        compute_dtype = torch.promote_types(input_dtype, torch.float32) if self.compute_in_fp32 else input_dtype
        # The projections of the raw tokens run in the model's dtype (and under autocast, if on), as in the reference.
        keys = self.key_proj(image_features)
        values = self.value_proj(image_features)

        # Autocast would silently put the matmuls back in half precision.
        with torch.autocast(device_type=image_features.device.type, enabled=False):
            tokens = image_features.to(compute_dtype)
            keys = keys.to(compute_dtype)
            values = values.to(compute_dtype)

            prototypes = self._pool_tokens(tokens)
            pooled_values = self._pool_tokens(values)
            # The reference normalises the keys over the *token* axis (each channel of key_proj(x) gets unit norm
            # across the image), not over channels: not a cosine (docs/original.md#prototype-extractor).
            keys = F.normalize(keys, dim=1)
            prototype_proj = linear_in_dtype(self.prototype_proj, compute_dtype)
            for _ in range(self.prototype_iterations):
                prototypes = prototype_proj(prototypes)
                logits = F.normalize(prototypes, dim=-1) @ keys.transpose(1, 2)  # (batch, prototypes, tokens)
                soft_assignment = logits.softmax(dim=1)  # over prototypes, for each token; no temperature
                prototypes = soft_assignment @ values  # unnormalised M-step, as in the reference

            cosine = F.normalize(prototypes, dim=-1) @ F.normalize(tokens, dim=-1).transpose(1, 2)
            gates = torch.sigmoid(self.gate_bias.to(compute_dtype) + self.gate_scale.to(compute_dtype) * cosine)
            # `max` returns the first maximal index on ties, as the reference's `similarity.max(dim=1)` does. Its
            # backward routes the gradient to the winning gate only, like the reference's one-hot mask.
            gate, assignment = gates.max(dim=1)  # (batch, tokens)

            batch_size, _, channels = tokens.shape
            index = assignment.unsqueeze(-1).expand(-1, -1, channels)
            cluster_sums = torch.zeros_like(pooled_values).scatter_add(1, index, gate.unsqueeze(-1) * values)
            cluster_sizes = torch.zeros(batch_size, self.num_prototypes, dtype=compute_dtype, device=tokens.device)
            cluster_sizes = cluster_sizes.scatter_add(1, assignment, torch.ones_like(gate))
            # The pooled window counts as one more member of its cluster (docs/original.md#prototype-extractor).
            clusters = (cluster_sums + pooled_values) / (cluster_sizes + 1).unsqueeze(-1)
            enriched = tokens + gate.unsqueeze(-1) * clusters.gather(1, index)
        return enriched.to(input_dtype)


class SQLlavaMultiModalProjector(nn.Module):
    """Prototype extractor (optional) then Linear -> activation -> Linear into the language model's width."""

    def __init__(self, config: SQLlavaConfig):
        super().__init__()
        self.prototype_extractor = SQLlavaPrototypeExtractor(config) if config.use_prototype_extractor else None
        self.linear_1 = nn.Linear(
            config.vision_config.hidden_size, config.text_config.hidden_size, bias=config.multimodal_projector_bias
        )
        self.act = ACT2FN[config.projector_hidden_act]
        self.linear_2 = nn.Linear(
            config.text_config.hidden_size, config.text_config.hidden_size, bias=config.multimodal_projector_bias
        )

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        if self.prototype_extractor is not None:
            image_features = self.prototype_extractor(image_features)
        hidden_states = self.linear_1(image_features)
        hidden_states = self.act(hidden_states)
        hidden_states = self.linear_2(hidden_states)
        return hidden_states


# --------------------------------------------------------------------------------------------------------------------
# Input checks at the forward / generate boundary (docs/errors.md#the-model). Shape and dtype checks read no tensor
# data and run on every call, compiled or not. The value checks (ids in the vocabulary, image tokens vs images) read
# the ids back, a device sync: in eager mode only, on a full forward or a prefill, never on a decoding step.
# --------------------------------------------------------------------------------------------------------------------

ORIGINAL_IMAGE_TOKEN_INDEX, IGNORE_INDEX = -200, -100  # the original LLaVA's image sentinel; the labels' ignore index


def _with_positional_names(function, args: tuple, kwargs: dict) -> dict:
    # `model(input_ids, pixel_values)` as keywords, so that the checks and the parent's `forward` see the same names.
    if not args:
        return kwargs
    bound = inspect.signature(function).bind(None, *args, **kwargs).arguments  # Python's own TypeErrors
    return {**{name: value for name, value in list(bound.items())[1:] if name != "kwargs"}, **bound.get("kwargs", {})}


def image_count_message(num_image_tokens: int, num_images: int, image_seq_length: int) -> str:
    return (
        f"Image features and image tokens do not match: the text has {num_image_tokens} image tokens "
        f"({num_image_tokens / image_seq_length:g} images' worth at {image_seq_length} tokens per image) but "
        f"{num_images} images were given ({num_images * image_seq_length} features). Build the inputs with "
        "`SQLlavaProcessor`, which expands every `<image>` into `image_seq_length` tokens, and pass exactly one image "
        "per `<image>` placeholder."
    )


def check_text_inputs(config, input_ids, inputs_embeds, attention_mask, cached_length: int | None) -> None:
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError(
            f"Got {'both input_ids and' if input_ids is not None else 'neither input_ids nor'} inputs_embeds: pass "
            "exactly one, the input_ids from SQLlavaProcessor or inputs_embeds = `model.get_input_embeddings()(ids)`."
        )
    if input_ids is not None:
        if not isinstance(input_ids, torch.Tensor) or input_ids.dtype not in (torch.long, torch.int32):
            raise TypeError(
                f"input_ids is {getattr(input_ids, 'dtype', type(input_ids).__name__)}, but token ids are an integer "
                "tensor (torch.long): pass the processor's input_ids (`return_tensors='pt'`) or cast with `.long()`. "
                "Embeddings go in inputs_embeds, images in pixel_values."
            )
        if input_ids.ndim != 2 or input_ids.shape[1] == 0:
            raise ValueError(
                f"input_ids has shape {tuple(input_ids.shape)}, expected (batch_size, sequence_length) with at least "
                "one token: add the batch dimension of a single sequence with `input_ids[None]`."
            )
        name, tokens = "input_ids", input_ids
    else:
        hidden_size = config.text_config.hidden_size
        if getattr(inputs_embeds, "ndim", 0) != 3 or inputs_embeds.shape[-1] != hidden_size:
            shape = tuple(getattr(inputs_embeds, "shape", ()))
            raise ValueError(f"inputs_embeds has shape {shape}, expected (batch_size, sequence_length, {hidden_size})")
        name, tokens = "inputs_embeds", inputs_embeds
    # 4-D masks (custom ones, and those `generate` builds for a static cache) are the language model's business.
    if isinstance(attention_mask, torch.Tensor) and attention_mask.ndim != 4:
        # With a cache the mask also covers the cached tokens (decoding steps pass only the new token). A filled static
        # cache cannot tell its length without a sync (`cached_length` None): then only a mask too short is sure.
        length = tokens.shape[1] + (cached_length or 0)
        if (
            attention_mask.ndim != 2
            or attention_mask.shape[0] != tokens.shape[0]
            or not (attention_mask.shape[1] == length or (cached_length is None and attention_mask.shape[1] > length))
        ):
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)} but {name} has shape {tuple(tokens.shape)}"
                f"{f' after {cached_length} cached tokens' if cached_length else ''}: the mask needs one entry per "
                f"token, shape ({tokens.shape[0]}, {length}). Pass the attention_mask the processor returned with them."
            )


def check_token_values(config, input_ids: torch.Tensor, vocab_size: int, num_images: int | None) -> None:
    """Ids in the vocabulary, image tokens that match the images (`num_images` None: given as `mm_encoder_outputs`)."""
    image_token_id, per_image = config.image_token_id, config.image_seq_length
    summary = torch.stack([input_ids.min(), input_ids.max(), (input_ids == image_token_id).sum().to(input_ids.dtype)])
    low, high, num_image_tokens = summary.tolist()  # the one device sync
    if low == ORIGINAL_IMAGE_TOKEN_INDEX:
        raise ValueError(
            "input_ids contains -200. -200 is the original LLaVA's IMAGE_TOKEN_INDEX: tokenize with SQLlavaProcessor, "
            f"which writes config.image_token_id ({image_token_id}) repeated image_seq_length ({per_image}) times "
            "for every `<image>`."
        )
    if low < 0 or high >= vocab_size:
        hint = " (-100 is the labels' ignore index: pad with pad_token_id)" if low == IGNORE_INDEX else ""
        raise ValueError(
            f"input_ids has ids outside the vocabulary [0, {vocab_size}): min {low}, max {high}{hint}. "
            "Tokenize with the model's own processor; after adding tokens to its tokenizer, call "
            "`model.resize_token_embeddings(len(processor.tokenizer))`."
        )
    if num_images == 0 and num_image_tokens:
        raise ValueError(
            f"input_ids has {num_image_tokens} image tokens but no pixel_values: pass the images the processor "
            "returned (`pixel_values=inputs['pixel_values']`), or, for a text-only prompt, leave `<image>` out of "
            f"the text (token id {image_token_id} is config.image_token_id)."
        )
    if num_images and num_image_tokens != num_images * per_image:
        raise ValueError(image_count_message(num_image_tokens, num_images, per_image))


def check_pixel_values(config, pixel_values) -> None:
    channels, size = config.vision_config.num_channels, config.vision_config.image_size
    if not isinstance(pixel_values, torch.Tensor) or not pixel_values.is_floating_point():
        raise TypeError(
            f"pixel_values is {getattr(pixel_values, 'dtype', type(pixel_values).__name__)}, but the vision tower takes "
            "the processor's normalised float pixels: pass `processor(images=...)['pixel_values']`, not raw images."
        )
    if tuple(pixel_values.shape[1:]) != (channels, size, size) or pixel_values.ndim != 4:
        raise ValueError(
            f"pixel_values has shape {tuple(pixel_values.shape)}, but the vision tower takes (num_images, {channels}, "
            f"{size}, {size}) (config.vision_config). Use the model's processor (SQLlavaProcessor), which resizes and "
            "crops every image to that size; a single image needs the batch dimension: `pixel_values[None]`."
        )


def check_labels(labels, tokens, vocab_size: int, check_values: bool) -> None:
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels is {getattr(labels, 'dtype', type(labels))}: labels are token ids (torch.long).")
    if getattr(tokens, "ndim", 0) >= 2 and tuple(labels.shape) != tuple(tokens.shape[:2]):
        raise ValueError(
            f"labels has shape {tuple(labels.shape)} but the input has shape {tuple(tokens.shape[:2])}: one label per "
            "input token (the model shifts them itself). Use the package's collator, or `input_ids.clone()` with -100 "
            "at the prompt and the padding."
        )
    if check_values and bool((((labels < 0) & (labels != IGNORE_INDEX)) | (labels >= vocab_size)).any()):
        raise ValueError(
            f"labels has values outside the vocabulary [0, {vocab_size}) other than -100 (min {int(labels.min())}, "
            f"max {int(labels.max())}{'; -200 is the original LLaVA IMAGE_TOKEN_INDEX' if labels.min() == -200 else ''}"
            "): mask the positions without loss (prompt, image tokens, padding) with -100."
        )


class SQLlavaModel(SQLlavaPreTrainedModel, LlavaModel):
    """
    The SQ-LLaVA model without a language modeling head: LLaVA's [`~transformers.LlavaModel`] whose projector is
    [`SQLlavaMultiModalProjector`]. Inputs and outputs are those of `LlavaModel`.
    """

    # Quantization: kept in full precision by default, see `SQLlavaPreTrainedModel.from_pretrained`.
    _default_llm_int8_skip_modules = ["vision_tower", "multi_modal_projector"]

    def __init__(self, config: SQLlavaConfig):
        SQLlavaPreTrainedModel.__init__(self, config)
        self.vision_tower = AutoModel.from_config(config.vision_config)
        self.multi_modal_projector = SQLlavaMultiModalProjector(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    # The overrides keep the parent's signatures, which `generate` reads (`mm_encoder_outputs`, `logits_to_keep`,
    # the cache: `past_key_values` in transformers 5.23, `cache` from 5.24), and pass the keywords on as they came.
    @functools.wraps(LlavaModel.forward)
    def forward(self, *args, **kwargs):
        kwargs = _with_positional_names(LlavaModel.forward, args, kwargs)
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        cached_length = cache.get_seq_length() if cache is not None else 0
        cached_length = cached_length if isinstance(cached_length, int) else None  # a filled static cache: a tensor
        # Value checks on a full forward or a prefill only: a decoding step's token is whatever the model sampled,
        # and the images are consumed. `generate` checks its prompt itself, once (`_prompt_checked`).
        check_values = not torch.compiler.is_compiling() and not self._prompt_checked and cached_length == 0
        self.check_inputs(kwargs, cached_length, check_values)
        return super().forward(**kwargs)

    _prompt_checked = False  # True while `SQLlavaForConditionalGeneration.generate` runs

    def check_inputs(self, inputs: dict, cached_length: int | None = 0, check_values: bool = True) -> None:
        """Raises a `ValueError`/`TypeError` naming the fix for inputs `forward` cannot take (docs/errors.md#the-model)."""
        input_ids, pixel_values, mask = (
            inputs.get("input_ids"),
            inputs.get("pixel_values"),
            inputs.get("attention_mask"),
        )
        check_text_inputs(self.config, input_ids, inputs.get("inputs_embeds"), mask, cached_length)
        if pixel_values is not None:
            check_pixel_values(self.config, pixel_values)
        if check_values and input_ids is not None:
            num_images = 0 if pixel_values is None else pixel_values.shape[0]
            if (inputs.get("mm_encoder_outputs") or {}).get("image") is not None:
                num_images = None  # images given already encoded: `get_placeholder_mask` counts them
            check_token_values(self.config, input_ids, self.get_input_embeddings().num_embeddings, num_images)

    def get_placeholder_mask(
        self, input_ids: torch.LongTensor | None, inputs_embeds: torch.Tensor, image_features: torch.Tensor
    ) -> torch.Tensor:
        if input_ids is None:
            image_embedding = self.get_input_embeddings()(
                torch.tensor(self.config.image_token_id, dtype=torch.long, device=inputs_embeds.device)
            )
            special_image_mask = (inputs_embeds == image_embedding).all(-1)
        else:
            special_image_mask = input_ids == self.config.image_token_id
        num_image_features = image_features.shape[0]
        per_image = self.config.image_seq_length

        def mismatch_message() -> str:
            return image_count_message(int(special_image_mask.sum()), num_image_features // per_image, per_image)

        # As in LLaVA: `torch_compilable_check` is a compiler hint under `torch.compile` (an `if` on the token count
        # would be data-dependent control flow, a graph break) and a `ValueError` with the message in eager mode.
        torch_compilable_check(special_image_mask.sum() == num_image_features, mismatch_message)
        return special_image_mask.unsqueeze(-1).expand_as(inputs_embeds).to(inputs_embeds.device)


class SQLlavaForConditionalGeneration(SQLlavaPreTrainedModel, LlavaForConditionalGeneration):
    r"""
    SQ-LLaVA for image-text-to-text generation: [`SQLlavaModel`] and a language modeling head. Everything a user of
    [`~transformers.LlavaForConditionalGeneration`] relies on (generation with a KV cache, `labels`, `inputs_embeds`,
    gradient checkpointing, sdpa/eager attention, `device_map`, quantization) works the same way.

    Example:

    ```python
    >>> from transformers import AutoModelForImageTextToText, AutoProcessor
    >>> import transformers_sqllava  # registers model_type "sqllava" with the Auto classes

    >>> model = AutoModelForImageTextToText.from_pretrained("path/to/sqllava-7b")
    >>> processor = AutoProcessor.from_pretrained("path/to/sqllava-7b")
    ```"""

    # Quantization: kept in full precision by default, see `SQLlavaPreTrainedModel.from_pretrained`.
    _default_llm_int8_skip_modules = ["model.vision_tower", "model.multi_modal_projector", "lm_head"]

    def __init__(self, config: SQLlavaConfig):
        SQLlavaPreTrainedModel.__init__(self, config)
        self.model = SQLlavaModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    @functools.wraps(LlavaForConditionalGeneration.forward)  # the parent's signature: see `SQLlavaModel.forward`
    def forward(self, *args, **kwargs):
        kwargs = _with_positional_names(LlavaForConditionalGeneration.forward, args, kwargs)
        if (labels := kwargs.get("labels")) is not None:
            tokens = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs.get("inputs_embeds")
            check_labels(labels, tokens, self.config.text_config.vocab_size, not torch.compiler.is_compiling())
        return super().forward(**kwargs)

    @functools.wraps(LlavaForConditionalGeneration.generate)
    def generate(self, inputs=None, *args, **kwargs):
        # The prompt is checked once, here (in eager mode, even when the forward is compiled); the forwards of the
        # generation loop then check shapes only. A cache passed in holds the prompt's start (a chat's earlier turns
        # and their images): the prefill reads only the rest, and so do the checks.
        embeds = kwargs.get("inputs_embeds") is not None  # `generate` takes both: the embeddings in, the ids to return
        prompt = {**kwargs, "input_ids": None if embeds else kwargs.get("input_ids", inputs)}
        cache = kwargs.get("past_key_values", kwargs.get("cache"))
        cached = cache.get_seq_length() if cache is not None else 0
        cached = cached if isinstance(cached, int) else None  # a filled static cache: a tensor, unknown without a sync
        if (tokens := prompt["inputs_embeds" if embeds else "input_ids"]) is not None:
            if cached and getattr(tokens, "ndim", 0) >= 2:
                prompt["inputs_embeds" if embeds else "input_ids"] = tokens[:, cached:]
            self.model.check_inputs(prompt, cached, check_values=cached is not None)
        checked, self.model._prompt_checked = self.model._prompt_checked, True
        try:
            return super().generate(inputs, *args, **kwargs)
        finally:
            self.model._prompt_checked = checked

    def save_pretrained(self, save_directory, *args, **kwargs):
        """
        [`~transformers.PreTrainedModel.save_pretrained`], with `SQLlavaModel` in the saved `auto_map` as well.

        `save_pretrained` writes `auto_map` only for the saved class's own Auto class (`AutoModelForImageTextToText`),
        so without this `AutoModel.from_pretrained(folder, trust_remote_code=True)` would not find the base model in
        the copied `modeling_sqllava.py`.
        """
        if self.is_remote_code():
            base_model_class = f"{SQLlavaModel.__module__.rsplit('.', 1)[-1]}.{SQLlavaModel.__name__}"
            auto_map = getattr(self.config, "auto_map", None) or {}
            self.config.auto_map = {**auto_map, "AutoModel": base_model_class}
        return super().save_pretrained(save_directory, *args, **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# PEFT's default LoRA targets for `model_type="sqllava"`. Registered here, in the Hub file, so that remote-code loads
# (`trl sft --trust_remote_code`, which does not import this package) get them too.
# --------------------------------------------------------------------------------------------------------------------

# Used when a `LoraConfig` has no `target_modules` (as `trl sft --use_peft` without `--lora_target_modules`): the
# language model's attention and MLP projections, the layers LLaVA-1.5's LoRA recipe trains. A regex over full module
# names: the bare names would also put LoRAs on CLIP's `q_proj`/`k_proj`/`v_proj`. PEFT >= 0.19 reads a string here.
LORA_TARGET_MODULES = (
    r"(?:.*\.)?language_model\.layers\.\d+\.(?:self_attn\.(?:q|k|v|o)_proj|mlp\.(?:gate|up|down)_proj)"
)


def _register_lora_target_modules(peft_constants) -> None:
    peft_constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.setdefault("sqllava", LORA_TARGET_MODULES)


class _AfterImport(importlib.abc.MetaPathFinder):
    """
    Calls `callback(module)` once the module `module_name` is imported, without importing it now: importing PEFT here
    would add about a second, and bitsandbytes' start-up messages, to every import of this file.
    """

    def __init__(self, module_name: str, callback):
        self.module_name, self.callback = module_name, callback

    def find_spec(self, fullname, path, target=None):
        if fullname != self.module_name or self not in sys.meta_path:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)  # the regular finders, now that this one is gone
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_module_then_call_back(module):
            exec_module(module)
            self.callback(module)

        spec.loader.exec_module = exec_module_then_call_back  # an attribute of this spec's own loader instance
        return spec


if "peft.utils.constants" in sys.modules:
    _register_lora_target_modules(sys.modules["peft.utils.constants"])
else:
    sys.meta_path.insert(0, _AfterImport("peft.utils.constants", _register_lora_target_modules))

SQLlavaConfig.register_for_auto_class()
SQLlavaModel.register_for_auto_class("AutoModel")
SQLlavaForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")

__all__ = [
    "LORA_TARGET_MODULES",
    "SQLlavaForConditionalGeneration",
    "SQLlavaModel",
    "SQLlavaMultiModalProjector",
    "SQLlavaPreTrainedModel",
    "SQLlavaPrototypeExtractor",
]
