"""Helpers shared by the inference tests (self-questioning, pipeline, CLI, README): an input-sensitive tiny model."""

import numpy as np
import torch
from conftest import tiny_config, tiny_processor
from PIL import Image

from transformers_sqllava import SQLlavaForConditionalGeneration, resize_embeddings_for_processor


def sensitive_model(processor=None) -> SQLlavaForConditionalGeneration:
    """A tiny random SQ-LLaVA whose greedy output depends on the prompt and the image.

    At the default initializer_range (0.02) a tiny random model writes the same tokens whatever the prompt or image;
    larger weights make its output depend on both, so a wrong prompt, image or row order changes the text.
    """
    torch.manual_seed(0)
    scale = {"initializer_range": 0.5}
    model = SQLlavaForConditionalGeneration(tiny_config(text_config=scale, vision_config=scale, **scale)).eval()
    if processor is not None:
        resize_embeddings_for_processor(model, processor)
    return model


def save_tiny_checkpoint(folder) -> str:
    """Write a sensitive tiny model and its processor (plain-text `VUSER` marker, as a converted checkpoint)."""
    processor = tiny_processor()
    sensitive_model(processor).save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


def picture(seed: int, width: int = 24, height: int = 20) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


class single_torch_thread:
    """The tiny model's matmuls take microseconds; with other processes on 2 cores, torch's thread pool makes them
    ~30x slower. Use as a context manager in a module-scoped fixture; restores the thread count."""

    def __enter__(self):
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.threads)
