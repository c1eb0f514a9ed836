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

    sqllava generate --model demo --image sqllava-demo-output/scene-1000003.png --prompt "How many circles are there?"
    sqllava generate --model PATH_OR_HUB_ID --image photo.jpg --prompt "What is unusual about this image?"
    sqllava generate --model PATH_OR_HUB_ID --image photo.jpg --self-question 3 --answer-questions --json

A prompt is answered greedily and streamed to stdout. `--self-question N` runs the reference demo's flow
(docs/original.md#self-questioning-at-inference, `transformers_sqllava.self_questioning`): a greedy description, then
N sampled questions (temperature 1.2, top-k 300, top-p 0.95), streamed as they are written. `--json` prints one JSON
object instead, when everything is done.

The prompt format follows the checkpoint. A converted SQ-LLaVA gets the reference's: the v1 system prompt for
answers (the benchmarks' setting, docs/original.md#evaluation-and-decoding), v1_sq for self-questioning, the image
before the question. A demo checkpoint (`--model demo` is the one shipped with the package) gets what it was
trained with, read from its training record: its own system prompt ("A chat about the image.") and the question
before the image. `--system-prompt` and `--question-first` / `--no-question-first` override either.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# Only the standard library at import time: `sqllava generate --help` must not pay for torch and transformers.


DEMO_MODEL = "demo"  # `--model demo`: the checkpoint shipped with the package (what `sqllava demo` runs)
DTYPES = ("auto", "float32", "float16", "bfloat16")
# The reference (docs/original.md#evaluation-and-decoding) gives answers (benchmarks, the demo's description round)
# at most 1024 new tokens.
DEFAULT_ANSWER_MAX_NEW_TOKENS = 1024


def add_parser(subparsers: argparse._SubParsersAction, help: str | None = None) -> argparse.ArgumentParser:
    from ..cli import HelpFormatter

    parser = subparsers.add_parser(
        "generate",
        help=help,
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--model",
        required=True,
        help=f"a converted SQ-LLaVA folder or Hub id; '{DEMO_MODEL}' is the tiny checkpoint shipped with the package "
        f"(a local folder named '{DEMO_MODEL}' takes precedence, as for Hub ids)",
    )
    parser.add_argument("--image", required=True, help="the image file")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--prompt", help="a question or instruction about the image; the answer is streamed")
    mode.add_argument(
        "--self-question", type=int, metavar="N", help="describe the image, then ask N questions about it"
    )
    parser.add_argument(
        "--answer-questions", action="store_true", help="with --self-question: the model answers its own questions"
    )
    parser.add_argument("--description", help="with --self-question: use this description instead of generating one")
    parser.add_argument(
        "--description-prompt",
        help="with --self-question: the user turn that asks for the description (default: the reference's 'Can you "
        "describe the image in detail?'; a demo checkpoint's 'Describe the image.')",
    )
    parser.add_argument(
        "--system-prompt",
        help="'v1' (the reference's, for answers), 'v1_sq' (with the virtual-user instructions, for self-questioning) "
        "or any other text, used as the system message itself (default: a demo checkpoint's training prompt, else "
        "v1 for --prompt and v1_sq for --self-question)",
    )
    parser.add_argument(
        "--question-first",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --prompt: put the question before the image (`USER: Q\\n<image>`), as the demo model was trained; "
        "--no-question-first: the image first, as the reference (default: a demo checkpoint's training order, else "
        "the image first)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        help="cap on new tokens of every round (default: 1024 for answers and descriptions, 300 for questions)",
    )
    parser.add_argument("--seed", type=int, help="random seed, for reproducible sampled questions")
    parser.add_argument(
        "--device", default="auto", help="'cpu', 'cuda', 'cuda:1', ...; 'auto': cuda when available, else cpu"
    )
    parser.add_argument("--dtype", default="auto", choices=DTYPES, help="weights dtype; 'auto': the checkpoint's")
    parser.add_argument(
        "--load-in-4bit", action="store_true", help="quantize the language model to 4-bit NF4 with bitsandbytes"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of streamed text")
    parser.set_defaults(func=run)
    return parser


def resolve_model(model: str) -> str:
    """`demo` is the shipped demo checkpoint, unless there is a local folder of that name."""
    if model == DEMO_MODEL and not os.path.isdir(model):
        from ..demo.record import DEFAULT_CHECKPOINT

        return str(DEFAULT_CHECKPOINT)
    return model


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_model_and_processor(
    model_id: str, device: str = "auto", dtype: str = "auto", load_in_4bit: bool = False
) -> tuple:
    """Load an SQ-LLaVA model (optionally 4-bit NF4) and its processor through the Auto classes."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor, BitsAndBytesConfig

    import transformers_sqllava  # noqa: F401  (registers model_type "sqllava" with the Auto classes)

    from ._logging import quiet_bitsandbytes_cpu_kernel_notice

    model_id = resolve_model(model_id)
    device = resolve_device(device)
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    quantization_config = None
    if load_in_4bit:
        # The model class fills in the skip modules (vision tower, projector, lm_head stay in full precision).
        compute_dtype = torch_dtype
        if compute_dtype == "auto":
            compute_dtype = torch.bfloat16 if device == "cpu" else torch.float16
        quantization_config = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype
        )
    # A local folder is read as it is: a file missing there is an error, not a download from a Hub repo that happens
    # to have the folder's name.
    local_files_only = os.path.isdir(model_id)
    try:
        # A 4-bit load imports bitsandbytes, whose CPU-kernel notice does not apply to SQ-LLaVA (see `_logging`).
        with quiet_bitsandbytes_cpu_kernel_notice():
            model = AutoModelForImageTextToText.from_pretrained(
                model_id, dtype=torch_dtype, quantization_config=quantization_config, device_map=device,
                local_files_only=local_files_only,
            )  # fmt: skip
        processor = AutoProcessor.from_pretrained(model_id, local_files_only=local_files_only)
    except (OSError, ValueError) as error:
        if local_files_only:  # transformers' message need not name the folder (a tokenizer it cannot build)
            wrapper = OSError if isinstance(error, OSError) else ValueError
            raise wrapper(f"--model {model_id}: cannot load the checkpoint in this folder: {error}") from error
        hub_error = describe_hub_error(error)
        if hub_error is None:
            raise
        raise FileNotFoundError(f"--model {model_id}: no such folder, and {hub_error}") from error
    return model.eval(), processor


def _find_in_chain(error: BaseException, types: tuple[type[BaseException], ...]) -> BaseException | None:
    """The first exception of `types` among `error` and what caused it (transformers re-raises huggingface_hub's
    errors as an `OSError` with its own wording; the original, which says what happened, is its `__cause__`)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, types):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def describe_hub_error(error: BaseException) -> str | None:
    """What went wrong looking a model id up on the Hub, in words that say what to do; `None` when `error` is not
    about finding the model (a damaged file, a bad config: their own message says it)."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    found = _find_in_chain(
        error,
        (HFValidationError, GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError, OfflineModeIsEnabled,
         LocalEntryNotFoundError, EntryNotFoundError),
    )  # fmt: skip
    if found is None:
        return None
    if isinstance(found, HFValidationError):
        return f"not a Hub id ({found})."
    if isinstance(found, GatedRepoError):  # before RepositoryNotFoundError, its base class
        return "the Hub repository is gated: request access on its page, then log in (`hf auth login`)."
    if isinstance(found, RepositoryNotFoundError):
        return "no Hub repository of that id (a private one needs a login: `hf auth login`)."
    if isinstance(found, RevisionNotFoundError):
        return "the Hub repository has no such revision."
    if isinstance(found, (OfflineModeIsEnabled, LocalEntryNotFoundError)):
        # huggingface_hub reads HF_HUB_OFFLINE at import; the variable is read too, as the conversion does.
        if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
            return "not in the Hub cache; offline mode (HF_HUB_OFFLINE) forbids downloading it."
        return "not in the Hub cache; the Hub could not be reached to download it (no connection?)."
    # EntryNotFoundError (a Hub repo without the file): transformers' message names the file.
    from ..cli import one_line

    return f"the Hub repository lacks a file the model needs ({one_line(str(error))})."


def checkpoint_prompt_format(model_id: str) -> dict:
    """What the checkpoint was trained with, for a demo checkpoint (its `demo_training.json`): `system_prompt`,
    `question_first` and `description_prompt`. Empty for any other checkpoint (the reference's format applies)."""
    from ..demo.record import TRAINING_RECORD

    record_path = Path(resolve_model(model_id)) / TRAINING_RECORD
    if not record_path.is_file():
        return {}
    from ..demo.record import load_training_record
    from ..demo.run import DEFAULT_SYSTEM_PROMPT
    from ..demo.scenes import DESCRIBE_QUESTION

    training = load_training_record(record_path.parent)["training_config"]
    return {
        "system_prompt": training.get("system_prompt", DEFAULT_SYSTEM_PROMPT),
        "question_first": training.get("question_before_image", False),
        "description_prompt": DESCRIBE_QUESTION,  # the wording the demo model was trained on
    }


def check_arguments(args: argparse.Namespace) -> None:
    """Mistakes that need no model to spot, caught before loading one (`sqllava` prints each in one line)."""
    if args.self_question is not None and args.self_question < 1:
        raise ValueError("--self-question needs N >= 1 questions.")
    if args.prompt is not None and (args.answer_questions or args.description or args.description_prompt):
        raise ValueError(
            "--answer-questions, --description and --description-prompt go with --self-question, not --prompt."
        )
    if args.self_question is not None and args.question_first:
        raise ValueError("--question-first goes with --prompt: self-questioning puts the image first, as in training.")
    if args.system_prompt is not None and not args.system_prompt.strip():
        raise ValueError("--system-prompt is empty: pass 'v1', 'v1_sq' or the text of a system message.")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens {args.max_new_tokens}: must be at least 1.")
    check_image_file(args.image)
    check_model_source(args.model)


def check_image_file(path: str) -> None:
    """`--image` names an image file: not missing, not a folder, not empty. Whether it decodes is [`read_image`]'s."""
    if os.path.isdir(path):
        raise ValueError(f"--image {path}: a folder, not an image file.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--image {path}: no such file (working directory {os.getcwd()}).")
    if os.path.getsize(path) == 0:
        raise ValueError(f"--image {path}: the file is empty (0 bytes).")


def check_model_source(model: str) -> None:
    """`--model` is a checkpoint folder or could be a Hub id. A path that does not exist is named as such: loading it
    would reach transformers as a Hub id and fail with "Repo id must be in the form 'repo_name' or
    'namespace/repo_name'", which says nothing about the folder."""
    path = resolve_model(model)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise FileNotFoundError(
                f"--model {model}: no config.json in this folder, so it is not a transformers checkpoint (an original "
                "SQ-LLaVA checkpoint is converted with `sqllava convert`)."
            )
        return
    if os.path.exists(path):
        raise ValueError(f"--model {model}: a file; pass the checkpoint's folder, or a Hub id.")
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(path)
    except HFValidationError:
        raise FileNotFoundError(
            f"--model {model}: no such folder, and not a Hub id (a Hub id is `name` or `owner/name`; working "
            f"directory {os.getcwd()})."
        ) from None


def read_image(path: str):
    """`--image`, decoded now, before the model is loaded: a file that is not an image fails in a second, not after a
    large checkpoint has loaded. The same RGB image the processor's own loader gives (`load_image`)."""
    from ..image_processing_sqllava import open_image_file, to_rgb_image

    try:
        return to_rgb_image(open_image_file(path))
    except ValueError as error:
        cause = error.__cause__ or error
        raise ValueError(
            f"--image {path}: not an image that can be read, or a corrupt or truncated one ({type(cause).__name__}: "
            f"{cause})."
        ) from error


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    # Resolved before loading: every flag the user left out takes the checkpoint's training setting, if it has one.
    trained = checkpoint_prompt_format(args.model)
    if args.system_prompt is None:
        args.system_prompt = trained.get("system_prompt", "v1" if args.prompt is not None else "v1_sq")
    if args.question_first is None:
        args.question_first = trained.get("question_first", False) and args.prompt is not None
    if args.description_prompt is None and args.self_question is not None:
        from ..self_questioning import DESCRIPTION_PROMPT

        args.description_prompt = trained.get("description_prompt", DESCRIPTION_PROMPT)
    if args.seed is not None:
        import torch

        # Not `transformers.set_seed`: it lives in `transformers.trainer_utils`, which imports peft and bitsandbytes.
        # Generation draws from torch's generators only, and this seeds all of them (every device).
        torch.manual_seed(args.seed)
    image = read_image(args.image)
    model, processor = load_model_and_processor(args.model, args.device, args.dtype, args.load_in_4bit)
    if args.prompt is not None:
        return answer_prompt(model, processor, image, args)
    return run_self_questioning(model, processor, image, args)


def answer_prompt(model, processor, image, args: argparse.Namespace) -> int:
    from ..self_questioning import WholeByteRunStreamer, generate_from_conversations

    content = [{"type": "image", "image": image}, {"type": "text", "text": args.prompt}]
    if args.question_first:
        content.reverse()
    conversation = [{"role": "user", "content": content}]
    # Printed as it decodes; byte-fallback pieces wait for their run, so the printed text is the final one.
    streamer = None if args.json else WholeByteRunStreamer(processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    (answer,) = generate_from_conversations(
        model,
        processor,
        [conversation],
        generation_role="assistant",
        system_prompt=args.system_prompt,
        streamer=streamer,
        images_first=not args.question_first,  # otherwise the content blocks' order
        do_sample=False,
        num_beams=1,
        max_new_tokens=args.max_new_tokens or DEFAULT_ANSWER_MAX_NEW_TOKENS,
    )
    if args.json:
        print(json.dumps({"image": args.image, "prompt": args.prompt, "answer": answer}, ensure_ascii=False))
    return 0


def self_questioning_config(args: argparse.Namespace):
    from ..self_questioning import SelfQuestioningConfig

    cap = {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
    return SelfQuestioningConfig(
        num_questions=args.self_question,
        answer_questions=args.answer_questions,
        description_prompt=args.description_prompt,
        system_prompt=args.system_prompt,
        description_generation_kwargs=dict(cap),
        question_generation_kwargs=dict(cap),
        answer_generation_kwargs=dict(cap),
    )


def run_self_questioning(model, processor, image, args: argparse.Namespace) -> int:
    from ..self_questioning import self_question, stream_self_questioning

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
