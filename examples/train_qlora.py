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
SQ-LLaVA stage 2 with QLoRA: the same self-questioning SFT as `train_stage2.py`, on a 4-bit (NF4, double-quantized)
language model. The vision tower, extractor + projector and `lm_head` stay in full precision (`QLORA_SKIP_MODULES`),
and bitsandbytes' CPU weight repacking is switched off after loading (docs/training.md#with-trl-ddp-and-bitsandbytes).
TRL's `SFTTrainer` casts the trainable parameters of a quantized model to bf16, so QLoRA through TRL needs `--bf16
true` (the default here).

Tiny, offline, on a CPU (bitsandbytes 4-bit runs on CPU):

```bash
python examples/train_qlora.py --model_name_or_path tiny --make_tiny_demo_data /tmp/sqllava-demo \\
    --output_dir /tmp/sqllava-qlora --max_steps 10 --per_device_train_batch_size 4 \\
    --use_cpu --activation_checkpointing false --report_to none
```

The real model on one 24 GB GPU:

```bash
python examples/train_qlora.py --model_name_or_path checkpoints/sqllava-7b-stage1 \\
    --dataset_path data/llava_v1_5_mix665k.json --image_folder data --output_dir checkpoints/sqllava-7b-qlora \\
    --per_device_train_batch_size 4 --gradient_accumulation_steps 4 --activation_checkpointing true
```
"""

import logging
import os
from pathlib import Path

import torch
from trl import SFTConfig

from transformers_sqllava.training import load_qlora_base

import tiny_setup
from train_stage2 import ScriptArguments, main, make_parser


def load_quantized(script_args: ScriptArguments, training_args: SFTConfig):
    """The 4-bit base and its processor; `"tiny"` saves a random tiny model first (4-bit loads from a checkpoint)."""
    compute_dtype = torch.bfloat16 if training_args.bf16 else torch.float32
    if script_args.model_name_or_path == tiny_setup.TINY:
        processor = tiny_setup.build_tiny_processor()
        path = Path(training_args.output_dir) / "tiny-base"
        with training_args.main_process_first(desc="tiny base model"):
            if not (path / "config.json").exists():
                tiny_setup.build_tiny_model(processor).save_pretrained(path)
        return load_qlora_base(str(path), compute_dtype=compute_dtype), processor
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(script_args.model_name_or_path)
    return load_qlora_base(script_args.model_name_or_path, compute_dtype=compute_dtype), processor


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO if int(os.environ.get("RANK", 0)) == 0 else logging.WARNING)
    parser = make_parser(stage=2)
    parser.set_defaults(bf16=True)  # required: SFTTrainer casts a quantized model's trainable parameters to bf16
    script_args, training_args = parser.parse_args_and_config()
    if not training_args.bf16:
        raise ValueError("QLoRA through TRL's SFTTrainer needs --bf16 true (it casts the trainable parameters to bf16).")
    model, processor = load_quantized(script_args, training_args)
    main(script_args, training_args, model=model, processor=processor)
