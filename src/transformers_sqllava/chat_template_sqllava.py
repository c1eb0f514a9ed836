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
"""SQ-LLaVA's chat-template policy: the system prompts, the vuser marker, the template, and the input checks at the
boundary of the processor and the template.

A "Hub file", shipped by `save_pretrained` beside `processing_sqllava.py` (which imports it) as remote code: it imports
only transformers and the standard library. [`SQLlavaProcessor`] re-exports its public names.

- [`build_chat_template`] reads `chat_template.jinja`, Vicuna v1 with the virtual user
  (docs/original.md#prompt-format-and-the-two-system-prompts);
- [`check_conversation`] is the one validation of a conversation before it reaches the template or transformers: a
  wrong type raises a `TypeError`, a missing or wrong value a [`ConversationError`], naming the message, the block
  and the fix. What the template itself rejects (roles, turn order, images outside user turns) reaches the caller
  as a [`ConversationError`] too ([`conversation_errors`]);
- [`check_call_kwargs`] and [`check_template_kwargs`] refuse a keyword nothing reads (transformers only warns,
  so a misspelt option would change nothing, silently), naming the closest known one;
- special tokens typed in message text are rejected (a rendered string) or marked as text (a tokenised prompt),
  docs/inference.md#typed-special-tokens.
"""

import contextlib
import difflib
import inspect
import json
import os
import re
import sys
from collections.abc import Mapping

from transformers.processing_utils import ProcessorMixin

# transformers' chat-template code imports jinja2 (when it is installed, which rendering needs), whose
# `TemplateError` `ConversationError` extends: code that catches the template's own errors keeps working.
from transformers.utils import chat_template_utils  # noqa: F401


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

ROLES = ("system", "user", "assistant", "vuser")
# Keywords of transformers' `apply_chat_template` itself (`return_dict`, `processor_kwargs`, `tools`, ...).
_TEMPLATE_CALL_PARAMETERS = set(inspect.signature(ProcessorMixin.apply_chat_template).parameters)
_BLOCKS = "{'type': 'text', 'text': ...} and {'type': 'image'} blocks"
# Looked up, not imported: imported above by transformers whenever it can render a template (as `cli.py` does).
_jinja2 = sys.modules.get("jinja2")
_TemplateError = _jinja2.TemplateError if _jinja2 is not None else Exception


class ConversationError(ValueError, _TemplateError):
    """
    A conversation SQ-LLaVA's chat template cannot render: an empty one, a missing role, content or text, an
    unsupported block, or (from the template) an unknown role, turns out of order, an image outside a user turn.

    A `ValueError`, and a `jinja2.TemplateError` as the template's `raise_exception` errors are, so code that catches
    either keeps working. A wrong type (content that is a number, a message that is a string) is a `TypeError`.
    """


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


def _shown(value) -> str:
    return f"{type(value).__name__} {value!r:.60}"


def check_unicode(text: str, where: str):
    """Raise a `ValueError` if `text` holds a lone surrogate (a bad decode), which no tokenizer can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{where} holds {text[error.start]!r} at character {error.start}, a lone surrogate, not Unicode text (a "
            "bad decode upstream): decode the bytes as UTF-8, with `errors='replace'` if they are damaged."
        ) from None


def _check_block(block, number: int, turn: str):
    where = f"{turn}, block {number}"
    if not isinstance(block, Mapping):
        raise TypeError(f"{where} is a {_shown(block)}, not a content block: use {_BLOCKS}.")
    kind = block.get("type")
    if kind is None:
        raise ConversationError(f"{where} has no 'type': use {_BLOCKS}.")
    if not isinstance(kind, str):
        raise TypeError(f"{where}: 'type' must be a string ('text' or 'image'), got {_shown(kind)}.")
    if kind == "text":
        text = block.get("text")
        if text is None:
            raise ConversationError(f"{where} is a text block without 'text': add {{'text': '...'}}, or drop it.")
        if not isinstance(text, str):
            raise TypeError(f"{where}: a text block's 'text' must be a string, got {_shown(text)}.")
        check_unicode(text, where)
    elif kind == "image_url" and "image_url" not in block:  # transformers makes it an image block when it has one
        raise ConversationError(f"{where} is an image_url block without 'image_url': use {{'type': 'image'}}.")
    elif kind not in ("image", "image_url"):
        # Before transformers sees it: with `tokenize=True` it loads audio blocks before the template would refuse.
        raise ConversationError(f'Unsupported content type "{kind}" in {where}: use "text" and "image" blocks.')


def _check_messages(messages, name: str | None):
    if not messages:
        raise ConversationError(
            f"{name or 'The conversation'} is empty: give at least one user message, e.g. "
            "[{'role': 'user', 'content': 'Hi'}]."
        )
    for index, message in enumerate(messages):
        where = f"{name}, message {index}" if name else f"Message {index}"
        if isinstance(message, (list, tuple)):
            raise TypeError(
                f"{where} is a {type(message).__name__}, not a message dict: a conversation is a list of "
                "{'role', 'content'} dicts, a batch a list of conversations. Do not mix the two."
            )
        if not isinstance(message, Mapping):
            raise TypeError(f"{where} is a {_shown(message)}, not a dict with 'role' and 'content'.")
        role = message.get("role")
        if role is None:
            raise ConversationError(f"{where} has no 'role': give one of {', '.join(map(repr, ROLES))}.")
        if not isinstance(role, str):
            roles = ", ".join(map(repr, ROLES))
            raise TypeError(f"{where}: 'role' must be a string, one of {roles}, not {_shown(role)}.")
        turn = f"{where} ({role!r})"
        content = message.get("content")
        if content is None:
            raise ConversationError(
                f"{turn} has no 'content': give its text as a string ('' for an empty turn), or a list of {_BLOCKS}."
            )
        if isinstance(content, str):
            check_unicode(content, turn)
            continue
        if not isinstance(content, (list, tuple)):
            raise TypeError(f"{turn}: 'content' must be a string or a list of {_BLOCKS}; got {_shown(content)}.")
        for number, block in enumerate(content):
            _check_block(block, number, turn)


def check_conversation(conversation) -> None:
    r"""
    Check that `conversation` has the shape SQ-LLaVA's chat template reads, before transformers or the template touch
    it (where a wrong shape would surface as a `KeyError`, an `IndexError` or a Jinja `UndefinedError`).

    A conversation is a non-empty list of dicts, each with a string `role` and a `content` that is a string or a
    list of `{"type": "text", "text": str}` and `{"type": "image", ...}` blocks (OpenAI `image_url` blocks too); a
    batch is a non-empty list of conversations. Roles, turn order and where images go are the template's to check.

    Args:
        conversation (`list[dict]` or `list[list[dict]]`): One conversation, or a batch of them.

    Raises:
        `TypeError`: a wrong type (the conversation, a message, a role, a content, a block or its text), named.
        [`ConversationError`]: a missing or unsupported value, named, with the fix.
    """
    if not isinstance(conversation, (list, tuple)):
        hint = " A prompt string goes to `processor(text=...)`." if isinstance(conversation, str) else ""
        raise TypeError(
            "`conversation` must be a list of {'role', 'content'} dicts, or a list of such lists for a batch; got "
            f"{_shown(conversation)}.{hint}"
        )
    if not _is_batch(conversation):
        _check_messages(conversation, None)
        return
    for number, messages in enumerate(conversation):
        if not isinstance(messages, (list, tuple)):
            raise TypeError(
                f"Conversation {number} of the batch is a {_shown(messages)}, not a list of messages: a batch is a "
                "list of conversations, each a list of {'role', 'content'} dicts. Do not mix messages and "
                "conversations."
            )
        _check_messages(messages, f"Conversation {number} of the batch")


@contextlib.contextmanager
def conversation_errors():
    """Re-raise the chat template's errors (its `raise_exception`, or a Jinja error of a custom template) as a
    [`ConversationError`], which is still a `jinja2.TemplateError`, so every conversation error is a `ValueError`."""
    try:
        yield
    except ConversationError:
        raise
    except _TemplateError as error:
        if _TemplateError is Exception:  # no jinja2: nothing of the template's to re-raise
            raise
        message = str(error)
        if type(error) is not _TemplateError:  # not `raise_exception`'s message: say where it came from
            message = f"The chat template cannot render the conversation ({type(error).__name__}: {message})."
        raise ConversationError(message) from error


def _known_kwargs(processor) -> set[str]:
    """Every keyword `__call__` reads: the modality dicts, their options (the image processor's own too), flat ones."""
    known = {"common_kwargs", "sanitize_control_tokens", "text", "images", "videos", "audio"}
    for key, typed_dict in processor.valid_processor_kwargs.__annotations__.items():
        known.update([key, *getattr(typed_dict, "__annotations__", {})])
    known.update(getattr(getattr(processor.image_processor, "valid_kwargs", None), "__annotations__", {}))
    return known


def _check_keywords(unknown: list[str], known: set[str], where: str):
    # transformers only warns that it ignores an unknown keyword: a typo (`do_resise`) would change nothing, silently.
    if not unknown:
        return
    named = []
    for key in unknown:
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
        named.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise TypeError(
        f"{where} got unknown keyword argument(s) {', '.join(named)}. It takes tokenizer options (`padding`, "
        "`max_length`, ...), image-processor options (`do_pad`, `size`, ...), `return_tensors` and, in "
        "`apply_chat_template`, the template's variables (`system_prompt`, `generation_role`, `images_first`, ...)."
    )


def check_call_kwargs(processor, kwargs: dict):
    """Raise for a keyword of [`SQLlavaProcessor.__call__`] it does not read (a `TypeError` naming the closest known
    one), and for videos or audio (a `ValueError`): SQ-LLaVA takes text and images."""
    for modality in ("videos", "audio"):
        if kwargs.get(modality) is not None:  # `apply_chat_template` passes None
            raise ValueError(f"SQ-LLaVA takes text and images only, not `{modality}`: drop it (or its blocks).")
    known = _known_kwargs(processor)
    unknown = [key for key in kwargs if key not in known]
    for group in ("text_kwargs", "images_kwargs", "common_kwargs"):
        if isinstance(kwargs.get(group), dict):
            unknown += [key for key in kwargs[group] if key not in known]
    _check_keywords(unknown, known, "SQLlavaProcessor.__call__")


def check_template_kwargs(processor, template: str, kwargs: dict):
    """Raise a `TypeError` for a keyword of [`SQLlavaProcessor.apply_chat_template`] that is neither an option of the
    processor or of transformers' `apply_chat_template` nor a name the template's text mentions (a variable it may
    read), and for a template switch (`images_first`, `add_bos_token`) that is not a bool."""
    # transformers passes a keyword the template does not read on to `__call__`, which never runs for a string: a
    # misspelt template variable (`system_promt`) would be ignored. A name the template text never mentions is one.
    known = _known_kwargs(processor) | _TEMPLATE_CALL_PARAMETERS
    unknown = [key for key in kwargs if key not in known and not re.search(rf"\b{re.escape(key)}\b", template)]
    _check_keywords(unknown, known | set(re.findall(r"\w+", template)), "apply_chat_template")
    for name in ("images_first", "add_bos_token"):  # Jinja reads any non-empty string as true, even "false"
        if kwargs.get(name) is not None and not isinstance(kwargs[name], bool):
            raise TypeError(f"`{name}` must be True or False, got {_shown(kwargs[name])}.")


def _unmask_image_tokens(output, image_token_id: int):
    # Image tokens are never trained, whatever a custom template's generation blocks cover.
    masks, input_ids = output["assistant_masks"], output["input_ids"]
    if not isinstance(masks, list):  # a tensor or an array
        masks[input_ids == image_token_id] = 0
        return
    for row_ids, row_mask in zip(input_ids, masks):
        row_mask[:] = [0 if token == image_token_id else mask for token, mask in zip(row_ids, row_mask)]


def _is_batch(conversation) -> bool:
    return bool(conversation) and isinstance(conversation[0], (list, tuple))


def _with_message_texts(conversation, edit):
    """The conversation (or batch) with `edit(text, message_index, message)` applied to every text of its messages."""

    def edit_message(index, message):
        content = message.get("content")
        if isinstance(content, str):
            return {**message, "content": edit(content, index, message)}
        if not isinstance(content, (list, tuple)):
            return message
        is_text = [isinstance(block, Mapping) and isinstance(block.get("text"), str) for block in content]
        blocks = [{**b, "text": edit(b["text"], index, message)} if t else b for b, t in zip(content, is_text)]
        return {**message, "content": blocks}

    conversations = conversation if _is_batch(conversation) else [conversation]
    edited = [[edit_message(index, message) for index, message in enumerate(messages)] for messages in conversations]
    return edited if _is_batch(conversation) else edited[0]


def _reject_control_tokens(conversation, control_tokens: list[str]):
    def check(text, index, message):
        found = [token for token in control_tokens if token in text]
        if found:
            raise ConversationError(
                f"Message {index} ({message.get('role')!r}) contains {found[0]!r}, a special token of SQ-LLaVA's "
                "prompt format: in a rendered string it would act as structure (end a turn, add an image slot or a "
                "role). Use `apply_chat_template(..., tokenize=True)`, which encodes it as plain text, or remove it."
            )
        return text

    _with_message_texts(conversation, check)


def _mark_typed_tokens(conversation, control_tokens: list[str]):
    """Wrap every special token typed in message text in the `_TYPED_*` markers. Text holding a marker character
    already is refused: it could forge a marked token, and dropping the character would change the text silently."""
    pattern = re.compile("|".join(re.escape(token) for token in control_tokens))

    def mark(text, index, message):
        if _TYPED_START in text or _TYPED_END in text:
            raise ConversationError(
                f"Message {index} ({message.get('role')!r}) contains U+F0000 or U+F0001, the private-use characters "
                "the processor marks typed special tokens with: remove them from the text."
            )
        return pattern.sub(lambda match: _TYPED_START + match.group(0) + _TYPED_END, text)

    return _with_message_texts(conversation, mark)


__all__ = [
    "ConversationError",
    "NATIVE_VUSER_TOKEN",
    "ORIGINAL_VUSER_MARKER",
    "SYSTEM_PROMPTS",
    "SYSTEM_PROMPT_V1",
    "SYSTEM_PROMPT_V1_SQ",
    "build_chat_template",
    "check_call_kwargs",
    "check_conversation",
    "check_template_kwargs",
    "check_unicode",
    "conversation_errors",
]
