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
it keeps working across versions), PIL, numpy and its siblings: `chat_template_sqllava.py` holds the prompt-format
policy (system prompts, vuser marker, template) and the conversation checks. What has to match the reference
(docs/original.md):

- prompts (docs/original.md#prompt-format-and-the-two-system-prompts): Vicuna v1 with a fourth role, the virtual
  user, rendered by one Jinja chat template;
- token ids (docs/original.md#tokenisation-chunk-by-chunk): every text chunk between special tokens is tokenised on
  its own with sentencepiece's dummy prefix ("legacy" Llama behaviour), one BOS, and each `<image>` becomes
  `image_seq_length` image tokens.
"""

import re

from huggingface_hub.errors import StrictDataclassError
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import make_flat_list_of_images
from transformers.processing_utils import MultiModalData, ProcessingKwargs, ProcessorMixin
from transformers.utils import TensorType, logging

# The chat-template policy and the conversation checks live in their own Hub file; its names stay importable here.
from .chat_template_sqllava import _TYPED_END, _TYPED_START, _is_batch, _mark_typed_tokens, _reject_control_tokens
from .chat_template_sqllava import CHAT_TEMPLATE_FILE, NATIVE_VUSER_TOKEN, ORIGINAL_VUSER_MARKER  # noqa: F401
from .chat_template_sqllava import SYSTEM_PROMPT_V1, SYSTEM_PROMPT_V1_SQ, SYSTEM_PROMPTS  # noqa: F401
from .chat_template_sqllava import ConversationError, build_chat_template, check_conversation  # noqa: F401
from .chat_template_sqllava import _unmask_image_tokens, check_call_kwargs, check_template_kwargs, check_unicode
from .chat_template_sqllava import conversation_errors


logger = logging.get_logger(__name__)


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


def _check_text(text) -> list[str]:
    if text is None:
        raise ValueError(
            "SQLlavaProcessor needs `text`: a prompt with one `<image>` per image, e.g. from "
            "`processor.apply_chat_template(messages, add_generation_prompt=True)`."
        )
    if isinstance(text, str):
        check_unicode(text, "`text`")
        return [text]
    if not isinstance(text, (list, tuple)):
        raise TypeError(f"`text` must be a string or a list of strings (one prompt a row), got {type(text).__name__}.")
    if not text:
        raise ValueError("`text` is an empty list: give at least one prompt.")
    for index, sample in enumerate(text):
        if not isinstance(sample, str):
            hint = ": a conversation goes to `apply_chat_template`" if isinstance(sample, (list, dict)) else ""
            raise TypeError(
                f"`text` must be a string or a list of strings, but text[{index}] is a {type(sample).__name__}{hint}."
            )
        check_unicode(sample, f"text[{index}]")
    return list(text)


def _merge_call_kwargs(processor, kwargs: dict) -> tuple[dict, dict]:
    """The text and image options of a call, each checked against its type (transformers' typed dicts)."""
    try:
        merged = processor._merge_kwargs(
            processor.valid_processor_kwargs, tokenizer_init_kwargs=processor.tokenizer.init_kwargs, **kwargs
        )
    except StrictDataclassError as error:  # huggingface_hub's, neither a TypeError nor a ValueError
        raise TypeError(f"SQLlavaProcessor.__call__: {' '.join(str(error).split())}") from error
    return merged["text_kwargs"], merged["images_kwargs"]


def _images_per_row(images, num_texts: int) -> list[int] | None:
    """With a list of images per prompt (what `apply_chat_template` passes), how many each prompt has; else None."""
    if not (isinstance(images, (list, tuple)) and images and all(isinstance(row, (list, tuple)) for row in images)):
        return None
    if len(images) != num_texts:
        raise ValueError(
            f"`images` holds {len(images)} lists of images for {num_texts} prompts: give one list per prompt (`[]` "
            "for a prompt without images), or one flat list, whose images go to the placeholders in order."
        )
    return [len(make_flat_list_of_images(row)) if row else 0 for row in images]


def _check_image_count(texts: list[str], images: list | None, rows: list[int] | None, image_token: str, marked: bool):
    # A marked `<image>` was typed inside a message: it is text, not a placeholder.
    texts = [re.sub(f"{_TYPED_START}.*?{_TYPED_END}", "", text) for text in texts] if marked else texts
    counts = [text.count(image_token) for text in texts]
    for index, (count, given) in enumerate(zip(counts, rows or [])):
        if count != given:
            raise ValueError(
                f"Prompt {index} of the batch has {count} {image_token} placeholder(s) but its list in `images` has "
                f"{given} image(s): give each prompt exactly one image per placeholder (with `apply_chat_template`, "
                "each image block its image: {'type': 'image', 'image': ...})."
            )
    num_placeholders, num_images = sum(counts), 0 if images is None else len(images)
    if num_placeholders == num_images:
        return
    # A flat list goes to the placeholders in order, across the batch: name each prompt's share.
    rows_hint = f" (per prompt: {counts}; images go to the placeholders in order)" if len(texts) > 1 else ""
    if num_images == 0:
        raise ValueError(
            f"The text has {num_placeholders} {image_token} placeholder(s){rows_hint} but no image was given. Pass "
            "one image per placeholder with `images=` (with `apply_chat_template`, in each image block: {'type': "
            "'image', 'image': ...}), or remove the placeholders for a text-only prompt."
        )
    if num_placeholders == 0:
        raise ValueError(
            f"{num_images} image(s) were given but the text has no {image_token} placeholder. Put {image_token} "
            f"where each image goes (the reference writes 'USER: {image_token}\\nquestion'), "
            'or use `apply_chat_template` with {"type": "image"} content blocks.'
        )
    raise ValueError(
        f"The text has {num_placeholders} {image_token} placeholder(s){rows_hint} but {num_images} image(s) were "
        "given: pass exactly one image per placeholder, in the order the placeholders appear (across the batch), or "
        "one list of images per prompt."
    )


def _length_limit(text_kwargs: dict, tokenizer) -> int | None:
    """Check the tokenizer options `__call__` reads; return the length no prompt may exceed (it never truncates)."""
    # A `PaddingStrategy` / `TruncationStrategy` is read as its value.
    padding, truncation = (getattr(value, "value", value) for value in map(text_kwargs.get, ("padding", "truncation")))
    if padding not in (None, True, False, "longest", "max_length", "do_not_pad"):
        raise ValueError(f"`padding` must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}.")
    if truncation not in (None, True, False, "longest_first", "only_first", "do_not_truncate"):
        raise ValueError(f"`truncation` must be True, False, 'longest_first' or 'do_not_truncate': {truncation!r}.")
    for name in ("max_length", "pad_to_multiple_of"):
        value = text_kwargs.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"`{name}` must be a positive int or None, got {value!r}.")
    if text_kwargs.get("padding_side") not in (None, "left", "right"):
        raise ValueError(f"`padding_side` must be 'left' or 'right', got {text_kwargs['padding_side']!r}.")
    max_length = text_kwargs.get("max_length")
    if padding == "max_length" and max_length is None:
        raise ValueError(
            "`padding='max_length'` needs `max_length`: pass `max_length=N`, or `padding=True` to pad to the "
            "longest prompt."
        )
    if max_length is None and truncation not in (None, False, "do_not_truncate") and tokenizer.model_max_length < 1e29:
        max_length = tokenizer.model_max_length  # what the tokenizer would truncate to (1e30 is its "no limit")
    return max_length


def _check_return_tensors(return_tensors):
    if return_tensors is not None and getattr(return_tensors, "value", return_tensors) not in list(TensorType):
        raise ValueError(f"`return_tensors` must be 'pt' (torch), 'np' (NumPy) or None (lists): {return_tensors!r}.")


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


def _encode_texts(processor, texts: list[str], text_kwargs: dict, marked: bool, as_tensors: bool) -> dict:
    """`input_ids`, `attention_mask` (and `offset_mapping`) of the prompts, padded as `text_kwargs` ask."""
    tokenizer = processor.tokenizer
    max_length = _length_limit(text_kwargs, tokenizer)
    add_bos, with_offsets = text_kwargs.get("add_special_tokens", True), text_kwargs.get("return_offsets_mapping")
    encoded = [_encode_prompt(processor, text, add_bos, marked, bool(with_offsets)) for text in texts]
    # `max_length` is a limit with or without `truncation`: the processor never truncates (a cut could split the
    # image tokens or a turn), and a longer row would silently break `padding="max_length"`'s one shape.
    too_long = [len(ids) for ids, _ in encoded if max_length is not None and len(ids) > max_length]
    if too_long:
        raise ValueError(
            f"Prompts of {too_long} tokens exceed max_length={max_length}. SQLlavaProcessor does not truncate: a cut "
            "could split the image tokens or a turn. Shorten the conversation or raise `max_length`."
        )
    padding, padding_side = text_kwargs.get("padding"), text_kwargs.get("padding_side") or tokenizer.padding_side
    padded = tokenizer.pad(
        {"input_ids": [ids for ids, _ in encoded]},
        padding=padding or False,
        max_length=text_kwargs.get("max_length") if getattr(padding, "value", padding) == "max_length" else None,
        pad_to_multiple_of=text_kwargs.get("pad_to_multiple_of"),
        padding_side=padding_side,
        return_attention_mask=text_kwargs.get("return_attention_mask", True),
    )
    lengths = sorted({len(row) for row in padded["input_ids"]})
    if as_tensors and len(lengths) > 1:
        raise ValueError(
            f"The prompts have {lengths[0]} to {lengths[-1]} tokens and are not padded, so they cannot be stacked "
            "into tensors: pass `padding=True`, or `return_tensors=None` for lists."
        )
    data = dict(padded)
    if with_offsets:  # padding spans no text
        pads = [[(0, 0)] * (len(row) - len(offsets)) for row, (_, offsets) in zip(padded["input_ids"], encoded)]
        rows = zip(pads, (offsets for _, offsets in encoded))
        data["offset_mapping"] = [pad + row if padding_side == "left" else row + pad for pad, row in rows]
    return data


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
                The images, one per `<image>` placeholder: a flat list goes to the placeholders in order, across the
                batch; a list of lists (one per prompt, as `apply_chat_template` passes) is checked prompt by prompt.
            text (`str` or `list[str]`):
                The prompts, written in the reference's format (e.g. from [`~SQLlavaProcessor.apply_chat_template`]
                with `tokenize=False`). `</s>`, `<image>` and other special tokens in this text are structure.
            **kwargs:
                Tokenizer options (`padding`, `padding_side`, `max_length`, `pad_to_multiple_of`,
                `return_attention_mask`, `return_offsets_mapping`, `add_special_tokens`: `True`, the default, adds one
                BOS unless the text starts with it), image-processor options (`do_pad`, `size`, ...), `return_tensors`.
                Nothing is truncated: `max_length` (with or without `truncation`) is a limit a longer prompt raises at.

        Raises:
            `TypeError` (a wrong type, an unknown keyword) or `ValueError` (placeholders and images that do not
            match, a prompt over `max_length`, an invalid option), naming the fix
            (docs/errors.md#the-processor-and-chat-template).

        Returns:
            [`~transformers.BatchFeature`] with `input_ids`, `attention_mask`, with images `pixel_values`, and with
            `return_offsets_mapping=True` `offset_mapping`: each id's `(start, end)` character span in its prompt, from
            the chunk encoder that gives the ids (every image token spans its `<image>`; padding and an added BOS
            `(0, 0)`). Prompts and offsets are not shifted for the image tokens, so no `text_replacement_offsets`.
        """
        texts = _check_text(text)
        check_call_kwargs(self, kwargs)
        marked, rows = bool(kwargs.get("sanitize_control_tokens")), None
        if images is not None:
            images = self.image_processor.fetch_images(images)
            rows = None if isinstance(text, str) else _images_per_row(images, len(texts))
            images = make_flat_list_of_images(images) or None  # `[]`, `[[], []]`: no image
        _check_image_count(texts, images, rows, self.image_token, marked)

        text_kwargs, images_kwargs = _merge_call_kwargs(self, kwargs)
        return_tensors = text_kwargs.pop("return_tensors", None)
        _check_return_tensors(return_tensors)
        encoded = _encode_texts(self, texts, text_kwargs, marked, as_tensors=return_tensors is not None)
        data = {}
        if images is not None:
            images_kwargs.pop("return_tensors", None)
            data["pixel_values"] = self.image_processor(images, **images_kwargs)["pixel_values"]
        data.update(encoded)
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
        turn. A malformed conversation raises a [`ConversationError`] (a `ValueError`, and a `jinja2.TemplateError`
        as the template's own errors are) naming the message and the fix; a wrong type a `TypeError`
        (docs/errors.md#the-processor-and-chat-template).

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
                conversation. A keyword none of these read (nor the template's text mentions) raises a `TypeError`.

        Returns:
            `str` (or `list[str]`) with `tokenize=False`; token ids or a [`~transformers.BatchFeature`] otherwise.
        """
        check_conversation(conversation)  # before transformers or the template index into it
        template = f"{self.chat_template}{chat_template or ''}"
        check_template_kwargs(self, template, kwargs)
        template_kwargs = {"generation_role": generation_role, "vuser_token": self.vuser_token}
        template_kwargs.update(image_token=self.image_token, add_bos_token=kwargs.pop("add_bos_token", tokenize))
        if "add_bos_token" not in template:
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
        with conversation_errors():  # the template's `raise_exception`: a `ConversationError`, so a `ValueError`
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
