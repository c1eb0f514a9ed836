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
"""Self-questioning inference: the model describes an image, asks questions about it, and can answer them.

This is the reference's demo flow (docs/original.md#self-questioning-at-inference, `demo/visual_questioning.py`),
batched over images:

1. **describe** (optional): `SYS USER: <image>\\nCan you describe the image in detail? ASSISTANT:`, greedy,
   at most 1024 new tokens;
2. **ask**: `SYS USER: <image>\\nCan you describe the image in detail? ASSISTANT: {description}</s>VUSER:`, sampled
   with temperature 1.2, top-k 300, top-p 0.95, at most 300 new tokens, `num_questions` times;
3. **answer** (optional, `sqllava/eval/visual_qa.py`): each question becomes a vuser turn and the model answers it,
   `... ASSISTANT: {description}</s>VUSER: {question}</s> ASSISTANT:`, greedy, at most 1024 new tokens.

`SYS` is the `v1_sq` system prompt for every round, as in the demo. Every round stops at `</s>`; each output is decoded
with `skip_special_tokens=True`, stripped, and loses a trailing `"</s>"` (reference
docs/original.md#self-questioning-at-inference step 3).

Where this differs from the reference, on purpose:

- the demo crashes before asking anything (`conv.clear_message()` does not exist, reference
  docs/original.md#self-questioning-at-inference); here the second round starts from a fresh conversation, which is
  what the demo meant;
- images are padded to a square with the CLIP mean colour, as in training (the demo only centre-crops,
  docs/original.md#evaluation-and-decoding);
- answers follow the **training** format `</s> ASSISTANT:` (a space after `</s>`), rendered by the chat template;
  `visual_qa.py` appends the ids of `ASSISTANT:` directly after the generated `</s>`, without the space piece the model
  was trained on (docs/original.md#self-questioning-at-inference, docs/original.md#self-questioning-at-inference);
- rendered prompts are tokenised with message text escaped (`tokenize=True` of the chat template), so a generated
  description or question that spells out `</s>` or `<image>` stays text instead of closing a turn;
- the ViT LoRA question does not arise: a converted checkpoint has it merged (the demo ignored `--lora_pretrain`).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from transformers import TextIteratorStreamer, TextStreamer

from .processing_sqllava import SYSTEM_PROMPTS


DESCRIPTION_PROMPT = "Can you describe the image in detail?"

# Reference docs/original.md#self-questioning-at-inference step 3 (round 1) and `visual_qa.py` (answers): greedy,
# `max_new_tokens=1024`.
DESCRIPTION_GENERATION_DEFAULTS = {"do_sample": False, "num_beams": 1, "max_new_tokens": 1024}
# Reference docs/original.md#self-questioning-at-inference step 5 (`demo/visual_questioning.py`): the question sampling
# of the demo and of `visual_qa.py`.
QUESTION_GENERATION_DEFAULTS = {
    "do_sample": True,
    "temperature": 1.2,
    "top_k": 300,
    "top_p": 0.95,
    "num_beams": 1,
    "max_new_tokens": 300,
}
ANSWER_GENERATION_DEFAULTS = {"do_sample": False, "num_beams": 1, "max_new_tokens": 1024}
_SAMPLING_KEYS = ("temperature", "top_k", "top_p")


def _merge_generation_kwargs(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The user's kwargs over the reference's; sampling defaults are dropped when the result is greedy (transformers
    warns about a temperature that greedy decoding ignores)."""
    greedy = not overrides.get("do_sample", defaults.get("do_sample", False))
    merged = {key: value for key, value in defaults.items() if not (greedy and key in _SAMPLING_KEYS)}
    merged.update(overrides)
    return merged


@dataclass
class SelfQuestioningConfig:
    r"""
    Settings of [`self_question`] and [`stream_self_questioning`]. The defaults are the reference demo's
    (docs/original.md#self-questioning-at-inference).

    Args:
        num_questions (`int`, *optional*, defaults to 3):
            Questions asked per image (the demo's `--n_shot 3`). Each is sampled independently from the same prompt.
            0 only describes the images.
        answer_questions (`bool`, *optional*, defaults to `False`):
            Let the model answer each of its questions (`visual_qa.py`): one dialogue per question, each built on the
            description alone (questions do not see each other).
        description_prompt (`str`, *optional*, defaults to `"Can you describe the image in detail?"`):
            The user turn of round 1, which every later prompt repeats.
        system_prompt (`str`, *optional*, defaults to `"v1_sq"`):
            `"v1_sq"` (the reference demo's, with the virtual-user instructions) or `"v1"`, for every round; any other
            text is used as the system message itself (for a model trained with its own, like the offline demo's).
        description_generation_kwargs (`dict`, *optional*):
            [`~transformers.GenerationConfig`] kwargs for round 1, over `{"do_sample": False, "num_beams": 1,
            "max_new_tokens": 1024}`.
        question_generation_kwargs (`dict`, *optional*):
            Kwargs for the questions, over `{"do_sample": True, "temperature": 1.2, "top_k": 300, "top_p": 0.95,
            "num_beams": 1, "max_new_tokens": 300}`. `{"do_sample": False}` makes them greedy (and all equal).
        answer_generation_kwargs (`dict`, *optional*):
            Kwargs for the answers, over `{"do_sample": False, "num_beams": 1, "max_new_tokens": 1024}`.

    Any generation kwarg can be given (`max_new_tokens`, `repetition_penalty`, `logits_processor`, ...). `eos_token_id`
    and `pad_token_id` default to the tokenizer's `</s>` and pad token, so generation stops at `</s>` even when the
    checkpoint's `generation_config` does not say so.

    Example:

    ```python
    >>> config = SelfQuestioningConfig(num_questions=5, question_generation_kwargs={"max_new_tokens": 64})
    >>> config.question_generation["temperature"], config.question_generation["max_new_tokens"]
    (1.2, 64)
    ```
    """

    num_questions: int = 3
    answer_questions: bool = False
    description_prompt: str = DESCRIPTION_PROMPT
    system_prompt: str = "v1_sq"
    description_generation_kwargs: dict[str, Any] = field(default_factory=dict)
    question_generation_kwargs: dict[str, Any] = field(default_factory=dict)
    answer_generation_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.num_questions, int) or self.num_questions < 0:
            raise ValueError(f"`num_questions` must be an int >= 0 (0 only describes), got {self.num_questions!r}.")
        if not isinstance(self.system_prompt, str) or not self.system_prompt.strip():
            raise ValueError(
                f"`system_prompt` must be \"v1_sq\", \"v1\" or a system message's text, got {self.system_prompt!r}."
            )
        if self.answer_questions and self.num_questions == 0:
            raise ValueError("`answer_questions=True` needs `num_questions >= 1`: there is nothing to answer.")

    @property
    def description_generation(self) -> dict[str, Any]:
        return _merge_generation_kwargs(DESCRIPTION_GENERATION_DEFAULTS, self.description_generation_kwargs)

    @property
    def question_generation(self) -> dict[str, Any]:
        return _merge_generation_kwargs(QUESTION_GENERATION_DEFAULTS, self.question_generation_kwargs)

    @property
    def answer_generation(self) -> dict[str, Any]:
        return _merge_generation_kwargs(ANSWER_GENERATION_DEFAULTS, self.answer_generation_kwargs)


@dataclass
class QuestionAnswer:
    r"""
    One self-questioning dialogue: a question the model asked and its own answer.

    Args:
        question (`str`): The question (the vuser turn).
        answer (`str`): The model's answer to it (the assistant turn).
    """

    question: str
    answer: str


@dataclass
class SelfQuestioningResult:
    r"""
    What [`self_question`] returns for one image. [`~SelfQuestioningResult.to_dict`] gives a JSON-serialisable dict.

    Args:
        description (`str`):
            The round-1 description (or the one passed in with `descriptions=`).
        questions (`list[str]`):
            The `num_questions` questions the model asked, in order.
        dialogues (`list[QuestionAnswer]`):
            One question -> answer pair per question with `answer_questions=True`, else empty.
    """

    description: str
    questions: list[str] = field(default_factory=list)
    dialogues: list[QuestionAnswer] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SelfQuestioningChunk:
    r"""
    A piece of text streamed by [`stream_self_questioning`].

    Args:
        part (`str`): `"description"`, `"question"` or `"answer"`.
        index (`int`): The question's index for `"question"` and `"answer"` chunks; 0 for the description.
        text (`str`): New text. Joining the chunks of one `(part, index)` and stripping gives the result's text.
    """

    part: str
    index: int
    text: str


# --------------------------------------------------------------------------------------------------------------------
# Conversations of the three rounds (the chat template renders them as the reference's prompts,
# docs/original.md#prompt-format-and-the-two-system-prompts)
# --------------------------------------------------------------------------------------------------------------------


def description_conversation(image: Any, description_prompt: str = DESCRIPTION_PROMPT) -> list[dict]:
    """Round 1: `USER: <image>\\n{description_prompt}`; generate with `generation_role="assistant"`."""
    content = [{"type": "image", "image": image}, {"type": "text", "text": description_prompt}]
    return [{"role": "user", "content": content}]


def question_conversation(image: Any, description: str, description_prompt: str = DESCRIPTION_PROMPT) -> list[dict]:
    """Round 2: round 1 plus `ASSISTANT: {description}`; generate with `generation_role="vuser"` (`...</s>VUSER:`)."""
    return [*description_conversation(image, description_prompt), {"role": "assistant", "content": description}]


def answer_conversation(
    image: Any, description: str, question: str, description_prompt: str = DESCRIPTION_PROMPT
) -> list[dict]:
    """Round 3: round 2 plus the question as a vuser turn (`VUSER: {question}</s> `); generate the assistant answer."""
    return [*question_conversation(image, description, description_prompt), {"role": "vuser", "content": question}]


# --------------------------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------------------------


def clean_generated_text(text: str, stop_string: str = "</s>") -> str:
    """Reference docs/original.md#self-questioning-at-inference step 3: strip, drop a trailing stop string, strip again."""
    text = text.strip()
    if text.endswith(stop_string):
        text = text[: -len(stop_string)]
    return text.strip()


def generate_from_conversations(
    model,
    processor,
    conversations: list[list[dict]],
    generation_role: str = "assistant",
    system_prompt: str = "v1_sq",
    streamer=None,
    images_first: bool = True,
    **generation_kwargs,
) -> list[str]:
    r"""
    Generate one continuation per conversation, in one left-padded batch, and return the cleaned texts.

    Args:
        model ([`SQLlavaForConditionalGeneration`]): The model.
        processor ([`SQLlavaProcessor`]): Its processor.
        conversations (`list[list[dict]]`): Conversations whose images sit in their content blocks.
        generation_role (`str`, *optional*, defaults to `"assistant"`): `"assistant"` answers, `"vuser"` asks.
        system_prompt (`str`, *optional*, defaults to `"v1_sq"`): `"v1_sq"` or `"v1"`, or the text of a system message
            to put first in every conversation.
        streamer (`BaseStreamer`, *optional*): Passed to `generate` (batch of one only, as transformers' streamers).
        images_first (`bool`, *optional*, defaults to `True`): Images before the text of their turn (the reference);
            `False` keeps the content blocks' order (see [`~SQLlavaProcessor.apply_chat_template`]).
        **generation_kwargs: Passed to `generate`; `eos_token_id` and `pad_token_id` default to the tokenizer's.

    Returns:
        `list[str]`: the new text of each conversation, decoded without special tokens, stripped, without a trailing
        `</s>`.
    """
    tokenizer = processor.tokenizer
    if system_prompt not in SYSTEM_PROMPTS:  # a system message of its own, not one of the reference's named prompts
        conversations = [[{"role": "system", "content": system_prompt}, *messages] for messages in conversations]
        system_prompt = None
    inputs = processor.apply_chat_template(
        conversations,
        add_generation_prompt=True,
        generation_role=generation_role,
        system_prompt=system_prompt,
        images_first=images_first,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        # Left padding: every row's prompt ends where generation starts, so batched equals one-by-one.
        processor_kwargs={"padding": True, "padding_side": "left"},
    )
    inputs = inputs.to(model.device)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    generation_kwargs.setdefault("eos_token_id", tokenizer.eos_token_id)
    generation_kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
    with torch.inference_mode():
        sequences = model.generate(**inputs, streamer=streamer, **generation_kwargs)
    new_tokens = sequences[:, inputs["input_ids"].shape[1] :]
    texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return [clean_generated_text(text, tokenizer.eos_token or "</s>") for text in texts]


def load_image(processor, image: Any) -> Any:
    """A file path opened by the processor's own loader (PIL, no EXIF rotation, as the reference's `Image.open`);
    anything else (PIL, array, tensor) as given."""
    if isinstance(image, (str, os.PathLike)):
        return processor.image_processor.fetch_images(os.fspath(image))
    return image


def _as_image_list(processor, images: Any) -> list[Any]:
    if images is None:
        raise ValueError("`images` is required: pass an image (PIL, array, tensor or file path) or a list of them.")
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("`images` is empty: pass at least one image.")
        return [load_image(processor, image) for image in images]
    return [load_image(processor, images)]


def self_question(
    model,
    processor,
    images: Any,
    config: SelfQuestioningConfig | None = None,
    descriptions: Sequence[str] | None = None,
) -> list[SelfQuestioningResult]:
    r"""
    Self-questioning for a batch of images: describe each image, ask `config.num_questions` questions about it, and
    optionally answer them (docs/original.md#self-questioning-at-inference; see the module docstring for the deliberate
    differences).

    Each round is one `generate` call over all images, left-padded. The `num_questions` questions of an image come
    from repeating its prompt `num_questions` times in the batch rather than from `num_return_sequences`: transformers
    rejects `num_return_sequences > 1` for greedy decoding, and the repeated batch is what `generate` would build for
    sampling anyway. Greedy settings therefore give the same results batched as one image at a time.

    Args:
        model ([`SQLlavaForConditionalGeneration`]):
            The model (any device and dtype; the inputs are moved to it).
        processor ([`SQLlavaProcessor`]):
            Its processor (its `vuser_token` decides the question marker: `VUSER` or `[vusr]`).
        images (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor`, `str` or a list of them):
            One image or a batch; strings are file paths.
        config ([`SelfQuestioningConfig`], *optional*):
            The settings; defaults to the reference demo's.
        descriptions (`Sequence[str]`, *optional*):
            One description per image, used as the assistant's answer to `config.description_prompt` instead of
            generating it (round 1 is skipped), e.g. captions you already have.

    Returns:
        `list[SelfQuestioningResult]`: one per image, in order.

    Example:

    ```python
    >>> results = self_question(model, processor, [image_1, image_2], SelfQuestioningConfig(answer_questions=True))
    >>> results[0].questions  # 3 sampled questions
    >>> results[0].dialogues[0].question, results[0].dialogues[0].answer
    ```
    """
    config = config if config is not None else SelfQuestioningConfig()
    images = _as_image_list(processor, images)
    prompt = config.description_prompt

    def generate(conversations: list[list[dict]], role: str, generation_kwargs: dict) -> list[str]:
        return generate_from_conversations(
            model, processor, conversations, role, config.system_prompt, **generation_kwargs
        )

    if descriptions is None:
        conversations = [description_conversation(image, prompt) for image in images]
        descriptions = generate(conversations, "assistant", config.description_generation)
    elif len(descriptions) != len(images):
        raise ValueError(
            f"Got {len(descriptions)} descriptions for {len(images)} images: pass one description per image, or "
            "`descriptions=None` to generate them."
        )
    results = [SelfQuestioningResult(description=description) for description in descriptions]
    if config.num_questions == 0:
        return results

    # Image-major order: the questions of image i are rows i * num_questions ... (i + 1) * num_questions - 1.
    repeated = [pair for pair in zip(images, descriptions) for _ in range(config.num_questions)]
    conversations = [question_conversation(image, description, prompt) for image, description in repeated]
    questions = generate(conversations, "vuser", config.question_generation)
    for row, question in enumerate(questions):
        results[row // config.num_questions].questions.append(question)

    if config.answer_questions:
        conversations = [
            answer_conversation(image, description, question, prompt)
            for (image, description), question in zip(repeated, questions)
        ]
        answers = generate(conversations, "assistant", config.answer_generation)
        for row, (question, answer) in enumerate(zip(questions, answers)):
            results[row // config.num_questions].dialogues.append(QuestionAnswer(question, answer))
    return results


def stream_self_questioning(
    model,
    processor,
    image: Any,
    config: SelfQuestioningConfig | None = None,
    description: str | None = None,
) -> Iterator[SelfQuestioningChunk]:
    r"""
    Self-questioning for one image, streamed as it is generated: for interactive use (a terminal, a Gradio app).

    The rounds run one at a time, in reading order: the description, then question 0, its answer (with
    `answer_questions=True`), question 1, ... Each question is a separate `generate` call, so with sampling the
    questions differ from [`self_question`]'s draws; with greedy settings the texts are the same.

    Args:
        model ([`SQLlavaForConditionalGeneration`]): The model.
        processor ([`SQLlavaProcessor`]): Its processor.
        image (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor` or `str`): One image (or a file path).
        config ([`SelfQuestioningConfig`], *optional*): The settings; defaults to the reference demo's.
        description (`str`, *optional*): Use this description instead of generating one (nothing is streamed for it).

    Yields:
        [`SelfQuestioningChunk`]: pieces of text tagged with their part (`"description"`, `"question"`, `"answer"`)
        and question index.

    Example:

    ```python
    >>> for chunk in stream_self_questioning(model, processor, image):
    ...     print(chunk.text, end="", flush=True)
    ```
    """
    config = config if config is not None else SelfQuestioningConfig()
    (image,) = _as_image_list(processor, image)
    prompt = config.description_prompt

    def streamed(part: str, index: int, conversation: list[dict], role: str, kwargs: dict) -> Iterator:
        texts = yield from _stream_generation(
            model, processor, [conversation], part, index, role, config.system_prompt, kwargs
        )
        return texts[0]

    if description is None:
        description = yield from streamed(
            "description", 0, description_conversation(image, prompt), "assistant", config.description_generation
        )
    for index in range(config.num_questions):
        question = yield from streamed(
            "question", index, question_conversation(image, description, prompt), "vuser", config.question_generation
        )
        if config.answer_questions:
            yield from streamed(
                "answer",
                index,
                answer_conversation(image, description, question, prompt),
                "assistant",
                config.answer_generation,
            )


class WholeByteRunStreamer(TextStreamer):
    """
    A `TextStreamer` (it prints) that holds back byte-fallback pieces (`<0x64>`, `<0xE5>`, ...) until a regular piece
    or the end follows, so that the streamed chunks add up to the final decoded text.

    The ByteFallback decoder of Llama-style tokenizers decodes a run of byte pieces as one UTF-8 string, and an invalid
    run as one U+FFFD per byte, including a byte that decoded to a letter on its own: `<0x64>` is "d", `<0x64><0xE5>`
    is "��". From transformers 5.24 on, streamers emit letters as soon as they decode, so a plain one can stream a "d"
    that the final text does not have.
    """

    _BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")

    def __init__(self, tokenizer, **kwargs):
        super().__init__(tokenizer, **kwargs)
        self.held_back_ids: list[int] = []

    def put(self, value: torch.Tensor):
        if (self.skip_prompt and self.next_tokens_are_prompt) or (value.dim() > 1 and value.shape[0] > 1):
            return super().put(value)  # the prompt (skipped), or a batch (which the parent rejects)
        self.held_back_ids.extend(value.reshape(-1).tolist())
        if self._BYTE_PIECE.fullmatch(self.tokenizer.convert_ids_to_tokens(self.held_back_ids[-1]) or ""):
            return
        self._release()

    def end(self):
        self._release()
        super().end()

    def _release(self):
        if self.held_back_ids:
            ids, self.held_back_ids = self.held_back_ids, []
            super().put(torch.tensor(ids))


class _WholeByteRunIteratorStreamer(WholeByteRunStreamer, TextIteratorStreamer):
    """[`WholeByteRunStreamer`] whose text is read by iterating over it, from another thread (`TextIteratorStreamer`)."""


def _stream_generation(model, processor, conversations, part, index, role, system_prompt, generation_kwargs):
    """Run `generate_from_conversations` in a thread with a streamer; yield chunks, return the texts."""
    streamer = _WholeByteRunIteratorStreamer(processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    outcome = {}

    def run():
        try:
            outcome["texts"] = generate_from_conversations(
                model, processor, conversations, role, system_prompt, streamer=streamer, **generation_kwargs
            )
        except BaseException as error:  # re-raised in the caller's thread below
            outcome["error"] = error
            streamer.end()  # otherwise iterating the streamer would wait forever

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    for text in streamer:
        if text:
            yield SelfQuestioningChunk(part=part, index=index, text=text)
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["texts"]


__all__ = [
    "DESCRIPTION_PROMPT",
    "QuestionAnswer",
    "SelfQuestioningChunk",
    "SelfQuestioningConfig",
    "SelfQuestioningResult",
    "answer_conversation",
    "clean_generated_text",
    "description_conversation",
    "generate_from_conversations",
    "load_image",
    "question_conversation",
    "self_question",
    "stream_self_questioning",
]
