"""SQ-LLaVA (Self-Questioning LLaVA, ECCV 2024) as a native Hugging Face Transformers model.

Importing this package registers `model_type="sqllava"` with `AutoConfig`, `AutoModel`,
`AutoModelForImageTextToText` (and `AutoProcessor`), so the Auto classes and `pipeline` load SQ-LLaVA checkpoints.
`modeling_sqllava` gives PEFT default LoRA targets for it (`LORA_TARGET_MODULES`), so `LoraConfig()` without
`target_modules` works, with the package or from a saved folder's remote code.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageTextToText, AutoProcessor

from .configuration_sqllava import SQLlavaConfig
from .modeling_sqllava import (
    LORA_TARGET_MODULES,
    SQLlavaForConditionalGeneration,
    SQLlavaModel,
    SQLlavaMultiModalProjector,
    SQLlavaPreTrainedModel,
    SQLlavaPrototypeExtractor,
)
from .image_processing_sqllava import SQLlavaImageProcessor
from .processing_sqllava import (
    SYSTEM_PROMPT_V1,
    SYSTEM_PROMPT_V1_SQ,
    SQLlavaProcessor,
    build_chat_template,
)
from .tokens import add_sqllava_tokens, add_vuser_token, initialize_token_embeddings, resize_embeddings_for_processor
from .self_questioning import (
    QuestionAnswer,
    SelfQuestioningChunk,
    SelfQuestioningConfig,
    SelfQuestioningResult,
    self_question,
    stream_self_questioning,
)

__version__ = "0.1.0"

AutoConfig.register(SQLlavaConfig.model_type, SQLlavaConfig, exist_ok=True)
AutoModel.register(SQLlavaConfig, SQLlavaModel, exist_ok=True)
AutoModelForImageTextToText.register(SQLlavaConfig, SQLlavaForConditionalGeneration, exist_ok=True)
AutoImageProcessor.register(SQLlavaConfig, image_processor_classes={"pil": SQLlavaImageProcessor}, exist_ok=True)
AutoProcessor.register(SQLlavaConfig, SQLlavaProcessor, exist_ok=True)

__all__ = [
    "SYSTEM_PROMPT_V1",
    "SYSTEM_PROMPT_V1_SQ",
    "SQLlavaImageProcessor",
    "SQLlavaProcessor",
    "build_chat_template",
    "add_sqllava_tokens",
    "add_vuser_token",
    "initialize_token_embeddings",
    "resize_embeddings_for_processor",
    "LORA_TARGET_MODULES",
    "SQLlavaConfig",
    "SQLlavaForConditionalGeneration",
    "SQLlavaModel",
    "SQLlavaMultiModalProjector",
    "SQLlavaPreTrainedModel",
    "SQLlavaPrototypeExtractor",
    "QuestionAnswer",
    "SelfQuestioningChunk",
    "SelfQuestioningConfig",
    "SelfQuestioningResult",
    "self_question",
    "stream_self_questioning",
]
