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
"""Data collators for TRL's `SFTTrainer` (and `Trainer`): the self-questioning objective of stage 2 and the caption
objective of stage 1 (docs/original.md#stage-2-labels-and-vuser-turns).

Both take rows in TRL's conversational vision format, `{"images": [PIL.Image, ...], "messages": [...]}` (what
[`load_llava_dataset`] gives), and return right-padded `input_ids`, `attention_mask`, `labels` and `pixel_values` for
[`SQLlavaForConditionalGeneration`]. TRL's own `DataCollatorForVisionLanguageModeling` cannot be used: it rejects the
`vuser` role and trains on every token.
"""

import hashlib
import json
import logging
import math
import os
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NamedTuple

import torch
from transformers import TrainerCallback
from transformers.data.data_collator import DataCollatorMixin

from ..processing_sqllava import SYSTEM_PROMPTS
from .labels import IGNORE_INDEX, Segment, check_messages, conversation_segments, encode_segments, num_image_blocks


logger = logging.getLogger(__name__)

OverflowPolicy = Literal["raise", "skip", "truncate_text"]


class _Row(NamedTuple):
    """One row of a batch after `_check_row`: its name in errors and logs, its `id` (`None` without one), its
    messages and its RGB images."""

    sample_id: str
    id: Any
    messages: list[dict[str, Any]]
    images: list


@dataclass
class CollatorStats:
    r"""
    Running counts of what a collator has produced, in the process that runs it (with `dataloader_num_workers > 0`
    each worker process counts its own copy and the trainer's process sees zeros: use 0 workers to log them).

    Args:
        num_samples (`int`): samples collated (skipped ones excluded).
        num_image_samples (`int`): of which with an image.
        num_text_only_samples (`int`): of which text-only.
        num_eligible_turns (`int`): user turns that could become vuser turns (later turns of image samples).
        num_vuser_turns (`int`): vuser turns drawn from them.
        num_given_vuser_turns (`int`): vuser turns already in the data (`from: "vuser"`), trained as such.
        num_answer_tokens (`int`): supervised answer tokens (answers + `</s>`; the caption + `"\n"` in stage 1).
        num_question_tokens (`int`): supervised question tokens (vuser questions + `</s>`).
        num_skipped (`int`): samples left out (`on_overflow="skip"`): longer than `max_length`, or with nothing to
            train on; their ids are in `skipped_ids`.
        num_unsupervised (`int`): of the skipped samples, those with no trained token (no assistant answer or vuser
            question, or none left within `max_length`).
        num_truncated (`int`): samples cut to `max_length` (`on_overflow="truncate_text"`).
    """

    num_samples: int = 0
    num_image_samples: int = 0
    num_text_only_samples: int = 0
    num_eligible_turns: int = 0
    num_vuser_turns: int = 0
    num_given_vuser_turns: int = 0
    num_answer_tokens: int = 0
    num_question_tokens: int = 0
    num_skipped: int = 0
    num_unsupervised: int = 0
    num_truncated: int = 0
    skipped_ids: list[str] = field(default_factory=list)

    def as_log(self, prefix: str = "collator/") -> dict[str, int]:
        """The counts (without the skipped ids) as flat log entries."""
        return {f"{prefix}{key}": value for key, value in asdict(self).items() if key != "skipped_ids"}


def _process_rank() -> int:
    # torchrun and accelerate set RANK in every process (and worker processes inherit it); fall back to the process
    # group for launchers that only initialise torch.distributed.
    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


@dataclass
class _SQLlavaCollatorBase(DataCollatorMixin):
    """Padding, images, `max_length` and counting, shared by the stage-1 and stage-2 collators."""

    processor: Any
    max_length: int | None = None
    on_overflow: OverflowPolicy = "raise"
    pad_to_multiple_of: int | None = None
    pad_to_square: bool = True
    return_tensors: str = "pt"
    stats: CollatorStats = field(default_factory=CollatorStats, init=False, repr=False)

    def __post_init__(self):
        if self.on_overflow not in ("raise", "skip", "truncate_text"):
            raise ValueError(f"`on_overflow` must be 'raise', 'skip' or 'truncate_text', got {self.on_overflow!r}.")
        if self.return_tensors != "pt":
            raise ValueError(f"Only `return_tensors='pt'` is supported, got {self.return_tensors!r}.")
        for name in ("max_length", "pad_to_multiple_of"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"`{name}` must be a positive integer or None, got {value!r}.")
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is None or not hasattr(self.processor, "encode_chunk"):
            raise ValueError(
                "The collator needs an `SQLlavaProcessor` (with its tokenizer), e.g. "
                "`SQLlavaProcessor.from_pretrained(path)`; TRL's processing_class of the model works too."
            )
        if tokenizer.pad_token_id is None:
            raise ValueError(
                "The tokenizer has no pad token: set it up with `transformers_sqllava.add_sqllava_tokens(tokenizer)`."
            )

    # -- per sample -------------------------------------------------------------------------------------------------

    def _encode(self, row: _Row, batch_rng: random.Random | None):
        """Token ids of one checked row and a role per token: `None` (not trained), `"assistant"` or `"vuser"`."""
        raise NotImplementedError

    def _batch_rng(self) -> random.Random | None:
        """The random draws shared by one batch's samples, if the collator draws any."""
        return None

    def _fit(self, ids: list[int], tags: list, sample_id: str) -> tuple[list[int], list] | None:
        """Applies `max_length`; returns `None` for a skipped sample. Never cuts through the image tokens."""
        if self.max_length is None or len(ids) <= self.max_length:
            return ids, tags
        image_token_id = self.processor.image_token_id
        last_image = max((i for i, token in enumerate(ids) if token == image_token_id), default=-1)
        problem = (
            f"Sample {sample_id!r} has {len(ids)} tokens (each image counts {self.processor.image_seq_length}), "
            f"more than max_length={self.max_length}."
        )
        if self.on_overflow == "raise":
            raise ValueError(
                f"{problem} Raise `max_length` (or set it to None), or pass `on_overflow='skip'` to leave such "
                "samples out (they are counted in `collator.stats`), or `on_overflow='truncate_text'`."
            )
        if self.on_overflow == "truncate_text" and last_image < self.max_length:
            self.stats.num_truncated += 1
            return ids[: self.max_length], tags[: self.max_length]
        if self.on_overflow == "truncate_text":
            raise ValueError(
                f"{problem} Truncating would cut through its image tokens (the last at position {last_image}): raise "
                "`max_length`, or pass `on_overflow='skip'`."
            )
        self._skip(sample_id, problem)
        return None

    def _skip(self, sample_id: str, problem: str):
        self.stats.num_skipped += 1
        self.stats.skipped_ids.append(sample_id)
        logger.warning("%s Skipped (%d skipped so far).", problem, self.stats.num_skipped)

    def _check_supervised(self, tags: list, sample_id: str, cut: bool) -> bool:
        """Whether the sample has a trained token; without one it is skipped (`on_overflow="skip"`) or raises. A batch
        of such samples would average a loss over zero tokens: NaN, which `Trainer` would apply."""
        if any(tag is not None for tag in tags):
            return True
        left = f" left within max_length={self.max_length}" if cut else ""
        problem = f"Sample {sample_id!r} has nothing to train on: no assistant answer or vuser question{left}."
        if self.on_overflow != "skip":
            raise ValueError(
                f"{problem} Add the answer (or raise `max_length`), or pass `on_overflow='skip'` to leave such "
                "samples out (they are counted in `collator.stats`)."
            )
        self.stats.num_unsupervised += 1
        self._skip(sample_id, problem)
        return False

    # -- per row ----------------------------------------------------------------------------------------------------

    def _check_row(self, example: Any, position: int) -> _Row:
        """The row's id, messages and images, checked: every bad row raises here, naming the sample and the fix."""
        if not isinstance(example, Mapping):
            raise ValueError(
                f"Row {position} of the batch is a {type(example).__name__}, not a dict: rows are "
                "`{'messages': [...], 'images': [...]}` (TRL's conversational vision format)."
            )
        sample_id = str(example["id"]) if example.get("id") is not None else f"#{position} of the batch"
        where = f"Sample {sample_id!r}"
        if "messages" not in example:
            raise ValueError(
                f"{where} has no 'messages': rows must be in TRL's conversational vision format, e.g. from "
                f"`load_llava_dataset` (its keys: {sorted(map(str, example))})."
            )
        messages = example["messages"]
        check_messages(messages, where)
        images = self._images_of(example, where)
        # Counted per row: the model takes a batch's images in order, so one row's missing image would hand its
        # placeholder the next row's image (or train image tokens on no image at all).
        placeholders = num_image_blocks(messages)
        if placeholders != len(images):
            fix = (
                "add {'type': 'image'} to the first user turn's content" if placeholders < len(images) else
                "give the row its image in 'images' (or drop the image block for a text-only sample)"
            )
            raise ValueError(
                f"{where} has {placeholders} image block(s) in its messages but {len(images)} image(s): {fix}."
            )
        try:  # open, decode and convert here, so that a bad image names its sample
            images = self.processor.image_processor.fetch_images(images)
        except (TypeError, ValueError, FileNotFoundError) as error:
            raise type(error)(f"{where}: {error}") from error
        return _Row(sample_id, example.get("id"), messages, images)

    @staticmethod
    def _images_of(example: Mapping, where: str) -> list:
        if "images" in example:
            images = example["images"] if example["images"] is not None else []
        else:  # one `image` (or none)
            images = [example["image"]] if example.get("image") is not None else []
        if not isinstance(images, (list, tuple)):
            raise ValueError(
                f"{where}: 'images' must be a list of images, got a {type(images).__name__}: wrap it, "
                "`'images': [image]`."
            )
        if len(images) > 1:
            raise ValueError(f"{where} has {len(images)} images; SQ-LLaVA takes one image per sample.")
        if any(image is None for image in images):
            raise ValueError(f"{where}: 'images' holds None; give the image, or an empty list for a text-only sample.")
        return list(images)

    # -- per batch --------------------------------------------------------------------------------------------------

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not isinstance(examples, (list, tuple)) or not examples:
            raise ValueError(
                f"The collator got an empty batch ({examples!r:.40}): give it a list of at least one row."
            )
        tokenizer = self.processor.tokenizer
        rows = [self._check_row(example, position) for position, example in enumerate(examples)]
        sequences, images = [], []
        batch_rng = self._batch_rng()
        for row in rows:
            ids, tags = self._encode(row, batch_rng)
            fitted = self._fit(ids, tags, row.sample_id)
            if fitted is None or not self._check_supervised(fitted[1], row.sample_id, cut=len(fitted[1]) < len(tags)):
                continue
            ids, tags = fitted
            labels = [token if tag is not None else IGNORE_INDEX for token, tag in zip(ids, tags)]
            sequences.append((ids, labels))
            images += row.images
            self.stats.num_samples += 1
            self.stats.num_image_samples += bool(row.images)
            self.stats.num_text_only_samples += not row.images
            self.stats.num_answer_tokens += sum(tag == "assistant" for tag in tags)
            self.stats.num_question_tokens += sum(tag == "vuser" for tag in tags)
        if not sequences:
            raise ValueError(
                f"All {len(examples)} samples of the batch were skipped (longer than max_length={self.max_length}, "
                f"or with nothing to train on; last skipped: {self.stats.skipped_ids[-len(examples):]}): raise "
                "`max_length`, or fix or filter these samples. An empty batch cannot be trained on."
            )

        length = max(len(ids) for ids, _ in sequences)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        pad_id = tokenizer.pad_token_id
        input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
        labels = torch.full((len(sequences), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for row, (ids, row_labels) in enumerate(sequences):  # right padding, for training
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(ids)] = torch.tensor(row_labels)
            attention_mask[row, : len(ids)] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if images:
            batch["pixel_values"] = self.processor.image_processor(
                images, do_pad=self.pad_to_square, return_tensors="pt"
            )["pixel_values"]
        return batch



@dataclass
class SQLlavaSelfQuestioningCollator(_SQLlavaCollatorBase):
    r"""
    Data collator for SQ-LLaVA's stage 2, visual self-questioning instruction tuning
    (docs/original.md#stage-2-labels-and-vuser-turns).

    For every sample it draws which later user turns become questions the model learns to *ask* (`vuser` turns),
    renders the conversation with the training system prompt (`v1_sq`, for every sample, text-only ones included:
    docs/original.md#which-system-prompt-where), tokenises it once through the processor's chunk encoder and builds the
    labels from the conversation's structure ([`~training.labels.encode_segments`]): no token-length arithmetic, so no
    tokenizer version can shift the masks (the reference's arithmetic silently masks whole samples with newer
    tokenizers, docs/original.md#label-arithmetic-that-masks-whole-samples).

    Supervision (docs/original.md#stage-2-labels-and-vuser-turns):

    | span                                                              | label    |
    |-------------------------------------------------------------------|----------|
    | BOS, system prompt, `USER: <image>\nQ0 ASSISTANT:`                | -100     |
    | answer + `</s>`                                                   | trained  |
    | `VUSER:` (or `[vusr]:`)                                           | -100     |
    | vuser question + `</s>` (the model learns to ask, and to stop)    | trained  |
    | ` ASSISTANT:` after the question's `</s>`                         | -100     |
    | later `USER: Q ASSISTANT:`                                        | -100     |
    | image tokens, right padding                                       | -100     |

    Which turns become vuser turns (docs/original.md#stage-2-labels-and-vuser-turns): each user turn after the first of
    a sample *with an image*, independently with probability `sq_ratio`; never the first turn, never in text-only
    samples; redrawn every time the sample is collated (a new draw every epoch). Turns that are `vuser` in the data
    stay `vuser`.

    Determinism. Two modes:

    - **Under a trainer, with [`SQLlavaCollatorCallback`]** (recommended): the callback tells the collator the epoch
      (and, with `seed=None`, `args.seed`), and each sample's draws are a pure function of `(seed, epoch, sample)`,
      the sample being its `id` (or its text when it has none). A sample gets new draws every epoch; the draws do not
      depend on batch order, dataloader workers, prefetching or the number of processes, and a run resumed from a
      checkpoint makes exactly the draws of an uninterrupted run. (Two rows with the same `id` in one epoch share
      their draws.)
    - **Without the callback** (a bare collator): each call draws one number from a stream and seeds the batch's
      draws with it, the process rank (`RANK`) and the dataloader worker id, so every call redraws. The stream is
      private with `seed=int` (reproducible call by call), or the global torch RNG with `seed=None` (follows
      `torch.manual_seed`). Stream positions are not saved in checkpoints, and `Trainer` prefetches batches, so this
      mode does not replay exactly after a resume.

    Inputs (one dict per sample, TRL's conversational vision format; `id` names the sample in errors, logs and
    `stats.skipped_ids`, and keys its vuser draws; other keys are ignored):

    - `messages`: `[{"role": "user" | "assistant" | "vuser" | "system", "content": str | [{"type": "image"},
      {"type": "text", "text": ...}]}, ...]`, user/assistant alternating, the image block in the first user turn;
      a user turn that is only an image renders as `USER: <image> ASSISTANT:` (the reference's prompt for LLaVA's
      `"<image>"`-only turns);
    - `images`: a list with the sample's image (anything [`SQLlavaImageProcessor`] takes: `PIL.Image`, array, path),
      empty for text-only samples (or `image`: one image).

    Outputs (`dict[str, torch.Tensor]`, right-padded):

    - `input_ids` (`batch, length`): each image expanded to `image_seq_length` image tokens; padding with the
      tokenizer's pad token;
    - `attention_mask` (`batch, length`);
    - `labels` (`batch, length`): the input ids on trained tokens, -100 elsewhere;
    - `pixel_values` (`num_images, 3, 336, 336`): only when the batch has images; padded to a square with the CLIP
      mean colour (`pad_to_square`, docs/original.md#image-preprocessing).

    Args:
        processor ([`SQLlavaProcessor`]):
            The model's processor.
        sq_ratio (`float`, *optional*, defaults to 0.5):
            Probability that an eligible user turn becomes a vuser turn: 0.5 is the released recipe
            (`scripts/finetune_lora_clu_sq.sh --sq_r 0.5`); the reference code's default `sq_r` is 0.3. 0 gives plain
            LLaVA-1.5 instruction tuning with the v1_sq prompt.
        seed (`int`, *optional*):
            Seed of the vuser draws; `None` uses the trainer's `args.seed` (with the callback) or the global torch
            RNG (without). See Determinism.
        system_prompt (`str`, *optional*, defaults to `"v1_sq"`):
            The system prompt for samples without a system message: `"v1_sq"` as the reference trains; `"v1"` is the
            answering prompt.
        images_first (`bool`, *optional*, defaults to `True`):
            Render a user turn's images before its text, as the reference's `preprocess_multimodal` does. `False`
            keeps the order of the content blocks, e.g. the question before the image (`"USER: Q\\n<image> "`); the
            offline demo trains that way, see `transformers_sqllava.demo.train`.
        max_length (`int`, *optional*):
            Longest sample in tokens, image tokens included (576 per image for the real model). `None`: no limit.
        on_overflow (`str`, *optional*, defaults to `"raise"`):
            A sample longer than `max_length`: `"raise"` a `ValueError` naming the sample; `"skip"` it (counted in
            `stats.num_skipped`, its id in `stats.skipped_ids`, and logged); or `"truncate_text"`: cut the text at
            `max_length` (counted in `stats.num_truncated`), which raises if the cut would go through image tokens.
            The reference truncates in the collator and can cut through the image; no policy here does. A sample
            with nothing to train on (no assistant answer or vuser question, or none left after the cut) is skipped
            with `"skip"` (also counted in `stats.num_unsupervised`) and raises otherwise: it never reaches the loss,
            where a batch of them would give NaN.

    Every row is checked first, and a bad one raises a `ValueError` (`TypeError`, `FileNotFoundError` for images)
    naming the sample (its `id`, else its position in the batch) and the fix: an empty batch, missing or malformed
    `messages` (types, roles, order, content blocks), a number of image blocks other than the row's number of images
    (counted per row: one row's image never goes to another's placeholder), unreadable images
    (docs/errors.md#collators).
        pad_to_multiple_of (`int`, *optional*):
            Pad the length to a multiple of this.
        pad_to_square (`bool`, *optional*, defaults to `True`):
            Pad images to a square with the CLIP mean colour before resizing (reference stage 2,
            `image_aspect_ratio="pad"`).
        return_tensors (`str`, *optional*, defaults to `"pt"`):
            Only `"pt"`.

    Attributes:
        stats ([`CollatorStats`]): running counts, including supervised question and answer tokens; log them with
            [`SQLlavaCollatorCallback`].

    Example:

    ```python
    >>> collator = SQLlavaSelfQuestioningCollator(processor, sq_ratio=0.5, seed=0)
    >>> batch = collator([{"images": [image], "messages": [
    ...     {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]},
    ...     {"role": "assistant", "content": "A cat."},
    ...     {"role": "user", "content": "What colour is it?"},
    ...     {"role": "assistant", "content": "Black."}]}])
    >>> sorted(batch)
    ['attention_mask', 'input_ids', 'labels', 'pixel_values']
    >>> # trained spans, decoded: 'A cat.</s>', then either 'Black.</s>' (the user turn stayed) or
    >>> # 'What colour is it?</s>' and 'Black.</s>' (it became "VUSER: What colour is it?</s> ASSISTANT: Black.</s>")
    ```
    """

    sq_ratio: float = 0.5
    seed: int | None = None
    system_prompt: str = "v1_sq"
    images_first: bool = True

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.sq_ratio <= 1.0:
            raise ValueError(
                f"`sq_ratio` is a probability in [0, 1] (0.5 in the released recipe), got {self.sq_ratio}."
            )
        if self.system_prompt not in SYSTEM_PROMPTS:
            raise ValueError(
                f"`system_prompt` must be one of {sorted(SYSTEM_PROMPTS)} (\"v1_sq\" trains as the reference), got "
                f"{self.system_prompt!r}. For another prompt, start each conversation with a system message."
            )
        # Without the callback: one number per call from this stream (or torch's global RNG) seeds the batch.
        self._stream = random.Random(self.seed) if self.seed is not None else None
        self.epoch: int | None = None  # set by `set_epoch` (SQLlavaCollatorCallback): per-sample keyed draws
        self._epoch_seed = self.seed

    def set_epoch(self, epoch: int, default_seed: int | None = None) -> None:
        """Switch to per-sample draws keyed by `(seed, epoch, sample)` (`seed` defaulting to `default_seed`)."""
        self.epoch = int(epoch)
        self._epoch_seed = self.seed if self.seed is not None else (default_seed or 0)

    def _sample_rng(self, messages: list[dict], key: Any) -> random.Random:
        if key is None:  # no id: the sample's text identifies it
            key = hashlib.sha1(json.dumps(messages, sort_keys=True, default=str).encode()).hexdigest()
        # A string seed is hashed with SHA-512: the same in every process, independent of PYTHONHASHSEED.
        return random.Random(f"sqllava-vuser|{self._epoch_seed}|{self.epoch}|{key}")

    def _next_batch_rng(self) -> random.Random:
        # One number from the stream per call (see "Determinism"), mixed with the rank and worker id so that copies
        # of the collator in other processes draw differently. A string seed is hashed with SHA-512: the same in
        # every process, independent of PYTHONHASHSEED.
        if self._stream is None:
            base = int(torch.randint(0, 2**62, (1,)).item())
        else:
            base = self._stream.getrandbits(62)
        worker = torch.utils.data.get_worker_info()
        return random.Random(f"sqllava-{base}-{_process_rank()}-{worker.id if worker is not None else -1}")

    def _batch_rng(self) -> random.Random | None:
        # Keyed per-sample draws (under the callback) need no batch state.
        return self._next_batch_rng() if self.epoch is None else None

    def draw_vuser_turns(self, messages: list[dict], has_image: bool, rng: random.Random | None = None) -> list[dict]:
        """
        The messages with each eligible user turn turned into a vuser turn with probability `sq_ratio` (a new list; the
        input is not modified). Eligible: a user turn after the first, in a sample with an image
        (docs/original.md#stage-2-labels-and-vuser-turns).
        """
        rng = rng or self._next_batch_rng()
        if not has_image:
            return messages  # text-only samples are never changed (docs/original.md#stage-2-labels-and-vuser-turns)
        result = []
        first_user_seen = False
        for message in messages:
            if message.get("role") == "user":
                if first_user_seen:
                    self.stats.num_eligible_turns += 1
                    # One draw per eligible turn, also at sq_ratio 1, so the stream does not depend on the ratio.
                    if rng.random() < self.sq_ratio:
                        self.stats.num_vuser_turns += 1
                        message = {**message, "role": "vuser"}
                first_user_seen = True
            result.append(message)
        return result

    def _encode(self, row: _Row, batch_rng: random.Random | None):
        messages = row.messages
        self.stats.num_given_vuser_turns += sum(message.get("role") == "vuser" for message in messages)
        rng = batch_rng or self._sample_rng(messages, row.id)
        messages = self.draw_vuser_turns(messages, bool(row.images), rng)
        has_system = messages[0].get("role") == "system"
        system_prompt = None if has_system else self.system_prompt
        try:
            segments = conversation_segments(self.processor, messages, system_prompt, images_first=self.images_first)
        except ValueError as error:  # the template's own checks (e.g. a system prompt given twice)
            raise ValueError(f"Sample {row.sample_id!r}: {error}") from error
        return encode_segments(self.processor, segments)


@dataclass
class SQLlavaAlignmentCollator(_SQLlavaCollatorBase):
    r"""
    Data collator for SQ-LLaVA's stage 1, feature alignment, in the reference's "plain" format
    (docs/original.md#stage-1-labels).

    Each sample is `<image>` + caption + `"\n"`: no system prompt, no role markers, no EOS, and the user's instruction
    is discarded. The caption and the newline are trained; BOS and the image tokens are -100.

    Inputs: TRL vision rows whose `messages` are one user turn (with the image) and one assistant turn (the caption),
    e.g. LLaVA's `blip_laion_cc_sbu_558k.json` through [`load_llava_dataset`], and `images` with one image. Outputs:
    as [`SQLlavaSelfQuestioningCollator`]. Images are not padded to a square by default: the reference's stage 1 uses
    the image processor's own resize and centre crop (`image_aspect_ratio` "square",
    docs/original.md#image-preprocessing).

    Args:
        processor ([`SQLlavaProcessor`]): The model's processor.
        max_length (`int`, *optional*): see [`SQLlavaSelfQuestioningCollator`].
        on_overflow (`str`, *optional*, defaults to `"raise"`): see [`SQLlavaSelfQuestioningCollator`].
        pad_to_multiple_of (`int`, *optional*): Pad the length to a multiple of this.
        pad_to_square (`bool`, *optional*, defaults to `False`): Pad images to a square first.

    Example:

    ```python
    >>> collator = SQLlavaAlignmentCollator(processor)
    >>> batch = collator([{"images": [image], "messages": [
    ...     {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe it."}]},
    ...     {"role": "assistant", "content": "a black cat on a mat"}]}])
    >>> # input: <s> <image> x 576 "a black cat on a mat\n"; labels: -100 x 577, then the caption and "\n"
    ```
    """

    pad_to_square: bool = False

    def _encode(self, row: _Row, batch_rng: random.Random | None):
        messages, has_image = row.messages, bool(row.images)
        roles = [message.get("role") for message in messages]
        if roles != ["user", "assistant"] or not has_image:
            raise ValueError(
                f"Sample {row.sample_id!r}: stage-1 (plain) samples are an image, one user turn and one assistant turn "
                f"(the caption), as the reference asserts (docs/original.md#stage-1-labels); got roles {roles} and "
                f"{'an' if has_image else 'no'} image."
            )
        content = messages[1]["content"]
        caption = content if isinstance(content, str) else " ".join(
            block["text"] for block in content if block.get("type") == "text"
        )
        segments = [Segment(self.processor.image_token, None, True), Segment(caption + "\n", "assistant", False)]
        return encode_segments(self.processor, segments)


class SQLlavaCollatorCallback(TrainerCallback):
    r"""
    Connects an SQ-LLaVA collator to a `Trainer` / `SFTTrainer`:

    - at the start of every epoch it calls `collator.set_epoch(epoch, args.seed)`, so the self-questioning
      collator's vuser draws are keyed by `(seed, epoch, sample)`: new every epoch, and replayed exactly by a run
      resumed from a checkpoint (see [`SQLlavaSelfQuestioningCollator`], Determinism);
    - it adds the collator's [`CollatorStats`] (supervised question and answer tokens, vuser turns, skipped samples)
      to the logs as `collator/...` entries. The counts are cumulative, for this process; they stay at zero with
      `dataloader_num_workers > 0` (workers collate with their own copies of the collator).

    Example: `SFTTrainer(..., data_collator=collator, callbacks=[SQLlavaCollatorCallback(collator)])`.
    """

    def __init__(self, collator: _SQLlavaCollatorBase):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        if hasattr(self.collator, "set_epoch"):
            # `state.epoch` is fractional mid-epoch (e.g. 0.5 after resuming from a mid-epoch checkpoint).
            self.collator.set_epoch(math.floor(state.epoch + 1e-6), default_seed=args.seed)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs:
            return
        entries = self.collator.stats.as_log()
        logs.update(entries)
        # `Trainer.log` has already stored a copy of `logs` in the history: update it too.
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(entries)


__all__ = [
    "CollatorStats",
    "SQLlavaCollatorCallback",
    "SQLlavaAlignmentCollator",
    "SQLlavaSelfQuestioningCollator",
]
