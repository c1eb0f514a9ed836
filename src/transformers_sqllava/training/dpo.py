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
"""STIC's DPO recipe (self-training on image comprehension) for SQ-LLaVA, on TRL 1.16's `DPOTrainer`.

STIC preference-tunes LLaVA with a DPO loss plus an NLL term on the chosen answer, through a fresh LoRA on the
language model whose reference is the same model with the adapter disabled. Its code (`stic/dpo_trainer.py`, a copy
of an old TRL `DPOTrainer` that replaces TRL's; `llava/train/train_dpo.py`; `scripts/dpo_finetune.sh`) maps onto
TRL 1.16 as follows:

- the DPO loss, `-F.logsigmoid(self.beta * logits)` (`dpo_trainer.py` L452) with `beta` 0.1 (L123; the training
  script passes none): `loss_type` `"sigmoid"`, `beta=0.1`;
- the NLL term, `losses -= policy_chosen_logps / 1024` (L458), the chosen answer's *summed* log-prob over 1024 per
  pair: `loss_type` `"sft"` with the weight `mean chosen tokens / 1024` ([`stic_sft_weight`], see below);
- the reference, the policy under `disable_adapter()` (L644; `train_dpo.py` L1010-1016 passes no `ref_model`): TRL
  1.16 does the same for `ref_model=None` and a `peft_config` (it disables the adapter, `use_adapter(model, None)`);
- the LoRA, r 128, alpha 256 (`dpo_finetune.sh` L4), dropout 0.05 (`train_dpo.py` L141), on the language model's
  linears (`find_all_linear_names`, L202-215): [`stic_lora_config`];
- lr 1e-7, one epoch, batch 1 x 2 accumulation steps x 4 GPUs, warmup ratio 0.03, cosine, no weight decay
  (`dpo_finetune.sh` L3, L19-30): [`STIC_DPO_TRAINING_DEFAULTS`];
- dropout off in the policy and the reference (`dpo_trainer.py` L145, L305-308): TRL's default `disable_dropout=True`;
- images padded to a square (`dpo_finetune.sh` L15, `--image_aspect_ratio pad`): the collator's `pad_to_square=True`.

Why the NLL weight depends on the data: TRL's `"sft"` term is the mean NLL per chosen token of the batch,
`sum_i S_i / sum_i n_i` (`S_i` the summed NLL of pair `i`'s `n_i` chosen tokens), while STIC's is
`sum_i S_i / (1024 * batch)`. The two agree exactly with the weight `(sum_i n_i / batch) / 1024`, the batch's mean
chosen length over 1024. A fixed weight from the dataset's mean length ([`mean_chosen_tokens`]) is exact for batches
of that mean length and close otherwise (STIC's batches are of one pair, so its NLL weight varies with each answer's
length).

Not reproduced: STIC scores the *rejected* answer with the log-prob of the model's own top token at each position
(the second one where the top token is the rejected token; `_get_noisy_batch_logps`, L498-545, called at L618-623),
not of the rejected tokens. TRL scores the rejected tokens, as DPO defines it. STIC's LoRA also lands on the vision
tower's `q_proj`/`k_proj`/`v_proj` (its target list holds bare names), where the no-grad CLIP forward
(`llava/model/multimodal_encoder/clip_encoder.py` L45) never trains it; here the LoRA is on the language model only.

Example:

```python
>>> from trl import DPOConfig
>>> collator = SQLlavaPreferenceCollator(processor)
>>> args = DPOConfig("out", **stic_dpo_config_kwargs(mean_chosen_tokens=mean_chosen_tokens(dataset, collator)))
>>> trainer = stic_dpo_trainer(model, processor, dataset, args, data_collator=collator)
>>> trainer.train()
```
"""

import itertools
import logging
from typing import TYPE_CHECKING, Any

from peft import LoraConfig, PeftModel

from .collator import SQLlavaCollatorCallback
from .preference_collator import SQLlavaPreferenceCollator
from .recipe import SQLlavaStage2Config, _without_peft_checkpointing_deprecation, llm_lora_target_regex


if TYPE_CHECKING:  # TRL (the `train` extra) is imported when a trainer is built, not with this module
    from trl import DPOConfig, DPOTrainer

logger = logging.getLogger(__name__)

STIC_BETA = 0.1  # `stic/dpo_trainer.py` L123, the `DPOTrainer` default; `llava/train/train_dpo.py` passes none
STIC_NLL_DIVISOR = 1024  # `stic/dpo_trainer.py` L458: `losses -= policy_chosen_logps / 1024`
STIC_LORA_R = 128  # `scripts/dpo_finetune.sh` L4, `--lora_r 128`
STIC_LORA_ALPHA = 256  # `scripts/dpo_finetune.sh` L4, `--lora_alpha 256`
STIC_LORA_DROPOUT = 0.05  # `llava/train/train_dpo.py` L141, the default (the script passes none)

# `scripts/dpo_finetune.sh`. STIC runs 4 GPUs (L3) x batch 1 (L20) x 2 accumulation steps (L22): 8 pairs per
# optimizer step; here the per-device values, to scale with the number of processes. transformers 5 takes the warmup
# ratio (L29) as a float `warmup_steps` < 1.
STIC_DPO_TRAINING_DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-7,  # L27
    "num_train_epochs": 1,  # L19
    "per_device_train_batch_size": 1,  # L20
    "gradient_accumulation_steps": 2,  # L22
    "warmup_steps": 0.03,  # L29
    "lr_scheduler_type": "cosine",  # L30
    "weight_decay": 0.0,  # L28
    "beta": STIC_BETA,
    "loss_type": ["sigmoid", "sft"],
}

# What TRL 1.16's `DPOTrainer` needs for SQ-LLaVA pairs: keep every column (the rows' `id`s name them in the
# collator's errors; STIC keeps them too, `train_dpo.py` L116); no `max_length` of TRL's own (it only configures TRL's
# collators: [`SQLlavaPreferenceCollator`] has its own). Activation checkpointing, as the SFT recipe: it changes no
# number, saves memory on two sequences per pair, and keeps `DPOConfig` from warning about its old name.
DPO_VISION_DEFAULTS: dict[str, Any] = {
    "remove_unused_columns": False,
    "max_length": None,
    "activation_checkpointing": True,
}


def stic_sft_weight(mean_chosen_tokens: float) -> float:
    """
    The weight of TRL's `"sft"` loss that gives STIC's NLL term, `-sum(chosen log-probs) / 1024` per pair
    (`stic/dpo_trainer.py` L458): TRL's term is a mean per token, so the weight is the mean number of chosen tokens
    (answer + `</s>`) over 1024. Exact for a batch whose mean chosen length is `mean_chosen_tokens`.
    """
    number = isinstance(mean_chosen_tokens, (int, float)) and not isinstance(mean_chosen_tokens, bool)
    if not number or mean_chosen_tokens <= 0:
        raise ValueError(
            f"`mean_chosen_tokens` must be a positive number (e.g. from `mean_chosen_tokens(dataset, collator)`), got "
            f"{mean_chosen_tokens!r}."
        )
    return float(mean_chosen_tokens) / STIC_NLL_DIVISOR


def mean_chosen_tokens(dataset, collator: SQLlavaPreferenceCollator, max_rows: int | None = 1024) -> float:
    """
    The mean number of trained tokens of the chosen completions (text + `</s>`, as `completion_mask` counts them) over
    the first `max_rows` rows of `dataset` (all with `None`), rendered as `collator` renders them. Only the `prompt`
    and `chosen` columns are read: no image is decoded.

    Args:
        dataset (`datasets.Dataset`, `datasets.IterableDataset` or a list of rows): preference rows.
        collator ([`SQLlavaPreferenceCollator`]): gives the system prompt and the rendering.
        max_rows (`int`, *optional*, defaults to 1024): how many rows to read.
    """
    rows = dataset.select_columns(["prompt", "chosen"]) if hasattr(dataset, "select_columns") else dataset
    counts = []
    for position, row in enumerate(itertools.islice(rows, max_rows)):
        try:
            counts.append(collator.num_completion_tokens(row["prompt"], row["chosen"]))
        except (KeyError, ValueError) as error:
            raise ValueError(f"Row {position} of the dataset: {error}") from error
    if not counts:
        raise ValueError("The dataset has no rows: cannot measure the chosen completions' length.")
    return sum(counts) / len(counts)


def stic_dpo_config_kwargs(mean_chosen_tokens: float | None = None, **overrides) -> dict[str, Any]:
    """
    Keyword arguments for `trl.DPOConfig`: [`STIC_DPO_TRAINING_DEFAULTS`] (sigmoid DPO with beta 0.1 plus the NLL term,
    STIC's learning rate, epochs and batch), [`DPO_VISION_DEFAULTS`], then `overrides`.

    Args:
        mean_chosen_tokens (`float`, *optional*):
            The data's mean chosen length in tokens ([`mean_chosen_tokens`]): sets `loss_weights` to STIC's NLL
            weighting, `mean_chosen_tokens / 1024` for `"sft"` and 1.0 for the other losses (see [`stic_sft_weight`]).
            Without it (and without `loss_weights` in `overrides`) the weights are left unset: [`stic_dpo_trainer`]
            measures them from the training data, while a plain `DPOTrainer` would weigh every loss 1.0.
        **overrides: any `DPOConfig` argument.

    Example: `DPOConfig("out", **stic_dpo_config_kwargs(mean_chosen_tokens=180.0, bf16=True))`.
    """
    kwargs = {**STIC_DPO_TRAINING_DEFAULTS, **DPO_VISION_DEFAULTS, **overrides}
    loss_types = [kwargs["loss_type"]] if isinstance(kwargs["loss_type"], str) else list(kwargs["loss_type"])
    if mean_chosen_tokens is not None and "loss_weights" not in overrides:
        weight = stic_sft_weight(mean_chosen_tokens)
        kwargs["loss_weights"] = [weight if loss_type == "sft" else 1.0 for loss_type in loss_types]
    elif "loss_weights" not in kwargs and "sft" in loss_types:
        logger.info(
            "No `mean_chosen_tokens`: the 'sft' weight is left unset (`stic_dpo_trainer` measures it from the data; "
            "a plain `DPOTrainer` would use 1.0, not STIC's weighting)."
        )
    return kwargs


def stic_lora_config(config: SQLlavaStage2Config | None = None) -> LoraConfig:
    """
    STIC's LoRA (r 128, alpha 256, dropout 0.05: `scripts/dpo_finetune.sh` L4, `llava/train/train_dpo.py` L141) on the
    language model's projections of every decoder layer ([`llm_lora_target_regex`]: the seven of `config`'s
    `llm_target_modules`; its ranks are not used). Nothing else trains: STIC's script sets `--mm_projector_lr`, but its
    trainer wraps the model with `get_peft_model` a second time (`stic/dpo_trainer.py` L214), which freezes every
    non-LoRA parameter, the projector that `initialize_vision_modules` had unfrozen (`llava/model/llava_arch.py`
    L88-90) included.
    """
    return LoraConfig(
        r=STIC_LORA_R,
        lora_alpha=STIC_LORA_ALPHA,
        lora_dropout=STIC_LORA_DROPOUT,
        target_modules=llm_lora_target_regex(config),
        bias="none",
        task_type="CAUSAL_LM",
    )


def stic_dpo_trainer(
    model,
    processor,
    train_dataset,
    args: "DPOConfig | None" = None,
    *,
    peft_config: LoraConfig | None = None,
    data_collator: SQLlavaPreferenceCollator | None = None,
    eval_dataset=None,
    callbacks: list | None = None,
    **collator_kwargs,
) -> "DPOTrainer":
    r"""
    A `trl.DPOTrainer` for STIC's DPO on an SQ-LLaVA model: a fresh LoRA ([`stic_lora_config`]) whose reference is the
    model with the adapter disabled, [`SQLlavaPreferenceCollator`] rows, and [`SQLlavaCollatorCallback`] logging its
    counts.

    Args:
        model ([`SQLlavaForConditionalGeneration`]):
            The model to tune, without an adapter: merge a stage-2 adapter first (`merge_and_unload()`), as STIC
            tunes a merged LLaVA.
        processor ([`SQLlavaProcessor`]):
            Its processor (`processing_class`).
        train_dataset (`datasets.Dataset` or `datasets.IterableDataset`):
            Rows `{"images": [image], "prompt": [...], "chosen": [message], "rejected": [message]}` (optionally `id`).
        args (`trl.DPOConfig`, *optional*):
            Defaults to `DPOConfig("sqllava-stic-dpo", **stic_dpo_config_kwargs())`. When it has the `"sft"` loss and
            no `loss_weights`, they are set here (on `args`) to STIC's weighting, from the data's mean chosen length
            ([`mean_chosen_tokens`]).
        peft_config (`peft.LoraConfig`, *optional*):
            Defaults to [`stic_lora_config`]`()`.
        data_collator ([`SQLlavaPreferenceCollator`], *optional*):
            Defaults to `SQLlavaPreferenceCollator(processor, **collator_kwargs)`.
        eval_dataset, callbacks: as for `DPOTrainer`.
        **collator_kwargs: [`SQLlavaPreferenceCollator`] arguments (`max_length`, `system_prompt`, ...), without
            `data_collator`.
    """
    from trl import DPOConfig, DPOTrainer

    if isinstance(model, PeftModel):
        raise ValueError(
            "The model already has a PEFT adapter: merge it into the base model first (`model = "
            "model.merge_and_unload()`). STIC trains a fresh LoRA whose reference is the model without it; TRL would "
            "instead train the existing adapter against a frozen copy of it."
        )
    if data_collator is not None and collator_kwargs:
        raise ValueError(
            f"Pass collator arguments ({sorted(collator_kwargs)}) either in `data_collator` or as keywords, not both."
        )
    collator = data_collator or SQLlavaPreferenceCollator(processor, **collator_kwargs)
    if args is None:
        args = DPOConfig("sqllava-stic-dpo", **stic_dpo_config_kwargs())
    if args.loss_weights is None and "sft" in args.loss_type:
        weight = stic_sft_weight(mean_chosen_tokens(train_dataset, collator))
        args.loss_weights = [weight if loss_type == "sft" else 1.0 for loss_type in args.loss_type]
        logger.info("STIC's NLL weighting: loss_weights=%s for loss_type=%s.", args.loss_weights, args.loss_type)
    with _without_peft_checkpointing_deprecation():  # DPOTrainer wraps the model with PEFT here
        return DPOTrainer(
            model=model,
            args=args,
            data_collator=collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processor,
            callbacks=[SQLlavaCollatorCallback(collator), *(callbacks or [])],
            peft_config=peft_config if peft_config is not None else stic_lora_config(),
        )


__all__ = [
    "DPO_VISION_DEFAULTS",
    "STIC_BETA",
    "STIC_DPO_TRAINING_DEFAULTS",
    "STIC_LORA_ALPHA",
    "STIC_LORA_DROPOUT",
    "STIC_LORA_R",
    "STIC_NLL_DIVISOR",
    "mean_chosen_tokens",
    "stic_dpo_config_kwargs",
    "stic_dpo_trainer",
    "stic_lora_config",
    "stic_sft_weight",
]
