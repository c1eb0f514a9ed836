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
"""`sqllava self-train`: the data steps of self-training from unlabeled images (docs/self_training.md).

- `build-preferences`: STIC's preference pairs and SQ-LLaVA's question pairs, made by the model itself;
- `describe`: STIC stage 2's description-infused instruction data, from a LLaVA JSON file.

The training steps (DPO, then SFT) are `examples/self_train.py`, a TRL script.
"""

from __future__ import annotations

import argparse
import os


def add_parser(subparsers: argparse._SubParsersAction, help: str | None = None) -> argparse.ArgumentParser:
    from ..cli import HelpFormatter
    from ..self_training.preferences import PREFERENCE_KINDS
    from ..self_training.prompts import PROMPT_SETS

    parser = subparsers.add_parser(
        "self-train", help=help, description="Self-training data from unlabeled images (STIC; self-questioning).",
        formatter_class=HelpFormatter,
    )  # fmt: skip
    actions = parser.add_subparsers(dest="self_train_command", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build-preferences",
        help="preference pairs the model makes from unlabeled images (JSON Lines, resumable)",
        description="Ask the model about each image of --image-folder and write preference pairs: STIC's "
        "descriptions (stic), the model's own questions (sq-question) and its answers to them (sq-answer).",
        formatter_class=HelpFormatter,
        epilog="example:\n  sqllava self-train build-preferences --model sqllava-7b --image-folder coco/train2014 "
        "\\\n      --output prefs.jsonl --kinds stic sq-question --limit 6000",
    )
    build.add_argument("--model", required=True, help="a checkpoint folder or Hub id ('demo': the shipped one)")
    build.add_argument("--image-folder", required=True, help="unlabeled images (subfolders included)")
    build.add_argument("--output", required=True, help="the preference file (appended, resumed)")
    build.add_argument("--kinds", nargs="+", default=["stic"], choices=PREFERENCE_KINDS, help="which pairs")
    build.add_argument("--prompts", default="stic", choices=sorted(PROMPT_SETS), help="STIC's prompts or the "
                       "demo world's")  # fmt: skip
    build.add_argument("--system-prompt", help="v1 (default), v1_sq, or a system message (a demo checkpoint: its own)")
    build.add_argument("--max-new-tokens", type=int, help="description / answer limit (default 1024, demo 64)")
    build.add_argument("--batch-size", type=int, default=8, help="images per generate call")
    build.add_argument("--limit", type=int, help="use the first N images (sorted by name)")
    build.add_argument("--seed", type=int, default=0, help="seeds prompts, branches, corruptions and sampling")
    _add_loading_flags(build)
    build.set_defaults(func=run_build_preferences)

    describe = actions.add_parser(
        "describe",
        help="STIC stage 2: put the model's own description before each instruction of a LLaVA JSON file",
        description="Rewrite each image sample's first turn as `<image>\\nImage description:\\n{description}"
        "\\n\\n{question}` with the model's description (STIC's add_des_to_data.py).",
        formatter_class=HelpFormatter,
    )
    describe.add_argument("--model", required=True, help="the stage-1 (DPO) checkpoint")
    describe.add_argument("--data", required=True, help="a LLaVA JSON instruction file (e.g. a 5k subset)")
    describe.add_argument("--image-folder", required=True, help="its images")
    describe.add_argument("--output", required=True, help="the LLaVA JSON to write")
    describe.add_argument("--prompts", default="stic", choices=sorted(PROMPT_SETS), help="description requests")
    describe.add_argument("--system-prompt", help="v1 (default), v1_sq, or a system message")
    describe.add_argument("--max-new-tokens", type=int, default=1024, help="description limit")
    describe.add_argument("--batch-size", type=int, default=8, help="images per generate call")
    describe.add_argument("--seed", type=int, default=0, help="seeds the request drawn per image")
    _add_loading_flags(describe)
    describe.set_defaults(func=run_describe)
    return parser


def _add_loading_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "float16", "bfloat16"))
    parser.add_argument("--load-in-4bit", action="store_true", help="4-bit NF4 weights (bitsandbytes)")


def _load(args: argparse.Namespace):
    from .generate import checkpoint_prompt_format, check_model_source, load_model_and_processor

    check_model_source(args.model)
    trained = checkpoint_prompt_format(args.model)
    model, processor = load_model_and_processor(args.model, args.device, args.dtype, args.load_in_4bit)
    return model, processor, args.system_prompt or trained.get("system_prompt", "v1")


def run_build_preferences(args: argparse.Namespace) -> int:
    from ..self_training.preferences import STIC_ANSWER_GENERATION, PreferenceBuildConfig, build_preferences
    from ..self_training.prompts import PROMPT_SETS

    if not os.path.isdir(args.image_folder):
        raise FileNotFoundError(f"--image-folder {args.image_folder}: no such folder.")
    model, processor, system_prompt = _load(args)
    answer_generation = dict(STIC_ANSWER_GENERATION)
    if args.max_new_tokens is not None:
        answer_generation["max_new_tokens"] = args.max_new_tokens
    config = PreferenceBuildConfig(kinds=tuple(args.kinds), prompts=PROMPT_SETS[args.prompts],
                                   system_prompt=system_prompt, answer_generation=answer_generation,
                                   seed=args.seed)  # fmt: skip
    summary = build_preferences(model, processor, args.image_folder, args.output, config, args.batch_size, args.limit)
    written = ", ".join(f"{count} {kind}" for kind, count in summary.num_written.items())
    identical = sum(summary.num_identical.values())
    print(f"{written} pairs written to {args.output} from {summary.num_images - summary.num_already_done} images "
          f"({summary.num_already_done} already done; {identical} pairs with identical sides left out) in "
          f"{summary.seconds:.1f} s")  # fmt: skip
    return 0


def run_describe(args: argparse.Namespace) -> int:
    from ..self_training.description_infusion import infuse_llava_json
    from ..self_training.prompts import PROMPT_SETS

    for flag, path in (("--data", args.data), ("--image-folder", args.image_folder)):
        if not os.path.exists(path):
            raise FileNotFoundError(f"{flag} {path}: not found.")
    model, processor, system_prompt = _load(args)
    count = infuse_llava_json(
        model, processor, args.data, args.image_folder, args.output, prompts=PROMPT_SETS[args.prompts],
        system_prompt=system_prompt, generation_kwargs={"max_new_tokens": args.max_new_tokens},
        batch_size=args.batch_size, seed=args.seed,
    )  # fmt: skip
    print(f"{count} samples described, written to {args.output}")
    return 0
