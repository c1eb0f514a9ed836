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
"""`sqllava demo`: the offline demo on the committed tiny checkpoint (or a retrained one with `--retrain`)."""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction, help: str | None = None) -> argparse.ArgumentParser:
    """Register `sqllava demo`."""
    from ..cli import HelpFormatter

    parser = subparsers.add_parser(
        "demo",
        help=help,
        description=(
            "Load the tiny SQ-LLaVA shipped with the package, show what it says about a few held-out scenes (saved "
            "as PNG), and measure its answer accuracy and the share of valid self-asked questions on held-out scenes."
        ),
        epilog=(
            "Ask it your own question about a saved scene (the flags say how the demo model was trained to be asked; "
            "with --model demo they are also the defaults):\n\n"
            "    sqllava generate --model demo --image sqllava-demo-output/scene-1000003.png \\\n"
            '        --prompt "How many circles are there?" --system-prompt "A chat about the image." --question-first'
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--checkpoint", help="a demo checkpoint folder (default: the one shipped with the package)")
    parser.add_argument("--output-dir", default="sqllava-demo-output", help="where the shown scenes' PNGs are written")
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="train the demo model first (python -m transformers_sqllava.demo.train, ~20 min on 2 CPU cores), "
        "into OUTPUT_DIR/checkpoint, and demo that",
    )
    parser.add_argument(
        "--retrain-max-steps", type=int, help="with --retrain: training steps (default: the shipped checkpoint's)"
    )
    parser.add_argument("--num-shown", type=int, default=3, help="scenes printed in full")
    parser.add_argument("--num-eval-scenes", type=int, default=100, help="held-out scenes for answer accuracy")
    parser.add_argument("--questions-per-scene", type=int, default=3, help="questions per evaluation scene")
    parser.add_argument("--num-self-questioning-scenes", type=int, default=50, help="scenes the model asks about")
    parser.add_argument("--questions-asked-per-scene", type=int, default=3, help="questions it asks per scene")
    parser.add_argument("--seed", type=int, default=0, help="seeds the evaluation questions and question sampling")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice, capped at 2)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the demo (after retraining with `--retrain`) and print its report."""
    # Offline by construction: the checkpoint is a local folder loaded with `local_files_only=True` (see
    # `load_demo_model`) and the scenes are drawn, not downloaded. Setting HF_HUB_OFFLINE here would enforce nothing:
    # huggingface_hub reads it once, at import, and `import transformers_sqllava` has imported it before any command
    # runs.
    if args.checkpoint and not os.path.isdir(args.checkpoint):
        raise FileNotFoundError(
            f"--checkpoint {args.checkpoint}: no such folder (leave --checkpoint out for the one shipped with the "
            "package)."
        )
    counts = {
        "--num-shown": args.num_shown,
        "--num-eval-scenes": args.num_eval_scenes,
        "--questions-per-scene": args.questions_per_scene,
        "--num-self-questioning-scenes": args.num_self_questioning_scenes,
        "--questions-asked-per-scene": args.questions_asked_per_scene,
    }
    for flag, value in counts.items():
        if value < 0:
            raise ValueError(f"{flag} {value}: must be 0 or more.")
    # Imported when the demo runs, not when `sqllava` registers every command's parser.
    import torch

    from ..demo.record import DEFAULT_CHECKPOINT, format_targets
    from ..demo.run import format_report, run_demo
    from ..demo.train import DemoTrainingConfig, train_demo_model
    from ._logging import quiet_bitsandbytes_cpu_kernel_notice

    # The tiny model's matmuls are small: more threads than cores (or cores shared with other work) only slow it.
    torch.set_num_threads(args.threads or min(torch.get_num_threads(), 2))
    checkpoint = Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT
    if args.retrain:
        if importlib.util.find_spec("trl") is None or importlib.util.find_spec("datasets") is None:
            raise SystemExit(
                "sqllava demo --retrain trains with TRL: install the training extras first, "
                '`pip install -e ".[train]"` (or `pip install "transformers-sqllava[train]"`).'
            )
        config = DemoTrainingConfig()  # the committed checkpoint's settings
        if args.retrain_max_steps is not None:
            config.max_steps = args.retrain_max_steps
        checkpoint = Path(args.output_dir) / "checkpoint"
        print(f"Retraining the demo model into {checkpoint} ...", flush=True)
        # TRL imports peft, which imports bitsandbytes: its CPU 4-bit kernel notice does not apply (see `_logging`).
        with quiet_bitsandbytes_cpu_kernel_notice():
            train_demo_model(config, checkpoint)
    report = run_demo(
        checkpoint=checkpoint,
        output_dir=args.output_dir,
        num_shown=args.num_shown,
        num_eval_scenes=args.num_eval_scenes,
        questions_per_scene=args.questions_per_scene,
        num_self_questioning_scenes=args.num_self_questioning_scenes,
        questions_asked_per_scene=args.questions_asked_per_scene,
        seed=args.seed,
    )
    print(format_report(report))
    print(format_targets(report.answer_accuracy, report.valid_question_share))
    return 0
