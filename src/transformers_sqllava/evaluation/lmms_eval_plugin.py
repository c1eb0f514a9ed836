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
"""SQ-LLaVA as an lmms-eval model: `lmms-eval --model sqllava --model_args pretrained=PATH --tasks pope`.

lmms-eval (0.7) finds external models through the entry-point group `lmms_eval.models`, whose entry points give a
`ModelManifest` or a callable returning one (`lmms_eval.models.registry_v2`): [`model_manifest`] is that callable, and
the manifest names [`SQLlava`], an lmms-eval "simple" model (requests carry a text context and `doc_to_visual`).

[`SQLlava`] answers as the reference's benchmark scripts do (docs/evaluation-lmms-eval.md): the v1 system prompt, the
image before the question, greedy unless a task samples, at most 1024 new tokens. Without lmms-eval installed the
module still imports, on a stand-in base class with the same interface (for tests, and for calling it directly).
"""

from __future__ import annotations

import abc
import copy
import importlib.util
import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image

from ..commands.generate import DEFAULT_ANSWER_MAX_NEW_TOKENS, load_model_and_processor
from ..processing_sqllava import SYSTEM_PROMPTS
from ..self_questioning import generate_from_conversations


logger = logging.getLogger(__name__)

MODEL_NAME = "sqllava"  # the `--model` name; setup.cfg's entry point has the same
# lmms-eval's image placeholder in task prompts. SQ-LLaVA's processor writes its own image slots, so placeholders are
# removed from the text (a typed "<image>" would otherwise be encoded as plain text, not as an image).
IMAGE_PLACEHOLDER = "<image>"
# lmms-eval passes these from its command line (`--max_batch_size`) to every model; SQ-LLaVA does not use them.
IGNORED_MODEL_ARGS = ("max_batch_size",)
# Generation kwargs of lmms-eval task configs that are read here (the rest go to `generate` if listed below).
_GENERATION_KEYS = ("until", "max_new_tokens", "temperature", "do_sample", "top_p", "num_beams")
_PASSED_TO_GENERATE = ("top_k", "repetition_penalty", "length_penalty", "no_repeat_ngram_size", "min_new_tokens")
# `loglikelihood`'s number: lmms-eval's `multiple_choice` takes the argmin, written for models that return their loss.
LOGLIKELIHOOD_OUTPUTS = ("loss", "logprob")

if importlib.util.find_spec("lmms_eval") is not None:
    # Installed: subclass the real base, which lmms-eval's registry checks (`issubclass(cls, lmms)`). An lmms-eval
    # whose own imports fail raises here, rather than handing lmms-eval a class it would refuse.
    from lmms_eval.api.model import lmms as _LmmsBase

    LMMS_EVAL_AVAILABLE = True
else:
    LMMS_EVAL_AVAILABLE = False

    class _CacheHook:
        def add_partial(self, attr, req, res) -> None:
            pass

    class _LmmsBase(abc.ABC):
        """The part of lmms-eval's `lmms_eval.api.model.lmms` (0.7.3) that a model relies on, for when lmms-eval is
        not installed."""

        is_simple: bool = True

        def __init__(self) -> None:
            self._rank, self._world_size = 0, 1
            self.cache_hook = _CacheHook()
            self.task_dict = {}

        @classmethod
        def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
            # lmms-eval's `key=value,key=value` (without its JSON values); the values stay strings, as the model's
            # own conversion expects from any caller.
            args = dict(item.split("=", 1) for item in arg_string.split(",") if item.strip())
            extra = {key: value for key, value in (additional_config or {}).items() if value is not None}
            return cls(**{key.strip(): value.strip() for key, value in args.items()}, **extra)

        @property
        def rank(self) -> int:
            return self._rank

        @property
        def world_size(self) -> int:
            return self._world_size

        @abc.abstractmethod
        def loglikelihood(self, requests) -> list[tuple[float, bool]]: ...

        @abc.abstractmethod
        def generate_until(self, requests) -> list[str]: ...

        @abc.abstractmethod
        def generate_until_multi_round(self, requests) -> list[list[str]]: ...


def model_manifest():
    """The `lmms_eval.models` entry point: lmms-eval calls it and registers `sqllava` as a simple model.

    The entry point names this function, not [`SQLlava`]: lmms-eval calls a callable payload, and calling the class
    would build a model without `pretrained` (a `TypeError` that makes lmms-eval skip every plugin's entry point)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_NAME, simple_class_path=f"{__name__}.{SQLlava.__name__}")


def as_bool(value: Any, name: str) -> bool:
    """A model arg as a bool: lmms-eval's `key=value` strings (`True`, `false`, `1`, ...) or a bool."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"model_args {name}={value!r}: expected True or False.")


def as_positive_int(value: Any, name: str) -> int:
    """A model arg as an int >= 1: `8`, `"8"` (lmms-eval's `--batch_size` is a string) or `8.0`."""
    try:
        number = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or not number.is_integer() or number < 1:
        auto = str(value).startswith("auto")
        hint = " (lmms-eval's `auto` batch size is not supported: give a number)" if auto else ""
        raise ValueError(f"model_args {name}={value!r}: expected a whole number >= 1{hint}.")
    return int(number)


def continuation_start(prompt_ids: Sequence[int], full_ids: Sequence[int]) -> int:
    """Where the assistant reply starts in the ids of prompt + reply; a `ValueError` if the prompt is not a prefix."""
    prompt_ids, full_ids = list(prompt_ids), list(full_ids)
    end = len(prompt_ids)
    if len(full_ids) <= end or full_ids[:end] != prompt_ids:
        raise ValueError(
            "loglikelihood: the tokenised prompt is not a prefix of the tokenised prompt + continuation (the "
            "tokenizer merged the end of `ASSISTANT:` with the reply), so the reply's log-probability is not defined "
            f"on these ids. The prompt ends {prompt_ids[-8:]}; prompt + reply has {full_ids[end - 8 : end + 4]} there."
        )
    return end


def cut_at_stop_strings(text: str, until: Sequence[str]) -> str:
    """The text before the first of the stop strings (lmms-eval's `until`) that occurs in it."""
    positions = [text.find(stop) for stop in until if stop and stop in text]
    return text[: min(positions)] if positions else text


def _flatten(visuals: Any) -> list:
    if visuals is None:
        return []
    if not isinstance(visuals, (list, tuple)):
        return [visuals]
    return [item for visual in visuals for item in _flatten(visual)]


def _images(visuals: Any, task: str) -> list[Image.Image]:
    """A request's visuals (`doc_to_visual`'s list, nested or `None`) as a flat list of PIL images."""
    images = _flatten(visuals)
    for image in images:
        if not isinstance(image, Image.Image):
            raise TypeError(
                f"Task {task!r} gave SQ-LLaVA a {type(image).__name__} ({image!r:.60}) as a visual: it reads images "
                "(PIL), not videos or audio."
            )
    return images


class SQLlava(_LmmsBase):
    r"""
    SQ-LLaVA for lmms-eval: `generate_until`, `loglikelihood` and `generate_until_multi_round` requests of image (and
    text-only) tasks. lmms-eval builds it from `--model_args` (`key=value` strings, converted here).

    Args:
        pretrained (`str`):
            A converted SQ-LLaVA folder (read with `local_files_only`) or a Hub id.
        device (`str`, *optional*, defaults to `"auto"`):
            `"cpu"`, `"cuda"`, `"cuda:1"`, ...; `"auto"`: cuda when available. Under `accelerate launch` with several
            processes, `"auto"` and `"cuda"` mean each process's own GPU (`LOCAL_RANK`).
        dtype (`str`, *optional*, defaults to `"auto"`):
            `"auto"` (the checkpoint's), `"float32"`, `"float16"` or `"bfloat16"`.
        batch_size (`int` or `str`, *optional*, defaults to 1):
            Requests per forward pass; requests are batched only with others of the same generation kwargs.
        load_in_4bit (`bool` or `str`, *optional*, defaults to `False`):
            Quantize the language model to 4-bit NF4 (bitsandbytes).
        system_prompt (`str`, *optional*, defaults to `"v1"`):
            `"v1"` (the reference's benchmark setting), `"v1_sq"`, or the text of a system message.
        conv_mode (`str`, *optional*):
            The reference scripts' name for `system_prompt` (`--conv-mode v1`); give one of the two.
        max_new_tokens (`int` or `str`, *optional*, defaults to 1024):
            New tokens when a task does not say (the reference's benchmark cap).
        loglikelihood_output (`str`, *optional*, defaults to `"loss"`):
            What `loglikelihood` reports first: `"loss"`, the mean negative log-probability of the reply's tokens
            (lower is better), which lmms-eval's own LLaVA models return and its `multiple_choice` tasks expect (they
            pick the choice of least value); or `"logprob"`, the reply's summed log-probability, as lmms-eval's
            interface docstring (and lm-evaluation-harness) define it.
    """

    is_simple = True  # lmms-eval "simple" model: text contexts + doc_to_visual, not chat messages

    def __init__(
        self,
        pretrained: str,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int | str = 1,
        load_in_4bit: bool | str = False,
        system_prompt: str = "v1",
        conv_mode: str | None = None,
        max_new_tokens: int | str = DEFAULT_ANSWER_MAX_NEW_TOKENS,
        loglikelihood_output: str = "loss",
        **kwargs,
    ) -> None:
        super().__init__()
        unknown = sorted(key for key in kwargs if key not in IGNORED_MODEL_ARGS)
        if unknown:  # a misspelt model arg would otherwise change nothing, silently
            raise TypeError(
                f"SQLlava got unknown model_args {unknown}: it takes pretrained, device, dtype, batch_size, "
                "load_in_4bit, system_prompt (or conv_mode), max_new_tokens and loglikelihood_output."
            )
        if loglikelihood_output not in LOGLIKELIHOOD_OUTPUTS:
            raise ValueError(f"model_args loglikelihood_output={loglikelihood_output!r}: 'loss' or 'logprob'.")
        self.loglikelihood_output = loglikelihood_output
        if conv_mode is not None and system_prompt not in ("v1", conv_mode):
            raise ValueError(f"model_args conv_mode={conv_mode!r} and system_prompt={system_prompt!r}: give one.")
        self.system_prompt = str(conv_mode if conv_mode is not None else system_prompt)
        if not self.system_prompt.strip():
            raise ValueError("model_args system_prompt is empty: give 'v1', 'v1_sq' or a system message's text.")
        self.batch_size_per_gpu = as_positive_int(batch_size, "batch_size")
        self.max_new_tokens = as_positive_int(max_new_tokens, "max_new_tokens")
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size > 1 and device in ("auto", "cuda"):
            # Data parallel (`accelerate launch`): lmms-eval splits the requests by rank and sets rank/world_size.
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
            self._rank, self._world_size = int(os.environ.get("RANK", "0")), world_size
        self.pretrained = str(pretrained)
        self._model, self._processor = load_model_and_processor(
            self.pretrained, device=str(device), dtype=str(dtype), load_in_4bit=as_bool(load_in_4bit, "load_in_4bit")
        )

    @property
    def model(self):
        return self._model

    @property
    def processor(self):
        return self._processor

    @property
    def tokenizer(self):
        return self._processor.tokenizer

    @property
    def device(self) -> torch.device:
        return self._model.device

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    # --- Requests' pieces --------------------------------------------------------------------------------------------

    def _visuals(self, doc_to_visual: Callable | None, doc_id, task: str, split: str) -> list[Image.Image]:
        if doc_to_visual is None:
            return []
        return _images(doc_to_visual(self.task_dict[task][split][doc_id]), task)

    def _conversation(self, context: str, images: Sequence[Image.Image], reply: str | None = None) -> list[dict]:
        # All images before the text, as the reference's benchmark scripts (`<image>\n` + question); the images are
        # the request's, in order, wherever the task's placeholders stood.
        content = [{"type": "image", "image": image} for image in images]
        content.append({"type": "text", "text": context.replace(IMAGE_PLACEHOLDER, "").strip()})
        conversation = [{"role": "user", "content": content}]
        if reply is not None:
            conversation.append({"role": "assistant", "content": reply})
        return conversation

    def _generation_kwargs(self, gen_kwargs: dict) -> tuple[list[str], dict]:
        """lmms-eval's task generation kwargs as `until` and `generate` kwargs: greedy unless the temperature is > 0
        (the reference's `do_sample = temperature > 0`) and the task does not say `do_sample: false`."""
        gen_kwargs = dict(gen_kwargs or {})
        until = gen_kwargs.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        temperature, do_sample = gen_kwargs.get("temperature"), gen_kwargs.get("do_sample")
        do_sample = None if do_sample is None else as_bool(do_sample, "do_sample")
        if temperature is None:
            sample = bool(do_sample)
        else:
            sample = float(temperature) > 0 and do_sample is not False
        kwargs = {
            "do_sample": sample,
            "num_beams": int(gen_kwargs.get("num_beams") or 1),
            "max_new_tokens": int(gen_kwargs.get("max_new_tokens") or self.max_new_tokens),
        }
        if sample:
            if temperature is not None:
                kwargs["temperature"] = float(temperature)
            if gen_kwargs.get("top_p"):  # lmms-eval configs write `top_p: 0` or `None` for "unset"
                kwargs["top_p"] = float(gen_kwargs["top_p"])
        kwargs.update({key: gen_kwargs[key] for key in _PASSED_TO_GENERATE if gen_kwargs.get(key) is not None})
        ignored = sorted(set(gen_kwargs) - set(_GENERATION_KEYS) - set(_PASSED_TO_GENERATE))
        if ignored:  # e.g. LLaVA's `image_aspect_ratio`: SQ-LLaVA always pads images to a square
            logger.warning("SQ-LLaVA ignores the generation kwargs %s of this task.", ignored)
        return until, kwargs

    def _generate(self, contexts: Sequence[str], images: Sequence[list], gen_kwargs: dict) -> list[str]:
        until, kwargs = self._generation_kwargs(gen_kwargs)
        conversations = [self._conversation(context, visuals) for context, visuals in zip(contexts, images)]
        texts = generate_from_conversations(
            self._model, self._processor, conversations, "assistant", self.system_prompt, **kwargs
        )
        return [cut_at_stop_strings(text, until) for text in texts]

    # --- lmms-eval's interface ---------------------------------------------------------------------------------------

    def generate_until(self, requests) -> list[str]:
        """One answer per request, in the requests' order. Requests of equal generation kwargs are batched, longest
        context first (as lmms-eval's models do: an out-of-memory error shows in the first batch)."""
        from tqdm.auto import tqdm

        args = [request.args for request in requests]
        groups: dict[str, list[int]] = {}
        for index, (_, gen_kwargs, *_) in enumerate(args):
            groups.setdefault(json.dumps(gen_kwargs, sort_keys=True, default=repr), []).append(index)
        lengths = [len(self.tokenizer.encode(arg[0], add_special_tokens=False)) for arg in args]
        results: list[str | None] = [None] * len(args)
        bar = tqdm(total=len(args), disable=self.rank != 0, desc="SQ-LLaVA generate_until")
        for indices in groups.values():
            indices = sorted(indices, key=lambda index: -lengths[index])
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start : start + self.batch_size]
                images = [self._visuals(*args[index][2:6]) for index in batch]
                gen_kwargs = copy.deepcopy(args[batch[0]][1])
                texts = self._generate([args[index][0] for index in batch], images, gen_kwargs)
                for index, text in zip(batch, texts):
                    results[index] = text
                    self.cache_hook.add_partial("generate_until", (args[index][0], args[index][1]), text)
                bar.update(len(batch))
        bar.close()
        return results

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        """Per request `(loss, is_greedy)`, or `(log P(continuation | context), is_greedy)` with
        `loglikelihood_output="logprob"`, from one forward pass over prompt + reply.

        The continuation is the assistant's reply: its tokens are those the chat template adds for the assistant turn,
        the closing `</s>` included (the answer is this text and nothing more), so `is_greedy` means greedy decoding
        writes exactly this reply. Leading whitespace is dropped (lmms-eval's choices start with a `" "` delimiter;
        the template writes the space after `ASSISTANT:`).
        """
        from tqdm.auto import tqdm

        results = []
        for request in tqdm(requests, disable=self.rank != 0, desc="SQ-LLaVA loglikelihood"):
            # (context, doc_to_target, doc_to_visual, doc_id, task, split); `acc_mutual_info` sends (context, choice).
            context, target, *where = request.args
            images = self._visuals(*where) if where else []
            if callable(target):
                target = target(self.task_dict[where[2]][where[3]][where[1]])
            results.append(self._loglikelihood(context, images, str(target).lstrip()))
            self.cache_hook.add_partial("loglikelihood", (context, target), results[-1])
        return results

    def _loglikelihood(self, context: str, images: list, reply: str) -> tuple[float, bool]:
        conversation, options = self._conversation(context, images, reply), {"system_prompt": self.system_prompt}
        if self.system_prompt not in SYSTEM_PROMPTS:  # a system message of its own, as `generate_from_conversations`
            conversation, options = [{"role": "system", "content": self.system_prompt}, *conversation], {}
        options.update(tokenize=True, return_dict=True, return_tensors="pt")
        prompt = self._processor.apply_chat_template(conversation[:-1], add_generation_prompt=True, **options)
        full = self._processor.apply_chat_template(conversation, **options)
        start = continuation_start(prompt["input_ids"][0].tolist(), full["input_ids"][0].tolist())
        full = full.to(self.device)
        if "pixel_values" in full:
            full["pixel_values"] = full["pixel_values"].to(self._model.dtype)
        with torch.inference_mode():
            logits = self._model(**full).logits[0, start - 1 : -1].float()  # position t predicts token t + 1
        targets = full["input_ids"][0, start:]
        log_probs = torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None])[:, 0]
        value = log_probs.sum() if self.loglikelihood_output == "logprob" else -log_probs.mean()
        return float(value), bool(torch.equal(logits.argmax(dim=-1), targets))

    def generate_until_multi_round(self, requests) -> list[list[str]]:
        """lmms-eval's multi-round protocol (its `mmsearch` and `ovobench` tasks): round 0 answers the request's
        context; for round k >= 1 the task's `doc_to_text(doc, previous_output=answers, round_idx=k,
        previous_round_info=info)` returns `(visuals, context, done, answers, info)`, and when `done` its `answers`
        are the request's result. Each round is a fresh single-turn prompt (the task writes any history into the
        context), as in lmms-eval's own models; requests run one at a time, their rounds being sequential."""
        from tqdm.auto import tqdm

        results = []
        for request in tqdm(requests, disable=self.rank != 0, desc="SQ-LLaVA generate_until_multi_round"):
            context, gen_kwargs, doc_to_visual, doc_to_text, doc_id, task, split = request.args
            doc = self.task_dict[task][split][doc_id]
            images = self._visuals(doc_to_visual, doc_id, task, split)
            answers, info, round_index = [], None, 0
            while True:
                if round_index > 0:
                    visuals, context, done, answers, info = doc_to_text(
                        doc, previous_output=answers, round_idx=round_index, previous_round_info=info
                    )
                    answers = list(answers or [])
                    if done:
                        break
                    images = _images(visuals, task)
                answers.append(self._generate([context], [images], copy.deepcopy(gen_kwargs))[0])
                round_index += 1
            results.append(answers)
        return results


__all__ = ["LMMS_EVAL_AVAILABLE", "LOGLIKELIHOOD_OUTPUTS", "MODEL_NAME", "SQLlava", "model_manifest"]
