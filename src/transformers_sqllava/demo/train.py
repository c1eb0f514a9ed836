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
"""Train the offline demo's tiny SQ-LLaVA on the scene world, from scratch, with TRL's `SFTTrainer`.

Everything is the package's own machinery at toy size: [`SQLlavaConfig`] with a CLIP vision tower and a Llama
language model, [`SQLlavaProcessor`] with the scene tokenizer and the native vuser marker `[vusr]`, and the
self-questioning collator ([`SQLlavaSelfQuestioningCollator`], `sq_ratio=0.5`), so the model learns both to answer
and to ask. Three stages:

0. vision pretraining ([`pretrain_vision`]): the vision tower, prototype extractor and projector learn to write each
   grid cell's contents into its image token, then are frozen. This stands in for CLIP's own pretraining: the real
   recipe adapts a *pretrained* tower, and there is none here (no download is allowed);
1. alignment (image -> caption, the alignment collator): the language model learns the scene language;
2. self-questioning instruction tuning (the self-questioning collator): answering, describing and asking. The first
   question of a conversation comes before the image (`question_before_image`), which is what lets a model this small
   learn to find the object a question names (README, "The offline demo").

```bash
python -m transformers_sqllava.demo.train --output-dir my-demo-checkpoint   # ~20 min on 2 CPU cores
sqllava demo --checkpoint my-demo-checkpoint
```

Seeded: the same arguments on the same machine (and torch thread count) give the same weights.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from ..configuration_sqllava import SQLlavaConfig
from ..image_processing_sqllava import SQLlavaImageProcessor
from ..modeling_sqllava import SQLlavaForConditionalGeneration
from ..processing_sqllava import NATIVE_VUSER_TOKEN, SYSTEM_PROMPTS, SQLlavaProcessor
from ..tokens import add_sqllava_tokens
from .data import build_trl_rows, split_scenes
from .model_card import write_model_card
from .record import evaluation_summary, load_training_record, remove_remote_code, write_training_record
from .run import format_report, run_demo
from .tiny import processor_vocabulary, tiny_sqllava_config
from .tokenizer import build_scene_tokenizer
from .vision_pretraining import freeze_image_path, pretrain_vision

logger = logging.getLogger(__name__)


@dataclass
class DemoTrainingConfig:
    r"""
    Sizes, data and optimisation of the demo model: every field is a flag of `python -m
    transformers_sqllava.demo.train`, and the defaults train the committed checkpoint. What was measured on the way
    to these defaults is in docs/demo.md#how-the-checkpoint-was-reached.

    Args:
        image_size (`int`, *optional*, defaults to 72):
            Side of the scene images and of the vision tower's input, in pixels.
        patch_size (`int`, *optional*, defaults to 24):
            ViT patch side. 72 / 24 gives 3 x 3 = 9 image tokens, one per cell of the scenes' grid, which stage 0
            needs.
        vision_position_init_std (`float`, *optional*, defaults to 1.0):
            Standard deviation of the CLIP position embeddings at initialisation. CLIP's own 0.02 is too small next
            to a patch's content for the tiny tower to tell the cells apart.
        vision_hidden_size (`int`, *optional*, defaults to 96):
            CLIP width (its MLP is four times as wide).
        vision_layers (`int`, *optional*, defaults to 3):
            CLIP depth. The features come from layer -2, so the last layer is not used; it is there because LLaVA's
            layout has it.
        text_hidden_size (`int`, *optional*, defaults to 128):
            Llama width.
        text_intermediate_size (`int`, *optional*, defaults to 384):
            Llama MLP width.
        text_layers (`int`, *optional*, defaults to 3):
            Llama depth.
        text_attention_heads (`int`, *optional*, defaults to 4):
            Llama attention heads, and as many key/value heads.
        tie_word_embeddings (`bool`, *optional*, defaults to `False`):
            Whether the Llama's input and output embeddings are shared.
        num_prototypes (`int`, *optional*, defaults to 9):
            Prototypes of the prototype extractor (at most the number of image tokens).
        vision_pretraining_steps (`int`, *optional*, defaults to 400):
            Stage-0 steps ([`~transformers_sqllava.demo.vision_pretraining.pretrain_vision`]), after which the image
            path is frozen. 0 skips stage 0 and trains the image path in stages 1 and 2 instead; from scratch and end
            to end, it does not learn to find the object a question names.
        vision_pretraining_batch_size (`int`, *optional*, defaults to 64):
            Stage-0 samples per step.
        vision_pretraining_learning_rate (`float`, *optional*, defaults to 2e-3):
            Stage-0 peak learning rate.
        question_before_image (`bool`, *optional*, defaults to `True`):
            In stage 2 and in the demo's questions, put the first question before the image (`USER: Q\\n<image>`)
            rather than after it (LLaVA's `USER: <image>\\nQ`), so that the image tokens can attend to the question:
            this is what lets a model this small find the object a question names. "Describe the image." keeps the
            image first, as the self-questioning demo asks it.
        alignment_steps (`int`, *optional*, defaults to 300):
            Stage-1 (image -> caption) steps; 0 skips stage 1.
        alignment_learning_rate (`float`, *optional*, defaults to 2e-3):
            Stage-1 peak learning rate.
        alignment_batch_size (`int`, *optional*, defaults to 32):
            Stage-1 samples per step.
        num_train_scenes (`int`, *optional*, defaults to 160000):
            Training scenes (no held-out scene equals one of them): about one per stage-2 sample, because the model
            learns to look objects up only from fresh scenes and memorises repeated ones. Stage 1 uses the first
            `alignment_steps * alignment_batch_size` of them.
        samples_per_scene (`int`, *optional*, defaults to 1):
            Stage-2 conversations per training scene.
        min_turns (`int`, *optional*, defaults to 1):
            Fewest question/answer turns of a stage-2 conversation.
        max_turns (`int`, *optional*, defaults to 3):
            Most question/answer turns of a stage-2 conversation. Only the first question comes before the image:
            later ones, and the vuser questions drawn from them, are asked after it.
        description_first (`float`, *optional*, defaults to 0.3):
            Share of stage-2 conversations that open with "Describe the image." (the self-questioning demo asks its
            questions after a description). A caption is about ten times as long as an answer, so a larger share
            spends the trained tokens on captions.
        max_steps (`int`, *optional*, defaults to 5000):
            Stage-2 (self-questioning instruction tuning) steps.
        batch_size (`int`, *optional*, defaults to 32):
            Stage-2 samples per step.
        learning_rate (`float`, *optional*, defaults to 2e-3):
            Stage-2 peak AdamW learning rate (cosine decay, 5% warmup).
        system_prompt (`str`, *optional*, defaults to `"A chat about the image."`):
            The system message of every stage-2 sample and demo prompt; a name of `SYSTEM_PROMPTS` (`"v1_sq"`: the
            reference's) selects that prompt. The reference's is ~97 tokens, most of a demo sample and of its step
            time, and a constant prefix teaches a model trained from scratch nothing.
        sq_ratio (`float`, *optional*, defaults to 0.5):
            Probability that a later user turn becomes a vuser turn the model learns to ask (the released recipe's
            value).
        group_by_length (`bool`, *optional*, defaults to `False`):
            Whether to batch conversations of similar length together (Trainer's
            `train_sampling_strategy="group_by_length"`, the reference's `group_by_modality_length`). Off: here a
            conversation's length is its kind (described or not, 1-3 turns), so each grouped batch holds one kind,
            and the model learns worse for it.
        seed (`int`, *optional*, defaults to 0):
            Seeds the weights, the data order and the vuser draws.
        threads (`int`, *optional*, defaults to 2):
            torch CPU threads. Results are reproducible for a given thread count (the committed checkpoint used 2);
            on cores shared with other work, use 1.
    """

    image_size: int = 72
    patch_size: int = 24
    vision_position_init_std: float = 1.0
    vision_hidden_size: int = 96
    vision_layers: int = 3
    text_hidden_size: int = 128
    text_intermediate_size: int = 384
    text_layers: int = 3
    text_attention_heads: int = 4
    tie_word_embeddings: bool = False
    num_prototypes: int = 9
    vision_pretraining_steps: int = 400
    vision_pretraining_batch_size: int = 64
    vision_pretraining_learning_rate: float = 2e-3
    question_before_image: bool = True
    alignment_steps: int = 300
    alignment_learning_rate: float = 2e-3
    alignment_batch_size: int = 32
    num_train_scenes: int = 160000
    samples_per_scene: int = 1
    min_turns: int = 1
    max_turns: int = 3
    description_first: float = 0.3
    max_steps: int = 5000
    batch_size: int = 32
    learning_rate: float = 2e-3
    system_prompt: str = "A chat about the image."
    sq_ratio: float = 0.5
    group_by_length: bool = False
    seed: int = 0
    threads: int = 2


# Pixel statistics of the demo's image processor: the white background normalises to 0 (CLIP's mean and std would
# make it about 2). A from-scratch tower then starts out seeing the shapes rather than the background: in 225 stage-1
# steps the caption loss fell to 0.36 this way, while with CLIP's statistics it was still at the blind 0.52 plateau
# (it leaves it only after ~500 steps). Padding to a square uses the mean colour, white: the scenes' background.
DEMO_IMAGE_MEAN = [1.0, 1.0, 1.0]
DEMO_IMAGE_STD = [0.5, 0.5, 0.5]


def build_demo_processor(image_size: int = 72, patch_size: int = 24) -> SQLlavaProcessor:
    """The scene tokenizer (+ `<image>`, `<pad>`, `[vusr]`) and an image processor at the scenes' own size."""
    image_processor = SQLlavaImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=DEMO_IMAGE_MEAN,
        image_std=DEMO_IMAGE_STD,
    )
    image_seq_length = (image_size // patch_size) ** 2
    tokenizer = build_scene_tokenizer()
    add_sqllava_tokens(tokenizer, vuser_token=NATIVE_VUSER_TOKEN)
    return SQLlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_length=image_seq_length,
        vuser_token=NATIVE_VUSER_TOKEN,
    )


def build_demo_model_config(
    config: DemoTrainingConfig, processor: SQLlavaProcessor, **model_overrides
) -> SQLlavaConfig:
    """The demo model's [`SQLlavaConfig`] at `config`'s sizes, its vocabulary exactly the processor's (no resize).

    `model_overrides` are further [`SQLlavaConfig`] arguments (the ablation's `use_prototype_extractor=False`); the
    committed checkpoint passes none.
    """
    return tiny_sqllava_config(
        image_size=config.image_size,
        patch_size=config.patch_size,
        vision_hidden_size=config.vision_hidden_size,
        vision_intermediate_size=4 * config.vision_hidden_size,
        vision_layers=config.vision_layers,
        text_hidden_size=config.text_hidden_size,
        text_intermediate_size=config.text_intermediate_size,
        text_layers=config.text_layers,
        text_attention_heads=config.text_attention_heads,
        tie_word_embeddings=config.tie_word_embeddings,
        num_prototypes=config.num_prototypes,
        image_seq_length=processor.image_seq_length,
        **processor_vocabulary(processor),
        **model_overrides,
    )


def build_demo_model(
    config: DemoTrainingConfig, processor: SQLlavaProcessor, **model_overrides
) -> SQLlavaForConditionalGeneration:
    """A randomly initialised tiny SQ-LLaVA (seeded), with generation stopping at `</s>`; `model_overrides` as for
    [`build_demo_model_config`]."""
    torch.manual_seed(config.seed)
    model = SQLlavaForConditionalGeneration(build_demo_model_config(config, processor, **model_overrides))
    # Where each patch is: CLIP initialises it at std 0.02, which the tiny tower cannot separate from the content.
    torch.nn.init.normal_(
        model.model.vision_tower.embeddings.position_embedding.weight, std=config.vision_position_init_std
    )
    generation_config = model.generation_config
    generation_config.eos_token_id = processor.tokenizer.eos_token_id
    generation_config.pad_token_id = processor.tokenizer.pad_token_id
    generation_config.bos_token_id = processor.tokenizer.bos_token_id
    return model


def build_train_rows(config: DemoTrainingConfig, stage: int) -> list[dict[str, Any]]:
    """TRL vision rows for the training scenes: caption pairs (stage 1) or multi-turn conversations (stage 2, of
    `min_turns` to `max_turns` turns, a `description_first` share of them opening with a description)."""
    split = split_scenes(num_train=config.num_train_scenes, num_held_out=0, image_size=config.image_size)
    scenes = split.train
    if stage == 1:  # stage 1 sees alignment_steps * alignment_batch_size samples: render no more
        scenes = scenes[: max(1, config.alignment_steps * config.alignment_batch_size)]
    rows = build_trl_rows(
        scenes,
        stage=stage,
        num_turns=(config.min_turns, config.max_turns),
        description_first=config.description_first,
        samples_per_scene=config.samples_per_scene,
        question_before_image=config.question_before_image,
    )
    if stage == 2 and config.system_prompt not in SYSTEM_PROMPTS:  # a named prompt is the collator's `system_prompt`
        # Content as a list of blocks, like every other message: `datasets` (Arrow) cannot mix strings and lists.
        system_message = {"role": "system", "content": [{"type": "text", "text": config.system_prompt}]}
        rows = [{**row, "messages": [system_message, *row["messages"]]} for row in rows]
    if config.group_by_length:
        from ..training.data import sample_length

        rows = [{**row, "length": sample_length(row["messages"], len(row["images"]))} for row in rows]
    return rows


def run_sft(
    model, processor, rows, collator, max_steps: int, learning_rate: float, batch_size: int, config, log_every: int
) -> float:
    """One `SFTTrainer` run over the rows (cosine schedule, 5% warmup, seeded); returns the mean training loss."""
    # Imported here, like `..training` (which needs `datasets`): TRL and `datasets` are the `train` extra, which
    # `sqllava demo` on the committed checkpoint does without.
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from ..training import SQLlavaCollatorCallback, sft_config_kwargs

    training_args = SFTConfig(
        **sft_config_kwargs(
            stage=2,
            output_dir=tempfile.mkdtemp(prefix="sqllava-demo-trainer-"),  # nothing is saved there
            max_steps=max_steps,
            per_device_train_batch_size=batch_size,
            learning_rate=learning_rate,
            warmup_steps=0.05,
            lr_scheduler_type="cosine",
            weight_decay=0.01,
            max_grad_norm=1.0,
            logging_steps=log_every,
            save_strategy="no",
            report_to="none",
            seed=config.seed,
            data_seed=config.seed,
            use_cpu=True,
            # TRL's SFTConfig defaults to bf16 autocast, and the recipe to activation checkpointing. On a CPU and at
            # this size neither saves anything that matters, and bf16 costs the look-up its precision.
            bf16=False,
            activation_checkpointing=False,
            dataloader_num_workers=0,  # the collator's stats are counted in this process
            # The reference's `group_by_modality_length=True`: batches of similar-length samples (the rows' `length`).
            train_sampling_strategy="group_by_length" if config.group_by_length else "random",
            disable_tqdm=False,
        )
    )
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        # A PNG round trip per 72 px image costs microseconds; `datasets` is what SFTTrainer accepts.
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
        data_collator=collator,
        callbacks=[SQLlavaCollatorCallback(collator)],
    )
    return trainer.train().training_loss


def train_stages_0_1(
    config: DemoTrainingConfig, log_every: int = 50, **model_overrides
) -> tuple[SQLlavaForConditionalGeneration, SQLlavaProcessor, dict[str, Any]]:
    r"""
    The processor, a fresh model ([`build_demo_model`], `model_overrides` passed on), stage 0 (then the image path
    frozen) and stage 1 of [`train_demo_model`]: everything before self-questioning instruction tuning. It reads none
    of stage 2's own fields (`max_steps`, `batch_size`, `learning_rate`, `sq_ratio`, `system_prompt`), so the ablation
    trains it once per seed and projector and starts each variant's stage 2 from a copy.

    Returns:
        `tuple`: the model, the processor and the record's `vision_pretraining` and `alignment_loss` entries.
    """
    from ..training import SQLlavaAlignmentCollator

    processor = build_demo_processor(config.image_size, config.patch_size)
    model = build_demo_model(config, processor, **model_overrides)
    vision_pretraining = None
    if config.vision_pretraining_steps > 0:
        vision_pretraining = pretrain_vision(
            model, processor, config.vision_pretraining_steps, config.vision_pretraining_batch_size,
            config.vision_pretraining_learning_rate, seed=config.seed,
        )  # fmt: skip
        logger.info("Stage 0 (vision pretraining): %s", vision_pretraining)
        freeze_image_path(model)
    alignment_loss = None
    if config.alignment_steps > 0:
        alignment_collator = SQLlavaAlignmentCollator(processor)
        alignment_loss = run_sft(
            model, processor, build_train_rows(config, stage=1), alignment_collator, config.alignment_steps,
            config.alignment_learning_rate, config.alignment_batch_size, config, log_every,
        )  # fmt: skip
    stages = {
        "vision_pretraining": vision_pretraining,
        "alignment_loss": None if alignment_loss is None else round(alignment_loss, 4),
    }
    return model, processor, stages


def train_stage_2(model, processor: SQLlavaProcessor, config: DemoTrainingConfig, log_every: int = 50):
    r"""
    Stage 2 of [`train_demo_model`]: self-questioning instruction tuning of `model` (in place; a PEFT-wrapped model
    works too) on `config`'s conversations with [`SQLlavaSelfQuestioningCollator`] (`config.sq_ratio`; 0 draws no
    vuser turn), `config.max_steps` steps.

    Returns:
        `tuple`: the mean training loss and the collator (its `stats` count the vuser turns drawn).
    """
    from ..training import SQLlavaSelfQuestioningCollator

    # seed=None: the vuser draws come from the global torch RNG, which Trainer seeds from `args.seed`.
    collator = SQLlavaSelfQuestioningCollator(
        processor,
        sq_ratio=config.sq_ratio,
        system_prompt=config.system_prompt if config.system_prompt in SYSTEM_PROMPTS else "v1_sq",  # else in the rows
        images_first=not config.question_before_image,
    )
    loss = run_sft(
        model, processor, build_train_rows(config, stage=2), collator, config.max_steps, config.learning_rate,
        config.batch_size, config, log_every,
    )  # fmt: skip
    return loss, collator


def train_demo_model(
    config: DemoTrainingConfig, output_dir: str | Path, evaluate: bool = True, log_every: int = 50
) -> Path:
    r"""
    Train the demo model with `SFTTrainer` and save it (weights, processor, training record and model card) to
    `output_dir`:

    0. vision pretraining ([`pretrain_vision`], `vision_pretraining_steps` steps), then the image path (vision tower,
       prototype extractor, projector) is frozen; with `vision_pretraining_steps=0` it is skipped and every weight
       trains in stages 1 and 2;
    1. alignment: image -> caption in the plain format ([`SQLlavaAlignmentCollator`]), `alignment_steps` steps; the
       sequences are short (no system prompt), so these steps are cheap;
    2. self-questioning instruction tuning: conversations with [`SQLlavaSelfQuestioningCollator`] (`sq_ratio`),
       `max_steps` steps: the model learns to answer, describe and ask.

    Stages 0-1 are [`train_stages_0_1`], stage 2 is [`train_stage_2`].

    Args:
        config ([`DemoTrainingConfig`]): sizes, data and optimisation.
        output_dir (`str` or `Path`): the checkpoint folder (created).
        evaluate (`bool`, *optional*, defaults to `True`): run the demo's held-out evaluation on the saved checkpoint
            and quote its numbers in the record and the model card.
        log_every (`int`, *optional*, defaults to 50): steps between loss logs.

    Returns:
        `Path`: `output_dir`.
    """
    output_dir = Path(output_dir)
    torch.set_num_threads(config.threads)
    started = time.perf_counter()
    model, processor, stages = train_stages_0_1(config, log_every)
    loss, collator = train_stage_2(model, processor, config, log_every)
    minutes = (time.perf_counter() - started) / 60
    record = {
        "training_config": asdict(config),
        **stages,
        "train_loss": round(loss, 4),
        "training_minutes": round(minutes, 1),
        "torch_threads": torch.get_num_threads(),
        "num_parameters": model.num_parameters(),
        "collator_stats": collator.stats.as_log(prefix=""),
    }
    save_demo_checkpoint(model, processor, output_dir, record)
    if evaluate:
        report = run_demo(output_dir, output_dir=None)
        print(format_report(report))
        record["evaluation"] = evaluation_summary(report)
        save_demo_checkpoint(model, processor, output_dir, record)
    return output_dir


def save_demo_checkpoint(model, processor, output_dir: str | Path, record: dict[str, Any]) -> None:
    """Weights (safetensors, fp32), processor, the training record and a model card, in `output_dir`.

    Without remote code ([`remove_remote_code`]): the demo loads its checkpoint with the installed package.
    """
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    remove_remote_code(output_dir)
    write_training_record(output_dir, record)
    write_model_card(output_dir, record)


def _parse_bool(text: str) -> bool:
    """`true`/`false` (or `1`/`0`, `yes`/`no`) for a boolean flag; anything else is an error, not a silent `False`."""
    choices = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    if text.lower() not in choices:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return choices[text.lower()]


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, DemoTrainingConfig]:
    parser = argparse.ArgumentParser(
        prog="python -m transformers_sqllava.demo.train", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--output-dir", required=True, help="Where to write the checkpoint.")
    defaults = DemoTrainingConfig()
    for field in fields(DemoTrainingConfig):
        value = getattr(defaults, field.name)
        kind = _parse_bool if isinstance(value, bool) else type(value)
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, default=value)
    args = parser.parse_args(argv)
    config = DemoTrainingConfig(**{field.name: getattr(args, field.name) for field in fields(DemoTrainingConfig)})
    return args, config


def main(argv: list[str] | None = None) -> int:
    args, config = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    output_dir = train_demo_model(config, args.output_dir)
    record = load_training_record(output_dir)
    print(f"Saved the demo checkpoint to {output_dir} ({record['training_minutes']} min, loss {record['train_loss']}).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
