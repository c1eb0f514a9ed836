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
"""`sqllava eval demo`: a demo checkpoint on the offline demo benchmark (docs/evaluation.md#the-offline-demo-benchmark)."""

from __future__ import annotations

import argparse
import os


def add_demo_parser(actions: argparse._SubParsersAction, formatter_class) -> argparse.ArgumentParser:
    """Register `sqllava eval demo` under the `eval` command's actions."""
    parser = actions.add_parser(
        "demo",
        help="the offline demo benchmark (POPE, VQAv2, captions, MME, MMBench in their formats) on a demo checkpoint",
        description="Build the offline benchmark from the checkpoint's held-out scenes, answer it with `eval run`'s "
        "code, score it with `eval score`'s, and print one table. No download; about a minute on 2 CPU cores.",
        formatter_class=formatter_class,
    )
    parser.add_argument("--model-path", default="demo", help="a demo checkpoint folder ('demo': the shipped one)")
    parser.add_argument("--output-dir", help="keep the benchmark's files and the answers here (default: not kept)")
    parser.add_argument("--output-json", help="also write every number (and each scorer's result) to this file")
    parser.add_argument("--batch-size", type=int, default=32, help="questions per generate call")
    parser.add_argument("--seed", type=int, default=0, help="seeds the questions and the self-asked questions")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..evaluation.demo_evaluation import (
        evaluate_on_demo_benchmark,
        format_demo_benchmark,
        write_demo_benchmark_report,
    )
    from .generate import resolve_model

    checkpoint = resolve_model(args.model_path)
    if not os.path.isdir(checkpoint):
        raise FileNotFoundError(f"--model-path {args.model_path}: no such folder (a demo checkpoint is a folder).")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size}: must be at least 1.")
    report = evaluate_on_demo_benchmark(checkpoint, args.output_dir, batch_size=args.batch_size, seed=args.seed)
    if args.output_json:
        write_demo_benchmark_report(report, args.output_json)
    print(format_demo_benchmark(report))
    return 0
