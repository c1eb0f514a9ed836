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
"""The `sqllava` command.

Each subcommand lives in its own module, which exposes `add_parser(subparsers)`: it registers its sub-parser and sets
`func`, a callable taking the parsed arguments and returning an exit code. Adding a subcommand is one line in
`SUBCOMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib


SUBCOMMAND_MODULES = (
    "transformers_sqllava.commands.convert",  # sqllava convert
    "transformers_sqllava.commands.generate",  # sqllava generate
    "transformers_sqllava.commands.demo",  # sqllava demo
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sqllava", description="SQ-LLaVA (Self-Questioning LLaVA) with Hugging Face Transformers."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
