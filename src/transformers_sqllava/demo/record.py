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
"""What a demo checkpoint is: the folder `demo/train.py` writes and `demo/run.py` reads.

A demo checkpoint is a `save_pretrained` folder (weights, config, processor) plus:

- the training record [`TRAINING_RECORD`] (`demo_training.json`): the [`DemoTrainingConfig`] it was trained with
  (the runner rebuilds the same train/held-out split and prompts from it), losses, time and, once evaluated, the
  demo's numbers ([`evaluation_summary`]);
- a model card (`README.md`).

It holds no remote code: it is loaded with the installed package, whose classes are registered with the Auto
classes. A Hub upload goes through `save_pretrained`, which writes the code files again.

The demo's targets ([`TARGET_ANSWER_ACCURACY`], [`TARGET_VALID_QUESTION_SHARE`]) are here too: `sqllava demo` prints
them next to the measured numbers and the model card says whether the checkpoint meets them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The committed checkpoint the demo loads (package data, see setup.cfg).
DEFAULT_CHECKPOINT = Path(__file__).parent / "checkpoint"
# Written next to the weights: how the checkpoint was trained, so the demo can rebuild the same train/held-out split.
TRAINING_RECORD = "demo_training.json"
# What the demo must show on held-out scenes.
TARGET_ANSWER_ACCURACY = 0.90
TARGET_VALID_QUESTION_SHARE = 0.80
# The files of a `save_pretrained` folder that name remote code in an `auto_map` (the processor's also nests its image
# processor's). Not `tokenizer.json`: a vocabulary may hold any string, "auto_map" included.
_AUTO_MAP_FILES = ("config.json", "processor_config.json", "tokenizer_config.json", "preprocessor_config.json")


def load_training_record(checkpoint: str | Path) -> dict[str, Any]:
    """The `demo_training.json` of a checkpoint folder (training config, losses, time, evaluation)."""
    path = Path(checkpoint) / TRAINING_RECORD
    if not path.is_file():
        raise FileNotFoundError(
            f"{checkpoint} is not a demo checkpoint: it has no {TRAINING_RECORD}. The demo needs a folder written by "
            "`python -m transformers_sqllava.demo.train`."
        )
    try:
        record = json.loads(path.read_text())
    except ValueError as error:  # json's own message gives a line and column, not the file
        raise ValueError(f"{path} is not valid JSON ({error}): train the checkpoint again.") from error
    # A ValueError, not a TypeError: the file's content is wrong, as with invalid JSON, not the caller's argument.
    if not isinstance(record, dict) or not isinstance(record.get("training_config"), dict):
        raise ValueError(f"{path} has no `training_config` object: it is not a demo training record.")  # noqa: TRY004
    return record


def write_training_record(checkpoint: str | Path, record: dict[str, Any]) -> None:
    """Write `record` as the checkpoint's `demo_training.json`."""
    (Path(checkpoint) / TRAINING_RECORD).write_text(json.dumps(record, indent=1) + "\n")


def meets_targets(answer_accuracy: float, valid_question_share: float) -> tuple[bool, bool]:
    """Whether each of the demo's two targets is met."""
    return answer_accuracy >= TARGET_ANSWER_ACCURACY, valid_question_share >= TARGET_VALID_QUESTION_SHARE


def format_targets(answer_accuracy: float, valid_question_share: float) -> str:
    """The targets line of `sqllava demo`: each target and whether it is met."""
    verdicts = ["met" if met else "NOT met" for met in meets_targets(answer_accuracy, valid_question_share)]
    return (
        f"Targets: answer accuracy >= {TARGET_ANSWER_ACCURACY:.0%}: {verdicts[0]}; "
        f"valid self-asked questions >= {TARGET_VALID_QUESTION_SHARE:.0%}: {verdicts[1]}."
    )


def evaluation_summary(report) -> dict[str, Any]:
    """The numbers of a [`DemoReport`] kept in the training record (its `evaluation`) and quoted by the card."""
    return {
        "answer_accuracy": round(report.answer_accuracy, 4),
        "num_questions": len(report.answers),
        "valid_question_share": round(report.valid_question_share, 4),
        "num_self_asked_questions": len(report.self_asked),
        "self_answer_accuracy": round(report.self_answer_accuracy, 4),
        "description_accuracy": round(report.num_descriptions_correct / max(report.num_descriptions, 1), 4),
        "num_descriptions": report.num_descriptions,
    }


def remove_remote_code(checkpoint: str | Path) -> None:
    """
    Delete the remote-code files that `save_pretrained` writes for classes registered with `register_for_auto_class`
    (`*.py` and the `auto_map` entries naming them), so that nothing in the folder points at code it does not hold.
    """
    checkpoint = Path(checkpoint)
    for code_file in checkpoint.glob("*.py"):
        code_file.unlink()
    for path in (checkpoint / name for name in _AUTO_MAP_FILES):
        if not path.is_file():
            continue
        content = json.loads(path.read_text())
        if _drop_auto_map(content):
            # transformers writes these files with indent 2 and a final newline; the key order is kept as read.
            path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")


def _drop_auto_map(content: Any) -> bool:
    """Remove every `auto_map` key of a JSON value, nested ones included; True if there was one."""
    if not isinstance(content, dict):
        return False
    found = content.pop("auto_map", None) is not None
    for value in content.values():
        found = _drop_auto_map(value) or found
    return found


__all__ = [
    "DEFAULT_CHECKPOINT",
    "TARGET_ANSWER_ACCURACY",
    "TARGET_VALID_QUESTION_SHARE",
    "TRAINING_RECORD",
    "evaluation_summary",
    "format_targets",
    "load_training_record",
    "meets_targets",
    "remove_remote_code",
    "write_training_record",
]
