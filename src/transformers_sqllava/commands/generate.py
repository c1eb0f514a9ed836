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
"""`sqllava generate`: answer a question about an image, or let the model ask (and answer) its own questions.

    sqllava generate --model PATH_OR_HUB_ID --image photo.jpg --prompt "What is unusual about this image?"
    sqllava generate --model PATH_OR_HUB_ID --image photo.jpg --self-question 3 --answer-questions --json

A prompt is answered greedily with the v1 system prompt (the reference's benchmark setting,
docs/original.md#evaluation-and-decoding) and streamed to stdout. `--self-question N` runs the reference demo's flow
(docs/original.md#self-questioning-at-inference, `transformers_sqllava.self_questioning`): a greedy description, then N sampled questions (temperature 1.2, top-k 300,
top-p 0.95), streamed as they are written. `--json` prints one JSON object instead, when everything is done.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from ..self_questioning import (
    DESCRIPTION_PROMPT,
    SelfQuestioningConfig,
    load_image,
    generate_from_conversations,
    self_question,
    stream_self_questioning,
)


DTYPES = {"auto": "auto", "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# The reference (docs/original.md#evaluation-and-decoding) gives answers (benchmarks, the demo's description round) at most
# 1024 new tokens.
DEFAULT_ANSWER_MAX_NEW_TOKENS = 1024


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "generate",
        help="answer a question about an image, or let the model ask its own questions (self-questioning)",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--model", required=True, help="a converted SQ-LLaVA folder or Hub id")
    parser.add_argument("--image", required=True, help="the image file")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--prompt", help="a question or instruction about the image; the answer is streamed")
    mode.add_argument(
        "--self-question", type=int, metavar="N", help="describe the image, then ask N questions about it"
    )
    parser.add_argument(
        "--answer-questions", action="store_true", help="with --self-question: the model answers its own questions"
    )
    parser.add_argument(
        "--description", help="with --self-question: use this description instead of generating one"
    )
    parser.add_argument(
        "--system-prompt",
        choices=["v1", "v1_sq"],
        help="system prompt (default: v1 for --prompt, as the benchmarks; v1_sq for --self-question, as the demo)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        help="cap on new tokens of every round (default: 1024 for answers and descriptions, 300 for questions)",
    )
    parser.add_argument("--seed", type=int, help="random seed, for reproducible sampled questions")
    parser.add_argument(
        "--device", default="auto", help="'cpu', 'cuda', 'cuda:1', ... (default: cuda when available, else cpu)"
    )
    parser.add_argument(
        "--dtype", default="auto", choices=list(DTYPES), help="weights dtype (default: the checkpoint's)"
    )
    parser.add_argument(
        "--load-in-4bit", action="store_true", help="quantize the language model to 4-bit NF4 with bitsandbytes"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of streamed text")
    parser.set_defaults(func=run)
    return parser


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_model_and_processor(
    model_id: str, device: str = "auto", dtype: str = "auto", load_in_4bit: bool = False
) -> tuple:
    """Load an SQ-LLaVA model (optionally 4-bit NF4) and its processor through the Auto classes."""
    from transformers import AutoModelForImageTextToText, AutoProcessor, BitsAndBytesConfig

    import transformers_sqllava  # noqa: F401  (registers model_type "sqllava" with the Auto classes)

    device = resolve_device(device)
    torch_dtype = DTYPES[dtype]
    quantization_config = None
    if load_in_4bit:
        # The model class fills in the skip modules (vision tower, projector, lm_head stay in full precision).
        compute_dtype = torch_dtype
        if compute_dtype == "auto":
            compute_dtype = torch.bfloat16 if device == "cpu" else torch.float16
        quantization_config = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype
        )
    model = AutoModelForImageTextToText.from_pretrained(
        model_id, dtype=torch_dtype, quantization_config=quantization_config, device_map=device
    )
    processor = AutoProcessor.from_pretrained(model_id)
    return model.eval(), processor


def run(args: argparse.Namespace) -> int:
    if args.self_question is not None and args.self_question < 1:
        raise SystemExit("--self-question needs N >= 1 questions.")
    if args.prompt is not None and (args.answer_questions or args.description is not None):
        raise SystemExit("--answer-questions and --description go with --self-question, not --prompt.")
    if args.seed is not None:
        from transformers import set_seed

        set_seed(args.seed)
    model, processor = load_model_and_processor(args.model, args.device, args.dtype, args.load_in_4bit)
    image = load_image(processor, args.image)
    if args.prompt is not None:
        return answer_prompt(model, processor, image, args)
    return run_self_questioning(model, processor, image, args)


def answer_prompt(model, processor, image, args: argparse.Namespace) -> int:
    from transformers import TextStreamer

    content = [{"type": "image", "image": image}, {"type": "text", "text": args.prompt}]
    conversation = [{"role": "user", "content": content}]
    streamer = None if args.json else TextStreamer(processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    (answer,) = generate_from_conversations(
        model,
        processor,
        [conversation],
        generation_role="assistant",
        system_prompt=args.system_prompt or "v1",
        streamer=streamer,
        do_sample=False,
        num_beams=1,
        max_new_tokens=args.max_new_tokens or DEFAULT_ANSWER_MAX_NEW_TOKENS,
    )
    if args.json:
        print(json.dumps({"image": args.image, "prompt": args.prompt, "answer": answer}, ensure_ascii=False))
    return 0


def self_questioning_config(args: argparse.Namespace) -> SelfQuestioningConfig:
    cap = {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
    return SelfQuestioningConfig(
        num_questions=args.self_question,
        answer_questions=args.answer_questions,
        description_prompt=DESCRIPTION_PROMPT,
        system_prompt=args.system_prompt or "v1_sq",
        description_generation_kwargs=dict(cap),
        question_generation_kwargs=dict(cap),
        answer_generation_kwargs=dict(cap),
    )


def run_self_questioning(model, processor, image, args: argparse.Namespace) -> int:
    config = self_questioning_config(args)
    if args.json:
        descriptions = None if args.description is None else [args.description]
        (result,) = self_question(model, processor, image, config, descriptions=descriptions)
        print(json.dumps({"image": args.image, **result.to_dict()}, ensure_ascii=False))
        return 0

    if args.description is not None:
        print(f"Description: {args.description}")
    headers = {"description": "Description:", "question": "Question {n}:", "answer": "Answer {n}:"}
    current = None
    for chunk in stream_self_questioning(model, processor, image, config, description=args.description):
        if (chunk.part, chunk.index) != current:
            if current is not None:
                print()
            current = (chunk.part, chunk.index)
            print(headers[chunk.part].format(n=chunk.index + 1), end=" ")
            text = chunk.text.lstrip()  # the first piece after a header
        else:
            text = chunk.text
        print(text, end="", flush=True)
    print()
    sys.stdout.flush()
    return 0
