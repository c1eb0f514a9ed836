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
"""The prompts of STIC's self-made preference data (yihedeng9/STIC `stic/generate_pref.py`), and the demo world's.

STIC asks the model three kinds of thing about an unlabeled image:

- the *preferred* request ([`STIC_DETAILED_DESCRIPTION_PROMPT`], L173-179): a step-by-step description;
- a *plain* request ([`STIC_DESCRIPTION_PROMPTS`], L164-171): the prompt the pair is stored under, and the
  dis-preferred answer's prompt when the image is corrupted;
- a *hallucination-inducing* request ([`STIC_HALLUCINATION_PROMPTS`], L181-188): the dis-preferred answer's prompt on
  the clean image.

A [`PromptSet`] holds one of each kind. [`STIC_PROMPTS`] is STIC's; [`DEMO_PROMPTS`] is the demo world's, whose tiny
model knows one description request ("Describe the image.") and no other English: its preferred and plain prompts
are that request, and its misleading prompts are STIC's (the model has never seen them, as a real model has never
been asked to invent objects: what it answers is its own off-distribution description).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..demo.scenes import DESCRIBE_QUESTION

STIC_DESCRIPTION_PROMPTS = (
    "Illustrate the details of the picture.",
    "Summarize the visual content presented.",
    "Explain what is depicted in the photograph.",
    "Outline the key elements captured in the image.",
    "Detail the composition and subjects within the frame.",
    "Convey the atmosphere and mood represented in the snapshot.",
    "Interpret the scene shown in the image.",
    "Identify and describe the main focal points in the visual.",
)
# STIC's text keeps the indentation of the Python source it sits in; so does this one (the model saw it that way).
STIC_DETAILED_DESCRIPTION_PROMPT = """Please provide a detailed description of the image, focusing on the following. 
    Identify the main subjects (people, animals, objects) in the image and describe what they are doing.
    Describe the setting of the image. Is it indoors or outdoors? What kind of environment or location does it depict? 
    What mood does the image convey? Are there any specific elements (such as lighting, weather, expressions) that contribute to this atmosphere? 
    Describe the dominant colors and the overall composition. How do these elements affect the image's impact?
    Point out any details or symbols that might be relevant to understanding the image's meaning or context.
    If applicable, provide interpretations of what the image might represent or communicate."""  # noqa: W291
STIC_HALLUCINATION_PROMPTS = (
    "Describe the image with imaginative objects that may exist in the scene.",
    "Enrich the description by adding hypothetical objects or characters that could be part of the scene.",
    "Suggest and detail practical items or people that could logically inhabit the image's setting.",
    "Incorporate elements that, though absent, would seamlessly fit into the context of the picture.",
    "Imagine and describe additional everyday objects or activities taking place just out of frame.",
    "Augment the scene with details of potential events or items that are plausible.",
    "Conceive of and detail natural elements, such as weather or animals, that could realistically enter the scene. "
    "Make the description affirmative.",
    "Invent and incorporate details of practical tools, vehicles, or gadgets that could be expected in a similar "
    "scenario.",
)
# STIC stage 2 (`stic/add_des_to_data.py` L25-27): the model's own description, put before the instruction.
DESCRIPTION_INFUSED_TEMPLATE = "Image description:\n{description}\n\n{question}"


@dataclass(frozen=True)
class PromptSet:
    r"""
    The prompts of one preference-data recipe.

    Args:
        preferred (`str`): Asked for the preferred description (clean image).
        plain (`tuple[str, ...]`): The pair's stored prompt (one drawn per image), and the dis-preferred answer's
            prompt on a corrupted image.
        hallucination (`tuple[str, ...]`): The dis-preferred answer's prompt on the clean image.
        description (`str`): The request whose answer self-questioning asks after (the description turn of the
            virtual user's prompt).
    """

    preferred: str
    plain: tuple[str, ...]
    hallucination: tuple[str, ...]
    description: str

    def __post_init__(self):
        for name in ("plain", "hallucination"):
            if not getattr(self, name) or not all(isinstance(p, str) and p.strip() for p in getattr(self, name)):
                raise ValueError(f"PromptSet.{name} must be a non-empty tuple of non-empty prompts.")


STIC_PROMPTS = PromptSet(
    preferred=STIC_DETAILED_DESCRIPTION_PROMPT,
    plain=STIC_DESCRIPTION_PROMPTS,
    hallucination=STIC_HALLUCINATION_PROMPTS,
    description="Can you describe the image in detail?",  # SQ-LLaVA's description request (model_vqa_loader.py L129)
)
DEMO_PROMPTS = PromptSet(
    preferred=DESCRIBE_QUESTION,
    plain=(DESCRIBE_QUESTION,),
    hallucination=STIC_HALLUCINATION_PROMPTS,
    description=DESCRIBE_QUESTION,
)
PROMPT_SETS = {"stic": STIC_PROMPTS, "demo": DEMO_PROMPTS}


__all__ = [
    "DEMO_PROMPTS",
    "DESCRIPTION_INFUSED_TEMPLATE",
    "PROMPT_SETS",
    "STIC_DESCRIPTION_PROMPTS",
    "STIC_DETAILED_DESCRIPTION_PROMPT",
    "STIC_HALLUCINATION_PROMPTS",
    "STIC_PROMPTS",
    "PromptSet",
]
