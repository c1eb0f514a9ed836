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
"""The demo checkpoint's model card: the package's `tiny-demo` template with the checkpoint's training record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..hub import render_model_card
from .record import TARGET_ANSWER_ACCURACY, TARGET_VALID_QUESTION_SHARE, meets_targets


def write_model_card(output_dir: str | Path, record: dict[str, Any]) -> None:
    """The package's `tiny-demo` card (`hub_cards/tiny-demo.md`) with this checkpoint's training and numbers."""
    card = render_model_card(
        "tiny-demo",
        training_summary=training_summary(record),
        demo_command="sqllava demo                                  # the committed checkpoint\n"
        "sqllava demo --retrain                        # retrain it first (~20 min on 2 CPU cores)\n"
        "python -m transformers_sqllava.demo.train --output-dir my-demo   # train only",
    )
    card.save(Path(output_dir) / "README.md")


def training_summary(record: dict[str, Any]) -> str:
    """The model card's "Training" section: what was trained, how, and (when evaluated) the demo's numbers."""
    config = record["training_config"]
    tokens = (config["image_size"] // config["patch_size"]) ** 2
    stage0 = record.get("vision_pretraining")
    order = (
        "the first question before the image (`USER: Q\\n<image>`, `images_first=False`)"
        if config.get("question_before_image")
        else "the image before the question (`USER: <image>\\nQ`)"
    )
    system_prompt = config.get("system_prompt", "v1_sq")
    lines = [
        "Trained from scratch (no pretrained weights: nothing is downloaded) by "
        "`python -m transformers_sqllava.demo.train`, the language stages with TRL's `SFTTrainer`:",
        "",
    ]
    if stage0:
        lines.append(
            f"0. vision pretraining, the stand-in for CLIP's own: the vision tower, prototype extractor and projector "
            f"learn to write into each image token a fixed random code of its grid cell's contents (colour + shape + "
            f"size + cell), {config['vision_pretraining_steps']} steps of batch "
            f"{config['vision_pretraining_batch_size']} (MSE {stage0['loss']}; on fresh scenes colour, shape, size "
            f"and cell decode right for {stage0['colour']:.0%}, {stage0['shape']:.0%}, {stage0['size']:.0%}, {stage0['cell']:.0%} of cells); "
            "then this image path is frozen, as LLaVA freezes CLIP;"
        )
    lines += [
        f"1. alignment: image -> caption in the plain format (`SQLlavaAlignmentCollator`), "
        f"{config['alignment_steps']} steps, learning rate {config['alignment_learning_rate']}; mean loss "
        f"{record.get('alignment_loss')};",
        f"2. self-questioning instruction tuning (`SQLlavaSelfQuestioningCollator`, `sq_ratio={config['sq_ratio']}`, "
        f"system prompt {system_prompt!r}, {order}): {config['max_steps']} steps, learning rate "
        f"{config['learning_rate']}; mean loss {record['train_loss']}.",
        "",
        f"Batches of {config.get('alignment_batch_size', config['batch_size'])} (stage 1) and {config['batch_size']} "
        f"(stage 2) samples about {config['num_train_scenes']} generated scenes, AdamW "
        f"(cosine schedule, 5% warmup), seed {config['seed']}; {record['training_minutes']} minutes on "
        f"{record['torch_threads']} CPU thread(s) of a 2-core machine.",
        "",
        f"- vision tower: CLIP, {config['image_size']} px images, patch {config['patch_size']} ({tokens} image "
        f"tokens), width {config['vision_hidden_size']}, {config['vision_layers']} layers;",
        f"- prototype extractor: {config['num_prototypes']} prototypes;",
        f"- language model: Llama, width {config['text_hidden_size']}, {config['text_layers']} layers; "
        f"tokenizer trained with `tokenizers` on the scene language, virtual-user marker `[vusr]`;",
        f"- {record['num_parameters'] / 1e6:.2f} M parameters, fp32.",
    ]
    evaluation = record.get("evaluation")
    if evaluation:
        lines += [
            "",
            "Held-out results of `sqllava demo` (scenes never seen in training, judged by the scene checker):",
            "",
            f"- answer accuracy: {evaluation['answer_accuracy']:.1%} over {evaluation['num_questions']} questions;",
            f"- self-asked questions valid and answerable for their scene: {evaluation['valid_question_share']:.1%} "
            f"of {evaluation['num_self_asked_questions']}; its answers to them: "
            f"{evaluation['self_answer_accuracy']:.1%} right;",
            f"- descriptions listing exactly the scene's objects: {evaluation['description_accuracy']:.1%} of "
            f"{evaluation['num_descriptions']}.",
            "",
            f"The demo's targets are an answer accuracy of at least {TARGET_ANSWER_ACCURACY:.0%} and at least "
            f"{TARGET_VALID_QUESTION_SHARE:.0%} valid self-asked questions"
            + (
                "; this checkpoint meets both."
                if all(meets_targets(evaluation["answer_accuracy"], evaluation["valid_question_share"]))
                else '; this checkpoint does **not** meet them yet (see the project README, "The offline demo").'
            ),
        ]
    return "\n".join(lines)


__all__ = ["training_summary", "write_model_card"]
