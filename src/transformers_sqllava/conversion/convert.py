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
"""`convert_sqllava_checkpoint`: the original sources' tensors (`sources.py`), then the new processor, config and
model, then the output folder. Each step is one function; the orchestrator comes last and reads in one screen."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoTokenizer, CLIPVisionConfig, GenerationConfig, LlamaConfig

from ..configuration_sqllava import SQLlavaConfig
from ..hub import push_folder_to_hub
from ..image_processing_sqllava import SQLlavaImageProcessor
from ..modeling_sqllava import SQLlavaForConditionalGeneration
from ..processing_sqllava import ORIGINAL_VUSER_MARKER, SQLlavaProcessor
from ..tokens import add_sqllava_tokens, resize_embeddings_for_processor
from .checkpoint_io import has_tokenizer, is_lora_release, read_json, read_original_config, resolve_checkpoint
from .keys import ConversionRecord
from .model_card import render_conversion_card, vision_lora_status
from .output_folder import check_not_a_source, check_output_folder, clear_previous_conversion
from .peft_adapter import save_peft_adapter
from .sources import convert_lora_release, convert_merged_checkpoint, convert_vision_tower
from .state_dict import check_state_dict


logger = logging.getLogger(__name__)

SUPPORTED_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"`dtype` must be one of {list(SUPPORTED_DTYPES)}, got {dtype!r}.")
    return SUPPORTED_DTYPES[dtype]


# --------------------------------------------------------------------------------------------------------------------
# The processor, the config and the model
# --------------------------------------------------------------------------------------------------------------------


def keeps_cls_token(original_config: dict) -> bool:
    """Whether the projector sees CLIP's class token too (`mm_vision_select_feature: "cls_patch"`)."""
    return original_config.get("mm_vision_select_feature", "patch") == "cls_patch"


def image_seq_length(vision_config: CLIPVisionConfig, original_config: dict) -> int:
    """How many vision features the projector gets per image: one per patch, plus the class token if kept."""
    return (vision_config.image_size // vision_config.patch_size) ** 2 + int(keeps_cls_token(original_config))


def build_processor(
    tokenizer_dir: Path, vision_dir: Path, vision_config: CLIPVisionConfig, original_config: dict
) -> SQLlavaProcessor:
    """The base's tokenizer (legacy sentencepiece behaviour kept) with `<image>` and `<pad>` added, the faithful chat
    template with the plain-text `VUSER` marker the release learned, and CLIP preprocessing with pad-to-square."""
    if not has_tokenizer(tokenizer_dir):
        raise FileNotFoundError(
            f"No tokenizer (tokenizer.model or tokenizer.json) in {tokenizer_dir}. Vicuna-v1.5's tokenizer is "
            "Llama 2's: copy the tokenizer files of lmsys/vicuna-7b-v1.5 into that folder."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, legacy=True)
    except Exception as error:  # a damaged tokenizer.json / tokenizer.model fails in tokenizers or sentencepiece
        raise ValueError(
            f"Cannot load the tokenizer in {tokenizer_dir}: {type(error).__name__}: {error}. Copy the base model's "
            "tokenizer files (tokenizer.model, tokenizer_config.json, ...) there again."
        ) from error
    # The release learned its vuser marker as plain text ("VUSER"), so only `<image>` and `<pad>` are added.
    add_sqllava_tokens(tokenizer, vuser_token=ORIGINAL_VUSER_MARKER)
    # The reference pads to a square when `image_aspect_ratio == "pad"` (every released checkpoint,
    # docs/original.md#release-layout) and does so at training time; its demo does not, which we do not copy
    # (pad-to-square everywhere).
    image_processor_kwargs = {"do_pad": original_config.get("image_aspect_ratio", "pad") == "pad"}
    clip_preprocessor = vision_dir / "preprocessor_config.json"
    if clip_preprocessor.is_file():
        # The reference preprocesses with the tower's own `CLIPImageProcessor` (docs/original.md#vision-tower).
        clip = read_json(clip_preprocessor)
        fields = ("image_mean", "image_std", "size", "crop_size", "resample", "do_center_crop", "rescale_factor")
        image_processor_kwargs.update({key: clip[key] for key in fields if key in clip})
    else:
        side = vision_config.image_size
        image_processor_kwargs.update(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    return SQLlavaProcessor(
        image_processor=SQLlavaImageProcessor(**image_processor_kwargs),
        tokenizer=tokenizer,
        image_seq_length=image_seq_length(vision_config, original_config),
        vuser_token=ORIGINAL_VUSER_MARKER,
    )


def build_config(
    original_config: dict,
    text_config: LlamaConfig,
    vision_config: CLIPVisionConfig,
    image_token_index: int,
    num_prototypes: int,
    prototype_iterations: int,
) -> SQLlavaConfig:
    """The `SQLlavaConfig` of the converted model, its vision settings read from the original config."""
    if original_config.get("mm_hidden_size", vision_config.hidden_size) != vision_config.hidden_size:
        raise ValueError(
            f"The checkpoint's projector expects {original_config['mm_hidden_size']}-wide vision features but the "
            f"vision tower is {vision_config.hidden_size} wide: pass the right `--vision-tower`."
        )
    return SQLlavaConfig(
        vision_config=vision_config.to_dict(),
        text_config=text_config.to_dict(),
        image_token_index=image_token_index,
        image_seq_length=image_seq_length(vision_config, original_config),
        vision_feature_layer=original_config.get("mm_vision_select_layer", -2),
        vision_feature_select_strategy="full" if keeps_cls_token(original_config) else "default",
        projector_hidden_act="quick_gelu",
        num_prototypes=num_prototypes,
        prototype_iterations=prototype_iterations,
    )


def build_model(
    config: SQLlavaConfig, state_dict: dict[str, torch.Tensor], processor: SQLlavaProcessor, dtype: torch.dtype
) -> SQLlavaForConditionalGeneration:
    """The model around the converted tensors, with rows for the processor's new tokens and greedy generation."""
    # Built on the meta device and given the converted tensors as they are: no second copy in memory.
    with torch.device("meta"):
        model = SQLlavaForConditionalGeneration(config)
    check_state_dict(model, state_dict)
    model.load_state_dict(state_dict, strict=True, assign=True)
    resize_embeddings_for_processor(model, processor)  # new rows = mean of the old ones
    model.config.text_config.pad_token_id = processor.tokenizer.pad_token_id
    model.config.dtype = dtype
    model.generation_config = GenerationConfig(
        bos_token_id=processor.tokenizer.bos_token_id,
        eos_token_id=processor.tokenizer.eos_token_id,
        pad_token_id=processor.tokenizer.pad_token_id,
        do_sample=False,  # the reference's answers are greedy (docs/original.md#self-questioning-at-inference, docs/original.md#evaluation-and-decoding)
        max_new_tokens=1024,
    )
    return model


# --------------------------------------------------------------------------------------------------------------------
# The conversion
# --------------------------------------------------------------------------------------------------------------------


def convert_sqllava_checkpoint(
    model_path: str | Path,
    output_dir: str | Path,
    model_base: str | Path | None = None,
    vision_tower: str | Path | None = None,
    vision_lora: str | Path | None = None,
    dtype: str | torch.dtype = "float16",
    merge: bool = True,
    push_to_hub: str | None = None,
    *,
    private: bool | None = None,
    num_prototypes: int = 256,
    prototype_iterations: int = 2,
    overwrite: bool = False,
) -> Path:
    r"""
    Convert an original SQ-LLaVA checkpoint to a transformers-sqllava folder (model, processor, remote code, card).

    Args:
        model_path (`str` or `Path`):
            The original checkpoint: the LoRA release (`config.json`, `adapter_config.json`, `adapter_model.*`,
            `non_lora_trainables.bin`, optional `Vit-lora/`), or a merged one from `merge_lora_weights.py`. A local
            folder or a Hub repo id (e.g. `"ZachSun/sqllava-lora-7b"`).
        output_dir (`str` or `Path`):
            Where to write the converted folder: a new or empty folder, none of the sources and not inside one (a
            conversion never writes where it reads).
        model_base (`str` or `Path`, *optional*):
            The base LLM the LoRA was trained on; required for the LoRA release (the reference
            (docs/original.md#release-layout): the ShareGPT4V Vicuna of the same size). For a merged checkpoint, only
            used for the tokenizer if the checkpoint has none.
        vision_tower (`str` or `Path`, *optional*):
            The CLIP checkpoint; defaults to the original config's `mm_vision_tower`.
        vision_lora (`str` or `Path`, *optional*):
            The ViT LoRA folder; defaults to `Vit-lora/` inside `model_path` when present. Skipped, with a warning,
            when its B matrices are all zero (the release, docs/original.md#the-vit-lora-never-trains).
        dtype (`str` or `torch.dtype`, *optional*, defaults to `"float16"`):
            The output dtype, `"float16"` (the reference's inference dtype), `"bfloat16"` or `"float32"`. LoRA merges
            are computed in fp32 and then cast.
        merge (`bool`, *optional*, defaults to `True`):
            Merge the LoRAs (W + alpha / r * B @ A). `False` writes the unmerged base model plus a PEFT adapter in
            `output_dir/adapter` (our module names, `target_modules` a regex over full names).
        push_to_hub (`str`, *optional*):
            A Hub repo id: upload the whole output folder (weights, processor, remote code, card) in one commit.
        private (`bool`, *optional*):
            Visibility of a repo created by `push_to_hub`.
        num_prototypes (`int`, *optional*, defaults to 256), prototype_iterations (`int`, *optional*, defaults to 2):
            The reference hard-codes 256 and 2 (docs/original.md#prototype-extractor; `num_latents` in its config is
            never read). Change them only for test-sized checkpoints.
        overwrite (`bool`, *optional*, defaults to `False`):
            Convert into a folder that holds a previous conversion: its files (a stale `adapter/` of a `--no-merge`
            run included) are removed once the new model is built, just before it is written. A folder with other
            files is refused either way.

    Returns:
        `Path`: the output folder.

    Raises:
        `ValueError`: the output folder is a source, inside or around one, or not empty (without `overwrite`); a
            source file cannot be read (named, with the fix); the tensors do not fit the model. `FileNotFoundError`:
            a source folder or file is missing. The messages are listed in docs/errors.md#conversion.
    """
    torch_dtype = parse_dtype(dtype)
    output_dir = Path(output_dir).expanduser()
    given = {"--model-path": model_path, "--model-base": model_base, "--vision-tower": vision_tower,
             "--vision-lora": vision_lora}  # fmt: skip
    # Before any weights are read (or downloaded): a refused output folder costs nothing.
    check_not_a_source(output_dir, given)
    if vision_tower is None and (Path(model_path).expanduser() / "config.json").is_file():
        named = read_json(Path(model_path).expanduser() / "config.json").get("mm_vision_tower")
        check_not_a_source(output_dir, {"vision tower (`mm_vision_tower`)": named})
    check_output_folder(output_dir, overwrite)
    record = ConversionRecord()
    model_dir = resolve_checkpoint(model_path, "--model-path")
    original_config = read_original_config(model_dir)
    base_dir = resolve_checkpoint(model_base, "--model-base") if model_base is not None else None

    # 1. The language model and the projector; 2. the vision tower and its LoRA.
    if is_lora_release(model_dir):
        language = convert_lora_release(model_dir, base_dir, torch_dtype, record, merge)
    else:
        language = convert_merged_checkpoint(model_dir, base_dir, original_config, torch_dtype, record)
    vision = convert_vision_tower(
        model_dir, original_config, vision_tower, vision_lora, language.vision_lora_copy, torch_dtype, record, merge
    )
    record.log_summary()
    weights = language.state_dict | vision.state_dict

    # 3. Processor, config and model: `<image>` and `<pad>` are appended to the base vocabulary (32000 and 32001 for
    # Vicuna), so the config's vocabulary is the checkpoint's and the model grows its embeddings for the processor.
    language.text_config.vocab_size = weights["model.language_model.embed_tokens.weight"].shape[0]
    processor = build_processor(language.tokenizer_dir, vision.folder, vision.config, original_config)
    config = build_config(
        original_config, language.text_config, vision.config, processor.image_token_id, num_prototypes,
        prototype_iterations,
    )
    model = build_model(config, weights, processor, torch_dtype)

    # 4. The output folder: model, processor, the PEFT adapter with `merge=False`, the card; then the upload. The
    # sources as they were resolved (Hub snapshots included) are checked once more, and only then is anything removed.
    check_not_a_source(output_dir, {"--model-path": model_dir, "--model-base": base_dir, "vision tower": vision.folder})
    check_output_folder(output_dir, overwrite)
    clear_previous_conversion(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir, max_shard_size="5GB")
    processor.save_pretrained(output_dir)
    adapters = [adapter for adapter in (language.lora, vision.lora) if adapter is not None]
    if not merge and adapters:
        all_modules = {name.removesuffix(".weight") for name in weights if name.endswith(".weight")}
        save_peft_adapter(output_dir / "adapter", adapters, all_modules, push_to_hub or str(output_dir))
    card = render_conversion_card(
        language.text_config,
        repo_id=push_to_hub,
        model_path=model_path,
        model_base=model_base,
        vision_tower=vision.source,
        vision_lora=vision_lora_status(vision.lora is not None, merge, language.is_lora_release),
        dtype=torch_dtype,
        merged=merge or not adapters,
        lora_release=language.is_lora_release,
        image_token_id=processor.image_token_id,
        pad_token_id=processor.tokenizer.pad_token_id,
    )
    card.save(output_dir / "README.md")
    logger.info(f"Wrote {output_dir}.")

    if push_to_hub:
        push_folder_to_hub(output_dir, push_to_hub, private=private)
    return output_dir
