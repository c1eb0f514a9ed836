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
"""`sqllava ablate`: the paper's Table 3 ablation (Proto / SQ / ViT LoRA) on the offline demo world.

See docs/ablation.md; the work is `demo/ablate.py`'s, which `python -m transformers_sqllava.demo.ablate` also runs.
"""

from __future__ import annotations

import argparse
import importlib.util


def add_parser(subparsers: argparse._SubParsersAction, help: str | None = None) -> argparse.ArgumentParser:
    """Register `sqllava ablate`: the flags of `python -m transformers_sqllava.demo.ablate`."""
    from ..cli import HelpFormatter
    from ..demo.ablate import add_arguments

    parser = subparsers.add_parser(
        "ablate",
        help=help,
        description=(
            "Train the demo model as LLaVA-1.5 (baseline), as full SQ-LLaVA and as SQ-LLaVA without each of the "
            "prototype extractor, self-questioning and the ViT LoRA, at the same seeds, data and step budget; score "
            "each on the offline demo benchmark and write the paper's Table 3 as JSON, Markdown and a PNG plot. "
            "Stages 0-1 are cached per seed and projector, finished variants are skipped on a rerun."
        ),
        epilog="The whole table at 2 seeds (the default): about an hour on 2 CPU cores.\n\n"
        "    sqllava ablate --output-dir sqllava-ablation --seeds 0 1",
        formatter_class=HelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the ablation and print its table."""
    if importlib.util.find_spec("trl") is None or importlib.util.find_spec("datasets") is None:
        raise SystemExit(
            "sqllava ablate trains with TRL: install the training extras first, "
            '`pip install -e ".[train]"` (or `pip install "transformers-sqllava[train]"`).'
        )
    from ..demo.ablate import run_from_args
    from ._logging import quiet_bitsandbytes_cpu_kernel_notice

    # TRL imports peft, which imports bitsandbytes: its CPU 4-bit kernel notice does not apply (see `_logging`).
    with quiet_bitsandbytes_cpu_kernel_notice():
        return run_from_args(args)
