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
"""The two-stage SQ-LLaVA recipe (docs/original.md#training-recipe), usable from Python and with TRL's `SFTTrainer`.

- Stage 1, alignment: [`prepare_stage1`] freezes everything but the prototype extractor + projector;
  [`STAGE1_TRAINING_DEFAULTS`] holds the released script's hyperparameters.
- Stage 2, self-questioning instruction tuning: [`prepare_stage2`] puts one LoRA adapter on the language model
  (r 128) and the vision layers that feed the selected feature layer (r 32), trains the extractor + projector fully,
  and lets the ViT LoRA receive gradients (the reference's never did, docs/original.md#the-vit-lora-never-trains;
  `vision_lora_gradients="reference"` reproduces that). [`stage2_parameter_groups`] /
  [`stage2_optimizer_cls_and_kwargs`] give the three learning rates.
- Starting points: a converted SQ-LLaVA checkpoint (`from_pretrained`), or a LLaVA-1.5 checkpoint turned into
  SQ-LLaVA by [`~training.from_llava.sqllava_from_llava`].
- QLoRA: [`~training.qlora.load_qlora_base`] loads a 4-bit base; [`prepare_stage2`] then runs
  `peft.prepare_model_for_kbit_training`.

Example (stage 2 with TRL):

```python
>>> from trl import SFTConfig, SFTTrainer
>>> model = prepare_stage2(SQLlavaForConditionalGeneration.from_pretrained("path/to/stage1"))
>>> args = SFTConfig("out", **sft_config_kwargs(stage=2))
>>> trainer = SFTTrainer(model, args, train_dataset=dataset, data_collator=collator, processing_class=processor,
...                      optimizer_cls_and_kwargs=stage2_optimizer_cls_and_kwargs(args=args))
```
"""

import contextlib
import logging
import re
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from torch import nn
from transformers import TrainingArguments


logger = logging.getLogger(__name__)

PROJECTOR_MODULE = "multi_modal_projector"  # prototype extractor + MLP
VISION_TOWER_MODULE = "vision_tower"

# ------------------------------------------------------------------------------------------------------------------
# Hyperparameters
# ------------------------------------------------------------------------------------------------------------------

# `scripts/pretrain_clu.sh` (docs/original.md#training-recipe). The paper says 2e-3 and a constant schedule; the
# released script, which these follow, uses 1e-3 with cosine decay. transformers 5 takes the warmup ratio as a float
# `warmup_steps` < 1. Both scripts checkpoint activations (`--gradient_checkpointing True`), which transformers 5.23
# calls `activation_checkpointing`; setting it also keeps TRL's `SFTConfig`, whose own default is still the old
# `gradient_checkpointing=True`, from warning that the old name is deprecated.
STAGE1_TRAINING_DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-3,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.03,
    "num_train_epochs": 1,
    "weight_decay": 0.0,
    "activation_checkpointing": True,
}

# `scripts/finetune_lora_clu_sq.sh` (docs/original.md#training-recipe). `learning_rate` is the LLM LoRA's; the ViT
# LoRA and the extractor + projector get their own rates through `stage2_optimizer_cls_and_kwargs`. The script runs
# 1.2 epochs, the README says 1: we follow the README.
STAGE2_TRAINING_DEFAULTS: dict[str, Any] = {
    "learning_rate": 2e-4,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.03,
    "num_train_epochs": 1,
    "weight_decay": 0.0,
    "activation_checkpointing": True,
}

# What TRL 1.16's `SFTTrainer` needs for SQ-LLaVA data: keep the `images`/`messages` columns for the
# collator, let the collator tokenise, and never truncate through the 576 image tokens.
SFT_VISION_DEFAULTS: dict[str, Any] = {
    "remove_unused_columns": False,
    "dataset_kwargs": {"skip_prepare_dataset": True},
    "max_length": None,
}


# transformers 5.23 renamed these `TrainingArguments`; the old names still work, with a `FutureWarning`, until v6.
_RENAMED_TRAINING_ARGUMENTS = {
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}


def sft_config_kwargs(stage: Literal[1, 2], **overrides) -> dict[str, Any]:
    """
    Keyword arguments for `trl.SFTConfig` (or, without the SFT-only keys, `TrainingArguments`): the stage's
    defaults, [`SFT_VISION_DEFAULTS`], then `overrides`.

    Activation checkpointing is on, as in the released scripts; `activation_checkpointing=False` turns it off. The
    pre-5.23 names `gradient_checkpointing` / `gradient_checkpointing_kwargs` are still accepted (with a
    `FutureWarning`) and mean the same: passing them to `SFTConfig` next to these defaults would be silently ignored,
    since transformers lets the new name win.

    Example: `SFTConfig(output_dir="out", **sft_config_kwargs(stage=1, per_device_train_batch_size=16, bf16=True))`.
    """
    if stage not in (1, 2):
        raise ValueError(f"`stage` must be 1 (alignment) or 2 (self-questioning instruction tuning), got {stage!r}.")
    for old, new in _RENAMED_TRAINING_ARGUMENTS.items():
        if old in overrides:
            message = f"`{old}` is deprecated (transformers 5.23 renamed it): pass `{new}` instead."
            warnings.warn(message, FutureWarning, stacklevel=2)
            overrides.setdefault(new, overrides.pop(old))  # the new name, when given too, wins (as in transformers)
    defaults = STAGE1_TRAINING_DEFAULTS if stage == 1 else STAGE2_TRAINING_DEFAULTS
    return {**defaults, **SFT_VISION_DEFAULTS, **overrides}


@dataclass
class SQLlavaStage2Config:
    r"""
    The stage-2 adapters, what else trains, and the learning rates (docs/original.md#training-recipe).

    Args:
        llm_lora_r (`int`, *optional*, defaults to 128):
            Rank of the language model's LoRA.
        llm_lora_alpha (`int`, *optional*, defaults to 256):
            Its alpha (scaling alpha / r = 2).
        llm_lora_dropout (`float`, *optional*, defaults to 0.05):
            Its dropout.
        llm_target_modules (`tuple[str, ...]`, *optional*, defaults to the seven Llama projections):
            Linear layers of every language-model decoder layer that get the LoRA: `q_proj`, `k_proj`, `v_proj`,
            `o_proj`, `gate_proj`, `up_proj`, `down_proj`.
        vision_lora_r (`int`, *optional*, defaults to 32):
            Rank of the ViT LoRA: the released 7B adapter's (`Vit-lora/adapter_config.json`). The script says 64 and
            the 13B release has 64 (docs/original.md#training-recipe, docs/original.md#release-layout).
        vision_lora_alpha (`int`, *optional*, defaults to 64):
            Its alpha.
        vision_lora_dropout (`float`, *optional*, defaults to 0.2):
            Its dropout.
        vision_target_modules (`tuple[str, ...]`, *optional*, defaults to CLIP's six linears):
            `q_proj`, `k_proj`, `v_proj`, `out_proj`, `fc1`, `fc2` of each vision layer that feeds
            `config.vision_feature_layer` (layers 0-22 of 24 for -2). The reference also put LoRA on the last layer,
            whose output is never used: such a LoRA gets no gradient and makes DDP fail
            (docs/training.md#with-trl-ddp-and-bitsandbytes).
        use_vision_lora (`bool`, *optional*, defaults to `True`):
            `False` trains no ViT LoRA (the paper's ablation baseline).
        train_projector (`bool`, *optional*, defaults to `True`):
            Train the prototype extractor and the MLP projector fully.
        vision_lora_gradients (`str`, *optional*, defaults to `"enabled"`):
            `"enabled"`: the ViT LoRA receives gradients and trains, as the paper describes. `"reference"`: run the
            vision tower without gradients, as the reference's `@torch.no_grad()` CLIP forward does
            (docs/original.md#the-vit-lora-never-trains), so the ViT LoRA stays at its initial value (B = 0: the base
            ViT). The default is a deliberate fix.
        llm_learning_rate (`float`, *optional*, defaults to 2e-4):
            Learning rate of the LLM LoRA and any other trainable language-model parameter (the reference's
            `learning_rate`).
        vision_learning_rate (`float`, *optional*, defaults to 2e-5):
            Learning rate of the ViT LoRA (`--vision_tower_lr`).
        projector_learning_rate (`float`, *optional*, defaults to 2e-5):
            Learning rate of the prototype extractor and projector (`--mm_projector_lr`).
        weight_decay (`float`, *optional*, defaults to 0.0):
            Weight decay of every group (0 in both released scripts).
    """

    llm_lora_r: int = 128
    llm_lora_alpha: int = 256
    llm_lora_dropout: float = 0.05
    llm_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    vision_lora_r: int = 32
    vision_lora_alpha: int = 64
    vision_lora_dropout: float = 0.2
    vision_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
    use_vision_lora: bool = True
    train_projector: bool = True
    vision_lora_gradients: Literal["enabled", "reference"] = "enabled"
    llm_learning_rate: float = 2e-4
    vision_learning_rate: float = 2e-5
    projector_learning_rate: float = 2e-5
    weight_decay: float = 0.0

    def __post_init__(self):
        if self.vision_lora_gradients not in ("enabled", "reference"):
            raise ValueError(
                f"`vision_lora_gradients` must be 'enabled' (the ViT LoRA trains) or 'reference' (the vision tower runs "
                f"without gradients, as in the reference), got {self.vision_lora_gradients!r}."
            )


# ------------------------------------------------------------------------------------------------------------------
# Module lookup
# ------------------------------------------------------------------------------------------------------------------


def _unwrap(model: nn.Module) -> nn.Module:
    return model.get_base_model() if isinstance(model, PeftModel) else model


def _check_is_sqllava(model: nn.Module) -> nn.Module:
    base = _unwrap(model)
    inner = getattr(base, "model", None)
    if not all(hasattr(inner, name) for name in (VISION_TOWER_MODULE, PROJECTOR_MODULE, "language_model")):
        raise ValueError(
            f"Expected an SQLlavaForConditionalGeneration (with `model.vision_tower`, `model.multi_modal_projector`, "
            f"`model.language_model`), got {type(base).__name__}. Convert a LLaVA-1.5 model with `sqllava_from_llava`."
        )
    return base


def vision_layers_feeding_features(model: nn.Module) -> list[int]:
    """
    Indices of the vision encoder layers whose output reaches `config.vision_feature_layer`.

    `hidden_states[0]` is the patch embedding and `hidden_states[i]` the output of layer `i - 1`, so feature layer -2
    of a 24-layer CLIP (`hidden_states[23]`) is fed by layers 0-22; layer 23 never influences the model.
    """
    base = _check_is_sqllava(model)
    layers = _vision_encoder_layers(base)[1]
    feature_layer = base.config.vision_feature_layer
    if not isinstance(feature_layer, int):
        raise ValueError(f"`vision_feature_layer` must be an int for SQ-LLaVA, got {feature_layer!r}.")
    num_hidden_states = len(layers) + 1
    index = feature_layer if feature_layer >= 0 else num_hidden_states + feature_layer
    if not 0 <= index < num_hidden_states:
        raise ValueError(
            f"`vision_feature_layer={feature_layer}` is outside the vision tower's {num_hidden_states} hidden states."
        )
    return list(range(index))


def _vision_encoder_layers(base: nn.Module) -> tuple[str, nn.ModuleList]:
    # CLIP and SigLIP keep their blocks in `...encoder.layers`; search rather than hard-code `vision_model.` prefixes,
    # which differ between transformers versions.
    for name, module in base.model.vision_tower.named_modules():
        if name.split(".")[-2:] == ["encoder", "layers"] and isinstance(module, nn.ModuleList):
            return f"model.{VISION_TOWER_MODULE}.{name}", module
    raise ValueError(
        f"Could not find the encoder layers (`encoder.layers`) of the vision tower {type(base.model.vision_tower).__name__}."
    )


def _alternation(names: tuple[str, ...] | list[str]) -> str:
    return "|".join(re.escape(str(name)) for name in names)


def llm_lora_target_regex(config: SQLlavaStage2Config | None = None) -> str:
    """Regex over full module names: the chosen projections of every language-model decoder layer, nothing else."""
    config = config or SQLlavaStage2Config()
    return rf"model\.language_model\.layers\.\d+\.(?:self_attn|mlp)\.(?:{_alternation(config.llm_target_modules)})"


def vision_lora_target_regex(model: nn.Module, config: SQLlavaStage2Config | None = None) -> str | None:
    """Regex over full module names: the chosen linears of the vision layers feeding the feature layer, or `None`."""
    config = config or SQLlavaStage2Config()
    layer_ids = vision_layers_feeding_features(model)
    if not layer_ids:
        return None
    prefix, _ = _vision_encoder_layers(_unwrap(model))
    return (
        rf"{re.escape(prefix)}\.(?:{_alternation(layer_ids)})\.(?:self_attn|mlp)\."
        rf"(?:{_alternation(config.vision_target_modules)})"
    )


# ------------------------------------------------------------------------------------------------------------------
# Stage 1
# ------------------------------------------------------------------------------------------------------------------


def prepare_stage1(model: nn.Module) -> nn.Module:
    """
    Freezes everything but the prototype extractor and the MLP projector (`model.multi_modal_projector`), in place,
    as the reference's stage 1 (`train.py` L1153-1156, docs/original.md#training-recipe). Returns the model.

    The reference also attached a ViT LoRA in stage 1; it never received gradients
    (docs/original.md#the-vit-lora-never-trains) and stage 2 re-initialises it, so stage 1 has none here.
    """
    base = _check_is_sqllava(model)
    base.requires_grad_(False)
    base.model.multi_modal_projector.requires_grad_(True)
    # Training mode for the language model and CLIP has no effect on their outputs except dropout (0 in both).
    return model


# ------------------------------------------------------------------------------------------------------------------
# Stage 2
# ------------------------------------------------------------------------------------------------------------------


def stage2_lora_config(model: nn.Module, config: SQLlavaStage2Config | None = None) -> LoraConfig:
    """
    One `LoraConfig` for both LoRAs: `target_modules` is a regex over full module names (the LLM projections and the
    feeding vision layers' linears), and `rank_pattern` / `alpha_pattern` give the vision modules their own rank.

    Why one adapter rather than two adapters in one `PeftModel`: transformers' `Trainer` resumes a PEFT model by
    loading only its *first* active adapter (the others are loaded frozen and deactivated), `PeftModel.from_pretrained`
    loads one adapter per call, and `modules_to_save` belongs to a single adapter. With one adapter, `save_pretrained`,
    `from_pretrained`, checkpoint resume and `merge_and_unload` each take one call. PEFT 0.21 has no per-module
    dropout, so [`prepare_stage2`] sets the vision dropout on the injected modules (dropout only acts in training: the
    saved `lora_dropout` of 0.05 changes nothing at inference or merging).

    The extractor + projector train fully through `modules_to_save`, so they are saved in the adapter checkpoint,
    restored on resume, and written into the base model by `merge_and_unload`.
    """
    config = config or SQLlavaStage2Config()
    targets = [llm_lora_target_regex(config)]
    rank_pattern, alpha_pattern = {}, {}
    vision_regex = vision_lora_target_regex(model, config) if config.use_vision_lora else None
    if vision_regex is not None:
        targets.append(vision_regex)
        # PEFT matches pattern keys against the end of a module name: anchor on the vision tower.
        vision_key = rf"model\.{VISION_TOWER_MODULE}\..*"
        rank_pattern[vision_key] = config.vision_lora_r
        alpha_pattern[vision_key] = config.vision_lora_alpha
    return LoraConfig(
        r=config.llm_lora_r,
        lora_alpha=config.llm_lora_alpha,
        lora_dropout=config.llm_lora_dropout,
        target_modules="|".join(f"(?:{target})" for target in targets),
        rank_pattern=rank_pattern,
        alpha_pattern=alpha_pattern,
        modules_to_save=[PROJECTOR_MODULE] if config.train_projector else None,
        bias="none",
        task_type="CAUSAL_LM",
    )


def _is_quantized(model: nn.Module) -> bool:
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


def set_vision_lora_dropout(model: nn.Module, dropout: float, adapter_name: str = "default") -> int:
    """Sets the LoRA dropout of every vision-tower LoRA layer (PEFT 0.21 has no per-module dropout). Returns the count."""
    count = 0
    for name, module in _unwrap(model).named_modules():
        lora_dropout = getattr(module, "lora_dropout", None)
        is_vision = f".{VISION_TOWER_MODULE}." in f".{name}"
        if is_vision and isinstance(lora_dropout, nn.ModuleDict) and adapter_name in lora_dropout:
            lora_dropout[adapter_name] = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()
            count += 1
    return count


@contextlib.contextmanager
def _without_peft_checkpointing_deprecation():
    # PEFT 0.21 reads `model.is_gradient_checkpointing` and calls `gradient_checkpointing_enable`, which transformers
    # 5.23 deprecates in favour of the `activation_checkpointing` names: a FutureWarning the user cannot act on.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`(is_)?gradient_checkpointing(_enable)?` is deprecated", category=FutureWarning)
        yield


def prepare_stage2(
    model: nn.Module,
    config: SQLlavaStage2Config | None = None,
    *,
    activation_checkpointing: bool = False,
) -> PeftModel:
    """
    Wraps an SQ-LLaVA model for stage 2: LLM LoRA + ViT LoRA (one adapter, see [`stage2_lora_config`]), extractor +
    projector trained fully, everything else frozen, and the vision tower's gradient mode set
    (`config.vision_lora_gradients`). A 4-bit or 8-bit base (see [`load_qlora_base`]) first goes through
    `peft.prepare_model_for_kbit_training`.

    Pass the returned `PeftModel` to `SFTTrainer` as the model, without `peft_config` (TRL would build its own
    adapter and skip the vision dropout and gradient mode), together with
    `optimizer_cls_and_kwargs=stage2_optimizer_cls_and_kwargs(config)`.

    Args:
        model ([`SQLlavaForConditionalGeneration`]):
            A converted SQ-LLaVA checkpoint, a stage-1 result, or the output of [`sqllava_from_llava`].
        config ([`SQLlavaStage2Config`], *optional*):
            Ranks, targets and switches; defaults to the released recipe.
        activation_checkpointing (`bool`, *optional*, defaults to `False`):
            For quantized bases: passed to `prepare_model_for_kbit_training` (which enables it on the model).

    Returns:
        `peft.PeftModel`.
    """
    config = config or SQLlavaStage2Config()
    if isinstance(model, PeftModel):
        raise ValueError(
            "`prepare_stage2` got a PeftModel. Pass the base SQ-LLaVA model, or call `merge_and_unload()` first."
        )
    _check_is_sqllava(model)
    if _is_quantized(model):
        # Freezes the base, upcasts the non-quantized parameters to fp32 for stable training, and (optionally)
        # enables activation checkpointing with input gradients.
        with _without_peft_checkpointing_deprecation():
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=activation_checkpointing)
    lora_config = stage2_lora_config(model, config)
    with _without_peft_checkpointing_deprecation():
        peft_model = get_peft_model(model, lora_config)
    if config.use_vision_lora:
        set_vision_lora_dropout(peft_model, config.vision_lora_dropout)
    set_vision_lora_gradients(peft_model, config.vision_lora_gradients)
    return peft_model


# The reference-reproducing switch: hooks that run the vision tower's forward under `torch.no_grad()`, as the
# reference's `CLIPVisionTower.forward` is decorated (docs/original.md#the-vit-lora-never-trains). Kept on the module
# so the switch can be flipped back.
_NO_GRAD_HOOKS_ATTRIBUTE = "_sqllava_no_grad_hooks"


def set_vision_lora_gradients(model: nn.Module, mode: Literal["enabled", "reference"]) -> None:
    """
    Chooses whether the vision tower builds an autograd graph.

    - `"enabled"` (default, a deliberate fix): it does, so the ViT LoRA receives gradients and trains.
    - `"reference"`: the vision tower's forward runs under `torch.no_grad()`, as the reference's CLIP forward does
      (docs/original.md#the-vit-lora-never-trains): the ViT LoRA gets no gradient and keeps B = 0, so the merged ViT
      equals the base ViT, and the vision tower stores no activations. The prototype extractor and projector still
      train. Under DDP the untouched ViT LoRA needs `ddp_find_unused_parameters=True` (or `use_vision_lora=False`).

    Implemented with a forward pre-hook that disables gradients and a forward hook (`always_call=True`, so an error
    inside the tower cannot leave gradients off) that restores the previous mode; the modeling code is unchanged.
    """
    if mode not in ("enabled", "reference"):
        raise ValueError(f"`mode` must be 'enabled' or 'reference', got {mode!r}.")
    vision_tower = _check_is_sqllava(model).model.vision_tower
    for handle in getattr(vision_tower, _NO_GRAD_HOOKS_ATTRIBUTE, []):
        handle.remove()
    setattr(vision_tower, _NO_GRAD_HOOKS_ATTRIBUTE, [])
    if mode == "enabled":
        return
    previous_modes: list[bool] = []

    def disable_gradients(module, args):
        previous_modes.append(torch.is_grad_enabled())
        torch.set_grad_enabled(False)

    def restore_gradients(module, args, output):
        torch.set_grad_enabled(previous_modes.pop())

    handles = [
        vision_tower.register_forward_pre_hook(disable_gradients),
        vision_tower.register_forward_hook(restore_gradients, always_call=True),
    ]
    setattr(vision_tower, _NO_GRAD_HOOKS_ATTRIBUTE, handles)


# ------------------------------------------------------------------------------------------------------------------
# Optimizer parameter groups
# ------------------------------------------------------------------------------------------------------------------


def _group_of(parameter_name: str) -> str:
    # The reference's grouping (`llava_trainer.py`, docs/original.md#learning-rate-groups): names containing the
    # projector, then the vision tower; everything else (the LLM LoRA) takes the main learning rate.
    if PROJECTOR_MODULE in parameter_name:
        return "projector"
    if VISION_TOWER_MODULE in parameter_name:
        return "vision_lora"
    return "llm_lora"


def stage2_parameter_groups(model: nn.Module, config: SQLlavaStage2Config | None = None) -> list[dict[str, Any]]:
    """
    The trainable parameters of `model` in three optimizer groups, each with its `lr` and `weight_decay` and a `name`
    (kept by torch optimizers, saved in their state dict): `"llm_lora"` (`llm_learning_rate`, first, so the
    learning rate `Trainer` logs is the LLM's), `"vision_lora"` (`vision_learning_rate`) and `"projector"` (extractor +
    projector, `projector_learning_rate`). Groups without parameters are left out.
    """
    config = config or SQLlavaStage2Config()
    learning_rates = {
        "llm_lora": config.llm_learning_rate,
        "vision_lora": config.vision_learning_rate,
        "projector": config.projector_learning_rate,
    }
    params: dict[str, list[nn.Parameter]] = {name: [] for name in learning_rates}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            params[_group_of(name)].append(parameter)
    groups = [
        {"params": params[name], "lr": lr, "weight_decay": config.weight_decay, "name": name}
        for name, lr in learning_rates.items()
        if params[name]
    ]
    if not groups:
        raise ValueError("The model has no trainable parameters: call `prepare_stage2(model)` first.")
    return groups


class SQLlavaOptimizerFactory:
    """
    An optimizer factory for `Trainer(optimizer_cls_and_kwargs=(SQLlavaOptimizerFactory, kwargs))`: transformers 5
    instantiates it without arguments and calls it with the model being trained and `kwargs`, so the groups are built
    from the final (e.g. PEFT-wrapped) model. Builds AdamW over [`stage2_parameter_groups`].

    `kwargs`: the [`SQLlavaStage2Config`] learning-rate fields (`llm_learning_rate`, `vision_learning_rate`,
    `projector_learning_rate`, `weight_decay`) and AdamW's own keywords (`betas`, `eps`, `fused`, ...).
    """

    def __call__(self, model: nn.Module, **kwargs) -> torch.optim.Optimizer:
        group_fields = ("llm_learning_rate", "vision_learning_rate", "projector_learning_rate", "weight_decay")
        config = SQLlavaStage2Config(**{key: kwargs.pop(key) for key in group_fields if key in kwargs})
        groups = stage2_parameter_groups(model, config)
        return torch.optim.AdamW(groups, lr=config.llm_learning_rate, weight_decay=config.weight_decay, **kwargs)


def stage2_optimizer_cls_and_kwargs(
    config: SQLlavaStage2Config | None = None, args: TrainingArguments | None = None
) -> tuple[type, dict[str, Any]]:
    """
    `optimizer_cls_and_kwargs` for `SFTTrainer` / `Trainer`: AdamW with the stage-2 learning rates per group. AdamW's
    betas and epsilon come from `args` when given (`adam_beta1`, `adam_beta2`, `adam_epsilon`). The learning rate
    scheduler (`args.lr_scheduler_type`, warmup) scales every group, and checkpoint resume restores the groups'
    optimizer state as for any optimizer.
    """
    config = config or SQLlavaStage2Config()
    kwargs: dict[str, Any] = {
        "llm_learning_rate": config.llm_learning_rate,
        "vision_learning_rate": config.vision_learning_rate,
        "projector_learning_rate": config.projector_learning_rate,
        "weight_decay": config.weight_decay,
    }
    if args is not None:
        kwargs.update(betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)
    return SQLlavaOptimizerFactory, kwargs


__all__ = [
    "SFT_VISION_DEFAULTS",
    "STAGE1_TRAINING_DEFAULTS",
    "STAGE2_TRAINING_DEFAULTS",
    "SQLlavaOptimizerFactory",
    "SQLlavaStage2Config",
    "llm_lora_target_regex",
    "prepare_stage1",
    "prepare_stage2",
    "set_vision_lora_dropout",
    "set_vision_lora_gradients",
    "sft_config_kwargs",
    "stage2_lora_config",
    "stage2_optimizer_cls_and_kwargs",
    "stage2_parameter_groups",
    "vision_layers_feeding_features",
    "vision_lora_target_regex",
]
