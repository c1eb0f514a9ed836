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
"""The question files of the paper's benchmarks, read as the original answering scripts read them.

The original has one script per kind of question file; `sqllava eval run` reads all of them, and each
[`QuestionFormat`] keeps what its script does differently (docs/evaluation.md#answering-a-question-file):

| format | original script | file | images | `max_new_tokens` |
|---|---|---|---|---|
| `llava` | `model_vqa_loader.py` (VQAv2, GQA, VizWiz, TextVQA, POPE, MME) | JSONL `{"question_id", "image", "text"}` | padded to a square | 128 |
| `caption` | `model_cap.py` (COCO, Flickr30k, NoCaps, Conceptual) | the same JSONL | centre-cropped | 1024 |
| `llava-bench` | `model_vqa.py` (LLaVA-Bench, MM-Vet) | the same JSONL | centre-cropped | 1024 |
| `scienceqa` | `model_vqa_science.py` (SQA-I) | JSON list `{"id", "image"?, "conversations"}` | centre-cropped | 1024 |
| `mmbench` | `model_vqa_mmbench.py` (MMBench, MMBench-CN) | TSV with options, hint and a base64 image | padded | 1024 |

Each question becomes a [`BenchmarkQuestion`]: the text the model is asked (without `<image>`: the runner places the
image as the checkpoint expects), the image, and the fields the original writes into the answers file (`prompt`, and
MMBench's `round_id`, `options`, `option_char`).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .scoring._files import PathLike, read_json, read_jsonl
from .scoring.submission import read_mmbench_table

# `model_vqa_science.py` and `model_vqa_mmbench.py` with `--single-pred-prompt` (and `--lang cn`).
SINGLE_PRED_PROMPT = "Answer with the option's letter from the given choices directly."
SINGLE_PRED_PROMPT_CN = "请直接回答选项字母。"
MMBENCH_OPTION_LETTERS = ("A", "B", "C", "D")  # `model_vqa_mmbench.py`'s `all_options`
IMAGE_TOKEN_TEXT = "<image>"


@dataclass(frozen=True)
class QuestionFormat:
    r"""
    What one original answering script does with its question file.

    Args:
        name (`str`): The `--question-format` value.
        script (`str`): The original script (`sqllava/eval/...` in SQ-LLaVA, the same file in LLaVA-1.5).
        pad_images (`bool`): Whether the script pads images to a square (`process_images` with
            `image_aspect_ratio="pad"`) or only resizes and centre-crops them (`image_processor.preprocess`).
        max_new_tokens (`int`): The script's generation limit.
    """

    name: str
    script: str
    pad_images: bool
    max_new_tokens: int


QUESTION_FORMATS: dict[str, QuestionFormat] = {
    spec.name: spec
    for spec in (
        QuestionFormat("llava", "model_vqa_loader.py", pad_images=True, max_new_tokens=128),
        QuestionFormat("caption", "model_cap.py", pad_images=False, max_new_tokens=1024),
        QuestionFormat("llava-bench", "model_vqa.py", pad_images=False, max_new_tokens=1024),
        QuestionFormat("scienceqa", "model_vqa_science.py", pad_images=False, max_new_tokens=1024),
        QuestionFormat("mmbench", "model_vqa_mmbench.py", pad_images=True, max_new_tokens=1024),
    )
}


@dataclass
class BenchmarkQuestion:
    r"""
    One question to answer.

    Args:
        question_id (`Any`): The file's id (`question_id`, ScienceQA's `id`, MMBench's `index`), written back as is.
        text (`str`): What the model is asked, with the benchmark's prompt suffix, without `<image>`.
        prompt (`str`): What the original writes as the answer's `"prompt"`.
        image (`str`, `PIL.Image.Image` or `None`): A file path, an image, or `None` for a text-only question.
        fields (`dict`): Further fields the original writes into the answer (MMBench's `round_id`, `options`,
            `option_char`).
    """

    question_id: Any
    text: str
    prompt: str
    image: Any = None
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Identifies the answer in an answers file: the id, MMBench's round (one per rotation) and the prompt (MME's
        two questions about an image share their `question_id`, the image's path)."""
        return answer_key(self.question_id, self.fields.get("round_id"), self.prompt)


def answer_key(question_id: Any, round_id: Any = None, prompt: str | None = None) -> str:
    """The resume key of an answer: `question_id`, `round_id` and `prompt` as JSON, so `1` and `"1"` stay apart."""
    return json.dumps([question_id, round_id, prompt])


def detect_question_format(path: PathLike) -> str:
    """`mmbench` for `.tsv`, `scienceqa` for `.json`, `llava` for anything else (JSON Lines)."""
    suffix = Path(path).suffix.lower()
    return {".tsv": "mmbench", ".json": "scienceqa"}.get(suffix, "llava")


def read_questions(
    question_file: PathLike,
    image_folder: PathLike = "",
    question_format: str = "auto",
    single_pred_prompt: bool = False,
    all_rounds: bool = False,
    lang: str = "en",
) -> list[BenchmarkQuestion]:
    r"""
    Read a benchmark's question file as its original script does.

    Args:
        question_file (`str` or `os.PathLike`): The file.
        image_folder (`str` or `os.PathLike`, *optional*): Where the file's image names are (not for MMBench, whose
            images are in the TSV).
        question_format (`str`, *optional*, defaults to `"auto"`): A key of [`QUESTION_FORMATS`], or `"auto"`
            ([`detect_question_format`]).
        single_pred_prompt (`bool`, *optional*): ScienceQA and MMBench: append [`SINGLE_PRED_PROMPT`].
        all_rounds (`bool`, *optional*): MMBench: one question per rotation of the options (circular evaluation).
        lang (`str`, *optional*, defaults to `"en"`): MMBench: `"cn"` appends the Chinese single-prediction prompt.
    """
    question_format = detect_question_format(question_file) if question_format == "auto" else question_format
    if question_format not in QUESTION_FORMATS:
        raise ValueError(f"Unknown question format {question_format!r}: use one of {['auto', *QUESTION_FORMATS]}.")
    if question_format == "mmbench":
        return _read_mmbench(question_file, single_pred_prompt, all_rounds, lang)
    if question_format == "scienceqa":
        return _read_scienceqa(question_file, image_folder, single_pred_prompt)
    return _read_llava_jsonl(question_file, image_folder)


def _image_path(image_folder: PathLike, name: Any, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: 'image' must be a file name, got {name!r}.")
    return os.path.join(os.path.expanduser(os.fspath(image_folder)), name)


def _read_llava_jsonl(path: PathLike, image_folder: PathLike) -> list[BenchmarkQuestion]:
    rows, _ = read_jsonl(path, "question file")
    questions = []
    for number, row in enumerate(rows, start=1):
        where = f"{path}, line {number}"
        if not isinstance(row, dict) or "question_id" not in row or "text" not in row:
            raise ValueError(
                f"{where}: expected a LLaVA question {{'question_id', 'image', 'text'}}, got {str(row)[:120]!r}. "
                "ScienceQA's JSON and MMBench's TSV take --question-format scienceqa / mmbench."
            )
        image = _image_path(image_folder, row["image"], where) if row.get("image") is not None else None
        text = row["text"].replace(IMAGE_TOKEN_TEXT, "").strip()  # the runner places the image itself
        questions.append(BenchmarkQuestion(row["question_id"], text, prompt=row["text"], image=image))
    return questions


def _read_scienceqa(path: PathLike, image_folder: PathLike, single_pred_prompt: bool) -> list[BenchmarkQuestion]:
    problems = read_json(path, "ScienceQA question file (llava_test_CQM-A.json)")
    if not isinstance(problems, list):
        raise ValueError(f"{path}: expected a JSON list of ScienceQA problems (llava_test_CQM-A.json).")  # noqa: TRY004
    questions = []
    for number, problem in enumerate(problems, start=1):
        where = f"{path}, problem {number}"
        try:
            question_id, text = problem["id"], problem["conversations"][0]["value"]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"{where}: expected {{'id', 'conversations': [{{'value': ...}}, ...]}}.") from None
        # model_vqa_science.py: the `<image>` of the text is removed and put back first when there is an image.
        text = text.replace(IMAGE_TOKEN_TEXT, "").strip()
        image = _image_path(image_folder, problem["image"], where) if "image" in problem else None
        prompt = f"{IMAGE_TOKEN_TEXT}\n{text}" if image is not None else text
        if single_pred_prompt:
            text, prompt = f"{text}\n{SINGLE_PRED_PROMPT}", f"{prompt}\n{SINGLE_PRED_PROMPT}"
        questions.append(BenchmarkQuestion(question_id, text, prompt=prompt, image=image))
    return questions


def _is_none(value: str | None) -> bool:
    # model_vqa_mmbench.py's `is_none`: pandas reads an empty cell as NaN; "nan" and "none" count as empty too.
    return value is None or value.strip().lower() in ("", "nan", "none")


def _read_mmbench(path: PathLike, single_pred_prompt: bool, all_rounds: bool, lang: str) -> list[BenchmarkQuestion]:
    _, rows = read_mmbench_table(path)
    suffix = SINGLE_PRED_PROMPT_CN if lang == "cn" else SINGLE_PRED_PROMPT
    questions = []
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{path}, row {number}"
        for column in ("question", "image"):
            if _is_none(row.get(column)):
                raise ValueError(f"{where}: no {column!r}; expected an MMBench TSV row.")
        options = []
        for letter in MMBENCH_OPTION_LETTERS:  # the options stop at the first empty one, as get_options
            if _is_none(row.get(letter)):
                break
            options.append(row[letter])
        letters = list(MMBENCH_OPTION_LETTERS[: len(options)])
        index = int(row["index"]) if row["index"].strip().lstrip("-").isdigit() else row["index"]
        image = _MMBenchImage(row["image"], where)
        for round_id in range(len(options) if all_rounds else 1):
            question = row["question"] if _is_none(row.get("hint")) else f"{row['hint']}\n{row['question']}"
            # The prompt always letters the options A, B, C...; only `option_char` records the rotation.
            for letter, option in zip(MMBENCH_OPTION_LETTERS, options):
                question += f"\n{letter}. {option}"
            text = f"{question}\n{suffix}" if single_pred_prompt else question
            fields = {"round_id": round_id, "options": list(options), "option_char": list(letters)}
            questions.append(BenchmarkQuestion(index, text, prompt=question, image=image, fields=fields))
            options, letters = options[1:] + options[:1], letters[1:] + letters[:1]  # rotate, as the original
    return questions


class _MMBenchImage:
    """An MMBench image, decoded from the TSV's base64 only when it is answered (a dev TSV holds thousands)."""

    def __init__(self, data: str, where: str):
        self.data, self.where = data, where

    def load(self):
        from PIL import Image, UnidentifiedImageError

        try:
            image = Image.open(io.BytesIO(base64.b64decode(self.data, validate=False)))
            image.load()
        except (binascii.Error, UnidentifiedImageError, OSError) as error:
            raise ValueError(f"{self.where}: the 'image' cell is not a base64 image ({error}).") from None
        return image


def load_question_image(question: BenchmarkQuestion, processor) -> Any:
    """The question's image as the processor takes it: a file opened (a missing one named with its question), an
    MMBench image decoded, `None` for a text-only question."""
    if isinstance(question.image, _MMBenchImage):
        return question.image.load()
    if isinstance(question.image, str):
        if not os.path.isfile(question.image):
            raise FileNotFoundError(
                f"Question {question.question_id!r}: no image at {question.image!r}. Check --image-folder."
            )
        return processor.image_processor.fetch_images(question.image)
    return question.image


def get_chunk(questions: Sequence, num_chunks: int, chunk_idx: int) -> list:
    """Chunk `chunk_idx` of `num_chunks`, as the original's `get_chunk`: chunks of `ceil(len / num_chunks)` questions
    (so the last ones may be shorter, or empty), for one process per GPU."""
    if num_chunks < 1 or not 0 <= chunk_idx < num_chunks:
        raise ValueError(
            f"--chunk-idx must be in [0, --num-chunks) and --num-chunks >= 1, got {chunk_idx} of {num_chunks}."
        )
    size = math.ceil(len(questions) / num_chunks) if questions else 1
    return list(questions[chunk_idx * size : (chunk_idx + 1) * size])


__all__ = [
    "QUESTION_FORMATS",
    "SINGLE_PRED_PROMPT",
    "BenchmarkQuestion",
    "QuestionFormat",
    "answer_key",
    "detect_question_format",
    "get_chunk",
    "load_question_image",
    "read_questions",
]
