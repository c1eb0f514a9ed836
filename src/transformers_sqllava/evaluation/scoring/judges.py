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
"""Judges for the GPT-reviewed benchmarks (LLaVA-Bench, MM-Vet).

A judge is any callable `judge(messages, *, temperature, max_tokens) -> str` taking OpenAI-style chat messages
(`[{"role": "system" | "user", "content": str}]`) and returning the reply's text; a `model` attribute, when present,
is recorded in MM-Vet's grade file. [`OpenAIChatJudge`] calls an OpenAI-compatible `/chat/completions` endpoint with
the standard library (`OPENAI_API_KEY`, and `OPENAI_BASE_URL` for another server); [`load_judge`] turns a command
line's `--judge` into one (`openai`, or `package.module:function` for any Python function).
"""

from __future__ import annotations

import importlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable


Judge = Callable[..., str]
DEFAULT_BASE_URL = "https://api.openai.com/v1"
_RETRIED_STATUSES = {408, 409, 429, 500, 502, 503, 504}


class OpenAIChatJudge:
    r"""
    A judge backed by an OpenAI-compatible chat completions endpoint.

    Args:
        model (`str`): The judge model (`gpt-4-0314` in LLaVA-Bench's original, `gpt-4-0613` in MM-Vet's; OpenAI has
            retired some of these: pass the one your endpoint serves).
        api_key (`str`, *optional*): Defaults to the `OPENAI_API_KEY` environment variable.
        base_url (`str`, *optional*): Defaults to `OPENAI_BASE_URL`, else `https://api.openai.com/v1`.
        timeout (`float`, *optional*, defaults to 120): Seconds per request.
        max_retries (`int`, *optional*, defaults to 8): Retries of rate-limited, failed or unreachable requests,
            with exponential waits (the originals retry forever).
        retry_wait (`float`, *optional*, defaults to 2): The first wait, in seconds.
    """

    def __init__(
        self,
        model: str,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 8,
        retry_wait: float = 2.0,
    ):
        self.model = model
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not self.api_key:
            raise ValueError(
                "The OpenAI judge needs an API key: set OPENAI_API_KEY (and OPENAI_BASE_URL for an OpenAI-compatible "
                "server), or pass --judge package.module:function to judge with your own function."
            )
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.timeout, self.max_retries, self.retry_wait = timeout, max_retries, retry_wait

    def __call__(self, messages: list[dict[str, str]], *, temperature: float = 0.0, max_tokens: int = 1024) -> str:
        payload = {"model": self.model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens}
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions",
            data=json.dumps(payload).encode(),
            headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"},
            method="POST",
        )
        for attempt in range(self.max_retries + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    body = json.loads(response.read().decode())
                return body["choices"][0]["message"]["content"] or ""
            except urllib.error.HTTPError as error:
                if error.code not in _RETRIED_STATUSES or attempt == self.max_retries:
                    detail = error.read().decode(errors="replace")[:300]
                    raise RuntimeError(f"The judge endpoint answered HTTP {error.code}: {detail}") from None
            except (urllib.error.URLError, TimeoutError) as error:
                if attempt == self.max_retries:
                    raise RuntimeError(f"The judge endpoint {self.base_url} is unreachable: {error}") from None
            time.sleep(self.retry_wait * 2**attempt)
        raise AssertionError("unreachable")


def load_judge(spec: str | Callable | None, model: str) -> Judge:
    r"""
    A judge from a command line's `--judge`.

    Args:
        spec (`str`, callable or `None`): `None` or `"openai"`: an [`OpenAIChatJudge`] for `model`;
            `"package.module:function"`: that function, called as `function(messages, temperature=...,
            max_tokens=...)`; a callable: itself.
        model (`str`): The model an OpenAI judge asks for.
    """
    if callable(spec):
        return spec
    if spec in (None, "", "openai"):
        return OpenAIChatJudge(model)
    module_name, _, attribute = spec.partition(":")
    if not attribute:
        raise ValueError(f"--judge {spec!r}: use 'openai' or 'package.module:function'.")
    judge = getattr(importlib.import_module(module_name), attribute, None)
    if not callable(judge):
        raise ValueError(f"--judge {spec!r}: {module_name} has no callable {attribute!r}.")
    return judge
