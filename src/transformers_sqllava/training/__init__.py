"""Training SQ-LLaVA: LLaVA JSON data, the two-stage recipe (projector alignment, LoRA on LLM and ViT) and QLoRA."""

from .data import LlavaDatasetReport, SkippedSample, convert_llava_sample, load_llava_dataset
from .recipe import (
    QLORA_SKIP_MODULES,
    SFT_VISION_DEFAULTS,
    STAGE1_TRAINING_DEFAULTS,
    STAGE2_TRAINING_DEFAULTS,
    SQLlavaOptimizerFactory,
    SQLlavaStage2Config,
    add_vuser_token,
    llm_lora_target_regex,
    load_qlora_base,
    prepare_stage1,
    prepare_stage2,
    qlora_quantization_config,
    set_vision_lora_dropout,
    set_vision_lora_gradients,
    sft_config_kwargs,
    sqllava_config_from_llava,
    sqllava_from_llava,
    stage2_lora_config,
    stage2_optimizer_cls_and_kwargs,
    stage2_parameter_groups,
    vision_layers_feeding_features,
    vision_lora_target_regex,
)
