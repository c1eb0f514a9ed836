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
"""The data collator for TRL's `DPOTrainer`: preference pairs between two answers, or between two questions the
model asks (`vuser` turns), in SQ-LLaVA's training format.

Each pair is encoded exactly as the SFT collators encode the same conversation (one BOS, the processor's chunk
encoder, the reference's separators: [`~training.labels.conversation_segments`]), so a model is preference-tuned on
the ids it was instruction-tuned on. TRL's own `DataCollatorForVisionPreference` cannot be used: its
`prepare_multimodal_messages` rejects the `vuser` role, and it tokenises the prompt and each completion apart
without BOS, which gives other ids (no BOS, an extra `"▁"` where prompt and completion meet).

What TRL 1.16's `DPOTrainer` (`trl/trainer/dpo_trainer.py`) expects, and this collator gives:

- A dataset with an `images` (or `image`) column is a vision dataset: `DPOTrainer` does not tokenise it
  (`skip_prepare_dataset`) and hands the raw rows to the collator. With `remove_unused_columns=True` it keeps only
  `prompt`, `chosen`, `rejected`, `image(s)`, `tools` and `chat_template_kwargs`; pass `remove_unused_columns=False`
  (as [`~training.dpo.stic_dpo_config_kwargs`] does) so that a row's `id` reaches the collator and names it. A
  dataset without that column is tokenised by TRL's own text path first: give text-only pairs `"images": []`.
- The batch holds `2 * batch` sequences, the chosen ones first, then the rejected ones in the same order
  (`_compute_loss` splits them with `chunk(2)`), with `input_ids`, `attention_mask` and `completion_mask`; every other
  key goes to the model, so `pixel_values` holds each image twice (chosen rows, then rejected rows) and the batch has
  no `labels`: the trainer builds them from `completion_mask` and would get them twice.
- `DPOConfig.max_length` and `truncation_mode` only configure TRL's own collators: the length limit here is the
  collator's `max_length`, with the SFT collators' `on_overflow` policy.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from ..processing_sqllava import SYSTEM_PROMPTS
from .collator import _Row, _SQLlavaCollatorBase
from .labels import check_messages, conversation_segments, encode_segments


COMPLETION_ROLES = ("assistant", "vuser")
FORMAT = (
    "{'prompt': [messages], 'chosen': [one message], 'rejected': [one message], 'images': [image]} (TRL's "
    "conversational preference format with images)"
)


class _Pair(NamedTuple):
    """One checked row: the prompt + chosen and prompt + rejected conversations (sharing the images)."""

    chosen: _Row
    rejected: _Row
    role: str


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 80 else type(value).__name__


@dataclass
class SQLlavaPreferenceCollator(_SQLlavaCollatorBase):
    r"""
    Data collator for TRL's `DPOTrainer` on SQ-LLaVA: a preference between two answers (`assistant` completions, as
    STIC's self-training) or between two questions the model asks (`vuser` completions).

    The sequences prompt + chosen and prompt + rejected are rendered and tokenised exactly as
    [`SQLlavaSelfQuestioningCollator`] (with `sq_ratio=0`) renders and tokenises the same conversation: same system
    prompt, same ids, token for token. Only the completion is trained (`completion_mask` 1): the space after
    `ASSISTANT:` (or `VUSER:`), the text and its `</s>`, as the SFT collators supervise a turn
    (docs/original.md#stage-2-labels-and-vuser-turns); the prompt, its own answers included, is not. A vuser
    completion is followed by the template's separator `" "`, untrained, as in SFT.

    Inputs (one dict per pair; `id` names it in errors, logs and `stats.skipped_ids`; other keys are ignored):

    - `prompt`: the conversation so far, `[{"role": "system" | "user" | "assistant" | "vuser", "content": str |
      [{"type": "image"}, {"type": "text", "text": ...}]}, ...]`, with the image block in the first user turn. Before
      an `assistant` completion it ends with a user (or vuser) turn; before a `vuser` completion, with an assistant
      turn (the model asks after an answer);
    - `chosen`, `rejected`: each a list of one message, `[{"role": "assistant" | "vuser", "content": ...}]`, both with
      the same role;
    - `images`: a list with the pair's image (both sequences see it), empty for a text-only pair (or `image`).

    Outputs (`dict[str, torch.Tensor]`, right-padded, `2 * num_pairs` rows: the chosen sequences, then the rejected
    ones, as `DPOTrainer` splits them):

    - `input_ids` (`2 * num_pairs, length`): each image expanded to `image_seq_length` image tokens, padded with the
      tokenizer's pad token;
    - `attention_mask` (`2 * num_pairs, length`);
    - `completion_mask` (`2 * num_pairs, length`): 1 on the trained completion tokens;
    - `pixel_values` (`2 * num_images, 3, 336, 336`): only when the batch has images; each image is processed once and
      given twice, for its chosen and its rejected row.

    Args:
        processor ([`SQLlavaProcessor`]):
            The model's processor.
        system_prompt (`str`, *optional*, defaults to `"v1_sq"`):
            The system prompt for pairs without a system message: `"v1_sq"`, as SQ-LLaVA is trained (and as the SFT
            collators render); `"v1"` is the answering prompt the benchmarks use
            (docs/original.md#which-system-prompt-where).
        images_first (`bool`, *optional*, defaults to `True`):
            Render a user turn's images before its text, as the reference does; `False` keeps the blocks' order (see
            [`SQLlavaSelfQuestioningCollator`]).
        max_length (`int`, *optional*):
            Longest sequence in tokens, image tokens included. `None`: no limit.
        on_overflow (`str`, *optional*, defaults to `"raise"`):
            A sequence longer than `max_length`, or with no completion token left: as in
            [`SQLlavaSelfQuestioningCollator`], applied to the pair (a skipped pair is left out whole, once in
            `stats.skipped_ids`; `"truncate_text"` cuts each sequence on its own and never through image tokens).
        pad_to_multiple_of (`int`, *optional*):
            Pad the length to a multiple of this.
        pad_to_square (`bool`, *optional*, defaults to `True`):
            Pad images to a square with the CLIP mean colour before resizing (as stage 2 trains).
        return_tensors (`str`, *optional*, defaults to `"pt"`):
            Only `"pt"`.

    Every row is checked first: a bad one raises a `ValueError` (`TypeError`, `FileNotFoundError` for images) naming
    the pair and the fix: a missing `prompt`/`chosen`/`rejected`, a completion that is not one `assistant` or `vuser`
    message, chosen and rejected of different roles, a prompt that does not end where its completions can follow,
    image blocks and images that do not match, and every check of the SFT collators (docs/errors.md#collators).

    Attributes:
        stats ([`CollatorStats`]): running counts: `num_samples` counts pairs; answer and question tokens count both
            sequences. Log them with [`SQLlavaCollatorCallback`].

    Example:

    ```python
    >>> collator = SQLlavaPreferenceCollator(processor)
    >>> batch = collator([{"images": [image],
    ...     "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe it."}]}],
    ...     "chosen": [{"role": "assistant", "content": "A black cat on a mat."}],
    ...     "rejected": [{"role": "assistant", "content": "A dog."}]}])
    >>> sorted(batch)
    ['attention_mask', 'completion_mask', 'input_ids', 'pixel_values']
    >>> trainer = DPOTrainer(model, args, train_dataset=dataset, data_collator=collator, processing_class=processor,
    ...                      peft_config=stic_lora_config())
    ```
    """

    system_prompt: str = "v1_sq"
    images_first: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.system_prompt not in SYSTEM_PROMPTS:
            raise ValueError(
                f"`system_prompt` must be one of {sorted(SYSTEM_PROMPTS)} (\"v1_sq\" renders as SQ-LLaVA trains), got "
                f"{self.system_prompt!r}. For another prompt, start each prompt with a system message."
            )

    # -- per sequence -----------------------------------------------------------------------------------------------

    def _encode(self, row: _Row, batch_rng=None):
        # The self-questioning collator's rendering with no vuser draws: the same segments give the same ids.
        messages = row.messages
        system_prompt = None if messages[0].get("role") == "system" else self.system_prompt
        try:
            segments = conversation_segments(self.processor, messages, system_prompt, images_first=self.images_first)
        except ValueError as error:  # the template's own checks (e.g. a system prompt given twice)
            raise ValueError(f"Sample {row.sample_id!r}: {error}") from error
        ids, tags = encode_segments(self.processor, segments)
        # Only the completion trains: the last run of trained tokens (its role marker, untrained, separates it from
        # the prompt's last answer). The prompt's answers are masked after encoding, not before, so the ids stay the
        # SFT collators' exactly (the encoder splits chunks where the trained role changes).
        end = max((i for i, tag in enumerate(tags) if tag is not None), default=-1) + 1
        start = end
        while start > 0 and tags[start - 1] is not None:
            start -= 1
        return ids, [tag if start <= i < end else None for i, tag in enumerate(tags)]

    def _fitted(self, row: _Row, which: str) -> tuple[list[int], list] | None:
        """One sequence's ids and roles within `max_length`, or `None` when its pair is skipped."""
        ids, tags = self._encode(row)
        try:
            fitted = self._fit(ids, tags, row.sample_id)
            if fitted is None or not self._check_supervised(fitted[1], row.sample_id, cut=len(fitted[1]) < len(tags)):
                return None
        except ValueError as error:  # which of the two sequences is at fault
            raise ValueError(f"The {which} sequence (prompt + {which}): {error}") from error
        return fitted

    def num_completion_tokens(self, prompt: list[dict[str, Any]], completion: list[dict[str, Any]]) -> int:
        """
        How many tokens of `completion` (a list of one message) train after `prompt`, as `completion_mask` counts them
        (the space after the role marker, the text and `</s>`), without `max_length`. Reads no image: for measuring a
        dataset, e.g. STIC's loss weight ([`~training.dpo.mean_chosen_tokens`]).
        """
        where = "The pair"
        messages = [*self._prompt(prompt, where), self._completion(completion, f"{where}'s completion")]
        check_messages(messages, where)
        _, tags = self._encode(_Row("the pair", None, messages, []))
        return sum(tag is not None for tag in tags)

    # -- per row ----------------------------------------------------------------------------------------------------

    @staticmethod
    def _prompt(value: Any, where: str) -> list:
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
            raise ValueError(
                f"{where}: 'prompt' must be a non-empty list of chat messages, got {_shown(value)}: write it as "
                "[{'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': ...}]}], which the chat "
                "template renders in SQ-LLaVA's format."
            )
        return list(value)

    @staticmethod
    def _completion(value: Any, where: str) -> dict[str, Any]:
        if isinstance(value, Mapping):
            raise ValueError(f"{where} is one message but must be a list of one message: wrap it, `[message]`.")
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ValueError(
                f"{where} must be a list of one message, [{{'role': 'assistant' | 'vuser', 'content': ...}}], got "
                f"{_shown(value)}: SQ-LLaVA renders conversations, not plain-text completions."
            )
        if len(value) != 1:
            raise ValueError(
                f"{where} has {len(value)} messages; a completion is one assistant or vuser turn: move the earlier "
                "turns into 'prompt' (they are the same for chosen and rejected)."
            )
        message = value[0]
        role = message.get("role") if isinstance(message, Mapping) else None
        if role not in COMPLETION_ROLES:
            shown = f"role {role!r}" if isinstance(message, Mapping) else _shown(message)
            raise ValueError(
                f"{where}: the completion has {shown}; it must be a {{'role', 'content'}} dict with role 'assistant' "
                "(an answer) or 'vuser' (a question the model asks)."
            )
        return message

    def _check_pair(self, example: Any, position: int) -> _Pair:
        """The row's two conversations, checked: every bad row raises here, naming the pair and the fix."""
        if not isinstance(example, Mapping):
            raise ValueError(
                f"Row {position} of the batch is a {type(example).__name__}, not a dict: rows are {FORMAT}."
            )
        sample_id = str(example["id"]) if example.get("id") is not None else f"#{position} of the batch"
        where = f"Sample {sample_id!r}"
        missing = [key for key in ("prompt", "chosen", "rejected") if key not in example]
        if missing:
            hint = ""
            if "messages" in example:
                hint = " A row with 'messages' is SFT data: use SQLlavaSelfQuestioningCollator."
            elif missing == ["prompt"]:
                hint = (
                    " Full 'chosen'/'rejected' conversations (an implicit prompt): split off their shared prompt with "
                    "`trl.data_utils.extract_prompt`."
                )
            raise ValueError(
                f"{where} has no {' or '.join(map(repr, missing))}: rows are {FORMAT} (its keys: "
                f"{sorted(map(str, example))}).{hint}"
            )
        prompt = self._prompt(example["prompt"], where)
        check_messages(prompt, f"{where}, 'prompt'")  # roles, order and content, before its end is looked at
        chosen = self._completion(example["chosen"], f"{where}, 'chosen'")
        rejected = self._completion(example["rejected"], f"{where}, 'rejected'")
        role = chosen["role"]
        if rejected["role"] != role:
            raise ValueError(
                f"{where}: 'chosen' is a {role!r} turn and 'rejected' a {rejected['role']!r} turn; both completions "
                "continue the same prompt, so they must have the same role: 'assistant' (a preference between "
                "answers) or 'vuser' (between questions the model asks)."
            )
        last = prompt[-1].get("role") if isinstance(prompt[-1], Mapping) else None
        if role == "assistant" and last not in ("user", "vuser"):
            also = ", or make both completions 'vuser' turns (questions asked after that answer)"
            also = also if last == "assistant" else ""
            raise ValueError(
                f"{where}: the prompt ends with a {last!r} turn, so an assistant completion would not answer a "
                f"question: end the prompt with the user (or vuser) turn the completions answer{also}."
            )
        if role == "vuser" and last != "assistant":
            raise ValueError(
                f"{where}: vuser completions are questions the model asks after an answer, so the prompt must end "
                f"with an assistant turn, not a {last!r} one: end it with the answer the question follows."
            )
        # The SFT collators' row checks (messages, images counted per row, images decoded) on prompt + chosen; the
        # rejected conversation shares its prompt and images, so its messages are all that is left to check.
        checked = {key: example[key] for key in ("id", "images", "image") if key in example}
        chosen_row = self._check_row({**checked, "messages": [*prompt, chosen]}, position)
        rejected_messages = [*prompt, rejected]
        check_messages(rejected_messages, where)
        rejected_row = chosen_row._replace(messages=rejected_messages)
        return _Pair(chosen_row, rejected_row, role)

    # -- per batch --------------------------------------------------------------------------------------------------

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not isinstance(examples, (list, tuple)) or not examples:
            raise ValueError(
                f"The collator got an empty batch ({examples!r:.40}): give it a list of at least one row."
            )
        pairs = [self._check_pair(example, position) for position, example in enumerate(examples)]
        chosen, rejected, images = [], [], []
        for pair in pairs:
            chosen_sequence = self._fitted(pair.chosen, "chosen")
            # A skipped chosen sequence skips the pair: the rejected one is not looked at (one skip per pair).
            rejected_sequence = self._fitted(pair.rejected, "rejected") if chosen_sequence is not None else None
            if rejected_sequence is None:
                continue
            chosen.append(chosen_sequence)
            rejected.append(rejected_sequence)
            images += pair.chosen.images
            self.stats.num_samples += 1
            self.stats.num_image_samples += bool(pair.chosen.images)
            self.stats.num_text_only_samples += not pair.chosen.images
            self.stats.num_given_vuser_turns += sum(message["role"] == "vuser" for message in pair.chosen.messages)
            for _, tags in (chosen_sequence, rejected_sequence):
                self.stats.num_answer_tokens += sum(tag == "assistant" for tag in tags)
                self.stats.num_question_tokens += sum(tag == "vuser" for tag in tags)
        if not chosen:
            raise ValueError(
                f"All {len(examples)} pairs of the batch were skipped (longer than max_length={self.max_length}, or "
                f"with nothing to train on; last skipped: {self.stats.skipped_ids[-len(examples):]}): raise "
                "`max_length`, or fix or filter these pairs. An empty batch cannot be trained on."
            )
        batch = self._pad(chosen + rejected)
        if images:
            pixel_values = self.processor.image_processor(images, do_pad=self.pad_to_square, return_tensors="pt")[
                "pixel_values"
            ]
            # The model takes a batch's images in row order: the chosen rows' images, then the rejected rows'.
            batch["pixel_values"] = torch.cat([pixel_values, pixel_values])
        return batch

    def _pad(self, sequences: list[tuple[list[int], list]]) -> dict[str, torch.Tensor]:
        """Right padding to one length for all rows: `DPOTrainer` splits the batch in two along the rows."""
        length = max(len(ids) for ids, _ in sequences)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        shape = (len(sequences), length)
        input_ids = torch.full(shape, self.processor.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros(shape, dtype=torch.long)
        completion_mask = torch.zeros(shape, dtype=torch.long)
        for row, (ids, tags) in enumerate(sequences):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention_mask[row, : len(ids)] = 1
            completion_mask[row, : len(ids)] = torch.tensor([tag is not None for tag in tags])
        return {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask}


__all__ = ["SQLlavaPreferenceCollator"]
