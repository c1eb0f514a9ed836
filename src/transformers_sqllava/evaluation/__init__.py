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
"""Evaluation of SQ-LLaVA on the benchmarks of the paper: scoring a model's answer files as the original scripts do
(`scoring`, `sqllava eval score`; docs/evaluation.md)."""

from .scoring import SCORERS, main, score


__all__ = ["SCORERS", "main", "score"]
