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
"""Processor class for SQ-LLaVA: the reference's image preprocessing, prompt format and tokenisation.

This file is one of the three "Hub files" (configuration, modeling, processing): it imports only torch, transformers,
PIL, numpy and its siblings, so `save_pretrained` can ship it as remote code unchanged.

What has to match the reference (sqllava-reference.md):

- images (§4.2): pad to a square with the CLIP mean colour, then CLIP resize / centre crop / normalise;
- prompts (§3.2): Vicuna v1 with a fourth role, the virtual user, rendered by one Jinja chat template;
- token ids (§3.4): every text chunk between special tokens is tokenised on its own with sentencepiece's dummy
  prefix ("legacy" Llama behaviour), one BOS, and each `<image>` becomes `image_seq_length` image tokens.
"""

import json
import os
import re
from collections.abc import Iterable

import numpy as np
import PIL.Image
import torch
from transformers import AddedToken
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import make_flat_list_of_images
from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil
from transformers.processing_utils import ProcessingKwargs, ProcessorMixin
from transformers.utils import logging

# transformers' `sanitize_control_tokens` machinery: `mark_control_tokens` wraps each control token typed inside a
# message in two private-use characters, so the tokenisation step can encode it as text. We reuse its markers.
from transformers.utils.chat_template_utils import _CONTROL_TOKEN_END, _CONTROL_TOKEN_START, mark_control_tokens


logger = logging.get_logger(__name__)


# Reference §3.2, `conv_vicuna_v1`: answering, and every benchmark (§3.3).
SYSTEM_PROMPT_V1 = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, "
    "and polite answers to the user's questions."
)
# Reference §3.2, `conv_vicuna_v1_sq`: training stage 2 and self-questioning. The missing space in "questions.Also"
# is the reference's (its string is a concatenation); the released checkpoints were trained on it, so we keep it.
SYSTEM_PROMPT_V1_SQ = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, "
    "and polite answers to the user's questions.Also, the artificial intelligence assistant is a curious virtual "
    "user. The virtual user asks complex questions that are relevant to the content in the image, for example, "
    "asking about background knowledge of the objects in the image, asking to discuss about events happening in the image, etc. "
    "Again, do not ask about uncertain details."
)
SYSTEM_PROMPTS = {"v1": SYSTEM_PROMPT_V1, "v1_sq": SYSTEM_PROMPT_V1_SQ}

# The virtual user's role marker. Checkpoints converted from the original release learned the plain text "VUSER"
# (reference §3.5: no new token); models set up by this package get the added special token "[vusr]" (paper's name).
ORIGINAL_VUSER_MARKER = "VUSER"
NATIVE_VUSER_TOKEN = "[vusr]"

# Reference §4.2: `expand2square` fills with tuple(int(m * 255) for m in image_mean).
CLIP_MEAN_COLOUR = (122, 116, 104)


# The template, with the processor's defaults substituted by `build_chat_template`. Each `raise_exception` says what is
# wrong with the conversation and how to fix it.
_CHAT_TEMPLATE = """\
{#- SQ-LLaVA: Vicuna v1 with a virtual user ("vuser"), sqllava-reference.md section 3.2. -#}
{%- set vuser_marker = vuser_token | default(__DEFAULT_VUSER_TOKEN__) -%}
{%- set image_marker = image_token | default("<image>") -%}
{%- set end_of_turn = eos_token | default("</s>") -%}
{%- set gen_role = generation_role | default("assistant") -%}
{%- if not messages -%}
    {{- raise_exception("The conversation is empty: give at least one user message.") -}}
{%- endif -%}
{#- The system message: an explicit first message, or one of the reference's two prompts. -#}
{%- if messages[0]["role"] == "system" -%}
    {%- if system_prompt is defined -%}
        {{- raise_exception("The conversation starts with a system message and `system_prompt` was also given: drop one of them.") -}}
    {%- endif -%}
    {%- if messages[0]["content"] is string -%}
        {%- set system_message = messages[0]["content"] -%}
    {%- else -%}
        {%- if messages[0]["content"] | selectattr("type", "ne", "text") | list -%}
            {{- raise_exception("The system message can only hold text: put images in a user message.") -}}
        {%- endif -%}
        {%- set system_message = messages[0]["content"] | map(attribute="text") | join(" ") -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
    {%- set first_index = 1 -%}
{%- else -%}
    {%- set prompt_name = system_prompt | default("v1") -%}
    {%- if prompt_name == "v1" -%}
        {%- set system_message = __SYSTEM_PROMPT_V1__ -%}
    {%- elif prompt_name == "v1_sq" -%}
        {%- set system_message = __SYSTEM_PROMPT_V1_SQ__ -%}
    {%- else -%}
        {{- raise_exception("`system_prompt` must be \\"v1\\" (answering, benchmarks) or \\"v1_sq\\" (self-questioning, training), got \\"" ~ prompt_name ~ "\\". For another system prompt, start the conversation with a system message.") -}}
    {%- endif -%}
    {%- set loop_messages = messages -%}
    {%- set first_index = 0 -%}
{%- endif -%}
{%- if not loop_messages -%}
    {{- raise_exception("The conversation has no user message after the system message.") -}}
{%- endif -%}
{{- system_message + " " -}}
{%- for message in loop_messages -%}
    {%- set role = message["role"] -%}
    {%- set where = "message " ~ (loop.index0 + first_index) ~ " (role \\"" ~ role ~ "\\")" -%}
    {%- if role not in ["user", "assistant", "vuser", "system"] -%}
        {{- raise_exception("Unknown role in " ~ where ~ ": SQ-LLaVA roles are \\"system\\", \\"user\\", \\"assistant\\" and \\"vuser\\".") -}}
    {%- elif role == "system" -%}
        {{- raise_exception("A system message can only be the first message, but " ~ where ~ " is one.") -}}
    {%- elif loop.index0 % 2 == 0 and role == "assistant" -%}
        {{- raise_exception("Turns must alternate user/assistant starting with a user turn, but " ~ where ~ (" comes first." if loop.first else " follows another assistant turn.") ~ " Insert the missing user turn or merge the assistant turns.") -}}
    {%- elif loop.index0 % 2 == 1 and role != "assistant" -%}
        {{- raise_exception("Turns must alternate user/assistant, but " ~ where ~ " follows a \\"" ~ loop.previtem["role"] ~ "\\" turn. Insert the assistant answer between them or merge the two turns.") -}}
    {%- elif role == "vuser" and loop.first -%}
        {{- raise_exception("A vuser turn asks about the conversation so far, so it must follow an assistant turn, but " ~ where ~ " comes first. Start with a user turn.") -}}
    {%- endif -%}
    {%- if message["content"] is not defined -%}
        {{- raise_exception(where ~ " has no content.") -}}
    {%- elif message["content"] is string -%}
        {%- set text = message["content"] -%}
    {%- else -%}
        {#- By default all images first, each followed by a newline, then the text: the reference's
            preprocess_multimodal. With images_first=false the blocks keep their order, an image separated from its
            neighbours by newlines and texts by spaces ("Q\\n<image>"). -#}
        {%- set parts = namespace(images="", texts=[], ordered="", previous="") -%}
        {%- for block in message["content"] -%}
            {%- if block["type"] == "image" -%}
                {%- if role != "user" -%}
                    {{- raise_exception("Images go in user turns, but " ~ where ~ " has one.") -}}
                {%- endif -%}
                {%- set parts.images = parts.images + image_marker + "\\n" -%}
                {%- set piece = image_marker -%}
            {%- elif block["type"] == "text" -%}
                {%- set parts.texts = parts.texts + [block["text"]] -%}
                {%- set piece = block["text"] -%}
            {%- else -%}
                {{- raise_exception("Unsupported content type \\"" ~ block["type"] ~ "\\" in " ~ where ~ ": use \\"text\\" and \\"image\\" blocks.") -}}
            {%- endif -%}
            {%- if not loop.first -%}
                {%- set parts.ordered = parts.ordered + (" " if block["type"] == "text" and parts.previous == "text" else "\\n") -%}
            {%- endif -%}
            {%- set parts.ordered = parts.ordered + piece -%}
            {%- set parts.previous = block["type"] -%}
        {%- endfor -%}
        {%- if images_first | default(true) -%}
            {%- set text = parts.images + parts.texts | join(" ") -%}
        {%- else -%}
            {%- set text = parts.ordered -%}
        {%- endif -%}
    {%- endif -%}
    {%- if role == "user" -%}
        {{- "USER: " + text -}}
    {%- elif role == "vuser" -%}
        {{- vuser_marker + ": " + text + end_of_turn -}}
    {%- else -%}
        {{- "ASSISTANT: " + text -}}
    {%- endif -%}
    {#- Vicuna v1 separators alternate by message index: " " after turns 0, 2, ..., "</s>" after turns 1, 3, ... -#}
    {{- " " if loop.index0 % 2 == 0 else end_of_turn -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {%- set last_role = loop_messages[-1]["role"] -%}
    {%- if gen_role == "assistant" -%}
        {%- if last_role == "assistant" -%}
            {{- raise_exception("The conversation ends with an assistant turn, so there is nothing to answer: add a user turn, or ask a question with generation_role=\\"vuser\\".") -}}
        {%- endif -%}
        {{- "ASSISTANT:" -}}
    {%- elif gen_role == "vuser" -%}
        {%- if last_role != "assistant" -%}
            {{- raise_exception("A vuser question follows an assistant turn, but the conversation ends with a \\"" ~ last_role ~ "\\" turn: generate the answer first (generation_role=\\"assistant\\").") -}}
        {%- endif -%}
        {{- vuser_marker + ":" -}}
    {%- else -%}
        {{- raise_exception("generation_role must be \\"assistant\\" (answer) or \\"vuser\\" (ask a question), got \\"" ~ gen_role ~ "\\".") -}}
    {%- endif -%}
{%- endif -%}
"""


def build_chat_template(vuser_token: str = NATIVE_VUSER_TOKEN) -> str:
    r"""
    Build SQ-LLaVA's Jinja chat template: Vicuna v1 (reference §3.2, `SeparatorStyle.TWO`) with the virtual user.

    Rendering, for `n` non-system messages:

    - `system + " "`, the system message being a `{"role": "system"}` first message, else the prompt named by the
      template variable `system_prompt` (`"v1"`, the default, or `"v1_sq"`);
    - message `i`: `ROLE + ": " + text + sep[i % 2]` with `sep = [" ", "</s>"]`, the roles being `USER`, `ASSISTANT`
      and `{vuser_token}`. A vuser turn's text ends in `"</s>"` before its separator (reference `train.py` L522), so a
      vuser turn renders as `VUSER: question</s> `;
    - an image content block renders as `"<image>\n"`, all of a message's images before its text, as the reference's
      `preprocess_multimodal` moves them (§4.3);
    - `add_generation_prompt` appends `"ASSISTANT:"`, or `"{vuser_token}:"` with `generation_role="vuser"`.

    Turns must alternate user-or-vuser / assistant, starting with user: with that order the reference's
    separator-by-index is the same as a separator by role. A vuser turn follows an assistant turn (so its marker
    always comes right after a `</s>` that only the template writes).

    Args:
        vuser_token (`str`, *optional*, defaults to `"[vusr]"`):
            The virtual user's role marker used when the caller does not pass the `vuser_token` variable (other
            runtimes that render the saved template). [`SQLlavaProcessor`] always passes its own.

    Returns:
        `str`: the template.
    """
    return (
        _CHAT_TEMPLATE.replace("__DEFAULT_VUSER_TOKEN__", json.dumps(vuser_token))
        .replace("__SYSTEM_PROMPT_V1__", json.dumps(SYSTEM_PROMPT_V1))
        .replace("__SYSTEM_PROMPT_V1_SQ__", json.dumps(SYSTEM_PROMPT_V1_SQ))
    )


class SQLlavaImageProcessor(LlavaImageProcessorPil):
    r"""
    SQ-LLaVA's image processor (PIL/NumPy backend, no torchvision): the reference's `expand2square`, then CLIP
    preprocessing at 336 px (sqllava-reference.md §4.2).

    It is LLaVA's PIL image processor, whose `do_pad` pads to a square with `int(255 * image_mean)` (the CLIP mean
    colour (122, 116, 104)) and the image centred at offset `(max - size) // 2`, exactly as `expand2square`, with two
    changes:

    - the defaults are the reference's: 336 px, and `do_pad=True` (stage 2, `image_aspect_ratio="pad"`). Stage-1
      training (and the reference's self-questioning demo) does not pad: pass `do_pad=False`;
    - colour conversion is PIL's `image.convert("RGB")`, as the reference's `Image.open(path).convert("RGB")`: alpha is
      dropped, not composited onto white (transformers' default), so RGBA, grayscale, palette and CMYK images give
      the same pixels as their RGB conversion. File paths are opened with `PIL.Image.open`, without transformers' EXIF
      rotation, for the same reason.

    Args:
        do_pad (`bool`, *optional*, defaults to `True`):
            Pad the image to a square with the CLIP mean colour before resizing (reference `image_aspect_ratio="pad"`).
        size (`dict[str, int]`, *optional*, defaults to `{"shortest_edge": 336}`):
            Resize the shortest edge to this size (bicubic).
        crop_size (`dict[str, int]`, *optional*, defaults to `{"height": 336, "width": 336}`):
            Centre crop to this size.
        **kwargs:
            Every other argument of [`~transformers.LlavaImageProcessorPil`] (`image_mean`, `image_std`, ...).
    """

    size = {"shortest_edge": 336}
    crop_size = {"height": 336, "width": 336}
    do_pad = True

    def fetch_images(self, image_url_or_urls):
        # Reference §4.2 opens files with `Image.open(...)`: no EXIF transpose (transformers' `load_image` does one).
        if isinstance(image_url_or_urls, (str, os.PathLike)) and os.path.isfile(image_url_or_urls):
            image = PIL.Image.open(image_url_or_urls)
            image.load()
            return image
        if isinstance(image_url_or_urls, (list, tuple)):
            return [self.fetch_images(entry) for entry in image_url_or_urls]
        return super().fetch_images(image_url_or_urls)

    def convert_to_rgb(self, image, input_data_format=None) -> np.ndarray:
        if isinstance(image, PIL.Image.Image):
            # PIL's conversion, as the reference's `.convert("RGB")`: RGBA and LA drop alpha, P uses its palette,
            # CMYK and L convert with PIL's formulas.
            return np.array(image.convert("RGB"))
        return super().convert_to_rgb(image, input_data_format=input_data_format)


class SQLlavaProcessor(ProcessorMixin):
    r"""
    Constructs an SQ-LLaVA processor: an [`SQLlavaImageProcessor`] (or any CLIP-style image processor) and a
    Llama/Vicuna tokenizer, with SQ-LLaVA's chat template.

    [`~SQLlavaProcessor.__call__`] prepares a batch for [`SQLlavaForConditionalGeneration`]:

    - every `<image>` in the text becomes `image_seq_length` copies of the image token (576 for the real model; the
      model scatters the projected image features there) and the images become `pixel_values`;
    - the text is tokenised as the reference's `tokenizer_image_token` does (sqllava-reference.md §3.4): one BOS, and
      every chunk of text between special tokens (`<image>`, `</s>`, ...) gets sentencepiece's dummy prefix "▁", as
      the reference's slow `LlamaTokenizer` (legacy behaviour) gives it, so a converted checkpoint sees the ids it was
      trained on. transformers 5's `LlamaTokenizer` gives a chunk that starts with a space (like `"</s> ASSISTANT:"`
      after a vuser turn) one "▁" fewer, and with `legacy=False` drops the prefix after special tokens; the processor
      encodes the chunks itself so neither changes its ids.

    [`~SQLlavaProcessor.apply_chat_template`] renders conversations with the roles `system`, `user`, `assistant` and
    `vuser` (the virtual user), exactly as the reference's Vicuna v1 / v1_sq templates.

    If the tokenizer lacks the image token, a pad token, or a special vuser marker, they are added (as special tokens)
    when the processor is built: call [`resize_embeddings_for_processor`] once on the model afterwards.

    Args:
        image_processor ([`SQLlavaImageProcessor`], *optional*):
            The image processor.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`], *optional*):
            The Vicuna (Llama) tokenizer, with its legacy sentencepiece behaviour.
        chat_template (`str`, *optional*):
            A Jinja template; defaults to [`build_chat_template`]`(vuser_token)`.
        image_token (`str`, *optional*, defaults to `"<image>"`):
            The image placeholder in prompts; added to the tokenizer as a special token if missing.
        image_seq_length (`int`, *optional*, defaults to 576):
            Image tokens per image. Must equal the model's `config.image_seq_length` (16 for the tiny test model).
        vuser_token (`str`, *optional*, defaults to `"[vusr]"`):
            The virtual user's role marker; a vuser turn renders as `"{vuser_token}: question</s> "`. Use `"VUSER"`
            for checkpoints converted from the original release: it stays plain text, as they learned it. Any other
            marker is a special token, added to the tokenizer if missing; it keeps the colon (`"[vusr]:"`), so both
            kinds of checkpoint share one template and a question prompt ends in `":"` for both. (With the dummy
            prefix, `"[vusr]: Q"` tokenises as `[vusr]`, `"▁:"`-pieces, `"▁Q"`.)
    """

    valid_processor_kwargs = ProcessingKwargs

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        chat_template: str | None = None,
        image_token: str = "<image>",
        image_seq_length: int = 576,
        vuser_token: str = NATIVE_VUSER_TOKEN,
        **kwargs,
    ):
        if tokenizer is None:
            raise ValueError("SQLlavaProcessor needs a tokenizer: pass the Vicuna tokenizer as `tokenizer=`.")
        if not isinstance(image_seq_length, int) or image_seq_length < 1:
            raise ValueError(f"`image_seq_length` must be a positive int (576 for SQ-LLaVA): {image_seq_length!r}.")
        self.image_token = image_token
        self.image_seq_length = image_seq_length
        self.vuser_token = vuser_token
        self.added_tokens = self._add_missing_tokens(tokenizer)
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)
        if chat_template is None:
            chat_template = build_chat_template(vuser_token)
        super().__init__(image_processor, tokenizer, chat_template=chat_template)
        self._sentencepiece_model = self._find_sentencepiece_model(tokenizer)
        if getattr(tokenizer, "legacy", None) is False:
            logger.warning_once(
                "The tokenizer has `legacy=False`: calling it directly drops sentencepiece's dummy prefix after "
                "special tokens, unlike the reference tokenizer SQ-LLaVA checkpoints were trained with "
                "(sqllava-reference.md §3.1). SQLlavaProcessor's own ids are not affected; load the tokenizer with `legacy=True` for code "
                "that tokenises prompts without the processor."
            )

    def _add_missing_tokens(self, tokenizer) -> list[str]:
        # As transformers' LLaVA conversion: `<image>` and `<pad>` are added special tokens (ids 32000 and 32001 for
        # Vicuna, the layout of `SQLlavaConfig`), then a native vuser marker.
        added = []
        vocab = tokenizer.get_vocab()
        if self.image_token not in vocab:
            tokenizer.add_tokens([AddedToken(self.image_token, special=True, normalized=False)], special_tokens=True)
            added.append(self.image_token)
        if tokenizer.pad_token is None:
            tokenizer.add_special_tokens({"pad_token": AddedToken("<pad>", special=True, normalized=False)})
            added.append("<pad>")
        if self.vuser_token != ORIGINAL_VUSER_MARKER and self.vuser_token not in vocab:
            tokenizer.add_tokens([AddedToken(self.vuser_token, special=True, normalized=False)], special_tokens=True)
            added.append(self.vuser_token)
        if added:
            logger.warning(
                f"Added {added} to the tokenizer (now {len(tokenizer)} tokens). Call "
                "`resize_embeddings_for_processor(model, processor)` so the model's embeddings have rows for them."
            )
        return added

    @staticmethod
    def _find_sentencepiece_model(tokenizer):
        """The backend model of a Llama-style tokenizer (dummy prefix "▁", spaces as "▁"), else None."""
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            return None
        probe = "a b"
        if backend.normalizer is not None:
            probe = backend.normalizer.normalize_str(probe)
        if backend.pre_tokenizer is not None:
            pieces = backend.pre_tokenizer.pre_tokenize_str(probe)
            probe = pieces[0][0] if len(pieces) == 1 else None
        return backend.model if probe == "▁a▁b" else None

    @property
    def control_tokens(self) -> list[str]:
        """Structure, not text: the tokenizer's special tokens, `<image>` and a special vuser marker."""
        tokens = {token.content for token in self.tokenizer.added_tokens_decoder.values() if token.special}
        tokens.add(self.image_token)
        if self.vuser_token != ORIGINAL_VUSER_MARKER:
            tokens.add(self.vuser_token)
        return sorted(tokens, key=len, reverse=True)

    def __call__(self, images=None, text=None, **kwargs) -> BatchFeature:
        r"""
        Prepare text prompts and images for the model.

        Args:
            images (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor`, `str` (a file path) or a (nested) list of them):
                The images, in the order of the `<image>` placeholders in `text` (one image per placeholder).
            text (`str` or `list[str]`):
                The prompts, written in the reference's format (e.g. from [`~SQLlavaProcessor.apply_chat_template`]
                with `tokenize=False`). `</s>`, `<image>` and other special tokens in this text are structure.
            **kwargs:
                Tokenizer options (`padding`, `padding_side`, `max_length`, `pad_to_multiple_of`, `add_special_tokens`,
                `return_attention_mask`), image-processor options (`do_pad`, `size`, ...), and `return_tensors`.

        Returns:
            [`~transformers.BatchFeature`] with `input_ids`, `attention_mask` and, with images, `pixel_values`.
        """
        if text is None:
            raise ValueError(
                "SQLlavaProcessor needs `text`: a prompt with one `<image>` per image, e.g. from "
                "`processor.apply_chat_template(messages, add_generation_prompt=True)`."
            )
        texts = [text] if isinstance(text, str) else list(text)
        if not all(isinstance(sample, str) for sample in texts):
            raise ValueError(f"`text` must be a string or a list of strings, got {type(text).__name__}.")
        marked = bool(kwargs.get("sanitize_control_tokens"))
        if images is not None:
            images = make_flat_list_of_images(self.image_processor.fetch_images(images))
        self._check_image_count(texts, images, marked)

        merged = self._merge_kwargs(
            self.valid_processor_kwargs, tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs
        )
        text_kwargs, images_kwargs = merged["text_kwargs"], merged["images_kwargs"]
        return_tensors = text_kwargs.pop("return_tensors", None)
        data = {}
        if images is not None:
            images_kwargs.pop("return_tensors", None)
            data["pixel_values"] = self.image_processor(images, **images_kwargs)["pixel_values"]

        add_bos = text_kwargs.get("add_special_tokens", True)
        input_ids = [self._encode_prompt(sample, add_bos=add_bos, marked=marked) for sample in texts]
        max_length = text_kwargs.get("max_length")
        if text_kwargs.get("truncation") and max_length is not None:
            too_long = [len(ids) for ids in input_ids if len(ids) > max_length]
            if too_long:
                raise ValueError(
                    f"Prompts of {too_long} tokens exceed max_length={max_length}. SQLlavaProcessor does not "
                    "truncate: a cut could split the image tokens or a turn. Shorten the conversation or raise "
                    "`max_length`."
                )
        padded = self.tokenizer.pad(
            {"input_ids": input_ids},
            padding=text_kwargs.get("padding", False),
            max_length=max_length,
            pad_to_multiple_of=text_kwargs.get("pad_to_multiple_of"),
            padding_side=text_kwargs.get("padding_side"),
            return_attention_mask=text_kwargs.get("return_attention_mask", True),
        )
        data.update(padded)
        if isinstance(text, str) and return_tensors is None:
            data = {key: value[0] if key != "pixel_values" else value for key, value in data.items()}
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _check_image_count(self, texts: list[str], images: list | None, marked: bool):
        # A marked `<image>` was typed inside a message: it is text, not a placeholder.
        unmarked = [re.sub(f"{_CONTROL_TOKEN_START}.*?{_CONTROL_TOKEN_END}", "", sample) for sample in texts]
        num_placeholders = sum(sample.count(self.image_token) for sample in (unmarked if marked else texts))
        num_images = 0 if images is None else len(images)
        if num_placeholders == num_images:
            return
        if num_images == 0:
            raise ValueError(
                f"The text has {num_placeholders} {self.image_token} placeholder(s) but no image was given. Pass one "
                f"image per placeholder with `images=`, or remove the placeholders for a text-only prompt."
            )
        if num_placeholders == 0:
            raise ValueError(
                f"{num_images} image(s) were given but the text has no {self.image_token} placeholder. Put "
                f"{self.image_token} where each image goes (the reference writes "
                f"'USER: {self.image_token}\\nquestion'), "
                'or use `apply_chat_template` with {"type": "image"} content blocks.'
            )
        raise ValueError(
            f"The text has {num_placeholders} {self.image_token} placeholder(s) but {num_images} image(s) were given: "
            f"pass exactly one image per placeholder, in the order the placeholders appear (across the batch)."
        )

    def _encode_prompt(self, text: str, add_bos: bool, marked: bool) -> list[int]:
        """Reference `tokenizer_image_token` (§3.4): split on structure tokens, encode each text chunk on its own."""
        control_pattern = "|".join(re.escape(token) for token in self.control_tokens)
        start, end = _CONTROL_TOKEN_START, _CONTROL_TOKEN_END
        marker_pattern = f"{start}(.*?){end}|[{start}{end}]"
        pattern = re.compile(f"{marker_pattern}|{control_pattern}" if marked else control_pattern, re.DOTALL)

        bos = self.tokenizer.bos_token
        ids = []
        if add_bos and bos is not None and not (text.startswith(bos)):
            ids.append(self.tokenizer.bos_token_id)  # exactly one BOS, even if the template wrote one
        chunk, position = "", 0
        for match in pattern.finditer(text):
            chunk += text[position : match.start()]
            position = match.end()
            if marked and match.group(0)[0] in (_CONTROL_TOKEN_START, _CONTROL_TOKEN_END):
                chunk += match.group(1) or ""  # a token typed in a message: plain text, part of the chunk
                continue
            ids += self._encode_chunk(chunk)
            chunk = ""
            if match.group(0) == self.image_token:
                ids += [self.image_token_id] * self.image_seq_length
            else:
                ids.append(self.tokenizer.convert_tokens_to_ids(match.group(0)))
        ids += self._encode_chunk(chunk + text[position:])
        return ids

    def _encode_chunk(self, chunk: str, continuation: bool = False, control_ids: set[int] | None = None) -> list[int]:
        """Encode text between two structure tokens as plain text, with sentencepiece's dummy prefix.

        `continuation=True` (sentencepiece backends only) encodes text that continues a chunk, without the dummy
        prefix, for `encode_segments`. `control_ids` saves recomputing the special ids on every call.
        """
        if not chunk:
            return []  # the reference's `tokenizer("")` gives only the BOS it then drops
        if self._sentencepiece_model is not None:
            # Sentencepiece (add_dummy_prefix, no whitespace collapsing) always prepends "▁", even before a leading
            # space: " ASSISTANT:" -> "▁▁ASSISTANT:". Feeding the backend model directly keeps that in any pipeline.
            prefix = "" if continuation else "▁"
            ids = [token.id for token in self._sentencepiece_model.tokenize(prefix + chunk.replace(" ", "▁"))]
        elif continuation:
            raise ValueError("Only sentencepiece-style backends can encode a chunk continuation on its own.")
        else:
            ids = self.tokenizer.encode(chunk, add_special_tokens=False, split_special_tokens=True)
        if control_ids is None:
            control_ids = {self.tokenizer.convert_tokens_to_ids(token) for token in self.control_tokens}
        if control_ids.intersection(ids):
            raise ValueError(f"Cannot encode {chunk!r} as plain text: the tokenizer turns it into a special token.")
        return ids

    # ------------------------------------------------------------------------------------------------------------
    # Training: the conversation as (text, trained-role) segments, tokenised once, labels from the structure.
    # The reference derives its labels from token-length arithmetic that silently masks whole samples under other
    # tokenizer versions (sqllava-reference.md §3.1, §4.6); here the template itself says which text is trained.
    # ------------------------------------------------------------------------------------------------------------

    def conversation_segments(
        self, messages: list[dict], system_prompt: str | None = None, images_first: bool = True
    ) -> list[tuple[str, str | None, bool]]:
        r"""
        The chat template's rendering of `messages` (with `add_generation_prompt=False`) as segments
        `(text, trained_role, is_template)`, in order, whose texts join to exactly
        `apply_chat_template(messages, system_prompt=system_prompt)`.

        - `trained_role` is `"assistant"` for an answer (the space after `ASSISTANT:`, the text and its `</s>`),
          `"vuser"` for a virtual-user question (the space after `VUSER:`, the text and its `</s>`), `None` for the
          rest: system prompt, role markers, user turns, images and separators (reference §4.6);
        - `is_template` is `True` for text the template writes (special tokens in it are structure) and `False` for
          message text (always plain text: a typed `</s>` cannot end a turn).

        With `images_first=False` a user turn's image and text blocks keep their order, as the template variable of the
        same name renders them (`"USER: Q\\n<image> "`); by default the images come first (`"USER: <image>\\nQ "`).

        Raises `ValueError` for the conversations the template rejects (roles, order, images outside user turns).
        """
        if not messages:
            raise ValueError("The conversation is empty: give at least one user message.")

        def content_text(message: dict, where: str) -> tuple[int, str]:
            content = message.get("content")
            if content is None:
                raise ValueError(f"{where} has no content.")
            if isinstance(content, str):
                return 0, content
            num_images, texts = 0, []
            for block in content:
                if block.get("type") == "image":
                    num_images += 1
                elif block.get("type") == "text":
                    texts.append(block["text"])
                else:
                    raise ValueError(
                        f"Unsupported content type {block.get('type')!r} in {where}: use text and image blocks."
                    )
            return num_images, " ".join(texts)

        if messages[0]["role"] == "system":
            if system_prompt is not None:
                raise ValueError("The conversation starts with a system message and `system_prompt` was also given.")
            num_images, system_message = content_text(messages[0], "message 0 (role 'system')")
            if num_images:
                raise ValueError("The system message can only hold text: put images in a user message.")
            loop_messages, first_index = messages[1:], 1
        else:
            if (system_prompt or "v1") not in SYSTEM_PROMPTS:
                raise ValueError(f"`system_prompt` must be 'v1' or 'v1_sq', got {system_prompt!r}.")
            system_message, loop_messages, first_index = SYSTEM_PROMPTS[system_prompt or "v1"], messages, 0
        if not loop_messages:
            raise ValueError("The conversation has no user message after the system message.")

        eos = self.tokenizer.eos_token or "</s>"
        segments = [(system_message, None, False), (" ", None, True)]
        for index, message in enumerate(loop_messages):
            role = message.get("role")
            where = f"message {index + first_index} (role {role!r})"
            if role not in ("user", "assistant", "vuser"):
                raise ValueError(f"Unexpected role in {where}: turns are 'user', 'vuser' and 'assistant'.")
            if (index % 2 == 1) != (role == "assistant"):
                raise ValueError(f"Turns must alternate user-or-vuser / assistant starting with a user turn: {where}.")
            if role == "vuser" and index == 0:
                raise ValueError(f"A vuser turn must follow an assistant turn, but {where} comes first.")
            num_images, text = content_text(message, where)
            if num_images and role != "user":
                raise ValueError(f"Images go in user turns, but {where} has one.")
            if role == "user" and not images_first and not isinstance(message["content"], str):
                segments.append(("USER: ", None, True))
                previous = None
                for block in message["content"]:  # validated by content_text
                    if previous is not None:
                        separator = " " if block["type"] == "text" and previous == "text" else "\n"
                        segments.append((separator, None, True))
                    if block["type"] == "image":
                        segments.append((self.image_token, None, True))
                    else:
                        segments.append((block["text"], None, False))
                    previous = block["type"]
                segments.append((" ", None, True))
            elif role == "user":
                segments.append(("USER: " + (self.image_token + "\n") * num_images, None, True))
                segments += [(text, None, False), (" ", None, True)]
            else:
                # "ASSISTANT:" / "VUSER:" are masked; the space after the colon starts the trained text, as in the
                # reference, where the answer's first piece "▁word" carries that space (§4.6).
                marker = "ASSISTANT" if role == "assistant" else self.vuser_token
                segments += [(marker + ":", None, True), (" ", role, True), (text, role, False), (eos, role, True)]
                if role == "vuser":
                    segments.append((" ", None, True))  # the even-index separator after "question</s>" (§3.2)
        return segments

    def encode_segments(
        self, segments: list[tuple[str, str | None, bool]], add_special_tokens: bool = True
    ) -> tuple[list[int], list[str | None]]:
        r"""
        Tokenise `(text, tag, is_template)` segments exactly as [`~SQLlavaProcessor.__call__`] tokenises their
        concatenation (for message text without special tokens; message text is always encoded as plain text, like
        `apply_chat_template(..., tokenize=True)` does) and give every token its segment's `tag`.

        Special tokens in template text split the text into chunks (reference §3.4). Within a chunk, the run of
        segments sharing a tag is encoded as one string: the first run of a chunk with sentencepiece's dummy prefix,
        a later run as a continuation without it, so the runs' ids concatenate to the chunk's ids (the runs meet
        before a space, where Llama's pieces never merge). Tokenizers without a sentencepiece-style backend encode each
        chunk whole and place the boundaries by encoding the chunk's prefixes; a boundary inside a token raises.

        Returns:
            `tuple[list[int], list]`: the ids (one BOS first with `add_special_tokens`, each image expanded to
            `image_seq_length` image tokens) and one tag per id (the BOS and image tokens take their segment's tag).
        """
        control_tokens = self.control_tokens
        control_ids = {self.tokenizer.convert_tokens_to_ids(token) for token in control_tokens}
        control_pattern = re.compile("(" + "|".join(re.escape(token) for token in control_tokens) + ")")
        ids: list[int] = []
        tags: list[str | None] = []
        if add_special_tokens and self.tokenizer.bos_token_id is not None:
            ids.append(self.tokenizer.bos_token_id)
            tags.append(segments[0][1] if segments else None)
        runs: list[list] = []  # [text, tag] runs of the current chunk

        def flush():
            if self._sentencepiece_model is not None:
                for position, (text, tag) in enumerate(runs):
                    run_ids = self._encode_chunk(text, continuation=position > 0, control_ids=control_ids)
                    ids.extend(run_ids)
                    tags.extend([tag] * len(run_ids))
            elif runs:
                chunk_ids = self._encode_chunk("".join(text for text, _ in runs), control_ids=control_ids)
                start, prefix = 0, ""
                for position, (text, tag) in enumerate(runs):
                    prefix += text
                    end = len(chunk_ids)
                    if position < len(runs) - 1:
                        prefix_ids = self._encode_chunk(prefix, control_ids=control_ids)
                        end = len(prefix_ids)
                        if chunk_ids[:end] != prefix_ids:
                            raise ValueError(f"A token spans the boundary after {prefix!r}: cannot split its labels.")
                    ids.extend(chunk_ids[start:end])
                    tags.extend([tag] * (end - start))
                    start = end
            runs.clear()

        for text, tag, is_template in segments:
            pieces = control_pattern.split(text) if is_template else [text]
            for number, piece in enumerate(pieces):
                if number % 2 == 1:  # a special token written by the template: structure
                    flush()
                    count = self.image_seq_length if piece == self.image_token else 1
                    ids.extend([self.tokenizer.convert_tokens_to_ids(piece)] * count)
                    tags.extend([tag] * count)
                elif piece:
                    if runs and runs[-1][1] == tag:
                        runs[-1][0] += piece
                    else:
                        runs.append([piece, tag])
        flush()
        return ids, tags

    def encode_conversation(
        self,
        messages: list[dict],
        system_prompt: str | None = "v1_sq",
        add_special_tokens: bool = True,
        images_first: bool = True,
    ) -> dict[str, list[int]]:
        r"""
        Token ids and training labels of one conversation (reference §4.6): answers + `</s>` and vuser questions +
        `</s>` keep their ids, everything else (BOS, system prompt, role markers, user turns, image tokens) is -100.

        Example:

        ```python
        >>> encoded = processor.encode_conversation(messages)  # v1_sq system prompt, as training stage 2
        >>> sorted(encoded)
        ['input_ids', 'labels']
        ```

        Args:
            messages (`list[dict]`):
                The conversation (roles `system`, `user`, `assistant`, `vuser`), as for `apply_chat_template`.
            system_prompt (`str`, *optional*, defaults to `"v1_sq"`):
                The system prompt when the conversation has none: training uses `"v1_sq"` for every sample (§3.3).
            add_special_tokens (`bool`, *optional*, defaults to `True`):
                Start with BOS.
            images_first (`bool`, *optional*, defaults to `True`):
                Put a user turn's images before its text (the reference); `False` keeps the content blocks' order.

        Returns:
            `dict` with `input_ids` and `labels` (`list[int]`, same length).
        """
        segments = self.conversation_segments(messages, system_prompt, images_first=images_first)
        ids, tags = self.encode_segments(segments, add_special_tokens)
        return {"input_ids": ids, "labels": [i if tag is not None else -100 for i, tag in zip(ids, tags)]}

    def apply_chat_template(
        self,
        conversation: list[dict] | list[list[dict]],
        chat_template: str | None = None,
        add_generation_prompt: bool = False,
        generation_role: str = "assistant",
        system_prompt: str | None = None,
        tokenize: bool = False,
        sanitize_control_tokens: bool | None = None,
        **kwargs,
    ):
        r"""
        Render (and optionally tokenise) conversations in SQ-LLaVA's prompt format (reference §3.2).

        Messages are `{"role": ..., "content": ...}` with the roles `"system"` (optional, first), `"user"`,
        `"assistant"` and `"vuser"` (the virtual user: a question the model is trained, or asked, to produce). The
        content is a string or a list of `{"type": "text", "text": ...}` and `{"type": "image"}` blocks (an image block
        can carry the image as `"image"`, `"url"` or `"path"`, which `tokenize=True` then loads); images go in user
        turns and render as `"<image>\n"` before the text. Turns alternate user-or-vuser / assistant, starting with a
        user turn; a malformed conversation raises a `jinja2` `TemplateError` that says what is wrong. The template
        variable `images_first=False` keeps a user turn's blocks in their order instead (`"USER: Q\\n<image> "` for a
        text block then an image block).

        Example, with `vuser_token="VUSER"` (a converted checkpoint) and `SYS` the v1 system prompt:

        ```python
        >>> messages = [
        ...     {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q0"}]},
        ...     {"role": "assistant", "content": "A0"},
        ...     {"role": "vuser", "content": "Q1"},
        ...     {"role": "assistant", "content": "A1"},
        ... ]
        >>> processor.apply_chat_template(messages)
        'SYS USER: <image>\nQ0 ASSISTANT: A0</s>VUSER: Q1</s> ASSISTANT: A1</s>'
        >>> processor.apply_chat_template(messages[:2], add_generation_prompt=True, generation_role="vuser",
        ...                               system_prompt="v1_sq")  # self-questioning: the model asks next
        'SYS_SQ USER: <image>\nQ0 ASSISTANT: A0</s>VUSER:'
        ```

        Args:
            conversation (`list[dict]` or `list[list[dict]]`):
                One conversation, or a batch of them.
            chat_template (`str`, *optional*):
                Another template; defaults to the processor's.
            add_generation_prompt (`bool`, *optional*, defaults to `False`):
                End with the role marker of the turn to generate: `"ASSISTANT:"` or `"{vuser_token}:"`.
            generation_role (`str`, *optional*, defaults to `"assistant"`):
                `"assistant"` to answer the last user turn, `"vuser"` to make the model ask a question after the last
                assistant turn (self-questioning, reference §3.6).
            system_prompt (`str`, *optional*):
                The system prompt when the conversation has no system message: `"v1"` (the default: answering and
                benchmarks, [`SYSTEM_PROMPT_V1`]) or `"v1_sq"` (self-questioning and training,
                [`SYSTEM_PROMPT_V1_SQ`]).
            tokenize (`bool`, *optional*, defaults to `False`):
                Return token ids (and `pixel_values` with `return_dict=True`) instead of the string.
            sanitize_control_tokens (`bool`, *optional*):
                How special tokens typed inside message text (`</s>`, `<s>`, `<image>`, `[vusr]`, ...) are handled,
                so that message text can never close a turn, add an image slot or write a role token:

                - `None` (default): with `tokenize=True` they are encoded as plain text (escape); with
                  `tokenize=False` a `ValueError` is raised (reject), because a rendered string cannot tell them
                  apart from the template's own tokens once it is tokenised;
                - `True`: escape (requires `tokenize=True`);
                - `False`: no defence, the text is used verbatim, as the reference does. Only for trusted text.

                The plain-text marker `"VUSER:"` needs no escaping: a vuser turn is always rendered right after the
                `</s>` token that ends an assistant turn, and message text cannot produce that token, so `"VUSER:"`
                typed in a message stays inside its turn. (Vicuna's `USER:` / `ASSISTANT:` are plain text in the
                reference too, so text can imitate them inside a turn, but it cannot end a turn.)
            **kwargs:
                Passed on as in [`~transformers.ProcessorMixin.apply_chat_template`] (`return_dict`, `return_tensors`,
                `continue_final_message`, `processor_kwargs`, other template variables).

        Returns:
            `str` (or `list[str]`) with `tokenize=False`; token ids or a [`~transformers.BatchFeature`] otherwise.
        """
        template_kwargs = {"generation_role": generation_role, "vuser_token": self.vuser_token}
        template_kwargs["image_token"] = self.image_token
        if system_prompt is not None:
            template_kwargs["system_prompt"] = system_prompt
        if sanitize_control_tokens is None:
            sanitize_control_tokens = tokenize
            if not tokenize:
                self._reject_control_tokens(conversation)
        elif sanitize_control_tokens and not tokenize:
            raise ValueError(
                "`sanitize_control_tokens=True` needs `tokenize=True`: a rendered string cannot keep typed special "
                "tokens apart from the template's. Tokenise here, or leave it unset to reject such text."
            )
        if sanitize_control_tokens:
            # Mark the control tokens typed in the messages only (transformers' own marking would also mark our
            # `image_token` / `vuser_token` template variables), and tell `__call__` to encode them as text.
            control_tokens_re = re.compile("|".join(re.escape(token) for token in self.control_tokens))
            conversation = mark_control_tokens(conversation, control_tokens_re)
            kwargs["processor_kwargs"] = {**(kwargs.get("processor_kwargs") or {}), "sanitize_control_tokens": True}
        return super().apply_chat_template(
            conversation,
            chat_template=chat_template,
            add_generation_prompt=add_generation_prompt,
            tokenize=tokenize,
            **template_kwargs,
            **kwargs,
        )

    def _reject_control_tokens(self, conversation):
        conversations = conversation if conversation and isinstance(conversation[0], (list, tuple)) else [conversation]
        control_tokens = self.control_tokens
        for messages in conversations:
            for index, message in enumerate(messages):
                content = message.get("content")
                texts = [content] if isinstance(content, str) else [
                    block.get("text", "") for block in content or [] if isinstance(block, dict)
                ]
                for text in texts:
                    found = [token for token in control_tokens if isinstance(text, str) and token in text]
                    if found:
                        raise ValueError(
                            f"Message {index} ({message.get('role')!r}) contains {found[0]!r}, a special token of "
                            "SQ-LLaVA's prompt format: in a rendered string it would act as structure (end a turn, "
                            "add an image slot or a role). Use `apply_chat_template(..., tokenize=True)`, which "
                            "encodes it as plain text, or remove it from the message."
                        )

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]


def initialize_token_embeddings(model, vocab_size: int, token_ids: Iterable[int] = ()) -> int:
    r"""
    Grow `model`'s input embeddings and LM head to at least `vocab_size` rows and set every new row, plus the rows of
    `token_ids`, to the mean of the rows before the first of them (the tokens the model was trained on), as
    transformers' LLaVA conversion script initialises added tokens (it adds noise of 1e-5 times the covariance; the
    plain mean keeps the call deterministic). `token_ids` covers tokens that land in existing rows, e.g. LLaVA-1.5
    checkpoints whose vocabulary is padded to a multiple of 64.

    Returns:
        `int`: the embedding size after the call (never shrunk).
    """
    old_size = model.get_input_embeddings().weight.shape[0]
    new_rows = sorted(set(token_ids) | set(range(old_size, vocab_size)))
    if not new_rows:
        return old_size
    trained_rows = min(new_rows)
    means = [
        None if embeddings is None else embeddings.weight.detach()[:trained_rows].mean(dim=0)
        for embeddings in (model.get_input_embeddings(), model.get_output_embeddings())
    ]
    if vocab_size > old_size:
        model.resize_token_embeddings(vocab_size, mean_resizing=False)
    with torch.no_grad():
        for embeddings, mean in zip((model.get_input_embeddings(), model.get_output_embeddings()), means):
            if mean is not None:
                embeddings.weight[new_rows] = mean
    return model.get_input_embeddings().weight.shape[0]


def resize_embeddings_for_processor(model, processor: SQLlavaProcessor, new_tokens: Iterable[str] = ()) -> int:
    r"""
    Give `model` embedding rows for every token of `processor.tokenizer`, after the processor added `<image>`,
    `<pad>` or a native vuser token: the one call to make after building a processor for an existing model. New rows
    of the input embeddings and of the LM head are the mean of the existing rows (see
    [`initialize_token_embeddings`]). Also checks that the model's `image_token_id` and `image_seq_length` match the
    processor's.

    Args:
        model ([`SQLlavaForConditionalGeneration`] or any model with `resize_token_embeddings`):
            The model; resized in place.
        processor ([`SQLlavaProcessor`]):
            The processor whose tokenizer the model must cover.
        new_tokens (`Iterable[str]`, *optional*):
            Tokens the model has not been trained with whose ids fall inside its existing rows (a padded
            vocabulary): their rows are re-initialised to the mean as well. Rows past the old size always are.

    Returns:
        `int`: the embedding size after the call (unchanged if it already covered the tokenizer; never shrunk).
    """
    config = model.config
    if getattr(config, "image_seq_length", processor.image_seq_length) != processor.image_seq_length:
        raise ValueError(
            f"The processor expands each image into {processor.image_seq_length} tokens but the model expects "
            f"{config.image_seq_length}: build the processor with `image_seq_length={config.image_seq_length}`."
        )
    image_token_id = getattr(config, "image_token_id", None)
    if image_token_id is not None and image_token_id != processor.image_token_id:
        raise ValueError(
            f"The processor's {processor.image_token} has id {processor.image_token_id} but the model's "
            f"`image_token_id` is {image_token_id}: set `model.config.image_token_id = {processor.image_token_id}` "
            "(and `image_token_index`) or use the tokenizer the model was set up with."
        )
    token_ids = [processor.tokenizer.convert_tokens_to_ids(token) for token in new_tokens]
    return initialize_token_embeddings(model, len(processor.tokenizer), token_ids)


SQLlavaImageProcessor.register_for_auto_class("AutoImageProcessor")
SQLlavaProcessor.register_for_auto_class()

__all__ = [
    "CLIP_MEAN_COLOUR",
    "NATIVE_VUSER_TOKEN",
    "ORIGINAL_VUSER_MARKER",
    "SQLlavaImageProcessor",
    "SQLlavaProcessor",
    "SYSTEM_PROMPT_V1",
    "SYSTEM_PROMPT_V1_SQ",
    "build_chat_template",
    "initialize_token_embeddings",
    "resize_embeddings_for_processor",
]
