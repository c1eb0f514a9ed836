"""Training SQ-LLaVA: LLaVA JSON data, the stage-1 and self-questioning collators, the two-stage recipe (projector alignment, LoRA on LLM and ViT) and QLoRA."""

from .collator import CollatorStats, SQLlavaAlignmentCollator, SQLlavaCollatorCallback, SQLlavaSelfQuestioningCollator
from .labels import IGNORE_INDEX, Segment, conversation_segments, encode_conversation, encode_segments, trained_spans
from .data import LlavaDatasetReport, SkippedSample, convert_llava_sample, load_llava_dataset
from .from_llava import sqllava_config_from_llava, sqllava_from_llava
from .qlora import QLORA_SKIP_MODULES, load_qlora_base, qlora_quantization_config
from .recipe import (
    SFT_VISION_DEFAULTS,
    STAGE1_TRAINING_DEFAULTS,
    STAGE2_TRAINING_DEFAULTS,
    SQLlavaOptimizerFactory,
    SQLlavaStage2Config,
    llm_lora_target_regex,
    prepare_stage1,
    prepare_stage2,
    set_vision_lora_dropout,
    set_vision_lora_gradients,
    sft_config_kwargs,
    stage2_lora_config,
    stage2_optimizer_cls_and_kwargs,
    stage2_parameter_groups,
    vision_layers_feeding_features,
    vision_lora_target_regex,
)

__all__ = [
    "CollatorStats",
    "IGNORE_INDEX",
    "Segment",
    "conversation_segments",
    "encode_conversation",
    "encode_segments",
    "SQLlavaCollatorCallback",
    "SQLlavaAlignmentCollator",
    "SQLlavaSelfQuestioningCollator",
    "trained_spans",
    "QLORA_SKIP_MODULES",
    "SFT_VISION_DEFAULTS",
    "STAGE1_TRAINING_DEFAULTS",
    "STAGE2_TRAINING_DEFAULTS",
    "LlavaDatasetReport",
    "SQLlavaOptimizerFactory",
    "SQLlavaStage2Config",
    "SkippedSample",
    "convert_llava_sample",
    "llm_lora_target_regex",
    "load_llava_dataset",
    "load_qlora_base",
    "prepare_stage1",
    "prepare_stage2",
    "qlora_quantization_config",
    "set_vision_lora_dropout",
    "set_vision_lora_gradients",
    "sft_config_kwargs",
    "sqllava_config_from_llava",
    "sqllava_from_llava",
    "stage2_lora_config",
    "stage2_optimizer_cls_and_kwargs",
    "stage2_parameter_groups",
    "vision_layers_feeding_features",
    "vision_lora_target_regex",
]
