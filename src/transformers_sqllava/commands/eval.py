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
"""`sqllava eval`: `run` answers a benchmark's question file (`eval_run.py`), `score BENCHMARK ...` scores the answer
files as the original scripts do, `demo` runs both on the offline demo benchmark (`eval_demo.py`).

Each benchmark takes the original script's file arguments (e.g. `pope --annotation-dir --question-file
--result-file`) and prints its result as one JSON object on the last line of stdout (docs/evaluation.md).
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction, help: str | None = None) -> argparse.ArgumentParser:
    """Register `sqllava eval` and its `score` subcommand."""
    from ..cli import HelpFormatter
    from ..evaluation.scoring.registry import add_scorer_subparsers
    from .eval_demo import add_demo_parser
    from .eval_run import add_run_parser

    parser = subparsers.add_parser(
        "eval", help=help, description="Evaluate SQ-LLaVA on the paper's benchmarks.", formatter_class=HelpFormatter
    )
    actions = parser.add_subparsers(dest="eval_command", metavar="ACTION", required=True)
    score = actions.add_parser(
        "score",
        help="score an answers file with the original script's arguments and numbers",
        description="Score a benchmark's answer files as the original SQ-LLaVA / LLaVA scripts do; the result is "
        "one JSON object on the last line of stdout.",
        formatter_class=HelpFormatter,
    )
    add_scorer_subparsers(score)
    score.set_defaults(func=run_score)
    add_run_parser(actions, HelpFormatter)
    add_demo_parser(actions, HelpFormatter)
    return parser


def run_score(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..evaluation.scoring.registry import _json_default, run_scorer_from_args

    # A missing or malformed file raises ValueError / FileNotFoundError: the CLI prints it as one error line.
    result = run_scorer_from_args(args)
    if args.output_json:
        path = Path(args.output_json).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, default=_json_default) + "\n", encoding="utf-8")
    print(json.dumps(result, default=_json_default))
    return 0
