"""PEFT LoRA on SQ-LLaVA: every injected LoRA trains, including the prototype extractor's, and the default targets.

A LoRA whose layer the forward bypasses (code reading `layer.weight` instead of calling `layer`) silently gets no
gradient. After one backward step every LoRA must have a gradient that is not all zeros: `lora_B` starts at zero, so
`lora_A`'s gradient is zero at first but `lora_B`'s is not.
"""

import copy
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import tiny_config
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer
from transformers import BitsAndBytesConfig

from transformers_sqllava import LORA_TARGET_MODULES, SQLlavaForConditionalGeneration, SQLlavaModel

IMAGE_TOKEN = 419
# tiny_config(): 3 CLIP layers and vision_feature_layer=-2, so the last CLIP layer's output is never used and LoRAs
# there cannot get a gradient (as in transformers' LLaVA). They are the only exception.
UNUSED_VISION_LAYER = re.compile(r".*vision_tower\.(?:vision_model\.)?encoder\.layers\.2\..*")
LANGUAGE_MODEL_PROJECTIONS = {
    f"base_model.model.model.language_model.layers.{layer}.{projection}"
    for layer in range(2)
    for projection in (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
    )
}  # fmt: skip


def make_inputs(batch_size: int = 2) -> dict[str, torch.Tensor]:
    input_ids = torch.cat(
        [
            torch.tensor([[1, 300, 301]] * batch_size),
            torch.full((batch_size, 16), IMAGE_TOKEN),
            torch.randint(3, 400, (batch_size, 5)),
        ],
        dim=1,
    )
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": torch.randn(batch_size, 3, 16, 16),
    }


def lora_modules(model) -> dict[str, LoraLayer]:
    return {name: module for name, module in model.named_modules() if isinstance(module, LoraLayer)}


def backward_step(model, dtype: torch.dtype = torch.float32) -> None:
    inputs = make_inputs()
    inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
    model.train()
    model(**inputs, labels=inputs["input_ids"]).loss.backward()


def loras_without_gradient(model) -> list[str]:
    """Names of the injected LoRAs whose `lora_A` and `lora_B` gradients are missing or all zeros."""
    untrained = []
    for name, module in lora_modules(model).items():
        gradients = [parameter.grad for parameter in (*module.lora_A.parameters(), *module.lora_B.parameters())]
        if any(gradient is None for gradient in gradients) or all(not gradient.any() for gradient in gradients):
            untrained.append(name)
    return untrained


def test_all_linear_lora_trains_every_used_layer_including_the_prototype_extractor():
    model = get_peft_model(
        SQLlavaForConditionalGeneration(tiny_config()), LoraConfig(r=4, target_modules="all-linear")
    )
    injected = lora_modules(model)
    extractor_loras = {name for name in injected if ".prototype_extractor." in name}
    assert {name.rsplit(".", 1)[-1] for name in extractor_loras} == {"prototype_proj", "key_proj", "value_proj"}

    backward_step(model)
    untrained = loras_without_gradient(model)
    assert not extractor_loras & set(untrained), "the prototype extractor bypasses its LoRA"
    assert untrained and all(UNUSED_VISION_LAYER.fullmatch(name) for name in untrained), untrained


def test_default_lora_targets_are_the_language_model_projections():
    # What `trl sft --use_peft` builds without `--lora_target_modules`: a `LoraConfig` with `target_modules=None`.
    from trl import ModelConfig, get_peft_config

    peft_config = get_peft_config(ModelConfig(use_peft=True, lora_r=4))
    assert peft_config.target_modules is None
    model = get_peft_model(SQLlavaForConditionalGeneration(tiny_config()), peft_config)
    assert model.peft_config["default"].target_modules == LORA_TARGET_MODULES
    assert set(lora_modules(model)) == LANGUAGE_MODEL_PROJECTIONS

    backward_step(model)
    assert loras_without_gradient(model) == []

    # The same regex on the base model (`AutoModel`), whose module names have no `model.` prefix.
    base_model = get_peft_model(SQLlavaModel(tiny_config()), LoraConfig(r=4))
    expected = {name.replace("base_model.model.model.", "base_model.model.") for name in LANGUAGE_MODEL_PROJECTIONS}
    assert set(lora_modules(base_model)) == expected


REMOTE_CODE_DEFAULT_TARGETS = textwrap.dedent(
    """
    import sys
    sys.modules["transformers_sqllava"] = None  # any `import transformers_sqllava` now raises ImportError

    from peft import LoraConfig, get_peft_model  # imported first, as `trl sft` does
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(sys.argv[1], trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
    model = get_peft_model(model, LoraConfig(r=4))
    print(sorted(name for name, module in model.named_modules() if hasattr(module, "lora_A")))
    """
)


def test_default_lora_targets_come_with_the_remote_code(tmp_path):
    # `trl sft --trust_remote_code` loads the saved folder's modeling file and never imports this package.
    SQLlavaForConditionalGeneration(tiny_config()).save_pretrained(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_CODE_DEFAULT_TARGETS, str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().splitlines()[-1] == str(sorted(LANGUAGE_MODEL_PROJECTIONS))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fresh_lora_leaves_the_extractor_output_unchanged(dtype):
    # A fresh LoRA adds B @ A = 0: the wrapped extractor must compute exactly what the plain one does, also in bf16,
    # where the routing runs in fp32 on fp32 copies of the bf16 weights and PEFT keeps the LoRA weights in fp32.
    torch.manual_seed(0)
    model = SQLlavaForConditionalGeneration(tiny_config()).to(dtype).eval()
    extractor = model.model.multi_modal_projector.prototype_extractor
    image_features = torch.randn(2, 16, 32, dtype=dtype)
    with torch.no_grad():
        expected = extractor(image_features)
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules="all-linear"))
    wrapped = peft_model.base_model.model.model.multi_modal_projector.prototype_extractor
    assert isinstance(wrapped.prototype_proj, LoraLayer)
    assert wrapped.prototype_proj.lora_A["default"].weight.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(wrapped(image_features), expected, rtol=0, atol=0)

    backward_step(peft_model, dtype)
    assert not [name for name in loras_without_gradient(peft_model) if ".prototype_extractor." in name]


def test_lora_on_a_4bit_prototype_extractor_trains(tmp_path):
    # A user's `llm_int8_skip_modules` that leaves the projector out quantizes the extractor's projections too; its
    # LoRAs (PEFT's `Linear4bit` wrappers) still get gradients.
    torch.manual_seed(0)
    SQLlavaForConditionalGeneration(tiny_config()).save_pretrained(tmp_path)
    quantization_config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.float32,
        llm_int8_skip_modules=["model.vision_tower", "lm_head"],
    )
    model = SQLlavaForConditionalGeneration.from_pretrained(tmp_path, quantization_config=quantization_config)
    extractor = model.model.multi_modal_projector.prototype_extractor
    assert type(extractor.prototype_proj).__name__ == "Linear4bit"

    model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
    backward_step(model)
    untrained = loras_without_gradient(model)
    assert any(".prototype_extractor.prototype_proj" in name for name in lora_modules(model))
    assert not [name for name in untrained if ".prototype_extractor." in name], untrained
