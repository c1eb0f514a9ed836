"""4-bit and 8-bit loading with bitsandbytes (CPU): what gets quantized, forward, generate, QLoRA, save/reload.

Every test loads a tiny SQ-LLaVA saved in full precision with `BitsAndBytesConfig`. The language model is 64 wide,
not `tiny_config()`'s 32: 64 is bitsandbytes' 4-bit block size, the narrowest width at which a `Linear4bit` behaves
like a real model's layer (narrower layers make the CPU weight repacking raise instead of silently repacking).
"""

import os
import subprocess
import sys

import bitsandbytes as bnb
import pytest
import torch
from bitsandbytes.functional import has_avx512bf16
from conftest import tiny_config
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import AutoModel, AutoModelForImageTextToText, BitsAndBytesConfig

from transformers_sqllava import SQLlavaForConditionalGeneration, SQLlavaModel

# bitsandbytes' 8-bit matmul casts fp32 activations to fp16 and says so on every call.
pytestmark = pytest.mark.filterwarnings("ignore:MatMul8bitLt. inputs will be cast")

DEFAULT_SKIP_MODULES = ["model.vision_tower", "model.multi_modal_projector", "lm_head"]
NUM_LANGUAGE_MODEL_LINEARS = 2 * 7  # 2 layers x (q, k, v, o, gate, up, down)
# Full module names: a bare ["q_proj", "v_proj"] would also put LoRA on CLIP's attention
# (docs/training.md#with-trl-ddp-and-bitsandbytes).
LANGUAGE_MODEL_QV = r".*\.language_model\.layers\.\d+\.self_attn\.(q_proj|v_proj)"


def nf4_config(**kwargs) -> BitsAndBytesConfig:
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32, **kwargs
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny full-precision SQ-LLaVA saved to disk, the inputs used below and its fp32 outputs on them."""
    torch.manual_seed(0)
    model = SQLlavaForConditionalGeneration(tiny_config(text_config={"hidden_size": 64, "intermediate_size": 128}))
    model.eval()
    folder = tmp_path_factory.mktemp("sqllava-tiny")
    model.save_pretrained(folder)
    image = [419] * 16  # `<image>` expanded to image_seq_length tokens, as the processor does
    input_ids = torch.tensor([[1, 300, 301, *image, 305, 306, 307], [1, 310, 311, *image, 315, 316, 317]])
    inputs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": torch.randn(2, 3, 16, 16),
    }
    with torch.no_grad():
        logits = model(**inputs).logits
        image_features = model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
    return {"path": folder, "inputs": inputs, "logits": logits, "image_features": image_features}


def linears_by_kind(model: nn.Module) -> dict[str, dict[str, type]]:
    """The type of every linear layer, grouped into language model / vision tower / projector / lm_head."""
    groups = {"language_model": {}, "vision_tower": {}, "multi_modal_projector": {}, "lm_head": {}}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            group = next(group for group in groups if group in name)
            groups[group][name] = type(module)
    return groups


def assert_only_language_model_quantized(model: nn.Module, quantized_type: type):
    groups = linears_by_kind(model)
    assert len(groups["language_model"]) == NUM_LANGUAGE_MODEL_LINEARS
    assert set(groups["language_model"].values()) == {quantized_type}
    for group in ("vision_tower", "multi_modal_projector", "lm_head"):
        assert groups[group], group
        assert set(groups[group].values()) == {nn.Linear}, f"{group} was quantized: {groups[group]}"
    # The prototype extractor's own parameters (its routing, kept in full precision) stay fp32 too.
    extractor = model.model.multi_modal_projector.prototype_extractor
    assert {parameter.dtype for parameter in extractor.parameters()} == {torch.float32}


def train_lora(model: nn.Module, inputs: dict, steps: int = 2) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Wraps `model` in LoRA on the language model's q/v projections and trains it for `steps` AdamW steps.

    Returns the PEFT model and the LoRA weights as they were before training.
    """
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=LANGUAGE_MODEL_QV))
    lora_before = {name: p.detach().clone() for name, p in peft_model.named_parameters() if "lora_" in name}
    peft_model.train()
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        loss = peft_model(**inputs, labels=inputs["input_ids"]).loss
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return peft_model, lora_before


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


@pytest.mark.parametrize("loader", ["class", "auto", "auto-dict-config"])
def test_4bit_load_quantizes_only_the_language_model(checkpoint, loader):
    quantization_config = nf4_config()
    model_class = SQLlavaForConditionalGeneration if loader == "class" else AutoModelForImageTextToText
    passed_config = quantization_config.to_dict() if loader == "auto-dict-config" else quantization_config
    model = model_class.from_pretrained(checkpoint["path"], quantization_config=passed_config)

    assert type(model) is SQLlavaForConditionalGeneration
    assert model.is_loaded_in_4bit
    assert_only_language_model_quantized(model, bnb.nn.Linear4bit)
    # The default is written into the model's config (so a saved 4-bit model reloads with the same layout) ...
    assert sorted(model.config.quantization_config.llm_int8_skip_modules) == sorted(DEFAULT_SKIP_MODULES)
    # ... but not into the caller's object.
    assert quantization_config.llm_int8_skip_modules is None


def test_4bit_base_model_through_auto_model_keeps_towers_unquantized(checkpoint):
    model = AutoModel.from_pretrained(checkpoint["path"], quantization_config=nf4_config())
    assert type(model) is SQLlavaModel
    assert sorted(model.config.quantization_config.llm_int8_skip_modules) == ["multi_modal_projector", "vision_tower"]
    groups = linears_by_kind(model)
    assert set(groups["language_model"].values()) == {bnb.nn.Linear4bit}
    assert set(groups["vision_tower"].values()) == set(groups["multi_modal_projector"].values()) == {nn.Linear}


def test_4bit_forward_is_close_to_fp32(checkpoint):
    model = SQLlavaForConditionalGeneration.from_pretrained(checkpoint["path"], quantization_config=nf4_config())
    inputs, reference = checkpoint["inputs"], checkpoint["logits"]
    with torch.no_grad():
        image_features = model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
        logits = model(**inputs).logits

    # Vision tower and projector are untouched full-precision modules: the image features are bit-identical.
    torch.testing.assert_close(image_features, checkpoint["image_features"], rtol=0, atol=0)
    assert logits.shape == reference.shape
    assert torch.isfinite(logits).all()
    # The language model really is quantized: NF4 keeps 16 levels per 64-weight block, so the logits move ...
    assert (logits - reference).abs().max() > 1e-3
    # ... but stay close. Argmax agreement would be a poor check here: a random tiny model's 421 logits are nearly
    # tied (std ~0.16), so a few-percent perturbation flips many argmaxes (70-85% agree over seeds). Direction and
    # relative size of the whole logit tensor are stable measures: cosine ~0.99 and relative error ~0.14 over seeds,
    # while an unrelated random model gives a cosine near 0.
    cosine = nn.functional.cosine_similarity(logits.flatten(), reference.flatten(), dim=0)
    relative_error = (logits - reference).norm() / reference.norm()
    assert cosine > 0.97, cosine
    assert relative_error < 0.25, relative_error


def test_4bit_generate(checkpoint):
    model = SQLlavaForConditionalGeneration.from_pretrained(checkpoint["path"], quantization_config=nf4_config())
    inputs = checkpoint["inputs"]
    prompt_length = inputs["input_ids"].shape[1]
    generated = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)

    assert generated.shape == (2, prompt_length + 4)
    assert torch.equal(generated[:, :prompt_length], inputs["input_ids"])
    # The first greedy token is the argmax of the quantized model's own forward at the last prompt position.
    with torch.no_grad():
        last_logits = model(**inputs).logits[:, -1]
    assert torch.equal(generated[:, prompt_length], last_logits.argmax(-1))


def test_4bit_lora_training_step_updates_only_lora(checkpoint):
    model = SQLlavaForConditionalGeneration.from_pretrained(checkpoint["path"], quantization_config=nf4_config())
    base_before = snapshot(model)
    # Two steps: PEFT starts lora_B at zero, so lora_A gets its first non-zero gradient in the second step.
    peft_model, lora_before = train_lora(model, checkpoint["inputs"], steps=2)

    assert len(lora_before) == 2 * 2 * 2  # 2 layers x (q_proj, v_proj) x (lora_A, lora_B), none in CLIP
    assert all(".language_model.layers." in name for name in lora_before)
    assert {name for name, p in peft_model.named_parameters() if p.requires_grad} == set(lora_before)
    for name, parameter in peft_model.named_parameters():
        if name in lora_before:
            assert not torch.equal(parameter, lora_before[name]), f"{name} did not change"
    # The base weights, quantized (packed 4-bit data and its quant state) and full precision alike, are unchanged.
    base_after = {
        name.replace(".base_layer", ""): tensor
        for name, tensor in peft_model.get_base_model().state_dict().items()
        if "lora_" not in name
    }
    assert base_after.keys() == base_before.keys()
    for name, tensor in base_before.items():
        assert torch.equal(base_after[name], tensor), name


def test_4bit_save_and_reload(checkpoint, tmp_path):
    model = SQLlavaForConditionalGeneration.from_pretrained(checkpoint["path"], quantization_config=nf4_config())
    with torch.no_grad():
        logits = model(**checkpoint["inputs"]).logits
    model.save_pretrained(tmp_path)

    # No `quantization_config` argument: the saved config says 4-bit and which modules were skipped.
    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path)
    assert reloaded.is_loaded_in_4bit
    assert sorted(reloaded.config.quantization_config.llm_int8_skip_modules) == sorted(DEFAULT_SKIP_MODULES)
    assert_only_language_model_quantized(reloaded, bnb.nn.Linear4bit)
    assert all(not m.support_avx512bf16_for_cpu for m in reloaded.modules() if isinstance(m, bnb.nn.Linear4bit))
    saved, loaded = model.state_dict(), reloaded.state_dict()
    assert saved.keys() == loaded.keys()
    for name, tensor in saved.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor), name
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**checkpoint["inputs"]).logits, logits, rtol=0, atol=0)


def test_cpu_repacking_is_disabled_so_eval_then_train_works(checkpoint):
    model = SQLlavaForConditionalGeneration.from_pretrained(checkpoint["path"], quantization_config=nf4_config())
    linear4bit_layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(linear4bit_layers) == NUM_LANGUAGE_MODEL_LINEARS
    assert all(layer.support_avx512bf16_for_cpu is False for layer in linear4bit_layers)
    assert model.disable_bnb_cpu_weight_repacking() == NUM_LANGUAGE_MODEL_LINEARS

    before = snapshot(model)
    assert not model.training  # from_pretrained returns an eval-mode model: the case that repacks
    with torch.no_grad():
        model(**checkpoint["inputs"])
    # Nothing was rewritten in place, so a checkpoint saved now is the one that was loaded ...
    after = model.state_dict()
    for name, tensor in before.items():
        assert after[name].dtype == tensor.dtype and torch.equal(after[name], tensor), name
    # ... and QLoRA training after an evaluation still works.
    peft_model, lora_before = train_lora(model, checkpoint["inputs"], steps=1)
    assert any(not torch.equal(p, lora_before[n]) for n, p in peft_model.named_parameters() if n in lora_before)


def test_without_the_workaround_an_eval_forward_repacks_weights_on_avx512_bf16_cpus(checkpoint):
    """The control for the test above: what `disable_bnb_cpu_weight_repacking` prevents, on this machine's CPU."""
    model = SQLlavaForConditionalGeneration.from_pretrained(checkpoint["path"], quantization_config=nf4_config())
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = has_avx512bf16()  # bitsandbytes' own default
    before = snapshot(model)
    with torch.no_grad():
        model(**checkpoint["inputs"])
    after = model.state_dict()
    changed = [name for name, tensor in before.items() if not torch.equal(after[name], tensor)]
    if has_avx512bf16():
        # Every quantized layer's `absmax` comes back from the packed layout as a bf16 copy: the checkpoint differs.
        assert len(changed) == NUM_LANGUAGE_MODEL_LINEARS
        assert all(name.endswith(".weight.absmax") and after[name].dtype == torch.bfloat16 for name in changed)
    else:
        assert changed == []


@pytest.mark.parametrize(
    "skip_modules, quantized",
    [
        (["model.multi_modal_projector", "lm_head"], {"language_model", "vision_tower"}),
        ([], {"language_model", "vision_tower", "multi_modal_projector", "lm_head"}),
    ],
)
def test_user_skip_modules_are_used_as_given(checkpoint, skip_modules, quantized):
    model = SQLlavaForConditionalGeneration.from_pretrained(
        checkpoint["path"], quantization_config=nf4_config(llm_int8_skip_modules=skip_modules)
    )
    assert model.config.quantization_config.llm_int8_skip_modules == skip_modules
    for group, layers in linears_by_kind(model).items():
        expected = bnb.nn.Linear4bit if group in quantized else nn.Linear
        assert set(layers.values()) == {expected}, group
    if "multi_modal_projector" not in quantized:  # a quantized vision tower still runs
        with torch.no_grad():
            assert torch.isfinite(model(**checkpoint["inputs"]).logits).all()


def test_8bit_load_forward_generate(checkpoint):
    model = AutoModelForImageTextToText.from_pretrained(
        checkpoint["path"], quantization_config=BitsAndBytesConfig(load_in_8bit=True)
    )
    assert model.is_loaded_in_8bit
    assert sorted(model.config.quantization_config.llm_int8_skip_modules) == sorted(DEFAULT_SKIP_MODULES)
    assert_only_language_model_quantized(model, bnb.nn.Linear8bitLt)

    inputs, reference = checkpoint["inputs"], checkpoint["logits"]
    with torch.no_grad():
        logits = model(**inputs).logits
    assert torch.isfinite(logits).all()
    assert (logits - reference).abs().max() > 1e-4  # int8 weights: the logits move, much less than with NF4
    assert nn.functional.cosine_similarity(logits.flatten(), reference.flatten(), dim=0) > 0.999

    prompt_length = inputs["input_ids"].shape[1]
    generated = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert generated.shape == (2, prompt_length + 4)
    assert torch.equal(generated[:, :prompt_length], inputs["input_ids"])
    assert torch.equal(generated[:, prompt_length], logits[:, -1].argmax(-1))


REMOTE_CODE_4BIT_LOAD = """
import sys
sys.modules["transformers_sqllava"] = None  # the package is not importable: only the folder's Hub files are

import torch
from torch import nn
from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

quantization_config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32)
model = AutoModelForImageTextToText.from_pretrained(
    sys.argv[1], trust_remote_code=True, quantization_config=quantization_config
)
assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
quantized = sorted({name.split(".")[1] for name, m in model.named_modules() if type(m).__name__ == "Linear4bit"})
assert quantized == ["language_model"], quantized
assert type(model.lm_head) is nn.Linear
assert all(not m.support_avx512bf16_for_cpu for m in model.modules() if type(m).__name__ == "Linear4bit")
print("REMOTE-CODE-4BIT-OK")
"""


def test_4bit_defaults_apply_through_trust_remote_code(checkpoint, tmp_path):
    """The defaults live in the Hub file `modeling_sqllava.py`, so a remote-code user without the package gets them."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_CODE_4BIT_LOAD, str(checkpoint["path"])],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "REMOTE-CODE-4BIT-OK" in result.stdout
