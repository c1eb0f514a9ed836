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
"""`sqllava eval run`: answer a benchmark's question file, with the original answering scripts' arguments.

`python -m sqllava.eval.model_vqa_loader --model-path M --question-file Q --image-folder I --answers-file A
--temperature 0 --conv-mode v1` becomes `sqllava eval run --model-path M --question-file Q --image-folder I
--answers-file A --temperature 0 --conv-mode v1` (docs/evaluation.md#answering-a-question-file).
"""

from __future__ import annotations

import argparse
import os

CONV_MODES = ("v1", "vicuna_v1", "v1_sq")  # the original's names; vicuna_v1 is v1's system prompt under another name


def add_run_parser(actions: argparse._SubParsersAction, formatter_class) -> argparse.ArgumentParser:
    """Register `sqllava eval run` under the `eval` command's actions."""
    from ..evaluation.answering import ANSWERING_MODES
    from ..evaluation.question_files import QUESTION_FORMATS

    parser = actions.add_parser(
        "run",
        help="answer a benchmark's question file as the original scripts do (model_vqa_loader.py's arguments)",
        description="Answer a question file (LLaVA JSONL, ScienceQA JSON, MMBench TSV) and write the original's "
        "answers JSON Lines. Resumable: questions already in --answers-file are skipped.",
        formatter_class=formatter_class,
        epilog="example:\n  sqllava eval run --model-path sqllava-7b --question-file llava_pope_test.jsonl \\\n"
        "      --image-folder val2014 --answers-file answers/pope.jsonl --temperature 0 --conv-mode v1 --batch-size 8",
    )
    parser.add_argument("--model-path", required=True, help="a converted checkpoint folder or Hub id ('demo': the "
                        "shipped demo checkpoint)")  # fmt: skip
    parser.add_argument("--question-file", required=True, help="the benchmark's question file")
    parser.add_argument("--image-folder", default="", help="the folder the question file's image names are in")
    parser.add_argument("--answers-file", default="answer.jsonl", help="where the answers go (appended, resumed)")
    parser.add_argument("--question-format", default="auto", choices=("auto", *QUESTION_FORMATS),
                        help="which original script's file and settings (auto: .tsv mmbench, .json scienceqa, "
                        "else llava; captions: caption)")  # fmt: skip
    parser.add_argument("--conv-mode", choices=CONV_MODES, help="system prompt (default: v1, the benchmarks'; a "
                        "demo checkpoint's own)")  # fmt: skip
    parser.add_argument(
        "--question-first",
        action="store_true",
        default=None,
        help="put the question before the image (default: as the checkpoint was trained)",
    )
    parser.add_argument("--num-chunks", type=int, default=1, help="split the questions into this many chunks")
    parser.add_argument("--chunk-idx", type=int, default=0, help="answer this chunk (0-based)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy, as every shipped eval script")
    parser.add_argument("--top-p", type=float, help="nucleus sampling, with --temperature > 0")
    parser.add_argument("--num-beams", type=int, default=1, help="beam search width")
    parser.add_argument("--max-new-tokens", type=int, help="generation limit (default: the format's script: 128 "
                        "llava, 1024 the others)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=1, help="questions per generate call (left-padded; "
                        "greedy answers equal batch 1's)")  # fmt: skip
    parser.add_argument("--mode", choices=ANSWERING_MODES, default="answer", help="how to answer (see docs)")
    parser.add_argument("--sq", action="store_true", help="the original's flag for --mode self-question")
    parser.add_argument("--n-shot", type=int, default=3, help="self-question: questions the model asks first")
    parser.add_argument("--description-prompt", help="self-question / describe: the description request")
    parser.add_argument("--single-pred-prompt", action="store_true", help="ScienceQA / MMBench: ask for the letter")
    parser.add_argument("--all-rounds", action="store_true", help="MMBench: every rotation of the options")
    parser.add_argument("--lang", default="en", choices=("en", "cn"), help="MMBench: the prompt's language")
    parser.add_argument("--load-in-4bit", action="store_true", help="load the weights in 4-bit NF4 (bitsandbytes)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "float16", "bfloat16"))
    parser.add_argument("--seed", type=int, default=0, help="seeds sampling (self-question's questions)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (it shows on a terminal)")
    # The original's checkpoints are a LoRA on a base plus a ViT LoRA; a converted checkpoint has both merged.
    parser.add_argument("--model-base", help=argparse.SUPPRESS)
    parser.add_argument("--lora-pretrain", help=argparse.SUPPRESS)
    parser.set_defaults(func=run)
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    """Mistakes that need no model to spot, caught before loading one."""
    if args.model_base or args.lora_pretrain:
        raise ValueError(
            "--model-base / --lora_pretrain load an original SQ-LLaVA release (LoRA + base + ViT LoRA): convert it "
            "once with `sqllava convert`, then pass the converted folder as --model-path."
        )
    if not os.path.isfile(args.question_file):
        raise FileNotFoundError(f"--question-file {args.question_file}: no such file.")
    if args.image_folder and not os.path.isdir(args.image_folder):
        raise FileNotFoundError(f"--image-folder {args.image_folder}: no such folder.")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size}: must be at least 1.")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens {args.max_new_tokens}: must be at least 1.")
    if args.n_shot < 1:
        raise ValueError(f"--n_shot {args.n_shot}: self-questioning asks at least one question.")
    if args.num_chunks < 1 or not 0 <= args.chunk_idx < args.num_chunks:
        raise ValueError(f"--chunk-idx {args.chunk_idx} of --num-chunks {args.num_chunks}: need 0 <= idx < chunks.")
    if args.temperature < 0:
        raise ValueError(f"--temperature {args.temperature}: must be >= 0 (0 is greedy).")


def answering_config(args: argparse.Namespace, trained: dict):
    """The [`AnsweringConfig`] of the arguments; flags left out take the checkpoint's training setting, if any."""
    from ..evaluation.answering import AnsweringConfig
    from ..evaluation.question_files import QUESTION_FORMATS, detect_question_format

    question_format = args.question_format
    if question_format == "auto":
        question_format = detect_question_format(args.question_file)
    generation = {"num_beams": args.num_beams}
    generation["max_new_tokens"] = args.max_new_tokens or QUESTION_FORMATS[question_format].max_new_tokens
    if args.temperature > 0:  # the original: `do_sample=True if args.temperature > 0 else False`
        generation.update(do_sample=True, temperature=args.temperature)
        if args.top_p is not None:
            generation["top_p"] = args.top_p
    else:
        generation["do_sample"] = False
    system_prompt = {"vicuna_v1": "v1"}.get(args.conv_mode, args.conv_mode)
    mode = "self-question" if args.sq else args.mode
    return AnsweringConfig(
        mode=mode,
        system_prompt=system_prompt or trained.get("system_prompt", "v1"),
        question_first=trained.get("question_first", False) if args.question_first is None else args.question_first,
        generation_kwargs=generation,
        num_questions=args.n_shot,
        description_prompt=args.description_prompt or trained.get("description_prompt"),
    )


def run(args: argparse.Namespace) -> int:
    from ..evaluation.runner import answer_question_file, model_name_from_path
    from .generate import check_model_source, checkpoint_prompt_format, load_model_and_processor

    check_arguments(args)
    check_model_source(args.model_path)
    answering = answering_config(args, checkpoint_prompt_format(args.model_path))
    import torch

    torch.manual_seed(args.seed)
    model, processor = load_model_and_processor(args.model_path, args.device, args.dtype, args.load_in_4bit)
    summary = answer_question_file(
        model, processor, args.question_file, args.answers_file, image_folder=args.image_folder,
        question_format=args.question_format, answering=answering, batch_size=args.batch_size,
        num_chunks=args.num_chunks, chunk_idx=args.chunk_idx, single_pred_prompt=args.single_pred_prompt,
        all_rounds=args.all_rounds, lang=args.lang, model_id=model_name_from_path(args.model_path),
        progress=False if args.no_progress else None,
    )  # fmt: skip
    already = f" ({summary.num_already_answered} already there)" if summary.num_already_answered else ""
    print(
        f"{summary.num_answered} answers written to {args.answers_file}{already} in {summary.seconds:.1f} s "
        f"({summary.questions_per_second:.1f} questions/s, {summary.generated_tokens} tokens generated)"
    )
    return 0
