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
"""LLaVA JSON data (docs/original.md#training-data) as a `datasets.Dataset` in TRL's vision format.

The LLaVA format is a JSON list of samples::

    {"id": "000000033471", "image": "coco/train2017/000000033471.jpg",
     "conversations": [{"from": "human", "value": "<image>\\nWhat are the colors of the bus?"},
                       {"from": "gpt", "value": "The bus is white and red."}, ...]}

Stage-1 ("plain", image-caption) and stage-2 (instruction) data share this format: stage 1 simply has two turns per
sample. How a stage renders them (the caption-only "plain" template, the v1_sq template with vuser turns) is the
collator's business, not the loader's.
"""

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from datasets import Dataset, Features, List, Value
from PIL import Image

from ..image_processing_sqllava import open_image_file, to_rgb_image

logger = logging.getLogger(__name__)

IMAGE_PLACEHOLDER = "<image>"

# The reference's `LazySupervisedDataset.lengths` (docs/original.md#training-data) counts an image as 128 words. Only
# the order of the lengths matters: `train_sampling_strategy="group_by_length"` (the reference's
# `group_by_modality_length`) sorts on them.
IMAGE_LENGTH = 128

# LLaVA speaker -> chat role. `vuser` is accepted like the reference's `preprocess_v1_sq*` role maps do
# (docs/original.md#training-data): a dataset may carry explicit self-questioning turns.
ROLE_MAP = {"human": "user", "gpt": "assistant", "vuser": "vuser"}

# Explicit, so a file of text-only samples (no image paths at all) gets the same schema as a mixed one.
_FEATURES = Features(
    {
        "id": Value("string"),
        "messages": List(
            {"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})}
        ),
        "image_paths": List(Value("string")),
        "length": Value("int64"),
    }
)


def sample_length(messages: list[dict[str, Any]], num_images: int, image_length: int = IMAGE_LENGTH) -> int:
    """
    A sample's length for `LengthGroupedSampler`, as the reference's `lengths` computes it: the words of its messages
    plus `image_length` per image.

    Trainer reads it from the dataset's `length` column (`TrainingArguments.length_column_name`) when
    `train_sampling_strategy="group_by_length"`; without the column it would tokenise every row's `input_ids`, which
    conversational vision rows do not have. Grouping samples of similar length in a batch cuts the padding: on the
    demo's conversations, 42% of the tokens of a randomly drawn batch were padding (`benchmarks/length_grouping.py`).
    """
    words = sum(
        len(part["text"].split())
        for message in messages
        for part in (message["content"] if isinstance(message["content"], list) else [{"text": message["content"]}])
        if part.get("text")
    )
    return words + image_length * num_images


@dataclass
class SkippedSample:
    """A sample that `load_llava_dataset(..., on_missing_image="skip")` left out, and why."""

    id: str
    image_path: str
    reason: str


@dataclass
class LlavaDatasetReport:
    r"""
    What [`load_llava_dataset`] loaded and what it left out.

    Args:
        num_samples (`int`, defaults to 0):
            Rows in the returned dataset.
        num_image_samples (`int`, defaults to 0):
            Rows with an image.
        num_text_only_samples (`int`, defaults to 0):
            Rows without an image.
        skipped (`list[SkippedSample]`, defaults to `[]`):
            Samples left out because their image was missing or unreadable (`on_missing_image="skip"` only).
    """

    num_samples: int = 0
    num_image_samples: int = 0
    num_text_only_samples: int = 0
    skipped: list[SkippedSample] = field(default_factory=list)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)


def _sample_id(sample: dict[str, Any], index: int) -> str:
    # LLaVA ids are strings or ints; Arrow wants one type. Samples without an id are named by their position.
    sample_id = sample.get("id")
    if sample_id is None:
        return f"#{index}"
    if isinstance(sample_id, bool) or not isinstance(sample_id, (str, int)):
        raise ValueError(f"Sample #{index}: 'id' must be a string or an integer, got {sample_id!r:.80}.")
    return str(sample_id)


def _convert_turn(turn: Any, sample_id: str, turn_index: int, has_image: bool) -> dict[str, Any]:
    if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
        raise ValueError(
            f"Sample {sample_id!r}, turn {turn_index}: every turn must be a dict with 'from' and 'value', "
            f"got {turn!r:.120}."
        )
    speaker, text = turn["from"], turn["value"]
    if not isinstance(speaker, str) or speaker not in ROLE_MAP:
        raise ValueError(
            f"Sample {sample_id!r}, turn {turn_index}: unknown speaker 'from': {speaker!r}. Use one of "
            f"{sorted(ROLE_MAP)} ('human' -> user, 'gpt' -> assistant, 'vuser' -> the virtual user)."
        )
    if not isinstance(text, str):
        raise ValueError(
            f"Sample {sample_id!r}, turn {turn_index}: 'value' must be a string, got {type(text).__name__}."
        )

    role = ROLE_MAP[speaker]
    if IMAGE_PLACEHOLDER not in text:
        return {"role": role, "content": [{"type": "text", "text": text}]}
    if not has_image:
        raise ValueError(
            f"Sample {sample_id!r}, turn {turn_index} contains {IMAGE_PLACEHOLDER!r} but the sample has no 'image'. "
            f"Add the image file as 'image', or remove {IMAGE_PLACEHOLDER!r} from the text."
        )
    if turn_index != 0 or speaker != "human":
        raise ValueError(
            f"Sample {sample_id!r}: {IMAGE_PLACEHOLDER!r} appears in turn {turn_index} ({speaker!r}); SQ-LLaVA takes one "
            "image, placed in the first human turn. Move the placeholder there."
        )
    # preprocess_multimodal (docs/original.md#training-data): remove every placeholder, strip, and put the image first.
    # A turn that was only the placeholder keeps no text block: the reference strips "<image>\n" to "<image>", so the
    # prompt is "USER: <image> ASSISTANT:", with no newline (the collators render an image-only turn that way).
    text = text.replace(IMAGE_PLACEHOLDER, "").strip()
    text_blocks = [{"type": "text", "text": text}] if text else []
    return {"role": role, "content": [{"type": "image", "text": None}, *text_blocks]}


def _check_turn_order(messages: list[dict[str, Any]], sample_id: str):
    """The order the chat template needs (user/vuser and assistant alternating from a user turn) and one answer or
    vuser question to train on, checked here so that a bad sample fails while loading, with its id. (The reference's
    `preprocess_v1_sq2` has its alternation check commented out, and renders such samples as they come.)"""
    for index, message in enumerate(messages):
        expected = ("user", "vuser") if index % 2 == 0 else ("assistant",)
        if message["role"] not in expected or index == 0 and message["role"] != "user":
            speakers = "'human'" if index == 0 else ("'human' or 'vuser'" if index % 2 == 0 else "'gpt'")
            raise ValueError(
                f"Sample {sample_id!r}, turn {index}: expected {speakers}, got "
                f"{_speaker(message['role'])!r}. Turns alternate human (or vuser) / gpt, starting with a human turn."
            )
    if not any(message["role"] in ("assistant", "vuser") for message in messages):
        raise ValueError(
            f"Sample {sample_id!r} has no 'gpt' turn: nothing to train on (a batch of such samples has no "
            "supervised token, a NaN loss). Add the answer, or leave the sample out."
        )


def _speaker(role: str) -> str:
    return {role: speaker for speaker, role in ROLE_MAP.items()}[role]


def convert_llava_sample(sample: dict[str, Any], index: int = 0) -> dict[str, Any]:
    """
    Converts one LLaVA sample to TRL's conversational vision format, without touching the image file.

    Args:
        sample (`dict`):
            `{"id", "image"?, "conversations": [{"from", "value"}, ...]}`.
        index (`int`, *optional*, defaults to 0):
            The sample's position, used as its name in errors when it has no `id`.

    Returns:
        `dict` with `id` (`str`), `messages` (list of `{"role", "content": [{"type", "text"}, ...]}`, the image part
        first in the first user turn) and `image` (the relative path, or `None`).
    """
    if not isinstance(sample, dict):
        raise ValueError(f"Sample #{index} must be a JSON object, got {type(sample).__name__}.")
    sample_id = _sample_id(sample, index)
    image = sample.get("image")
    if image is not None and not isinstance(image, str):
        raise ValueError(
            f"Sample {sample_id!r}: 'image' must be one file path (a string), got {image!r:.120}. SQ-LLaVA takes one "
            "image per sample."
        )
    if image is not None and not image.strip():
        raise ValueError(f"Sample {sample_id!r}: 'image' is an empty string; give the file path or drop the key.")
    conversations = sample.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        raise ValueError(
            f"Sample {sample_id!r} has no conversation: 'conversations' must be a non-empty list of turns, got "
            f"{conversations!r:.120}."
        )
    has_image = image is not None
    messages = [_convert_turn(turn, sample_id, i, has_image) for i, turn in enumerate(conversations)]
    if has_image and not any(part["type"] == "image" for part in messages[0]["content"]):
        raise ValueError(
            f"Sample {sample_id!r} has an image but its first human turn has no {IMAGE_PLACEHOLDER!r} placeholder. "
            f"Add {IMAGE_PLACEHOLDER!r} to the first human turn (LLaVA data puts '<image>\\n' before the question)."
        )
    _check_turn_order(messages, sample_id)
    return {"id": sample_id, "messages": messages, "image": image}


class UnreadableImageError(ValueError, OSError):
    """An image file that cannot be read when its row is: a `ValueError` (bad input), and an `OSError` as PIL's own
    `UnidentifiedImageError` is, so code that catches either keeps working."""


def _open_image(path: str, sample_id: str) -> Image.Image:
    try:
        with open_image_file(path) as image:  # closed when read: a multi-frame file keeps its handle open otherwise
            rgb = to_rgb_image(image)
            return rgb.copy() if rgb is image else rgb
    except FileNotFoundError as error:  # removed since loading
        raise FileNotFoundError(f"Sample {sample_id!r}: {error}") from error
    except (OSError, ValueError, TypeError) as error:  # corrupt, truncated, empty, an unsupported mode
        raise UnreadableImageError(f"Sample {sample_id!r}: cannot read image {path!r}: {error}") from error


def _check_image(path: str, verify: bool) -> str | None:
    """Returns why the image cannot be used, or `None` if it looks fine."""
    if not os.path.isfile(path):
        return "file not found"
    if os.path.getsize(path) == 0:
        return "empty file (0 bytes)"
    if verify:
        try:
            with Image.open(path) as image:
                image.verify()
        except Exception as error:  # noqa: BLE001 (PIL raises many types for corrupt files)
            return f"unreadable ({type(error).__name__}: {error})"
    return None


def _read_json_list(path: str) -> list:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"LLaVA JSON file {path!r} not found (working directory {os.getcwd()!r}).")
    try:
        with open(path, encoding="utf-8") as file:
            samples = json.load(file)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{path!r} is not valid JSON ({error}). LLaVA data is one JSON list of samples; a JSON-lines file (one "
            "sample per line) can be read with `[json.loads(line) for line in open(path)]` and passed as `data`."
        ) from error
    if not isinstance(samples, list):
        raise ValueError(f"{path!r} must hold a JSON list of samples, got a {type(samples).__name__}.")
    return samples


def _drop_none(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Arrow stores every content part with both keys; give back `{"type": "image"}` as TRL's examples write it.
    return [{key: value for key, value in part.items() if value is not None} for part in parts]


def _load_images(batch: dict[str, list]) -> dict[str, list]:
    """`Dataset.with_transform` function: opens the row's image(s) only when the row is read.

    A column query (`dataset["length"]`, as Trainer's length-grouped sampler makes) passes only that column through
    the transform: every other stored column is passed on as it is."""
    rows = {key: value for key, value in batch.items() if key not in ("messages", "image_paths")}
    if "messages" in batch:
        rows["messages"] = [
            [{"role": message["role"], "content": _drop_none(message["content"])} for message in messages]
            for messages in batch["messages"]
        ]
    if "image_paths" in batch:
        rows["images"] = [
            [_open_image(path, sample_id) for path in paths]
            for sample_id, paths in zip(batch.get("id", [None] * len(batch["image_paths"])), batch["image_paths"])
        ]
    return rows


def load_llava_dataset(
    data: str | os.PathLike | Iterable[dict[str, Any]],
    image_folder: str | os.PathLike | None = None,
    *,
    on_missing_image: Literal["raise", "skip"] = "raise",
    verify_images: bool = False,
    return_report: bool = False,
) -> Dataset | tuple[Dataset, LlavaDatasetReport]:
    r"""
    Loads LLaVA JSON data into a `datasets.Dataset` in TRL's conversational vision format.

    Every row has:

    - `id` (`str`): the sample's id;
    - `messages`: the conversation with roles `user` (LLaVA `human`), `assistant` (`gpt`) and `vuser` (`vuser`), each
      content a list of parts. The first user turn of an image sample starts with `{"type": "image"}` and its text has
      the `<image>` placeholder removed and is stripped, as the reference's `preprocess_multimodal` does
      (docs/original.md#training-data); a turn that was only `<image>` keeps no text part, and renders as
      `USER: <image> ASSISTANT:`, without a newline, as the reference's prompt;
    - `images`: a list with the sample's RGB `PIL.Image`, empty for text-only samples;
    - `length` (`int`): [`sample_length`], for `train_sampling_strategy="group_by_length"` (the reference's
      `group_by_modality_length=True`), which batches samples of similar length and so wastes less on padding.

    Images are read lazily: the dataset stores their paths and a `with_transform` opens a file (and converts it to
    RGB) only when its row is read, e.g. by the `DataLoader`. Loading 665K samples therefore costs a JSON parse and one
    `stat` per image, and a worker process holds only the images of its current batch. The transform only formats
    rows: `dataset.map`/`filter` see the stored columns (`id`, `messages`, `image_paths`).

    Missing images are found when loading (one `os.path.isfile` per sample); with `verify_images=True` every image is
    also opened and checked with `PIL.Image.verify`, which finds corrupt files up front at the cost of reading them.
    A file that fails later, when its row is read, raises `UnreadableImageError` (a `ValueError` and an `OSError`)
    naming the sample id and path, or `FileNotFoundError` if it has gone since.

    Every sample is checked while loading, and the first bad one raises a `ValueError` naming its id (or `#index`),
    the turn and the fix: wrong types, missing keys, an empty conversation, unknown speakers, turns that do not
    alternate human / gpt from a human turn, `<image>` without an image or an image without `<image>`, and samples
    with no `gpt` turn (nothing to train on). The messages are listed in docs/errors.md#training-data.

    Args:
        data (`str`, `os.PathLike` or iterable of `dict`):
            The JSON file (a list of samples), or the samples themselves.
        image_folder (`str` or `os.PathLike`, *optional*):
            The folder the samples' `image` paths are relative to (the reference's `--image_folder`). Defaults to the
            JSON file's folder, or the working directory when `data` is not a file.
        on_missing_image (`str`, *optional*, defaults to `"raise"`):
            What to do with a sample whose image is missing, empty (0 bytes), or unreadable (with
            `verify_images=True`): `"raise"` a `FileNotFoundError` (missing) or `UnreadableImageError` naming the
            sample id and path, or `"skip"` the sample. Skipped samples are counted, logged with a warning and listed
            in the report.
        verify_images (`bool`, *optional*, defaults to `False`):
            Open and verify every image while loading.
        return_report (`bool`, *optional*, defaults to `False`):
            Also return a [`LlavaDatasetReport`] with the counts and the skipped samples.

    Returns:
        `datasets.Dataset`, or `(Dataset, LlavaDatasetReport)` with `return_report=True`.

    Example:

    ```python
    >>> dataset, report = load_llava_dataset("llava_v1_5_mix665k.json", "data/", on_missing_image="skip",
    ...                                      return_report=True)
    >>> report.num_skipped
    0
    >>> dataset[0]["messages"][0]
    {'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': 'What are the colors of the bus?'}]}
    ```
    """
    if on_missing_image not in ("raise", "skip"):
        raise ValueError(f"`on_missing_image` must be 'raise' or 'skip', got {on_missing_image!r}.")
    if isinstance(data, (str, os.PathLike)):
        samples = _read_json_list(os.fspath(data))
        default_folder = os.path.dirname(os.path.abspath(data))
    elif isinstance(data, (dict, bytes)) or not isinstance(data, Iterable):
        raise TypeError(
            f"`data` must be a LLaVA JSON file path or an iterable of sample dicts, got {type(data).__name__}"
            + (" (one sample? wrap it in a list)." if isinstance(data, dict) else ".")
        )
    else:
        samples = list(data)
        default_folder = os.getcwd()
    image_folder = os.fspath(image_folder) if image_folder is not None else default_folder

    report = LlavaDatasetReport()
    rows = {"id": [], "messages": [], "image_paths": [], "length": []}
    for index, sample in enumerate(samples):
        row = convert_llava_sample(sample, index)
        image_paths = []
        if row["image"] is not None:
            path = os.path.join(image_folder, row["image"])
            problem = _check_image(path, verify_images)
            if problem is not None:
                if on_missing_image == "raise":
                    error = FileNotFoundError if problem == "file not found" else UnreadableImageError
                    raise error(
                        f"Sample {row['id']!r}: image {path!r}: {problem}. Check `image_folder`, or pass "
                        "`on_missing_image='skip'` to leave such samples out (they are counted and reported)."
                    )
                report.skipped.append(SkippedSample(id=row["id"], image_path=path, reason=problem))
                continue
            image_paths.append(path)
        rows["id"].append(row["id"])
        rows["messages"].append(row["messages"])
        rows["image_paths"].append(image_paths)
        rows["length"].append(sample_length(row["messages"], len(image_paths)))
        report.num_image_samples += bool(image_paths)
        report.num_text_only_samples += not image_paths

    report.num_samples = len(rows["id"])
    if report.skipped:
        examples = ", ".join(f"{s.id!r} ({s.image_path}: {s.reason})" for s in report.skipped[:5])
        logger.warning(
            "Skipped %d of %d samples whose image is missing or unreadable, e.g. %s.",
            report.num_skipped,
            len(samples),
            examples,
        )
    if not rows["id"]:
        raise ValueError(
            f"No samples left to load ({len(samples)} read, {report.num_skipped} skipped): the data is empty, or every "
            "image is missing or unreadable; check the file and `image_folder`."
        )

    dataset = Dataset.from_dict(rows, features=_FEATURES).with_transform(_load_images)
    return (dataset, report) if return_report else dataset


__all__ = [
    "IMAGE_LENGTH",
    "LlavaDatasetReport",
    "SkippedSample",
    "UnreadableImageError",
    "convert_llava_sample",
    "load_llava_dataset",
    "sample_length",
]
