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
"""Training-step time with random batches vs length-grouped batches (`train_sampling_strategy="group_by_length"`,
the reference's `group_by_modality_length`), on the offline demo's stage-2 conversations and model.

Both samplers draw the same rows (the demo's defaults: 1-3 turns, 30% of the conversations opening with a ~30-token
description) for the demo's tiny SQ-LLaVA (image path frozen, as in its stage 2); each batch goes through the
self-questioning collator, then forward, backward and an AdamW step. Reported per sampler: the share of padding
tokens, the mean padded batch length, and the median and mean step time (collation excluded). The samplers are
Trainer's own: `RandomSampler` order and `LengthGroupedSampler` over the rows' `length` column.

```bash
python benchmarks/length_grouping.py              # writes benchmarks/results/length_grouping.{json,md}
python benchmarks/length_grouping.py --quick      # small sizes, for the smoke test
```
"""

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info, write_report  # noqa: E402

from transformers_sqllava.demo.train import (  # noqa: E402
    DemoTrainingConfig,
    build_demo_model,
    build_demo_processor,
    build_train_rows,
)
from transformers_sqllava.demo.vision_pretraining import freeze_image_path  # noqa: E402
from transformers_sqllava.training import SQLlavaSelfQuestioningCollator  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def sampler_orders(rows: list[dict], batch_size: int, seed: int) -> dict[str, list[int]]:
    """Row order of each sampler, as Trainer would draw it (same seed for both)."""
    random_order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    grouped = LengthGroupedSampler(
        batch_size, lengths=[row["length"] for row in rows], generator=torch.Generator().manual_seed(seed)
    )
    return {"random": random_order, "group_by_length": list(grouped)}


def measure(model, collator, rows, order, batch_size: int, steps: int) -> dict:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    seconds, real, padded = [], 0, 0
    for step in range(steps + 1):  # step 0 warms up and is not counted
        batch = collator([rows[i] for i in order[step * batch_size : (step + 1) * batch_size]])
        started = time.perf_counter()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step:
            seconds.append(time.perf_counter() - started)
            real += int(batch["attention_mask"].sum())
            padded += batch["attention_mask"].numel()
    return {
        "padding_share": round(1 - real / padded, 4),
        "mean_batch_length": round(padded / (steps * batch_size), 1),
        "median_step_ms": round(1000 * statistics.median(seconds), 1),
        "mean_step_ms": round(1000 * statistics.mean(seconds), 1),
        "step_seconds": seconds,
    }


def run_benchmark(num_rows: int, batch_size: int, steps: int, threads: int, seed: int = 0) -> dict:
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run_benchmark(num_rows, batch_size, steps, threads, seed)
    finally:
        torch.set_num_threads(previous_threads)  # callers in the same process (the test suite) keep their own setting


def _run_benchmark(num_rows: int, batch_size: int, steps: int, threads: int, seed: int) -> dict:
    config = replace(DemoTrainingConfig(), num_train_scenes=num_rows, batch_size=batch_size, group_by_length=True)
    processor = build_demo_processor(config.image_size, config.patch_size)
    rows = build_train_rows(config, stage=2)
    collator = SQLlavaSelfQuestioningCollator(
        processor, sq_ratio=config.sq_ratio, seed=seed, images_first=not config.question_before_image
    )
    results = {}
    for name, order in sampler_orders(rows, batch_size, seed).items():
        model = build_demo_model(config, processor)  # the same seeded weights for both
        freeze_image_path(model)
        results[name] = measure(model, collator, rows, order, batch_size, steps)
    speedup = results["random"]["mean_step_ms"] / results["group_by_length"]["mean_step_ms"]
    return {
        "machine": machine_info(),
        "sizes": {"num_rows": num_rows, "batch_size": batch_size, "steps": steps, "threads": threads},
        "demo_config": {"min_turns": config.min_turns, "max_turns": config.max_turns,
                        "description_first": config.description_first},  # fmt: skip
        "results": results,
        "speedup": round(speedup, 2),
    }


def render(report: dict) -> str:
    sizes = report["sizes"]
    lines = [
        f"Demo stage-2 steps: batch {sizes['batch_size']}, {sizes['steps']} steps, {sizes['threads']} threads, "
        f"{report['machine']['cpu']}",
        "",
        "| sampler | padding share | mean padded length | median step (ms) | mean step (ms) |",
        "|---|---|---|---|---|",
    ]
    for name, row in report["results"].items():
        lines.append(
            f"| {name} | {row['padding_share']:.1%} | {row['mean_batch_length']} | {row['median_step_ms']} | "
            f"{row['mean_step_ms']} |"
        )
    lines += ["", f"Length grouping: {report['speedup']}x faster per step (mean)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-rows", type=int, default=20000, help="rows the samplers draw from")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="small sizes, writes length_grouping_quick.*")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.quick:
        args.num_rows, args.batch_size, args.steps, args.threads = 400, 8, 4, 1
    report = run_benchmark(args.num_rows, args.batch_size, args.steps, args.threads)
    table = render(report)
    print(table)
    write_report(args.output_dir, "length_grouping_quick" if args.quick else "length_grouping", report, table)
    return report


if __name__ == "__main__":
    main()
