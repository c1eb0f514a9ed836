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
"""Scorers of the benchmarks SQ-LLaVA reports, one module per family, each reproducing the original script's numbers
on the same files (docs/evaluation.md). `registry.SCORERS` maps a benchmark name to its scorer and command-line
arguments; `registry.main` is `sqllava eval score`."""

from .caption import score_caption
from .judged import score_llava_bench, score_mmvet
from .judges import OpenAIChatJudge, load_judge
from .mme import score_mme
from .multiple_choice import score_mmbench, score_seed
from .pope import score_pope
from .registry import SCORERS, Scorer, main, score
from .scienceqa import score_scienceqa
from .vqa import score_gqa, score_textvqa, score_vizwiz, score_vqav2


__all__ = [
    "SCORERS",
    "OpenAIChatJudge",
    "Scorer",
    "load_judge",
    "main",
    "score",
    "score_caption",
    "score_gqa",
    "score_llava_bench",
    "score_mmbench",
    "score_mme",
    "score_mmvet",
    "score_pope",
    "score_scienceqa",
    "score_seed",
    "score_textvqa",
    "score_vizwiz",
    "score_vqav2",
]
