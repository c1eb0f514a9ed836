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
SQ-LLaVA stage 1: feature alignment with TRL's `SFTTrainer` (docs/original.md#training-recipe). Everything is frozen
but the prototype extractor and the MLP projector; samples are the reference's "plain" format, `<image>` + caption +
`"\\n"`, with only the caption trained (docs/original.md#stage-1-labels). Defaults: lr 1e-3 (the paper says 2e-3),
cosine, warmup 0.03, one epoch.

Tiny, offline, on a CPU:

```bash
python examples/train_stage1.py --model_name_or_path tiny --make_tiny_demo_data /tmp/sqllava-demo-stage1 \\
    --output_dir /tmp/sqllava-stage1 --max_steps 20 --per_device_train_batch_size 4 \\
    --use_cpu --bf16 false --activation_checkpointing false --report_to none
```

The real recipe: a LLaVA-1.5 checkpoint turned into SQ-LLaVA (fresh extractor, `[vusr]` token) with
`sqllava_from_llava(LlavaForConditionalGeneration.from_pretrained("llava-hf/llava-1.5-7b-hf"), processor)` and saved
with its processor, then on 8 GPUs (ZeRO-2 is enough: only the projector trains):

```bash
accelerate launch --config_file examples/accelerate/deepspeed_zero2.yaml examples/train_stage1.py \\
    --model_name_or_path checkpoints/sqllava-7b-from-llava \\
    --dataset_path data/blip_laion_cc_sbu_558k.json --image_folder data/images \\
    --output_dir checkpoints/sqllava-7b-stage1 --per_device_train_batch_size 32 \\
    --bf16 true --activation_checkpointing true --dataloader_num_workers 4 --save_steps 5000
```

`output_dir` then holds the full model, the input of `train_stage2.py`.
"""

import logging
import os

import torch
from trl import SFTConfig, SFTTrainer

from transformers_sqllava.training import SQLlavaCollatorCallback, SQLlavaAlignmentCollator, prepare_stage1

from train_stage2 import ScriptArguments, load_dataset, load_model_and_processor, make_parser, report


def main(script_args: ScriptArguments, training_args: SFTConfig):
    model, processor = load_model_and_processor(script_args)
    model = prepare_stage1(model)
    dataset = load_dataset(script_args, training_args, stage=1)
    collator = SQLlavaAlignmentCollator(
        processor, max_length=script_args.max_sample_length, on_overflow=script_args.on_overflow
    )
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        data_collator=collator,
        processing_class=processor,
        callbacks=[SQLlavaCollatorCallback(collator)],
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    if trainer.is_world_process_zero():
        processor.save_pretrained(training_args.output_dir)
    report(trainer, collator)
    return trainer


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO if int(os.environ.get("RANK", 0)) == 0 else logging.WARNING)
    torch.set_num_threads(max(1, torch.get_num_threads() // int(os.environ.get("WORLD_SIZE", 1))))
    script_args, training_args = make_parser(stage=1).parse_args_and_config()
    main(script_args, training_args)
