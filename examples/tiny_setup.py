"""A tiny random SQ-LLaVA and a tiny LLaVA-JSON dataset, built offline in seconds, for the training examples.

`--model_name_or_path tiny` and `--make_tiny_demo_data DIR` in `train_stage1.py`, `train_stage2.py` and
`train_qlora.py` use these, so every example runs end to end on a laptop CPU with no download. The data are the
offline demo's scenes of coloured shapes (`transformers_sqllava.demo`): PNG images and multi-turn conversations in
the LLaVA JSON format that `load_llava_dataset` reads, exactly like real LLaVA data.
"""

from pathlib import Path

import torch

from transformers_sqllava import (
    SQLlavaForConditionalGeneration,
    SQLlavaImageProcessor,
    SQLlavaProcessor,
    add_sqllava_tokens,
)
from transformers_sqllava.demo.data import split_scenes, write_llava_dataset
from transformers_sqllava.demo.tiny import processor_vocabulary, tiny_sqllava_config
from transformers_sqllava.demo.tokenizer import build_scene_tokenizer

TINY = "tiny"
TINY_IMAGE_SIZE = 16  # 16 px in 4 px patches: 16 image tokens per image (576 for the real model)


def build_tiny_processor(vuser_token: str = "[vusr]") -> SQLlavaProcessor:
    """The demo tokenizer (Vicuna-shaped, trained in well under a second) and a 16 px image processor."""
    image_processor = SQLlavaImageProcessor(
        size={"shortest_edge": TINY_IMAGE_SIZE}, crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}
    )
    tokenizer = build_scene_tokenizer()
    add_sqllava_tokens(tokenizer, vuser_token=vuser_token)  # <image>, <pad> and a special vuser marker
    return SQLlavaProcessor(image_processor, tokenizer, image_seq_length=16, vuser_token=vuser_token)


def build_tiny_model(processor: SQLlavaProcessor, hidden_size: int = 64, seed: int = 0):
    """A random 2-layer SQ-LLaVA sized for `processor` (64 wide: bitsandbytes' 4-bit block size, for QLoRA)."""
    config = tiny_sqllava_config(
        image_size=TINY_IMAGE_SIZE,
        patch_size=4,
        vision_hidden_size=32,
        vision_intermediate_size=64,
        vision_layers=3,
        text_hidden_size=hidden_size,
        text_intermediate_size=2 * hidden_size,
        text_layers=2,
        text_key_value_heads=2,
        num_prototypes=6,
        image_seq_length=processor.image_seq_length,
        **processor_vocabulary(processor),
    )
    torch.manual_seed(seed)  # the same weights in every process of a multi-process run
    return SQLlavaForConditionalGeneration(config)


def make_tiny_demo_data(output_dir: str | Path, stage: int = 2, num_samples: int = 16) -> tuple[Path, Path]:
    """
    Writes `num_samples` scenes as PNGs and LLaVA JSON (`stage=1`: caption pairs; 2: 2-5 turn conversations).
    Returns the JSON file and the image folder, the two arguments of `load_llava_dataset`.
    """
    scenes = split_scenes(num_train=num_samples, num_held_out=0).train
    json_path = write_llava_dataset(scenes, output_dir, json_name=f"stage{stage}.json", stage=stage)
    return json_path, Path(output_dir) / "images"
