"""SQLlavaConfig, the prototype extractor and SQLlavaForConditionalGeneration on tiny random models."""

import copy
import inspect
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageTextToText,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaModel,
)

from transformers_sqllava import (
    SQLlavaConfig,
    SQLlavaForConditionalGeneration,
    SQLlavaModel,
    SQLlavaMultiModalProjector,
    SQLlavaPrototypeExtractor,
)

IMAGE_TOKEN = 419


# --------------------------------------------------------------------------------------------------------------------
# A straightforward implementation of the reference `Clustering` forward (docs/original.md#prototype-extractor),
# written with the reference's own broadcasts and parameter roles, to check the package's scatter/gather form against.
# --------------------------------------------------------------------------------------------------------------------


def reference_clustering(x, extractor: SQLlavaPrototypeExtractor, mlp: nn.Module | None = None) -> torch.Tensor:
    c, v, f = extractor.prototype_proj, extractor.key_proj, extractor.value_proj
    alpha, beta = extractor.gate_scale.view(1, 1, 1), extractor.gate_bias.view(1, 1, 1)
    num_centers, iterations = extractor.num_prototypes, extractor.prototype_iterations
    pool = nn.AdaptiveAvgPool1d(num_centers)

    value = v(x).permute(0, 2, 1)  # [B, C, L]
    feature = f(x)  # [B, L, C]
    centers = pool(x.permute(0, 2, 1)).permute(0, 2, 1)  # [B, N, C]
    centers_feature = pool(feature.permute(0, 2, 1)).permute(0, 2, 1)  # [B, N, C]
    for _ in range(iterations):
        centers = c(centers)
        similarity = torch.softmax(F.normalize(centers, dim=-1) @ F.normalize(value, dim=-1), dim=-2)
        centers = similarity @ feature
    cosine = F.normalize(centers, dim=-1) @ F.normalize(x, dim=-1).transpose(-2, -1)  # pairwise_cos_sim
    similarity = torch.sigmoid(beta + alpha * cosine)
    _, max_idx = similarity.max(dim=1, keepdim=True)
    mask = torch.zeros_like(similarity).scatter_(1, max_idx, 1.0)
    similarity = similarity * mask
    out = ((feature.unsqueeze(1) * similarity.unsqueeze(-1)).sum(dim=2) + centers_feature) / (
        mask.sum(dim=-1, keepdim=True) + 1.0
    )
    out = (out.unsqueeze(2) * similarity.unsqueeze(-1)).sum(dim=1)
    out = out + x
    return mlp(out) if mlp is not None else out


def make_extractor(channels=24, num_prototypes=7, iterations=2, tokens=20, **overrides) -> SQLlavaPrototypeExtractor:
    config = tiny_config(
        vision_config={"hidden_size": channels, "num_attention_heads": 4},
        num_prototypes=num_prototypes,
        prototype_iterations=iterations,
        image_seq_length=16,
        **overrides,
    )
    extractor = SQLlavaPrototypeExtractor(config)
    # Random, non-trivial weights (the default init is small): the assignment should matter.
    with torch.no_grad():
        for linear in (extractor.prototype_proj, extractor.key_proj, extractor.value_proj):
            linear.weight.normal_(0, channels**-0.5)
            linear.bias.normal_(0, 0.1)
    return extractor


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("gate", [(1.0, 0.0), (-2.5, 0.3), (7.0, -1.0)], ids=["init", "negative_alpha", "sharp"])
def test_extractor_matches_reference_broadcast_form(seed, gate):
    torch.manual_seed(seed)
    extractor = make_extractor().double()
    with torch.no_grad():
        extractor.gate_scale.fill_(gate[0])
        extractor.gate_bias.fill_(gate[1])
    x = torch.randn(3, 20, 24, dtype=torch.float64)
    torch.testing.assert_close(extractor(x), reference_clustering(x, extractor), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1])
def test_extractor_gradients_match_reference(seed):
    torch.manual_seed(seed)
    extractor = make_extractor().double()
    reference = copy.deepcopy(extractor)
    with torch.no_grad():
        extractor.gate_scale.fill_(1.7)
        reference.gate_scale.fill_(1.7)
    x = torch.randn(2, 20, 24, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    upstream = torch.randn(2, 20, 24, dtype=torch.float64)
    (extractor(x) * upstream).sum().backward()
    (reference_clustering(x_ref, reference) * upstream).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    for (name, param), ref_param in zip(extractor.named_parameters(), reference.parameters()):
        assert param.grad is not None, name
        torch.testing.assert_close(param.grad, ref_param.grad, msg=name)


def test_extractor_ties_resolve_to_first_prototype_like_reference():
    torch.manual_seed(0)
    extractor = make_extractor().double()
    x = torch.randn(2, 20, 24, dtype=torch.float64)
    # alpha = 0: every prototype has the same gate for every token, a 7-way tie everywhere.
    with torch.no_grad():
        extractor.gate_scale.zero_()
    torch.testing.assert_close(extractor(x), reference_clustering(x, extractor), rtol=1e-10, atol=1e-10)
    # Duplicate tokens: identical rows must get identical outputs and the same cluster.
    x_dup = x.clone()
    x_dup[:, 5] = x_dup[:, 4]
    with torch.no_grad():
        extractor.gate_scale.fill_(1.0)
    out = extractor(x_dup)
    torch.testing.assert_close(out, reference_clustering(x_dup, extractor), rtol=1e-10, atol=1e-10)


def test_negative_alpha_selects_least_similar_prototype():
    # sigmoid is monotonic: with alpha < 0 the arg-max gate is the arg-min cosine (reference
    # docs/original.md#prototype-extractor step 4).
    torch.manual_seed(0)
    extractor = make_extractor().double()
    x = torch.randn(1, 20, 24, dtype=torch.float64)
    with torch.no_grad():
        extractor.gate_scale.fill_(-1.0)
    out_negative = extractor(x)
    with torch.no_grad():
        extractor.gate_scale.fill_(1.0)
    assert not torch.allclose(out_negative, extractor(x))
    with torch.no_grad():
        extractor.gate_scale.fill_(-1.0)
    torch.testing.assert_close(out_negative, reference_clustering(x, extractor))


def test_projector_with_mlp_matches_reference_and_keeps_token_count():
    torch.manual_seed(0)
    config = tiny_config()
    projector = SQLlavaMultiModalProjector(config).double()
    mlp = nn.Sequential(projector.linear_1, projector.act, projector.linear_2)
    x = torch.randn(2, 16, 32, dtype=torch.float64)
    out = projector(x)
    assert out.shape == (2, 16, config.text_config.hidden_size)
    torch.testing.assert_close(out, reference_clustering(x, projector.prototype_extractor, mlp))
    # QuickGELU, not GELU (reference docs/original.md#prototype-extractor "mlp.1").
    hidden = torch.linspace(-3, 3, 7, dtype=torch.float64)
    torch.testing.assert_close(projector.act(hidden), hidden * torch.sigmoid(1.702 * hidden))


def test_fresh_extractor_initialisation_matches_reference():
    model = SQLlavaForConditionalGeneration(tiny_config())
    extractor = model.model.multi_modal_projector.prototype_extractor
    assert extractor.gate_scale.item() == 1.0 and extractor.gate_bias.item() == 0.0
    assert extractor.prototype_proj.weight.std() > 0


def test_half_precision_extractor_is_finite_and_close_to_fp32():
    torch.manual_seed(0)
    extractor = make_extractor()
    # CLIP features carry large-magnitude outlier channels: the reference's unnormalised sums over tokens overflow
    # fp16.
    x = torch.randn(2, 20, 24) * 30
    x[:, :, 3] = 20000.0
    expected = extractor(x)

    fp16 = copy.deepcopy(extractor).half()
    out = fp16(x.half())
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=5.0)

    # The switch that computes like the reference's fp16 inference shows why fp32 routing is the default.
    fp16.compute_in_fp32 = False
    assert not torch.isfinite(fp16(x.half())).all()

    bf16 = copy.deepcopy(extractor).bfloat16()
    out = bf16(x.bfloat16())
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    # bf16 rounding of the key/value projections can move a few tokens to another prototype
    # (docs/original.md#fp16-routing): most elements agree, not all.
    close = (out.float() - expected).abs() <= 0.02 * expected.abs() + 5.0
    assert close.float().mean() > 0.9


def test_extractor_runs_in_fp32_under_autocast():
    torch.manual_seed(0)
    extractor = make_extractor()
    x = torch.randn(1, 20, 24)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = extractor(x)
    torch.testing.assert_close(out.float(), extractor(x), rtol=2e-2, atol=5e-2)


def test_extractor_rejects_fewer_tokens_than_prototypes():
    extractor = make_extractor(num_prototypes=7)
    with pytest.raises(ValueError, match="at least one token per prototype"):
        extractor(torch.randn(1, 5, 24))


# --------------------------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------------------------


def test_default_config_describes_sqllava_7b():
    config = SQLlavaConfig()
    assert (config.num_prototypes, config.prototype_iterations, config.use_prototype_extractor) == (256, 2, True)
    assert (config.vision_feature_layer, config.vision_feature_select_strategy) == (-2, "default")
    assert config.image_seq_length == 576 and config.projector_hidden_act == "quick_gelu"
    assert (config.vision_config.hidden_size, config.vision_config.image_size, config.vision_config.patch_size) == (
        1024,
        336,
        14,
    )
    assert (config.text_config.hidden_size, config.text_config.num_hidden_layers) == (4096, 32)
    assert isinstance(AutoConfig.for_model("sqllava"), SQLlavaConfig)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"num_prototypes": 0}, "num_prototypes"),
        ({"num_prototypes": 17}, "num_prototypes"),
        ({"prototype_iterations": -1}, "prototype_iterations"),
        ({"image_seq_length": 10, "num_prototypes": 4}, "image_seq_length"),
        ({"vision_feature_layer": [-2, -3]}, "vision_feature_layer"),
    ],
)
def test_invalid_config_values_raise_naming_the_field(kwargs, field):
    with pytest.raises(Exception, match=field):
        tiny_config(**kwargs)


def test_config_round_trip(tmp_path):
    config = tiny_config(num_prototypes=5, prototype_iterations=3, use_prototype_extractor=True)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, SQLlavaConfig)
    assert {**loaded.to_dict(), "_name_or_path": ""} == {**config.to_dict(), "_name_or_path": ""}


# --------------------------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------------------------


def make_inputs(batch_size=2, text_after=5, image_size=16):
    input_ids = torch.cat(
        [
            torch.tensor([[1, 300, 301]] * batch_size),
            torch.full((batch_size, 16), IMAGE_TOKEN),
            torch.randint(3, 400, (batch_size, text_after)),
        ],
        dim=1,
    )
    pixel_values = torch.randn(batch_size, 3, image_size, image_size)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "pixel_values": pixel_values}


@pytest.fixture
def model():
    return SQLlavaForConditionalGeneration(tiny_config()).eval()


def test_auto_classes_resolve_to_sqllava(config):
    assert type(AutoModelForImageTextToText.from_config(config)) is SQLlavaForConditionalGeneration
    assert type(AutoModel.from_config(config)) is SQLlavaModel


def test_forward_loss_and_image_features(model):
    inputs = make_inputs()
    outputs = model(**inputs, labels=inputs["input_ids"])
    assert outputs.logits.shape == (2, inputs["input_ids"].shape[1], 421)
    assert outputs.loss is not None and torch.isfinite(outputs.loss)
    # The projector's output, one (image_seq_length, text hidden size) tensor per image. Through the public
    # `get_image_features`: the outputs' `image_hidden_states` is deprecated from transformers 5.24 (a per-image list
    # there, and other contents from 5.30).
    image_features = model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
    assert [tuple(features.shape) for features in image_features] == [(16, 32)] * 2
    # The image tokens carry the projector's output, so the image changes the logits after it.
    other = model(**{**inputs, "pixel_values": torch.randn_like(inputs["pixel_values"])})
    assert not torch.allclose(outputs.logits[:, -1], other.logits[:, -1])


def test_uses_hidden_state_minus_two_without_cls(model):
    pixel_values = torch.randn(1, 3, 16, 16)
    features = model.model.get_image_features(pixel_values=pixel_values).pooler_output[0]
    hidden = model.model.vision_tower(pixel_values, output_hidden_states=True).hidden_states[-2][:, 1:]
    torch.testing.assert_close(features, model.model.multi_modal_projector(hidden)[0])


def test_inputs_embeds_path_equals_input_ids_path(model):
    inputs = make_inputs()
    embeds = model.get_input_embeddings()(inputs["input_ids"])
    from_ids = model(**inputs).logits
    from_embeds = model(
        inputs_embeds=embeds, attention_mask=inputs["attention_mask"], pixel_values=inputs["pixel_values"]
    ).logits
    torch.testing.assert_close(from_ids, from_embeds)


def test_image_token_and_image_count_mismatch_raises(model):
    inputs = make_inputs(batch_size=2)
    with pytest.raises(ValueError, match="pass exactly one image per `<image>`"):
        model(**{**inputs, "pixel_values": inputs["pixel_values"][:1]})
    truncated = {**inputs, "input_ids": inputs["input_ids"][:, :10], "attention_mask": inputs["attention_mask"][:, :10]}
    with pytest.raises(ValueError, match="image tokens"):
        model(**truncated)


def test_forward_and_generate_keep_llavas_signatures(model):
    # The input checks wrap LLaVA's `forward`/`generate`; `generate` reads the forward's signature (attention mask,
    # position ids, `logits_to_keep`, pre-encoded images, the cache's name), so it must stay LLaVA's.
    assert inspect.signature(type(model).forward) == inspect.signature(LlavaForConditionalGeneration.forward)
    assert inspect.signature(SQLlavaModel.forward) == inspect.signature(LlavaModel.forward)
    assert inspect.signature(type(model).generate) == inspect.signature(LlavaForConditionalGeneration.generate)
    assert model._supports_logits_to_keep() and model._supports_mm_encoder_outputs()


def test_labels_loss_ignores_minus_100(model):
    inputs = make_inputs(batch_size=1)
    labels = inputs["input_ids"].clone()
    labels[:, :19] = -100
    loss = model(**inputs, labels=labels).loss
    logits = model(**inputs).logits
    expected = F.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100)
    torch.testing.assert_close(loss, expected)


def test_save_load_gives_identical_logits(model, tmp_path):
    inputs = make_inputs()
    expected = model(**inputs).logits
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert type(loaded) is SQLlavaForConditionalGeneration
    torch.testing.assert_close(loaded(**inputs).logits, expected, rtol=0, atol=0)


def test_save_pretrained_writes_remote_code_and_auto_map(model, tmp_path):
    model.save_pretrained(tmp_path)
    for name in ("configuration_sqllava.py", "modeling_sqllava.py"):
        assert (tmp_path / name).exists(), name
    auto_map = AutoConfig.from_pretrained(tmp_path).auto_map
    assert auto_map["AutoConfig"] == "configuration_sqllava.SQLlavaConfig"
    assert auto_map["AutoModelForImageTextToText"] == "modeling_sqllava.SQLlavaForConditionalGeneration"
    assert auto_map["AutoModel"] == "modeling_sqllava.SQLlavaModel"


REMOTE_BASE_MODEL_LOAD = textwrap.dedent(
    """
    import sys
    sys.modules["transformers_sqllava"] = None  # any `import transformers_sqllava` now raises ImportError

    import torch
    from transformers import AutoModel

    folder = sys.argv[1]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__name__ == "SQLlavaModel", type(model)
    assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
    inputs = torch.load(f"{folder}/inputs.pt")
    with torch.no_grad():
        hidden = model(**inputs).last_hidden_state
    torch.testing.assert_close(hidden, torch.load(f"{folder}/expected_hidden.pt"), rtol=0, atol=0)
    print("REMOTE-BASE-MODEL-OK")
    """
)


def test_saved_folder_loads_with_remote_code_automodel_without_the_package(model, tmp_path):
    # `AutoModel.from_pretrained(..., trust_remote_code=True)` gives the base model of a saved
    # SQLlavaForConditionalGeneration, its weights included, in a process that cannot import this package.
    model.save_pretrained(tmp_path)
    inputs = make_inputs()
    with torch.no_grad():
        torch.save(model.model(**inputs).last_hidden_state, tmp_path / "expected_hidden.pt")
    torch.save(inputs, tmp_path / "inputs.pt")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_BASE_MODEL_LOAD, str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert "REMOTE-BASE-MODEL-OK" in result.stdout


def test_load_in_bfloat16_and_device_map_auto(model, tmp_path):
    model.save_pretrained(tmp_path)
    loaded = SQLlavaForConditionalGeneration.from_pretrained(tmp_path, dtype=torch.bfloat16, device_map="auto")
    assert loaded.dtype == torch.bfloat16
    assert {p.device.type for p in loaded.parameters()} == {"cpu"}
    inputs = make_inputs()
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
    logits = loaded(**inputs).logits
    assert torch.isfinite(logits).all()


def test_bfloat16_logits_close_to_float32(model):
    inputs = make_inputs()
    expected = model(**inputs).logits
    half = copy.deepcopy(model).to(torch.bfloat16)
    logits = half(**{**inputs, "pixel_values": inputs["pixel_values"].to(torch.bfloat16)}).logits.float()
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits, expected, rtol=0.05, atol=0.05)


def test_sdpa_and_eager_attention_agree(tmp_path, model):
    model.save_pretrained(tmp_path)
    inputs = make_inputs()
    eager = SQLlavaForConditionalGeneration.from_pretrained(tmp_path, attn_implementation="eager").eval()
    sdpa = SQLlavaForConditionalGeneration.from_pretrained(tmp_path, attn_implementation="sdpa").eval()
    assert eager.config.text_config._attn_implementation == "eager"
    assert sdpa.config.text_config._attn_implementation == "sdpa"
    torch.testing.assert_close(eager(**inputs).logits, sdpa(**inputs).logits, rtol=1e-4, atol=1e-4)


def test_activation_checkpointing_gives_same_gradients(model):
    inputs = make_inputs()
    model.train()
    model.model.vision_tower.eval()  # no dropout in the tiny config anyway; keep things deterministic

    def grads():
        model.zero_grad()
        model(**inputs, labels=inputs["input_ids"]).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert model.model.language_model.gradient_checkpointing
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys()
    assert any("prototype_extractor" in name for name in plain)
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-4, atol=1e-6, msg=name)


# --------------------------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------------------------


def test_generate_greedy_sampling_and_beam(model):
    inputs = make_inputs(batch_size=1)
    prompt_length = inputs["input_ids"].shape[1]
    greedy = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert greedy.shape == (1, prompt_length + 6)
    # The KV cache must not change greedy tokens.
    no_cache = model.generate(**inputs, max_new_tokens=6, do_sample=False, use_cache=False)
    assert torch.equal(greedy, no_cache)
    sampled = model.generate(**inputs, max_new_tokens=6, do_sample=True, top_k=50, temperature=1.2)
    assert sampled.shape == (1, prompt_length + 6)
    beams = model.generate(**inputs, max_new_tokens=6, num_beams=3, do_sample=False)
    assert beams.shape[0] == 1 and beams.shape[1] <= prompt_length + 6


def test_batched_left_padded_generation_equals_one_by_one(model):
    torch.manual_seed(1)
    prompts = [
        torch.tensor([1, 300, 301] + [IMAGE_TOKEN] * 16 + [310, 311, 312, 313, 314, 315]),
        torch.tensor([1, 302] + [IMAGE_TOKEN] * 16 + [320]),
        torch.tensor([1, 303, 304, 305] + [IMAGE_TOKEN] * 16 + [330, 331]),
    ]
    images = torch.randn(3, 3, 16, 16)
    singles = [
        model.generate(
            input_ids=ids[None], attention_mask=torch.ones(1, len(ids), dtype=torch.long), pixel_values=image[None],
            max_new_tokens=8, do_sample=False,
        )[0, len(ids):]
        for ids, image in zip(prompts, images)
    ]
    width = max(len(ids) for ids in prompts)
    input_ids = torch.stack([F.pad(ids, (width - len(ids), 0), value=0) for ids in prompts])
    attention_mask = torch.stack([F.pad(torch.ones_like(ids), (width - len(ids), 0), value=0) for ids in prompts])
    batched = model.generate(
        input_ids=input_ids, attention_mask=attention_mask, pixel_values=images, max_new_tokens=8, do_sample=False
    )[:, width:]
    for row, single in zip(batched, singles):
        assert torch.equal(row, single)


# --------------------------------------------------------------------------------------------------------------------
# The baseline: use_prototype_extractor=False is LLaVA-1.5
# --------------------------------------------------------------------------------------------------------------------


def test_without_extractor_equals_transformers_llava():
    config = tiny_config(use_prototype_extractor=False, projector_hidden_act="gelu")
    sqllava = SQLlavaForConditionalGeneration(config).eval()
    assert sqllava.model.multi_modal_projector.prototype_extractor is None
    llava_config = LlavaConfig(
        vision_config=config.vision_config.to_dict(),
        text_config=config.text_config.to_dict(),
        image_token_index=config.image_token_index,
        image_seq_length=config.image_seq_length,
        projector_hidden_act="gelu",
    )
    llava = LlavaForConditionalGeneration(llava_config).eval()
    llava.load_state_dict(sqllava.state_dict(), strict=True)  # same names: multi_modal_projector.linear_1/2
    inputs = make_inputs()
    torch.testing.assert_close(sqllava(**inputs).logits, llava(**inputs).logits)


def test_prototype_extractor_saves_and_loads_on_its_own(tmp_path):
    # The extractor is a PreTrainedModel: it can be saved, shared and reloaded without the rest of the model.
    model = SQLlavaForConditionalGeneration(tiny_config()).eval()
    extractor = model.model.multi_modal_projector.prototype_extractor
    extractor.save_pretrained(tmp_path)
    loaded = SQLlavaPrototypeExtractor.from_pretrained(tmp_path).eval()
    features = torch.randn(2, 16, extractor.config.vision_config.hidden_size)
    with torch.no_grad():
        torch.testing.assert_close(loaded(features), extractor(features), rtol=0, atol=0)
    assert loaded.num_prototypes == extractor.num_prototypes == tiny_config().num_prototypes
