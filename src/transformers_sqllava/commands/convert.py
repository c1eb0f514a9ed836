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
"""Convert the released SQ-LLaVA checkpoints (github.com/heliossun/SQ-LLaVA) to transformers-sqllava.

    sqllava convert --model-path ZachSun/sqllava-lora-7b \\
        --model-base Lin-Chen/ShareGPT4V-7B_Pretrained_vit-large336-l12_vicuna-7b-v1.5 \\
        --output-dir sqllava-7b-hf

The same as `transformers_sqllava.conversion.convert_sqllava_checkpoint`, which documents the two original layouts.
"""

from __future__ import annotations

import argparse
import logging


# `conversion.SUPPORTED_DTYPES`, spelled out so that `sqllava convert --help` imports no torch (a test keeps them
# equal).
DTYPES = ("float16", "bfloat16", "float32")


def add_parser(subparsers: argparse._SubParsersAction, help: str | None = None) -> argparse.ArgumentParser:
    from ..cli import HelpFormatter

    parser = subparsers.add_parser(
        "convert",
        help=help,
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--model-path", required=True, help="original checkpoint: folder or Hub id (LoRA or merged)")
    parser.add_argument("--model-base", help="base LLM of a LoRA checkpoint (folder or Hub id)")
    parser.add_argument("--vision-tower", help="CLIP checkpoint (default: the original config's mm_vision_tower)")
    parser.add_argument("--vision-lora", help="ViT LoRA folder (default: MODEL_PATH/Vit-lora when present)")
    parser.add_argument("--output-dir", required=True, help="where to write the converted folder")
    parser.add_argument("--dtype", default="float16", choices=DTYPES, help="output dtype")
    parser.add_argument("--no-merge", action="store_true", help="write the base model + a PEFT adapter instead")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous conversion in OUTPUT_DIR")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the output folder to this Hub repo")
    parser.add_argument("--private", action="store_true", default=None, help="create the Hub repo as private")
    # The reference hard-codes 256 prototypes and 2 iterations (docs/original.md#prototype-extractor); these exist
    # for test-sized checkpoints only.
    parser.add_argument("--num-prototypes", type=int, default=256, help=argparse.SUPPRESS)
    parser.add_argument("--prototype-iterations", type=int, default=2, help=argparse.SUPPRESS)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..conversion import convert_sqllava_checkpoint

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    output_dir = convert_sqllava_checkpoint(
        args.model_path,
        args.output_dir,
        model_base=args.model_base,
        vision_tower=args.vision_tower,
        vision_lora=args.vision_lora,
        dtype=args.dtype,
        merge=not args.no_merge,
        push_to_hub=args.push_to_hub,
        private=args.private,
        num_prototypes=args.num_prototypes,
        prototype_iterations=args.prototype_iterations,
        overwrite=args.overwrite,
    )
    print(f"Converted checkpoint written to {output_dir}")
    return 0
