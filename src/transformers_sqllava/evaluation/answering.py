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
"""How the model answers a benchmark question: the three answering modes of `sqllava eval run --mode`.

- `answer` (the default, every shipped eval script): one turn, `USER: <image>\\n{question} ASSISTANT:`, greedy.
- `self-question` (SQ-LLaVA's `--sq --n_shot N`, `model_vqa_loader.py` `eval_Sophon`): the model describes the image,
  asks N questions of its own as the virtual user and answers them, then answers the benchmark question in that
  dialogue: `USER: <image>\\n{describe} ASSISTANT: {description} USER: {q1} ASSISTANT: {a1} ... USER: {question}
  ASSISTANT:`. As in the original, its own questions come back as *user* turns in the final dialogue.
- `describe` (STIC's describe-and-respond, `model_vqa_mmbench_dar.py`): the model describes the image, and the
  question becomes `Image description:\\n{description}\\n\\n{question}`.

docs/evaluation.md#answering-modes lists what each costs in generated tokens and where the port differs from the
scripts (those scripts crash as shipped: they call a `clear_message` that does not exist).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..self_questioning import DESCRIPTION_PROMPT, SelfQuestioningConfig, generate_from_conversations, self_question
from .question_files import BenchmarkQuestion

ANSWERING_MODES = ("answer", "self-question", "describe")
# `--sq`'s questions: sampled with top-k 50, top-p 0.65, at most 100 tokens (model_vqa_loader.py eval_Sophon L166-175).
SELF_QUESTION_SAMPLING = {"do_sample": True, "top_k": 50, "top_p": 0.65, "temperature": 1.0, "max_new_tokens": 100}
# The description prompt of each mode: SQ-LLaVA's (eval_Sophon L129) and STIC's (model_vqa_mmbench_dar.py L89).
MODE_DESCRIPTION_PROMPTS = {
    "self-question": DESCRIPTION_PROMPT,
    "describe": "Detail the composition and subjects within the frame.",
}
# STIC's description-infused question (model_vqa_mmbench_dar.py L122, stic/add_des_to_data.py L25).
DESCRIBED_QUESTION_TEMPLATE = "Image description:\n{description}\n\n{question}"


@dataclass
class AnsweringConfig:
    r"""
    How [`answer_questions`] answers.

    Args:
        mode (`str`, *optional*, defaults to `"answer"`): One of [`ANSWERING_MODES`].
        system_prompt (`str`, *optional*, defaults to `"v1"`): The benchmarks' (`--conv-mode v1`), `"v1_sq"`, or the
            text of a system message.
        question_first (`bool`, *optional*): `USER: {question}\\n<image>` instead of LLaVA's `USER: <image>\\n...`,
            for a checkpoint trained that way (the offline demo's). The description request keeps the image first, as
            such a checkpoint was trained to describe (`demo/data.py`'s `to_trl_messages`).
        generation_kwargs (`dict`, *optional*): `generate` kwargs of the answers (and descriptions); greedy by default.
        num_questions (`int`, *optional*, defaults to 3): `self-question`: questions the model asks (`--n_shot`).
        question_generation_kwargs (`dict`, *optional*): `self-question`: over [`SELF_QUESTION_SAMPLING`].
        description_prompt (`str`, *optional*): The description request; defaults to the mode's
            ([`MODE_DESCRIPTION_PROMPTS`]).
    """

    mode: str = "answer"
    system_prompt: str = "v1"
    question_first: bool = False
    generation_kwargs: dict[str, Any] = field(default_factory=lambda: {"do_sample": False, "max_new_tokens": 128})
    num_questions: int = 3
    question_generation_kwargs: dict[str, Any] = field(default_factory=dict)
    description_prompt: str | None = None

    def __post_init__(self):
        if self.mode not in ANSWERING_MODES:
            raise ValueError(f"Unknown answering mode {self.mode!r}: use one of {list(ANSWERING_MODES)}.")
        if self.mode == "self-question" and (not isinstance(self.num_questions, int) or self.num_questions < 1):
            raise ValueError(f"--n_shot must be an int >= 1 for --mode self-question, got {self.num_questions!r}.")
        if self.description_prompt is None:
            self.description_prompt = MODE_DESCRIPTION_PROMPTS.get(self.mode, DESCRIPTION_PROMPT)


@dataclass
class Answer:
    r"""
    The model's answer to one question.

    Args:
        text (`str`): The answer (the answers file's `"text"`).
        metadata (`dict`): The answers file's `"metadata"`: empty in `answer` mode (as the original), the description
            and the self-asked dialogue in the others.
        generated_texts (`list[str]`): Everything generated for this answer, in order, for counting its cost.
    """

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    generated_texts: list[str] = field(default_factory=list)


def _user_turn(text: str, image: Any, question_first: bool) -> dict:
    if image is None:
        return {"role": "user", "content": text}
    blocks = [{"type": "image", "image": image}, {"type": "text", "text": text}]
    return {"role": "user", "content": blocks[::-1] if question_first else blocks}


def _is_description(question: BenchmarkQuestion, config: AnsweringConfig) -> bool:
    return question.text.strip() == config.description_prompt.strip()


def _generate(model, processor, conversations: list[list[dict]], config: AnsweringConfig, **kwargs) -> list[str]:
    return generate_from_conversations(
        model, processor, conversations, "assistant", config.system_prompt, images_first=not config.question_first,
        **{**config.generation_kwargs, **kwargs},
    )  # fmt: skip


def answer_questions(
    model, processor, questions: Sequence[BenchmarkQuestion], images: Sequence[Any], config: AnsweringConfig
) -> list[Answer]:
    r"""
    Answer a batch of questions (one image each, or `None`) in `config.mode`; every round is one left-padded
    `generate` call over the batch, so greedy answers equal those of one question at a time.

    Text-only questions (ScienceQA's) are answered directly in every mode: there is no image to describe.
    """
    if len(images) != len(questions):
        raise ValueError(f"Got {len(images)} images for {len(questions)} questions: pass one (or None) per question.")
    answers: list[Answer | None] = [None] * len(questions)
    direct = [i for i, image in enumerate(images) if config.mode == "answer" or image is None]
    described = [i for i in range(len(questions)) if i not in set(direct)]
    if direct:
        conversations = []
        for i in direct:
            question_first = config.question_first and not _is_description(questions[i], config)
            conversations.append([_user_turn(questions[i].text, images[i], question_first)])
        for i, text in zip(direct, _generate(model, processor, conversations, config)):
            answers[i] = Answer(text, generated_texts=[text])
    if described:
        batch = [questions[i] for i in described]
        batch_images = [images[i] for i in described]
        answer_in_mode = _self_question_answers if config.mode == "self-question" else _described_answers
        for i, answer in zip(described, answer_in_mode(model, processor, batch, batch_images, config)):
            answers[i] = answer
    return answers


def _described_answers(model, processor, questions, images, config: AnsweringConfig) -> list[Answer]:
    # STIC asks for the description without `<image>` in its prompt (model_vqa_mmbench_dar.py L89-95), so its model
    # describes an image it is not shown; here the image is in the request, as a description needs.
    # The description request puts the image first, as `self_question`'s round 1: a question-first checkpoint was
    # trained to describe that way too (the offline demo's).
    requests = [[_user_turn(config.description_prompt, image, False)] for image in images]
    descriptions = _generate(model, processor, requests, config)
    conversations = [
        [_user_turn(DESCRIBED_QUESTION_TEMPLATE.format(description=description, question=q.text), image,
                    config.question_first)]
        for q, image, description in zip(questions, images, descriptions)
    ]  # fmt: skip
    texts = _generate(model, processor, conversations, config)
    return [
        Answer(text, {"mode": "describe", "description": description}, [description, text])
        for text, description in zip(texts, descriptions)
    ]


def _self_question_answers(model, processor, questions, images, config: AnsweringConfig) -> list[Answer]:
    sq_config = SelfQuestioningConfig(
        num_questions=config.num_questions,
        answer_questions=True,
        description_prompt=config.description_prompt,
        system_prompt=config.system_prompt,
        description_generation_kwargs=config.generation_kwargs,
        question_generation_kwargs={**SELF_QUESTION_SAMPLING, **config.question_generation_kwargs},
        answer_generation_kwargs=config.generation_kwargs,
    )
    results = self_question(model, processor, list(images), sq_config)
    conversations = []
    for question, image, result in zip(questions, images, results):
        turns = [
            _user_turn(config.description_prompt, image, False),
            {"role": "assistant", "content": result.description},
        ]
        # The original replays its own questions as user turns, not vuser ones (eval_Sophon L211-213).
        for dialogue in result.dialogues:
            turns += [
                {"role": "user", "content": dialogue.question},
                {"role": "assistant", "content": dialogue.answer},
            ]
        conversations.append([*turns, {"role": "user", "content": question.text}])
    texts = generate_from_conversations(
        model, processor, conversations, "assistant", config.system_prompt, **config.generation_kwargs
    )
    answers = []
    for text, result in zip(texts, results):
        dialogue = [{"question": item.question, "answer": item.answer} for item in result.dialogues]
        generated = [result.description, *(part for item in result.dialogues for part in (item.question, item.answer))]
        answers.append(Answer(text, {"mode": "self-question", "description": result.description,
                                     "dialogue": dialogue}, [*generated, text]))  # fmt: skip
    return answers


__all__ = [
    "ANSWERING_MODES",
    "DESCRIBED_QUESTION_TEMPLATE",
    "MODE_DESCRIPTION_PROMPTS",
    "SELF_QUESTION_SAMPLING",
    "Answer",
    "AnsweringConfig",
    "answer_questions",
]
