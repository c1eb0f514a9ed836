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
"""Training labels from a conversation's structure: which tokens the model learns to write.

The reference derives its label masks from token-count arithmetic, which silently masks whole samples when a tokenizer
version counts differently (docs/original.md#stage-2-labels-and-vuser-turns). Here a conversation is split into
[`Segment`]s that join to exactly the chat template's rendering, each saying whether its text is trained, and the
segments are tokenised once with the processor's chunk encoder, so ids and labels come from the same pass:

```python
>>> encoded = encode_conversation(processor, messages)  # v1_sq system prompt, as training stage 2
>>> [processor.tokenizer.decode(span) for span in trained_spans(encoded["input_ids"], encoded["labels"])]
['A cat.</s>', 'What colour is it?</s>', 'Black.</s>']
```

The chat template stays the one definition of the prompt format: every conversation is checked by
[`check_messages`] (a malformed one fails with a `ValueError` that names the message and the fix), rendered through
the template, and the segments are checked against that rendering.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jinja2

from ..processing_sqllava import SYSTEM_PROMPTS, SQLlavaProcessor


IGNORE_INDEX = -100
ROLES = ("system", "user", "assistant", "vuser")


class Segment(NamedTuple):
    r"""
    A piece of a rendered conversation.

    Args:
        text (`str`): the piece, as the template writes it.
        trained_role (`str` or `None`): `"assistant"` for an answer (the space after `ASSISTANT:`, the text and its
            `</s>`), `"vuser"` for a virtual-user question (the same after `VUSER:`), `None` for the rest: system
            prompt, role markers, user turns, images, separators (docs/original.md#stage-2-labels-and-vuser-turns).
        is_template (`bool`): `True` for text the template writes, whose special tokens are structure; `False` for
            message text, always encoded as plain text (a typed `</s>` cannot end a turn).
    """

    text: str
    trained_role: str | None
    is_template: bool


def check_messages(messages: Any, where: str = "The conversation") -> None:
    r"""
    Raise a `ValueError` naming the message and the fix unless `messages` is a conversation SQ-LLaVA can render and
    train on: a non-empty list of `{"role", "content"}` dicts, roles `system` (first only), `user`, `assistant` and
    `vuser`, turns alternating user-or-vuser / assistant from a user turn, contents strings or lists of
    `{"type": "text", "text": str}` and `{"type": "image"}` blocks, images in user turns only.

    Args:
        messages (`Any`): The conversation to check.
        where (`str`, *optional*, defaults to `"The conversation"`): How errors name it (e.g. `"Sample 'a1'"`).
    """
    if not isinstance(messages, (list, tuple)) or not messages:
        shown = repr(messages) if len(repr(messages)) < 80 else type(messages).__name__
        raise ValueError(
            f"{where}: 'messages' must be a non-empty list of {{'role', 'content'}} dicts, got {shown}. Rows are in "
            "TRL's conversational format, e.g. from `load_llava_dataset`."
        )
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(
                f"{where}, message {index}: must be a dict with 'role' and 'content', got {message!r:.80}."
            )
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise ValueError(
                f"{where}, message {index}: unknown role {role!r}; SQ-LLaVA roles are {', '.join(ROLES)}."
            )
        turn = f"{where}, message {index} ({role})"
        content = message.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, (list, tuple)):
            raise ValueError(
                f"{turn}: 'content' must be a string or a list of blocks, got {type(content).__name__}"
                + (" (no 'content' key)." if "content" not in message else ".")
            )
        for number, block in enumerate(content):
            kind = block.get("type") if isinstance(block, Mapping) else None
            if kind not in ("text", "image"):
                raise ValueError(
                    f"{turn}, block {number}: {block!r:.80} is not a content block; use {{'type': 'text', 'text': "
                    "...} or {'type': 'image'}."
                )
            if kind == "text" and not isinstance(block.get("text"), str):
                raise ValueError(f"{turn}, block {number}: a text block needs a string 'text', got {block!r:.80}.")
            if kind == "image" and role != "user":
                raise ValueError(f"{turn}: images go in user turns; move the image block to the first user turn.")
    first = 1 if messages[0]["role"] == "system" else 0
    if first == len(messages):
        raise ValueError(f"{where} has no user message after the system message.")
    for position, message in enumerate(messages[first:]):
        index, role = position + first, message["role"]
        if position % 2 == 0 and role not in ("user", "vuser") or position % 2 == 1 and role != "assistant":
            expected = "a user (or vuser)" if position % 2 == 0 else "an assistant"
            raise ValueError(
                f"{where}, message {index} is a {role!r} turn where {expected} turn belongs: turns alternate user "
                "(or vuser) / assistant, starting with a user turn, with a system message only first. Insert the "
                "missing turn or merge the two."
            )
        if position == 0 and role == "vuser":
            raise ValueError(
                f"{where}, message {index}: a vuser turn asks about the conversation so far, so it cannot come first. "
                "Start with a user turn."
            )


def num_image_blocks(messages: list[dict[str, Any]]) -> int:
    """How many `{"type": "image"}` blocks a (checked) conversation holds: its number of `<image>` placeholders."""
    return sum(
        block["type"] == "image"
        for message in messages
        if not isinstance(message["content"], str)
        for block in message["content"]
    )


def _content_text(message: dict[str, Any]) -> tuple[int, str]:
    content = message["content"]
    if isinstance(content, str):
        return 0, content
    num_images = sum(block["type"] == "image" for block in content)
    return num_images, " ".join(block["text"] for block in content if block["type"] == "text")


def _user_turn_segments(message: dict[str, Any], image_token: str, images_first: bool) -> list[Segment]:
    if images_first or isinstance(message["content"], str):
        num_images, text = _content_text(message)
        if num_images and not text:  # images only: no newline after the last one, as the reference strips it
            return [Segment("USER: " + "\n".join([image_token] * num_images), None, True)]
        return [Segment("USER: " + (image_token + "\n") * num_images, None, True), Segment(text, None, False)]
    # The blocks in their order: an image separated from its neighbours by newlines, two texts by a space.
    segments, previous = [Segment("USER: ", None, True)], None
    for block in message["content"]:
        if previous is not None:
            segments.append(Segment(" " if block["type"] == previous == "text" else "\n", None, True))
        segments.append(Segment(image_token, None, True) if block["type"] == "image" else Segment(block["text"], None, False))
        previous = block["type"]
    return segments


def conversation_segments(
    processor: SQLlavaProcessor,
    messages: list[dict[str, Any]],
    system_prompt: str | None = None,
    images_first: bool = True,
) -> list[Segment]:
    r"""
    The chat template's rendering of `messages` (`add_generation_prompt=False`) as [`Segment`]s, in order, whose texts
    join to exactly `processor.apply_chat_template(messages, system_prompt=system_prompt, images_first=images_first)`.

    Args:
        processor ([`SQLlavaProcessor`]): The processor whose template and markers are used.
        messages (`list[dict]`): The conversation (roles `system`, `user`, `assistant`, `vuser`).
        system_prompt (`str`, *optional*): `"v1"` (the default) or `"v1_sq"`, when the conversation has no system
            message.
        images_first (`bool`, *optional*, defaults to `True`): A user turn's images before its text (the reference);
            `False` keeps the blocks' order (`"USER: Q\\n<image> "`).

    A user turn of images and no text ends at its last image (`USER: <image> ASSISTANT:`), as the reference's
    `preprocess_multimodal` strips it (docs/original.md#training-data), and as the template renders it.

    Raises:
        `ValueError`: a conversation that [`check_messages`] or the template rejects (roles, order, content, images
        outside user turns, an unknown system prompt), naming the message and the fix.
    """
    check_messages(messages)
    try:
        rendered = processor.apply_chat_template(
            messages, system_prompt=system_prompt, images_first=images_first, sanitize_control_tokens=False
        )
    except jinja2.TemplateError as error:  # the template's `raise_exception`: a message for the user, not a crash
        raise ValueError(str(error)) from error
    if messages[0]["role"] == "system":
        system_message, loop_messages = _content_text(messages[0])[1], messages[1:]
    else:
        system_message, loop_messages = SYSTEM_PROMPTS[system_prompt or "v1"], messages
    eos = processor.tokenizer.eos_token or "</s>"
    segments = [Segment(system_message, None, False), Segment(" ", None, True)]
    for message in loop_messages:
        role = message["role"]
        if role == "user":
            segments += _user_turn_segments(message, processor.image_token, images_first)
            segments.append(Segment(" ", None, True))
            continue
        # "ASSISTANT:" / "VUSER:" are masked; the space after the colon starts the trained text, as in the reference,
        # where the answer's first piece "▁word" carries that space.
        marker = "ASSISTANT" if role == "assistant" else processor.vuser_token
        segments += [
            Segment(marker + ":", None, True),
            Segment(" ", role, True),
            Segment(_content_text(message)[1], role, False),
            Segment(eos, role, True),
        ]
        if role == "vuser":
            segments.append(Segment(" ", None, True))  # the even-index separator after "question</s>"
    if "".join(segment.text for segment in segments) != rendered:
        raise RuntimeError(
            "The label segments do not join to the chat template's rendering: the processor's chat template was "
            "changed. Labels need SQ-LLaVA's own template (`build_chat_template`)."
        )
    return segments


def encode_segments(
    processor: SQLlavaProcessor, segments: Sequence[Segment], add_special_tokens: bool = True
) -> tuple[list[int], list[str | None]]:
    r"""
    Tokenise `segments` exactly as [`SQLlavaProcessor`] tokenises their concatenation (message text always as plain
    text, as `apply_chat_template(..., tokenize=True)` does) and give every token its segment's `trained_role`.

    Special tokens in template text split the text into chunks (docs/original.md#tokenisation-chunk-by-chunk). Within a
    chunk, the run of segments sharing a role is encoded as one string: the first run of a chunk with sentencepiece's
    dummy prefix, a later run as a continuation without it, so the runs' ids concatenate to the chunk's ids (the runs
    meet before a space, where Llama's pieces never merge). Tokenizers without a sentencepiece-style backend encode
    each chunk whole and place the boundaries by encoding the chunk's prefixes; a boundary inside a token raises.

    Returns:
        `tuple[list[int], list]`: the ids (one BOS first with `add_special_tokens`, each image expanded to
        `image_seq_length` image tokens) and one role per id (the BOS and image tokens take their segment's).
    """
    control_tokens = processor.control_tokens
    control_ids = {processor.tokenizer.convert_tokens_to_ids(token) for token in control_tokens}
    control_pattern = re.compile("(" + "|".join(re.escape(token) for token in control_tokens) + ")")
    ids: list[int] = []
    roles: list[str | None] = []
    if add_special_tokens and processor.tokenizer.bos_token_id is not None:
        ids.append(processor.tokenizer.bos_token_id)
        roles.append(segments[0].trained_role if segments else None)
    runs: list[list] = []  # [text, role] runs of the current chunk

    def flush():
        for run_ids, role in _encode_runs(processor, runs, control_ids):
            ids.extend(run_ids)
            roles.extend([role] * len(run_ids))
        runs.clear()

    for segment in segments:
        pieces = control_pattern.split(segment.text) if segment.is_template else [segment.text]
        for number, piece in enumerate(pieces):
            if number % 2 == 1:  # a special token written by the template: structure
                flush()
                count = processor.image_seq_length if piece == processor.image_token else 1
                ids.extend([processor.tokenizer.convert_tokens_to_ids(piece)] * count)
                roles.extend([segment.trained_role] * count)
            elif piece:
                if runs and runs[-1][1] == segment.trained_role:
                    runs[-1][0] += piece
                else:
                    runs.append([piece, segment.trained_role])
    flush()
    return ids, roles


def _encode_runs(processor: SQLlavaProcessor, runs: list[list], control_ids: set[int]):
    """The ids of each `[text, role]` run of one chunk, which concatenate to the chunk's ids."""
    if processor.encodes_continuations:
        for position, (text, role) in enumerate(runs):
            yield processor.encode_chunk(text, continuation=position > 0, control_ids=control_ids), role
        return
    if not runs:
        return
    chunk_ids = processor.encode_chunk("".join(text for text, _ in runs), control_ids=control_ids)
    start, prefix = 0, ""
    for position, (text, role) in enumerate(runs):
        prefix += text
        end = len(chunk_ids)
        if position < len(runs) - 1:
            prefix_ids = processor.encode_chunk(prefix, control_ids=control_ids)
            end = len(prefix_ids)
            if chunk_ids[:end] != prefix_ids:
                raise ValueError(f"A token spans the boundary after {prefix!r}: cannot split its labels.")
        yield chunk_ids[start:end], role
        start = end


def encode_conversation(
    processor: SQLlavaProcessor,
    messages: list[dict[str, Any]],
    system_prompt: str | None = "v1_sq",
    add_special_tokens: bool = True,
    images_first: bool = True,
) -> dict[str, list[int]]:
    r"""
    Token ids and training labels of one conversation: answers + `</s>` and vuser questions + `</s>` keep their ids,
    everything else (BOS, system prompt, role markers, user turns, image tokens) is -100
    (docs/original.md#stage-2-labels-and-vuser-turns).

    Args:
        processor ([`SQLlavaProcessor`]): The model's processor.
        messages (`list[dict]`): The conversation, as for `apply_chat_template`.
        system_prompt (`str`, *optional*, defaults to `"v1_sq"`): The system prompt when the conversation has none:
            training uses `"v1_sq"` for every sample.
        add_special_tokens (`bool`, *optional*, defaults to `True`): Start with BOS.
        images_first (`bool`, *optional*, defaults to `True`): see [`conversation_segments`].

    Returns:
        `dict` with `input_ids` and `labels` (`list[int]`, same length).
    """
    segments = conversation_segments(processor, messages, system_prompt, images_first=images_first)
    ids, roles = encode_segments(processor, segments, add_special_tokens)
    return {"input_ids": ids, "labels": [token if role is not None else IGNORE_INDEX for token, role in zip(ids, roles)]}


def trained_spans(input_ids: Sequence[int], labels: Sequence[int]) -> list[list[int]]:
    """The runs of consecutive trained positions (labels != -100) of one row, as lists of ids: for checking masks."""
    spans, current = [], []
    for token, label in zip(input_ids, labels):
        if label != IGNORE_INDEX:
            current.append(int(token))
        elif current:
            spans.append(current)
            current = []
    if current:
        spans.append(current)
    return spans


__all__ = [
    "IGNORE_INDEX",
    "Segment",
    "check_messages",
    "conversation_segments",
    "encode_conversation",
    "encode_segments",
    "num_image_blocks",
    "trained_spans",
]
