"""Training SQ-LLaVA: LLaVA JSON data, the two-stage recipe (projector alignment, LoRA on LLM and ViT) and QLoRA."""

from .data import LlavaDatasetReport, SkippedSample, convert_llava_sample, load_llava_dataset
