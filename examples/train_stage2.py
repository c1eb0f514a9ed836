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
"""
SQ-LLaVA stage 2: visual self-questioning instruction tuning with TRL's `SFTTrainer` and PEFT
(docs/original.md#training-recipe): LoRA on the language model (r 128) and on the vision layers that feed the features
(r 32), extractor + projector trained fully, learning rates 2e-4 / 2e-5 / 2e-5, cosine, warmup 0.03, and the
self-questioning collator (each later user turn of an image sample becomes a question the model learns to ask, with
probability `--sq_ratio`).

Tiny, offline, on a CPU (a random tiny SQ-LLaVA and 16 generated scenes; about a minute):

```bash
python examples/train_stage2.py --model_name_or_path tiny --make_tiny_demo_data /tmp/sqllava-demo \\
    --output_dir /tmp/sqllava-stage2 --max_steps 20 --per_device_train_batch_size 4 --logging_steps 5 \\
    --use_cpu --bf16 false --activation_checkpointing false --report_to none
```

Two processes on a CPU (gloo; `accelerate launch --cpu --num_processes 2` would silently run one process):

```bash
torchrun --nproc_per_node 2 examples/train_stage2.py --model_name_or_path tiny \\
    --make_tiny_demo_data /tmp/sqllava-demo --output_dir /tmp/sqllava-stage2-ddp --max_steps 4 \\
    --per_device_train_batch_size 2 --use_cpu --bf16 false --activation_checkpointing false --report_to none
```

The real recipe, from a stage-1 checkpoint (or a converted SQ-LLaVA checkpoint, or a LLaVA-1.5 checkpoint turned
into SQ-LLaVA with `sqllava_from_llava` and aligned with `train_stage1.py`), on 8 GPUs with DeepSpeed ZeRO-3:

```bash
accelerate launch --config_file examples/accelerate/deepspeed_zero3.yaml examples/train_stage2.py \\
    --model_name_or_path checkpoints/sqllava-7b-stage1 \\
    --dataset_path data/sharegpt4v_mix665k_cap23k_coco-ap9k_lcs3k_sam9k_div2k.json --image_folder data \\
    --output_dir checkpoints/sqllava-7b-stage2 --sq_ratio 0.5 \\
    --per_device_train_batch_size 16 --gradient_accumulation_steps 1 --num_train_epochs 1 \\
    --bf16 true --activation_checkpointing true --dataloader_num_workers 4 --save_steps 5000 --logging_steps 10
```

(The released recipe: global batch 128, `sq_r 0.5`, one epoch; `--vision_lora_gradients reference` reproduces the
reference's untrained ViT LoRA, docs/original.md#the-vit-lora-never-trains.) The adapter is saved in `output_dir`;
`PeftModel.from_pretrained(base, dir)` and `merge_and_unload()` give a plain SQ-LLaVA model.
"""

import logging
import os
import warnings
from dataclasses import dataclass, field

import torch
from transformers import AutoProcessor
from trl import SFTConfig, SFTTrainer, TrlParser

from transformers_sqllava import SQLlavaForConditionalGeneration
from transformers_sqllava.training import (
    SQLlavaCollatorCallback,
    SQLlavaSelfQuestioningCollator,
    SQLlavaStage2Config,
    load_llava_dataset,
    prepare_stage2,
    sft_config_kwargs,
    stage2_optimizer_cls_and_kwargs,
)

import tiny_setup

logger = logging.getLogger(__name__)


@dataclass
class ScriptArguments:
    r"""
    Arguments of the SQ-LLaVA training examples, besides `SFTConfig`'s.

    Args:
        model_name_or_path (`str`, *optional*, defaults to `"tiny"`):
            An SQ-LLaVA checkpoint folder (stage 1 output or converted release), or `"tiny"` for a random tiny model.
        dataset_path (`str`, *optional*):
            LLaVA JSON file (`id`, `image`, `conversations`).
        image_folder (`str`, *optional*):
            Folder the samples' image paths are relative to (defaults to the JSON file's folder).
        make_tiny_demo_data (`str`, *optional*):
            Write a tiny LLaVA-JSON dataset of generated scenes to this folder and train on it.
        on_missing_image (`str`, *optional*, defaults to `"raise"`):
            `"raise"`, or `"skip"` samples whose image is missing (counted and logged).
        sq_ratio (`float`, *optional*, defaults to 0.5):
            Probability that a later user turn of an image sample becomes a vuser turn (released recipe 0.5;
            the reference code's default 0.3).
        sq_seed (`int`, *optional*):
            Seed of the collator's own draw stream; by default the draws follow `--seed` through torch's RNG, which
            checkpoints save, so a resumed run makes the same draws.
        max_sample_length (`int`, *optional*):
            Longest sample in tokens (image tokens included); `--on_overflow` says what happens to longer ones.
        on_overflow (`str`, *optional*, defaults to `"raise"`):
            `"raise"`, `"skip"` (counted) or `"truncate_text"`.
        vision_lora_gradients (`str`, *optional*, defaults to `"enabled"`):
            `"reference"` runs the vision tower without gradients, as the reference (its ViT LoRA never trained).
        use_vision_lora (`bool`, *optional*, defaults to `True`):
            Put a LoRA on the vision tower.
        vision_learning_rate (`float`, *optional*, defaults to 2e-5):
            ViT LoRA learning rate (`--learning_rate` is the LLM LoRA's).
        projector_learning_rate (`float`, *optional*, defaults to 2e-5):
            Extractor + projector learning rate.
    """

    model_name_or_path: str = field(default=tiny_setup.TINY, metadata={"help": "Checkpoint folder, or 'tiny'."})
    dataset_path: str | None = field(default=None, metadata={"help": "LLaVA JSON file."})
    image_folder: str | None = field(default=None, metadata={"help": "Image folder of the LLaVA JSON."})
    make_tiny_demo_data: str | None = field(default=None, metadata={"help": "Write tiny demo data here, use it."})
    on_missing_image: str = field(default="raise", metadata={"help": "'raise' or 'skip' (counted)."})
    sq_ratio: float = field(default=0.5, metadata={"help": "Probability of a vuser turn (reference code: 0.3)."})
    sq_seed: int | None = field(default=None, metadata={"help": "Own seed for the vuser draws."})
    max_sample_length: int | None = field(default=None, metadata={"help": "Longest sample, image tokens included."})
    on_overflow: str = field(default="raise", metadata={"help": "'raise', 'skip' or 'truncate_text'."})
    vision_lora_gradients: str = field(default="enabled", metadata={"help": "'enabled' or 'reference'."})
    use_vision_lora: bool = field(default=True, metadata={"help": "LoRA on the vision tower."})
    vision_learning_rate: float = field(default=2e-5, metadata={"help": "ViT LoRA learning rate."})
    projector_learning_rate: float = field(default=2e-5, metadata={"help": "Extractor + projector learning rate."})


def load_model_and_processor(script_args: ScriptArguments, **from_pretrained_kwargs):
    """`"tiny"`: a random tiny model and the demo processor; else the checkpoint's model and processor."""
    if script_args.model_name_or_path == tiny_setup.TINY:
        processor = tiny_setup.build_tiny_processor()
        return tiny_setup.build_tiny_model(processor), processor
    processor = AutoProcessor.from_pretrained(script_args.model_name_or_path)
    model = SQLlavaForConditionalGeneration.from_pretrained(script_args.model_name_or_path, **from_pretrained_kwargs)
    return model, processor


def load_dataset(script_args: ScriptArguments, training_args: SFTConfig, stage: int):
    if script_args.make_tiny_demo_data:
        # Every process writes the same files: the main process first, the others then reuse them.
        with training_args.main_process_first(desc="tiny demo data"):
            path, folder = tiny_setup.make_tiny_demo_data(script_args.make_tiny_demo_data, stage=stage)
        script_args.dataset_path, script_args.image_folder = str(path), str(folder)
    if script_args.dataset_path is None:
        raise ValueError("Pass --dataset_path (LLaVA JSON) and --image_folder, or --make_tiny_demo_data DIR.")
    dataset, report = load_llava_dataset(
        script_args.dataset_path,
        script_args.image_folder,
        on_missing_image=script_args.on_missing_image,
        return_report=True,
    )
    logger.info("Loaded %d samples (%d skipped for missing images).", report.num_samples, report.num_skipped)
    return dataset


def stage2_config(script_args: ScriptArguments, training_args: SFTConfig) -> SQLlavaStage2Config:
    return SQLlavaStage2Config(
        use_vision_lora=script_args.use_vision_lora,
        vision_lora_gradients=script_args.vision_lora_gradients,
        llm_learning_rate=training_args.learning_rate,
        vision_learning_rate=script_args.vision_learning_rate,
        projector_learning_rate=script_args.projector_learning_rate,
        weight_decay=training_args.weight_decay,
    )


def report(trainer, collator) -> None:
    """One line per process: which rank of how many, and what it trained on (the two-process test reads these)."""
    stats = collator.stats
    print(
        f"[rank {trainer.args.process_index}/{trainer.args.world_size}] steps={trainer.state.global_step} "
        f"samples={stats.num_samples} vuser_turns={stats.num_vuser_turns}/{stats.num_eligible_turns} "
        f"question_tokens={stats.num_question_tokens} answer_tokens={stats.num_answer_tokens} "
        f"skipped={stats.num_skipped}",
        flush=True,
    )


def main(script_args: ScriptArguments, training_args: SFTConfig, model=None, processor=None):
    if model is None:
        model, processor = load_model_and_processor(script_args)
    config = stage2_config(script_args, training_args)
    model = prepare_stage2(model, config, activation_checkpointing=training_args.activation_checkpointing)
    dataset = load_dataset(script_args, training_args, stage=2)
    collator = SQLlavaSelfQuestioningCollator(
        processor,
        sq_ratio=script_args.sq_ratio,
        seed=script_args.sq_seed,
        max_length=script_args.max_sample_length,
        on_overflow=script_args.on_overflow,
    )
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        data_collator=collator,
        processing_class=processor,
        # Three learning rates: LLM LoRA, ViT LoRA, extractor + projector (docs/original.md#learning-rate-groups).
        optimizer_cls_and_kwargs=stage2_optimizer_cls_and_kwargs(config, args=training_args),
        callbacks=[SQLlavaCollatorCallback(collator)],
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    if trainer.is_world_process_zero():
        processor.save_pretrained(training_args.output_dir)
    report(trainer, collator)
    return trainer


class SQLlavaTrlParser(TrlParser):
    """`TrlParser` that still honours the flags transformers 5.23 renamed (`--gradient_checkpointing` is now
    `--activation_checkpointing`). The recipe's defaults set the new name, and transformers lets the new name win, so
    without this an old `--gradient_checkpointing false` would be silently ignored; with it, it works and warns."""

    RENAMED = (
        ("gradient_checkpointing", "activation_checkpointing"),
        ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs"),
    )

    def parse_known_args(self, args=None, namespace=None):
        namespace, remaining = super().parse_known_args(args, namespace)
        for old, new in self.RENAMED:
            value = getattr(namespace, old, None)
            if value is None:  # not given (make_parser sets no default for the old names)
                continue
            warnings.warn(f"--{old} is deprecated (transformers 5.23 renamed it): use --{new}.", FutureWarning)
            if getattr(namespace, new, None) == self.get_default(new):  # the new name, set to a non-default, wins
                setattr(namespace, new, value)
            setattr(namespace, old, None)
        return namespace, remaining


def make_parser(stage: int = 2) -> TrlParser:
    parser = SQLlavaTrlParser((ScriptArguments, SFTConfig))
    # The recipe's defaults (lr, cosine, warmup 0.03, one epoch, activation checkpointing) and what SFTTrainer needs
    # for SQ-LLaVA rows (docs/training.md#with-trl-ddp-and-bitsandbytes): keep the `images`/`messages` columns, let
    # the collator tokenise, never truncate through image tokens. TRL's own default for the old name
    # (`gradient_checkpointing=True`) is cleared, so that only a flag the user passes reaches it.
    parser.set_defaults(**sft_config_kwargs(stage=stage), logging_steps=1, gradient_checkpointing=None)
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO if int(os.environ.get("RANK", 0)) == 0 else logging.WARNING)
    torch.set_num_threads(max(1, torch.get_num_threads() // int(os.environ.get("WORLD_SIZE", 1))))
    script_args, training_args = make_parser(stage=2).parse_args_and_config()
    main(script_args, training_args)
