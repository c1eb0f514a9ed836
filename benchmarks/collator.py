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
"""Samples per second of the self-questioning collator, side by side with TRL's `DataCollatorForVisionLanguageModeling`.

Data: multi-turn conversations in TRL's vision format (`--rounds` question/answer rounds, default 6), each with one
RGB image of 640 x 480 (a random photo-sized array) preprocessed at the real model's 336 px (pad to square, resize,
centre crop, normalise) and expanded to 576 image tokens; the Vicuna-shaped test tokenizer of `tests/conftest.py`.

Collators, same rows, same processor, one process, `--batch-size` rows per call:

- `sqllava (sq_ratio=0.5)`: [`SQLlavaSelfQuestioningCollator`] as in training (vuser draws, v1_sq prompt, structural
  labels);
- `sqllava (sq_ratio=0)`: the same without vuser turns;
- `trl`: TRL's built-in collator on the same rows without vuser turns (it rejects the vuser role, and trains on
  every token: it has no answer-only mask for this chat template).

Scenarios: `image` (the full cost, image preprocessing included) and `text-only` (the same conversations without an
image: the tokenisation and label cost alone). Each collator is run round-robin with the others, `--repeats` times,
after a warm-up call; the median is reported.

```bash
python benchmarks/collator.py                 # writes benchmarks/results/collator.json and prints a markdown table
python benchmarks/collator.py --quick         # small sizes, for the smoke test
```
"""

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import transformers
import trl
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import build_llama_style_tokenizer  # noqa: E402

from transformers_sqllava import SQLlavaImageProcessor, SQLlavaProcessor, add_sqllava_tokens  # noqa: E402
from transformers_sqllava.training import SQLlavaSelfQuestioningCollator  # noqa: E402

QUESTIONS = [
    "What is in the image?",
    "How many objects are there?",
    "What colour is the circle?",
    "Where is the square?",
    "Is there a yellow star?",
    "Can you describe the image in detail?",
]
ANSWERS = [
    "There is a red circle and a blue square on the left of a green triangle.",
    "Three.",
    "The circle is red.",
    "The square is on the left of the green triangle.",
    "No.",
    "A man rides a horse in the park, and the cat sits on the mat next to the dog.",
]


def make_rows(num_rows: int, rounds: int, with_image: bool, image_size=(640, 480), seed: int = 0) -> list[dict]:
    generator = np.random.default_rng(seed)
    rows = []
    for index in range(num_rows):
        messages = []
        for turn in range(rounds):
            question = QUESTIONS[(index + turn) % len(QUESTIONS)]
            content = [{"type": "text", "text": question}]
            if turn == 0 and with_image:
                content = [{"type": "image"}] + content
            messages.append({"role": "user", "content": content})
            messages.append({"role": "assistant", "content": [{"type": "text", "text": ANSWERS[(index + turn) % 6]}]})
        images = []
        if with_image:
            pixels = generator.integers(0, 256, (image_size[1], image_size[0], 3), dtype=np.uint8)
            images = [PIL.Image.fromarray(pixels)]
        rows.append({"id": str(index), "images": images, "messages": messages})
    return rows


def build_processor() -> SQLlavaProcessor:
    # The real model's image processing: 336 px, pad to square, 576 image tokens.
    tokenizer = build_llama_style_tokenizer()
    add_sqllava_tokens(tokenizer)
    return SQLlavaProcessor(SQLlavaImageProcessor(), tokenizer, image_seq_length=576)


def collators(processor) -> dict:
    return {
        "sqllava (sq_ratio=0.5)": SQLlavaSelfQuestioningCollator(processor, sq_ratio=0.5, seed=0),
        "sqllava (sq_ratio=0)": SQLlavaSelfQuestioningCollator(processor, sq_ratio=0.0, seed=0),
        "trl DataCollatorForVisionLanguageModeling": DataCollatorForVisionLanguageModeling(processor),
    }


def copy_rows(rows):
    # TRL's collator writes the images into the messages: give every call fresh message lists.
    return [{**row, "messages": [dict(message, content=list(message["content"])) for message in row["messages"]]}
            for row in rows]  # fmt: skip


def measure(rows_by_scenario: dict, batch_size: int, repeats: int) -> list[dict]:
    processor = build_processor()
    results = []
    for scenario, rows in rows_by_scenario.items():
        batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
        named = collators(processor)
        times = {name: [] for name in named}
        shapes = {}
        for name, collator in named.items():  # warm-up, and the shapes
            batch = collator(copy_rows(batches[0]))
            shapes[name] = list(batch["input_ids"].shape)
        for _ in range(repeats):
            for name, collator in named.items():
                copies = [copy_rows(batch) for batch in batches]
                start = time.perf_counter()
                for batch in copies:
                    collator(batch)
                times[name].append(time.perf_counter() - start)
        for name in named:
            median = statistics.median(times[name])
            results.append(
                {
                    "scenario": scenario,
                    "collator": name,
                    "samples_per_second": len(rows) / median,
                    "ms_per_batch": 1000 * median / len(batches),
                    "batch_shape": shapes[name],
                    "seconds": times[name],
                }
            )
    return results


def markdown(results: list[dict], args) -> str:
    lines = [
        f"Batch size {args.batch_size}, {args.rounds} question/answer rounds per sample, 640x480 images at 336 px "
        f"(576 image tokens), {args.num_rows} samples per pass, median of {args.repeats} passes.",
        "",
        "| scenario | collator | samples/s | ms/batch | batch input_ids |",
        "|---|---|---:|---:|---|",
    ]
    for row in results:
        lines.append(
            f"| {row['scenario']} | {row['collator']} | {row['samples_per_second']:.1f} | {row['ms_per_batch']:.1f} "
            f"| {row['batch_shape']} |"
        )
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--num-rows", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a dataloader worker uses one)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "collator.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.num_rows, args.repeats, args.batch_size = 4, 1, 2
    torch.set_num_threads(args.threads)
    rows_by_scenario = {
        "image": make_rows(args.num_rows, args.rounds, with_image=True),
        "text-only": make_rows(args.num_rows, args.rounds, with_image=False),
    }
    results = measure(rows_by_scenario, args.batch_size, args.repeats)
    table = markdown(results, args)
    print(table)
    if not args.quick:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        environment = {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
            "machine": platform.machine(),
            "threads": args.threads,
        }
        payload = {"settings": vars(args) | {"output": str(args.output)}, "environment": environment, "results": results}
        args.output.write_text(json.dumps(payload, indent=1))
    return results


if __name__ == "__main__":
    main()
