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
"""Processor class for SQ-LLaVA: the reference's prompt format and tokenisation, with its image processor.

A "Hub file", shipped by `save_pretrained` as remote code: it imports only torch, transformers (no private names, so
it keeps working across versions), PIL, numpy and its siblings. What has to match the reference (docs/original.md):

- prompts (docs/original.md#prompt-format-and-the-two-system-prompts): Vicuna v1 with a fourth role, the virtual
  user, rendered by one Jinja chat template;
- token ids (docs/original.md#tokenisation-chunk-by-chunk): every text chunk between special tokens is tokenised on
  its own with sentencepiece's dummy prefix ("legacy" Llama behaviour), one BOS, and each `<image>` becomes
  `image_seq_length` image tokens.
"""

import json
import os
import re

from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import make_flat_list_of_images
from transformers.processing_utils import MultiModalData, ProcessingKwargs, ProcessorMixin
from transformers.utils import logging


logger = logging.get_logger(__name__)


# The reference's `conv_vicuna_v1`: answering, and every benchmark (docs/original.md#which-system-prompt-where).
SYSTEM_PROMPT_V1 = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, "
    "and polite answers to the user's questions."
)
# The reference's `conv_vicuna_v1_sq`: training stage 2 and self-questioning. The missing space in "questions.Also"
# is the reference's (its string is a concatenation); the released checkpoints were trained on it, so we keep it.
SYSTEM_PROMPT_V1_SQ = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, "
    "and polite answers to the user's questions.Also, the artificial intelligence assistant is a curious virtual "
    "user. The virtual user asks complex questions that are relevant to the content in the image, for example, "
    "asking about background knowledge of the objects in the image, asking to discuss about events happening in the "
    "image, etc. Again, do not ask about uncertain details."
)
SYSTEM_PROMPTS = {"v1": SYSTEM_PROMPT_V1, "v1_sq": SYSTEM_PROMPT_V1_SQ}

# The virtual user's role marker. Checkpoints converted from the original release learned the plain text "VUSER"
# (no new token, docs/original.md#the-vuser-marker); models set up by this package get the added special token
# "[vusr]" (the paper's name).
ORIGINAL_VUSER_MARKER = "VUSER"
NATIVE_VUSER_TOKEN = "[vusr]"

# The template ships beside this file (`save_pretrained` writes it as `chat_template.jinja`); `build_chat_template`
# sets its one varying default, the vuser marker for runtimes that render it without passing `vuser_token`.
CHAT_TEMPLATE_FILE = "chat_template.jinja"
_DEFAULT_VUSER_MARKER = 'vuser_token | default("[vusr]")'

# A special token typed inside a message is wrapped in these two private-use characters before rendering, so that
# `__call__` encodes it as text while the template's own special tokens stay structure (transformers'
# `sanitize_control_tokens` does the same with the same characters; its helpers are private, so this file has its own).
_TYPED_START, _TYPED_END = "\U000f0000", "\U000f0001"


def build_chat_template(vuser_token: str = NATIVE_VUSER_TOKEN) -> str:
    r"""
    Build SQ-LLaVA's Jinja chat template: Vicuna v1 (`SeparatorStyle.TWO`,
    docs/original.md#prompt-format-and-the-two-system-prompts) with the virtual user. It renders:

    - the BOS unless the variable `add_bos_token` is false, as Llama chat templates write it, so a prompt tokenised
      without special tokens (TRL, vLLM) keeps it. [`SQLlavaProcessor.apply_chat_template`] passes
      `add_bos_token=tokenize`: its strings stay the reference's prompt text, and `__call__` adds the one BOS;
    - `system + " "`: a `{"role": "system"}` first message, else the template variable `system_prompt`'s (`"v1"`, the
      default, or `"v1_sq"`);
    - message `i`: `ROLE + ": " + text + [" ", "</s>"][i % 2]`, the roles being `USER`, `ASSISTANT` and
      `{vuser_token}`; a vuser turn's text ends in `"</s>"` (reference `train.py` L522): `VUSER: question</s> `.
      Turns alternate user-or-vuser / assistant from a user turn, so the separator by index is one by role;
    - an image block as `"<image>\n"`, a message's images before its text (docs/original.md#training-data);
    - `add_generation_prompt`: `"ASSISTANT:"`, or `"{vuser_token}:"` with `generation_role="vuser"`.

    What the reference trains sits in `{% generation %}` blocks, for `return_assistant_tokens_mask` (TRL's
    `assistant_only_loss`): an answer or a vuser question, from the space after its marker's colon to its `"</s>"`,
    the spans of `training.labels` (docs/original.md#stage-2-labels-and-vuser-turns).

    Args:
        vuser_token (`str`, *optional*, defaults to `"[vusr]"`):
            The virtual user's role marker used when the caller does not pass the `vuser_token` variable (other
            runtimes that render the saved template). [`SQLlavaProcessor`] always passes its own.

    Returns:
        `str`: the template.
    """
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), CHAT_TEMPLATE_FILE)
    if not os.path.isfile(path):
        # Remote code: the Hub folder's own `chat_template.jinja` is loaded by `from_pretrained` instead.
        raise FileNotFoundError(
            f"SQ-LLaVA's chat template {CHAT_TEMPLATE_FILE} is not beside {__file__}: install transformers-sqllava, "
            "or load the processor from a saved folder (which holds the template)."
        )
    with open(path, encoding="utf-8") as template_file:
        template = template_file.read()
    return template.replace(_DEFAULT_VUSER_MARKER, f"vuser_token | default({json.dumps(vuser_token)})")


def _check_vocabulary(tokenizer, image_token: str, vuser_token: str):
    # The processor never changes a tokenizer: set-up code does, as transformers' LLaVA conversion script does.
    vocab = tokenizer.get_vocab()
    missing = [token for token in (image_token, vuser_token) if token not in vocab and token != ORIGINAL_VUSER_MARKER]
    if tokenizer.pad_token is None:
        missing.append("a pad token")
    if missing:
        listed = " and ".join([", ".join(missing[:-1]), missing[-1]] if len(missing) > 1 else missing)
        raise ValueError(
            f"The tokenizer has no {listed}, which SQ-LLaVA's prompts need. Set it up first: "
            f"`transformers_sqllava.add_sqllava_tokens(tokenizer, image_token={image_token!r}, "
            f"vuser_token={vuser_token!r})`, then, once the processor is built, "
            "`resize_embeddings_for_processor(model, processor)` gives the model rows for the new tokens."
        )


def _sentencepiece_model_of(tokenizer):
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


def _check_image_count(texts: list[str], images: list | None, image_token: str, marked: bool):
    # A marked `<image>` was typed inside a message: it is text, not a placeholder.
    unmarked = [re.sub(f"{_TYPED_START}.*?{_TYPED_END}", "", sample) for sample in texts]
    num_placeholders = sum(sample.count(image_token) for sample in (unmarked if marked else texts))
    num_images = 0 if images is None else len(images)
    if num_placeholders == num_images:
        return
    if num_images == 0:
        raise ValueError(
            f"The text has {num_placeholders} {image_token} placeholder(s) but no image was given. Pass one "
            f"image per placeholder with `images=`, or remove the placeholders for a text-only prompt."
        )
    if num_placeholders == 0:
        raise ValueError(
            f"{num_images} image(s) were given but the text has no {image_token} placeholder. Put {image_token} "
            f"where each image goes (the reference writes 'USER: {image_token}\\nquestion'), "
            'or use `apply_chat_template` with {"type": "image"} content blocks.'
        )
    raise ValueError(
        f"The text has {num_placeholders} {image_token} placeholder(s) but {num_images} image(s) were given: "
        f"pass exactly one image per placeholder, in the order the placeholders appear (across the batch)."
    )


def _is_batch(conversation) -> bool:
    return bool(conversation) and isinstance(conversation[0], (list, tuple))


def _with_message_texts(conversation, edit):
    """The conversation (or batch) with `edit(text, message_index, message)` applied to every text of its messages."""

    def edit_message(index, message):
        content = message.get("content")
        if isinstance(content, str):
            return {**message, "content": edit(content, index, message)}
        if not isinstance(content, list):
            return message
        is_text = [isinstance(block, dict) and isinstance(block.get("text"), str) for block in content]
        blocks = [{**b, "text": edit(b["text"], index, message)} if t else b for b, t in zip(content, is_text)]
        return {**message, "content": blocks}

    conversations = conversation if _is_batch(conversation) else [conversation]
    edited = [[edit_message(index, message) for index, message in enumerate(messages)] for messages in conversations]
    return edited if _is_batch(conversation) else edited[0]


def _reject_control_tokens(conversation, control_tokens: list[str]):
    def check(text, index, message):
        found = [token for token in control_tokens if token in text]
        if found:
            raise ValueError(
                f"Message {index} ({message.get('role')!r}) contains {found[0]!r}, a special token of SQ-LLaVA's "
                "prompt format: in a rendered string it would act as structure (end a turn, add an image slot or a "
                "role). Use `apply_chat_template(..., tokenize=True)`, which encodes it as plain text, or remove it."
            )
        return text

    _with_message_texts(conversation, check)


def _mark_typed_tokens(conversation, control_tokens: list[str]):
    """Wrap every special token typed in message text in the `_TYPED_*` markers (markers already there are dropped, so
    text cannot forge a marked token)."""
    pattern = re.compile("|".join(re.escape(token) for token in control_tokens))

    def mark(text, index, message):
        text = text.replace(_TYPED_START, "").replace(_TYPED_END, "")
        return pattern.sub(lambda match: _TYPED_START + match.group(0) + _TYPED_END, text)

    return _with_message_texts(conversation, mark)


def _encode_text(processor, chunk: str, continuation: bool, control_ids, with_offsets: bool):
    """Ids of `chunk` as plain text with sentencepiece's dummy prefix, and (`with_offsets`) each id's character span
    in `chunk` (a span of the dummy prefix alone is empty)."""
    spans = None
    if processor._sentencepiece_model is not None:
        # Sentencepiece (add_dummy_prefix, no whitespace collapsing) always prepends "▁", even before a leading
        # space: " ASSISTANT:" -> "▁▁ASSISTANT:". Feeding the backend model directly keeps that in any pipeline.
        prefix = "" if continuation else "▁"
        pieces = prefix + chunk.replace(" ", "▁")  # one character of `pieces` per character of `chunk`
        tokens = processor._sentencepiece_model.tokenize(pieces)
        ids = [token.id for token in tokens]
        if with_offsets:  # the backend gives UTF-8 byte offsets into `pieces`
            char_of_byte = [index for index, char in enumerate(pieces) for _ in char.encode("utf-8")] + [len(pieces)]
            spans = []
            for start, end in (token.offsets for token in tokens):
                first, last = char_of_byte[start], char_of_byte[end - 1] + 1 if end > start else char_of_byte[start]
                spans.append((max(first - len(prefix), 0), max(last - len(prefix), 0)))
    elif continuation:
        raise ValueError("Only sentencepiece-style backends can encode a chunk continuation on its own.")
    else:
        encoding = processor.tokenizer(
            chunk, add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=with_offsets
        )
        ids, spans = encoding["input_ids"], encoding.get("offset_mapping")
    if control_ids is None:
        control_ids = {processor.tokenizer.convert_tokens_to_ids(token) for token in processor.control_tokens}
    if control_ids.intersection(ids):
        raise ValueError(f"Cannot encode {chunk!r} as plain text: the tokenizer turns it into a special token.")
    return ids, spans


def _encode_prompt(processor, text: str, add_bos: bool, marked: bool, with_offsets: bool = False):
    """
    The reference's `tokenizer_image_token` (docs/original.md#tokenisation-chunk-by-chunk): split on structure tokens
    and encode each text chunk on its own. Returns the ids and (`with_offsets`) each id's character span in `text`: a
    structure token's own text (every image token the `<image>` it replaces), `(0, 0)` for a BOS the text lacks.
    """
    control_pattern = "|".join(re.escape(token) for token in processor.control_tokens)
    marker_pattern = f"{_TYPED_START}(.*?){_TYPED_END}|[{_TYPED_START}{_TYPED_END}]"
    pattern = re.compile(f"{marker_pattern}|{control_pattern}" if marked else control_pattern, re.DOTALL)
    tokenizer = processor.tokenizer
    ids, offsets = [], []
    if add_bos and tokenizer.bos_token is not None and not text.startswith(tokenizer.bos_token):
        ids.append(tokenizer.bos_token_id)  # exactly one BOS, even if the template wrote one
        offsets.append((0, 0))
    slices = []  # the (start, end) slices of `text` that make the current chunk

    def flush():
        chunk = "".join(text[start:end] for start, end in slices)
        if chunk:  # the reference's `tokenizer("")` gives only the BOS it then drops
            chunk_ids, spans = _encode_text(processor, chunk, False, None, with_offsets)
            ids.extend(chunk_ids)
        if chunk and with_offsets:  # `where`: the position in `text` of each character of the chunk
            where = [position for start, end in slices for position in range(start, end)] + [slices[-1][1]]
            offsets.extend((where[start], where[end - 1] + 1 if end > start else where[start]) for start, end in spans)
        slices.clear()

    position = 0
    for match in pattern.finditer(text):
        slices.append((position, match.start()))
        position = match.end()
        if marked and match.group(0)[0] in (_TYPED_START, _TYPED_END):
            if match.group(1):  # a token typed in a message: plain text, part of the chunk
                slices.append(match.span(1))
            continue
        flush()
        count = processor.image_seq_length if match.group(0) == processor.image_token else 1
        ids.extend([tokenizer.convert_tokens_to_ids(match.group(0))] * count)
        offsets.extend([match.span()] * count)
    slices.append((position, len(text)))
    flush()
    return ids, offsets if with_offsets else None


def _unmask_image_tokens(output, image_token_id: int):
    # Image tokens are never trained, whatever a custom template's generation blocks cover.
    masks, input_ids = output["assistant_masks"], output["input_ids"]
    if not isinstance(masks, list):  # a tensor or an array
        masks[input_ids == image_token_id] = 0
        return
    for row_ids, row_mask in zip(input_ids, masks):
        row_mask[:] = [0 if token == image_token_id else mask for token, mask in zip(row_ids, row_mask)]


class SQLlavaProcessor(ProcessorMixin):
    r"""
    Constructs an SQ-LLaVA processor: an [`SQLlavaImageProcessor`] (or any CLIP-style image processor) and a
    Llama/Vicuna tokenizer, with SQ-LLaVA's chat template.

    [`~SQLlavaProcessor.__call__`] prepares a batch for [`SQLlavaForConditionalGeneration`]:

    - every `<image>` in the text becomes `image_seq_length` copies of the image token (576 for the real model; the
      model scatters the projected image features there) and the images become `pixel_values`;
    - the text is tokenised as the reference's `tokenizer_image_token` does
      (docs/original.md#tokenisation-chunk-by-chunk): one BOS, and every chunk of text between special tokens
      (`<image>`, `</s>`, ...) gets sentencepiece's dummy prefix "▁", as the reference's slow `LlamaTokenizer` gives
      it, so a converted checkpoint sees the ids it was trained on. The processor encodes the chunks itself:
      transformers 5's `LlamaTokenizer` gives a chunk that starts with a space one "▁" fewer.

    [`~SQLlavaProcessor.apply_chat_template`] renders conversations with the roles `system`, `user`, `assistant` and
    `vuser` (the virtual user), exactly as the reference's Vicuna v1 / v1_sq templates, and gives the assistant masks
    TRL's `assistant_only_loss` trains on (the reference's supervision: answers and vuser questions).

    The tokenizer must already have the image token, a pad token and a special vuser marker (a converted or saved
    checkpoint's does); for a fresh Vicuna tokenizer call [`~transformers_sqllava.add_sqllava_tokens`] first, and
    [`~transformers_sqllava.resize_embeddings_for_processor`] on the model afterwards.

    Args:
        image_processor ([`SQLlavaImageProcessor`], *optional*):
            The image processor.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`], *optional*):
            The Vicuna (Llama) tokenizer, with its legacy sentencepiece behaviour.
        chat_template (`str`, *optional*):
            A Jinja template; defaults to [`build_chat_template`]`(vuser_token)`.
        image_token (`str`, *optional*, defaults to `"<image>"`):
            The image placeholder in prompts, a special token of the tokenizer.
        image_seq_length (`int`, *optional*, defaults to 576):
            Image tokens per image. Must equal the model's `config.image_seq_length` (16 for the tiny test model).
        vuser_token (`str`, *optional*, defaults to `"[vusr]"`):
            The virtual user's role marker; a vuser turn renders as `"{vuser_token}: question</s> "`. Use `"VUSER"`
            for checkpoints converted from the original release: it stays plain text, as they learned it. Any other
            marker must be a special token of the tokenizer; it keeps the colon (`"[vusr]:"`), so both kinds of
            checkpoint share one template and a question prompt ends in `":"` for both.
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
        _check_vocabulary(tokenizer, image_token, vuser_token)
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)
        if chat_template is None:
            chat_template = build_chat_template(vuser_token)
        super().__init__(image_processor, tokenizer, chat_template=chat_template)
        self._sentencepiece_model = _sentencepiece_model_of(tokenizer)
        if getattr(tokenizer, "legacy", None) is False:
            logger.warning_once(
                "The tokenizer has `legacy=False`: calling it directly drops sentencepiece's dummy prefix after "
                "special tokens, unlike the reference tokenizer SQ-LLaVA checkpoints were trained with "
                "(docs/original.md#tokenizer). SQLlavaProcessor's own ids are not affected; load the tokenizer with "
                "`legacy=True` for code that tokenises prompts without the processor."
            )

    @property
    def encodes_continuations(self) -> bool:
        """Whether `encode_chunk(..., continuation=True)` works: the tokenizer has a sentencepiece-style backend."""
        return self._sentencepiece_model is not None

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
                Tokenizer options (`padding`, `padding_side`, `max_length`, `pad_to_multiple_of`,
                `return_attention_mask`, `return_offsets_mapping`, `add_special_tokens`: `True`, the default, adds one
                BOS unless the text starts with it), image-processor options (`do_pad`, `size`, ...), `return_tensors`.

        Returns:
            [`~transformers.BatchFeature`] with `input_ids`, `attention_mask`, with images `pixel_values`, and with
            `return_offsets_mapping=True` `offset_mapping`: each id's `(start, end)` character span in its prompt, from
            the chunk encoder that gives the ids (every image token spans its `<image>`; padding and an added BOS
            `(0, 0)`). Prompts and offsets are not shifted for the image tokens, so no `text_replacement_offsets`.
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
        _check_image_count(texts, images, self.image_token, marked)

        merged = self._merge_kwargs(
            self.valid_processor_kwargs, tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs
        )
        text_kwargs, images_kwargs = merged["text_kwargs"], merged["images_kwargs"]
        return_tensors = text_kwargs.pop("return_tensors", None)
        data = {}
        if images is not None:
            images_kwargs.pop("return_tensors", None)
            data["pixel_values"] = self.image_processor(images, **images_kwargs)["pixel_values"]

        add_bos, with_offsets = text_kwargs.get("add_special_tokens", True), text_kwargs.get("return_offsets_mapping")
        encoded = [_encode_prompt(self, sample, add_bos, marked, bool(with_offsets)) for sample in texts]
        max_length = text_kwargs.get("max_length")
        if text_kwargs.get("truncation") and max_length is not None:
            too_long = [len(ids) for ids, _ in encoded if len(ids) > max_length]
            if too_long:
                raise ValueError(
                    f"Prompts of {too_long} tokens exceed max_length={max_length}. SQLlavaProcessor does not "
                    "truncate: a cut could split the image tokens or a turn. Shorten the conversation or raise "
                    "`max_length`."
                )
        padding_side = text_kwargs.get("padding_side") or self.tokenizer.padding_side
        padded = self.tokenizer.pad(
            {"input_ids": [ids for ids, _ in encoded]},
            padding=text_kwargs.get("padding", False),
            max_length=max_length,
            pad_to_multiple_of=text_kwargs.get("pad_to_multiple_of"),
            padding_side=padding_side,
            return_attention_mask=text_kwargs.get("return_attention_mask", True),
        )
        data.update(padded)
        if with_offsets:  # padding spans no text
            pads = [[(0, 0)] * (len(row) - len(offsets)) for row, (_, offsets) in zip(padded["input_ids"], encoded)]
            rows = zip(pads, (offsets for _, offsets in encoded))
            data["offset_mapping"] = [pad + row if padding_side == "left" else row + pad for pad, row in rows]
        if isinstance(text, str) and return_tensors is None:
            data = {key: value[0] if key != "pixel_values" else value for key, value in data.items()}
        return BatchFeature(data=data, tensor_type=return_tensors)

    def encode_chunk(self, chunk: str, continuation: bool = False, control_ids: set[int] | None = None) -> list[int]:
        """Encode text between two structure tokens as plain text, with sentencepiece's dummy prefix.

        `continuation=True` (sentencepiece backends only, see `encodes_continuations`) encodes text that continues a
        chunk, without the dummy prefix (labels encode a chunk run by run). `control_ids` caches the special ids."""
        if not chunk:
            return []  # the reference's `tokenizer("")` gives only the BOS it then drops
        return _encode_text(self, chunk, continuation, control_ids, with_offsets=False)[0]

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
        Render (and optionally tokenise) conversations in SQ-LLaVA's prompt format
        (docs/original.md#prompt-format-and-the-two-system-prompts).

        Roles are `"system"` (optional, first), `"user"`, `"assistant"` and `"vuser"` (the virtual user); content is a
        string or `{"type": "text" | "image"}` blocks (an image block can carry `"image"`, `"url"` or `"path"`, loaded
        with `tokenize=True`). Images go in user turns and render as `"<image>\n"` before the text (the template
        variable `images_first=False` keeps the blocks' order). Turns alternate user-or-vuser / assistant from a user
        turn; a malformed conversation raises a `jinja2.TemplateError` that says what is wrong.

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
                assistant turn (self-questioning, docs/original.md#self-questioning-at-inference).
            system_prompt (`str`, *optional*):
                The system prompt when the conversation has no system message: `"v1"` (the default: answering and
                benchmarks, [`SYSTEM_PROMPT_V1`]) or `"v1_sq"` (self-questioning and training,
                [`SYSTEM_PROMPT_V1_SQ`]).
            tokenize (`bool`, *optional*, defaults to `False`):
                Return token ids (and `pixel_values` with `return_dict=True`) instead of the string. The template
                variable `add_bos_token` defaults to `tokenize`: a string is the reference's prompt text, a tokenised
                prompt starts with the template's BOS whatever `add_special_tokens` says (TRL passes `False`).
            sanitize_control_tokens (`bool`, *optional*):
                Special tokens typed in message text (`</s>`, `<image>`, `[vusr]`, ...) must not close a turn, add an
                image slot or write a role. `None` (default): plain text with `tokenize=True`, a `ValueError` with
                `tokenize=False` (a string cannot keep them apart); `True`: plain text (needs `tokenize=True`);
                `False`: verbatim, as the reference, for trusted text only (docs/inference.md#typed-special-tokens).
            **kwargs:
                Passed on as in [`~transformers.ProcessorMixin.apply_chat_template`] (`return_dict`, `return_tensors`,
                `continue_final_message`, `processor_kwargs`, template variables). `return_assistant_tokens_mask`
                gives `assistant_masks` (what the reference trains, never image tokens), batched even for one
                conversation.

        Returns:
            `str` (or `list[str]`) with `tokenize=False`; token ids or a [`~transformers.BatchFeature`] otherwise.
        """
        template_kwargs = {"generation_role": generation_role, "vuser_token": self.vuser_token}
        template_kwargs.update(image_token=self.image_token, add_bos_token=kwargs.pop("add_bos_token", tokenize))
        if "add_bos_token" not in f"{self.chat_template}{chat_template or ''}":
            del template_kwargs["add_bos_token"]  # a template saved before it: transformers would warn on every call
        if system_prompt is not None:
            template_kwargs["system_prompt"] = system_prompt
        if sanitize_control_tokens is None:
            sanitize_control_tokens = tokenize
            if not tokenize:
                _reject_control_tokens(conversation, self.control_tokens)
        elif sanitize_control_tokens and not tokenize:
            raise ValueError(
                "`sanitize_control_tokens=True` needs `tokenize=True`: a rendered string cannot keep typed special "
                "tokens apart from the template's. Tokenise here, or leave it unset to reject such text."
            )
        if sanitize_control_tokens:
            # Mark the control tokens typed in the messages only (not the `image_token` / `vuser_token` template
            # variables), and tell `__call__` to encode them as text.
            conversation = _mark_typed_tokens(conversation, self.control_tokens)
            kwargs["processor_kwargs"] = {**(kwargs.get("processor_kwargs") or {}), "sanitize_control_tokens": True}
        masks = tokenize and kwargs.get("return_assistant_tokens_mask", False)
        if masks and not _is_batch(conversation):
            conversation = [conversation]  # transformers' mask step reads a batch, as TRL does
        output = super().apply_chat_template(
            conversation,
            chat_template=chat_template,
            add_generation_prompt=add_generation_prompt,
            tokenize=tokenize,
            **template_kwargs,
            **kwargs,
        )
        if masks and kwargs.get("return_dict"):
            _unmask_image_tokens(output, self.image_token_id)
        return output

    def _get_num_multimodal_tokens(self, image_sizes: list[list[int]] | None = None, **kwargs) -> MultiModalData:
        """
        Image tokens per image for serving code (vLLM's transformers backend): each image, whatever its
        `(height, width)` in `image_sizes`, is padded to a square and resized, one patch of `image_seq_length` tokens.

        Returns:
            `MultiModalData` with `num_image_tokens` and `num_image_patches` per image (empty without `image_sizes`).
        """
        if image_sizes is None:
            return MultiModalData()
        tokens, patches = [self.image_seq_length] * len(image_sizes), [1] * len(image_sizes)
        return MultiModalData(num_image_tokens=tokens, num_image_patches=patches)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]


SQLlavaProcessor.register_for_auto_class()

__all__ = [
    "NATIVE_VUSER_TOKEN",
    "ORIGINAL_VUSER_MARKER",
    "SQLlavaProcessor",
    "SYSTEM_PROMPT_V1",
    "SYSTEM_PROMPT_V1_SQ",
    "build_chat_template",
]
