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
"""Self-training from unlabeled images (docs/self_training.md): STIC's preference data and description-infused
fine-tuning, and preference pairs over SQ-LLaVA's own questions."""

from .corruption import corrupt_image
from .description_infusion import describe_images, infuse_descriptions, infuse_llava_json
from .preferences import (
    PREFERENCE_KINDS,
    PreferenceBuildConfig,
    PreferenceBuildSummary,
    build_preferences,
    load_preference_dataset,
)
from .prompts import DEMO_PROMPTS, STIC_PROMPTS, PromptSet

__all__ = [
    "DEMO_PROMPTS",
    "PREFERENCE_KINDS",
    "STIC_PROMPTS",
    "PreferenceBuildConfig",
    "PreferenceBuildSummary",
    "PromptSet",
    "build_preferences",
    "corrupt_image",
    "describe_images",
    "infuse_descriptions",
    "infuse_llava_json",
    "load_preference_dataset",
]
