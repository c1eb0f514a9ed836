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
Self-training SQ-LLaVA from unlabeled images with TRL's `DPOTrainer` (docs/self_training.md): the model makes its own
preference pairs (STIC's descriptions, `--kinds stic`; its own questions and answers, `--kinds sq-question
sq-answer`; any mix), then STIC's DPO (sigmoid + NLL, beta 0.1) trains a fresh LoRA on the language model whose
reference is the model with the adapter disabled. The pairs file is built once and resumed; the merged model is saved
in `output_dir/merged`.

Tiny, offline, on a CPU (the shipped demo checkpoint and 32 generated scenes, images only; about a minute):

```bash
python examples/self_train.py --model_name_or_path demo --make_tiny_demo_data /tmp/sqllava-unlabeled \\
    --kinds stic sq-question --prompts demo --output_dir /tmp/sqllava-self-train --max_steps 10 \\
    --per_device_train_batch_size 4 --learning_rate 5e-5 --lora_r 16 --lora_alpha 32 \\
    --use_cpu --bf16 false --activation_checkpointing false --report_to none
```

STIC on a converted SQ-LLaVA-7B (6k COCO train2014 images, STIC's hyperparameters: lr 1e-7, one epoch, 8 pairs per
step), on 4 GPUs:

```bash
accelerate launch --num_processes 4 examples/self_train.py --model_name_or_path sqllava-7b-hf \\
    --image_folder coco/train2014 --limit 6000 --kinds stic --preferences_file prefs-coco.jsonl \\
    --output_dir checkpoints/sqllava-7b-stic --per_device_train_batch_size 1 --gradient_accumulation_steps 2 \\
    --bf16 true --activation_checkpointing true
```

(Build the pairs file first on one process, `sqllava self-train build-preferences`, when several processes train.)
Stage 2 (description-infused fine-tuning) is `sqllava self-train describe` on the merged model, then
`examples/train_stage2.py` on the file it writes.
"""

import logging
import os
import warnings
from dataclasses import dataclass, field

from peft import LoraConfig
from trl import DPOConfig, TrlParser

from transformers_sqllava.commands.generate import checkpoint_prompt_format, load_model_and_processor
from transformers_sqllava.demo.data import split_scenes
from transformers_sqllava.self_training import PreferenceBuildConfig, build_preferences, load_preference_dataset
from transformers_sqllava.self_training.preferences import STIC_ANSWER_GENERATION
from transformers_sqllava.self_training.prompts import PROMPT_SETS
from transformers_sqllava.training import stic_dpo_config_kwargs, stic_dpo_trainer
from transformers_sqllava.training.recipe import llm_lora_target_regex

logger = logging.getLogger(__name__)


@dataclass
class ScriptArguments:
    r"""
    Arguments of the self-training example, besides `DPOConfig`'s.

    Args:
        model_name_or_path (`str`): An SQ-LLaVA checkpoint (converted release, stage-2 output merged), or `"demo"`.
        image_folder (`str`, *optional*): Unlabeled images (subfolders included).
        make_tiny_demo_data (`str`, *optional*): Write 32 generated scenes (images only) here and use them.
        preferences_file (`str`, *optional*): The pairs (built if missing, resumed if partial); default
            `output_dir/preferences.jsonl`.
        kinds (`list[str]`, *optional*, defaults to `["stic"]`): `stic`, `sq-question`, `sq-answer`.
        prompts (`str`, *optional*, defaults to `"stic"`): `stic`, or `demo` for the demo world's model.
        limit (`int`, *optional*): Use the first N images.
        build_batch_size (`int`, *optional*, defaults to 8): Images per `generate` call while building.
        max_new_tokens (`int`, *optional*): Description / answer limit (STIC: 1024; the demo model: 64).
        lora_r (`int`, *optional*, defaults to 128), lora_alpha (`int`, *optional*, defaults to 256): STIC's.
    """

    model_name_or_path: str = field(default="demo", metadata={"help": "Checkpoint folder or Hub id, or 'demo'."})
    image_folder: str | None = field(default=None, metadata={"help": "Unlabeled images."})
    make_tiny_demo_data: str | None = field(default=None, metadata={"help": "Write 32 demo scenes here, use them."})
    preferences_file: str | None = field(default=None, metadata={"help": "The pairs (built or resumed)."})
    kinds: list[str] = field(default_factory=lambda: ["stic"], metadata={"help": "stic, sq-question, sq-answer."})
    prompts: str = field(default="stic", metadata={"help": "'stic', or 'demo' for the demo model."})
    limit: int | None = field(default=None, metadata={"help": "Use the first N images."})
    build_batch_size: int = field(default=8, metadata={"help": "Images per generate call while building."})
    max_new_tokens: int | None = field(default=None, metadata={"help": "Description / answer limit."})
    lora_r: int = field(default=128, metadata={"help": "LoRA rank (STIC: 128)."})
    lora_alpha: int = field(default=256, metadata={"help": "LoRA alpha (STIC: 256)."})


def unlabeled_images(script_args: ScriptArguments) -> str:
    if script_args.make_tiny_demo_data:
        folder = script_args.make_tiny_demo_data
        os.makedirs(folder, exist_ok=True)
        for scene in split_scenes(num_train=32, num_held_out=0, image_size=72).train:
            scene.render().save(os.path.join(folder, f"scene-{scene.seed}.png"))
        return folder
    if not script_args.image_folder:
        raise ValueError("Pass --image_folder (unlabeled images) or --make_tiny_demo_data DIR.")
    return script_args.image_folder


def main(script_args: ScriptArguments, training_args: DPOConfig) -> None:
    images = unlabeled_images(script_args)
    model, processor = load_model_and_processor(script_args.model_name_or_path, device="cpu" if training_args.use_cpu
                                                else "auto", dtype="float32" if training_args.use_cpu else "auto")  # fmt: skip
    trained = checkpoint_prompt_format(script_args.model_name_or_path)
    system_prompt = trained.get("system_prompt", "v1")
    preferences = script_args.preferences_file or os.path.join(training_args.output_dir, "preferences.jsonl")
    generation = dict(STIC_ANSWER_GENERATION)
    if script_args.max_new_tokens or script_args.prompts == "demo":
        generation["max_new_tokens"] = script_args.max_new_tokens or 64
    config = PreferenceBuildConfig(kinds=tuple(script_args.kinds), prompts=PROMPT_SETS[script_args.prompts],
                                   system_prompt=system_prompt, answer_generation=generation,
                                   seed=training_args.seed)  # fmt: skip
    summary = build_preferences(model, processor, images, preferences, config, script_args.build_batch_size,
                                script_args.limit)  # fmt: skip
    logger.info("Preference pairs: %s written, %s with identical sides left out.", summary.num_written,
                summary.num_identical)  # fmt: skip
    # A named system prompt (v1, v1_sq) is the collator's; a checkpoint's own (the demo's) goes into every prompt.
    named = system_prompt in ("v1", "v1_sq")
    dataset = load_preference_dataset(preferences, images, kinds=script_args.kinds,
                                      system_message=None if named else system_prompt)  # fmt: skip
    lora = LoraConfig(r=script_args.lora_r, lora_alpha=script_args.lora_alpha, lora_dropout=0.05,
                      target_modules=llm_lora_target_regex(), bias="none", task_type="CAUSAL_LM")  # fmt: skip
    trainer = stic_dpo_trainer(model, processor, dataset, training_args, peft_config=lora,
                               system_prompt=system_prompt if named else "v1_sq")  # fmt: skip
    trainer.train()
    trainer.save_model(training_args.output_dir)  # the adapter
    merged = trainer.model.merge_and_unload()
    merged.save_pretrained(os.path.join(training_args.output_dir, "merged"))
    processor.save_pretrained(os.path.join(training_args.output_dir, "merged"))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # PEFT 0.21 reads transformers' deprecated `is_gradient_checkpointing`: a FutureWarning nobody here can act on.
    warnings.filterwarnings("ignore", message=r"`(is_)?gradient_checkpointing(_enable)?` is deprecated", category=FutureWarning)
    parser = TrlParser((ScriptArguments, DPOConfig))
    # STIC's recipe (`stic_dpo_config_kwargs`: lr 1e-7, one epoch, sigmoid + NLL with beta 0.1, ...) as the defaults of
    # the DPOConfig flags; any flag given on the command line overrides its default.
    parser.set_defaults(**stic_dpo_config_kwargs())
    script_args, training_args = parser.parse_args_and_config()
    main(script_args, training_args)
