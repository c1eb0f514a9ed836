"""The two-stage recipe: trainable sets, LoRA placement and ranks, learning-rate groups, the ViT LoRA gradient switch,
Trainer resume, LLaVA-1.5 -> SQ-LLaVA, and QLoRA on CPU. Tiny models only."""

import re

import pytest
import torch
from conftest import build_llama_style_tokenizer, tiny_config
from torch import nn
from transformers import AddedToken, LlavaConfig, LlavaForConditionalGeneration, Trainer, TrainingArguments

from transformers_sqllava import SQLlavaForConditionalGeneration
from transformers_sqllava.training import (
    STAGE1_TRAINING_DEFAULTS,
    SQLlavaStage2Config,
    load_qlora_base,
    prepare_stage1,
    prepare_stage2,
    set_vision_lora_gradients,
    sft_config_kwargs,
    sqllava_from_llava,
    stage2_optimizer_cls_and_kwargs,
    stage2_parameter_groups,
    vision_layers_feeding_features,
)

IMAGE_TOKEN_ID = 419
LLM_PROJECTIONS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
VISION_LINEARS = {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"}


def make_batch(batch_size: int = 2, text_length: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    text = torch.randint(3, 400, (batch_size, text_length), generator=generator)
    input_ids = torch.cat(
        [torch.ones(batch_size, 1, dtype=torch.long), torch.full((batch_size, 16), IMAGE_TOKEN_ID), text], 1
    )
    labels = input_ids.clone()
    labels[:, :17] = -100
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": torch.randn(batch_size, 3, 16, 16, generator=generator),
        "labels": labels,
    }


def lora_layers(model: nn.Module) -> dict[str, tuple[int, float, float]]:
    """{module name (relative to the SQ-LLaVA model): (rank, scaling, dropout)} for every LoRA layer."""
    layers = {}
    for name, module in model.get_base_model().named_modules():
        if hasattr(module, "lora_A") and "default" in module.lora_A:
            dropout = module.lora_dropout["default"]
            layers[name] = (module.r["default"], module.scaling["default"], getattr(dropout, "p", 0.0))
    return layers


def test_stage1_trains_exactly_the_extractor_and_projector():
    model = prepare_stage1(SQLlavaForConditionalGeneration(tiny_config()))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    projector = {
        f"model.multi_modal_projector.{name}" for name, _ in model.model.multi_modal_projector.named_parameters()
    }
    assert trainable == projector
    assert any("prototype_extractor.gate_scale" in name for name in trainable)
    assert STAGE1_TRAINING_DEFAULTS["learning_rate"] == 1e-3
    kwargs = sft_config_kwargs(stage=1, learning_rate=2e-3)  # the paper's rate, as an override
    assert (
        kwargs["learning_rate"] == 2e-3 and kwargs["lr_scheduler_type"] == "cosine" and kwargs["warmup_steps"] == 0.03
    )
    assert kwargs["remove_unused_columns"] is False and kwargs["max_length"] is None


@pytest.mark.parametrize(
    ("feature_layer", "num_layers", "expected"),
    [(-2, 3, [0, 1]), (-2, 24, list(range(23))), (-1, 3, [0, 1, 2]), (1, 3, [0])],
)
def test_vision_layers_feeding_the_feature_layer(feature_layer, num_layers, expected):
    config = tiny_config(vision_feature_layer=feature_layer, vision_config={"num_hidden_layers": num_layers})
    assert vision_layers_feeding_features(SQLlavaForConditionalGeneration(config)) == expected


def test_stage2_lora_placement_ranks_and_trainable_set():
    model = prepare_stage2(SQLlavaForConditionalGeneration(tiny_config()))
    layers = lora_layers(model)

    llm = {name: spec for name, spec in layers.items() if ".language_model." in name}
    vision = {name: spec for name, spec in layers.items() if ".vision_tower." in name}
    assert len(layers) == len(llm) + len(vision)  # nothing in the projector, extractor or lm_head
    expected_llm = {
        f"model.language_model.layers.{i}.{'self_attn' if p.endswith(('q_proj', 'k_proj', 'v_proj', 'o_proj')) else 'mlp'}.{p}"
        for i in range(2)
        for p in LLM_PROJECTIONS
    }
    assert set(llm) == expected_llm
    assert set(llm.values()) == {(128, 2.0, 0.05)}
    # Layers 0-1 feed hidden state -2 of the 3-layer CLIP; layer 2 gets nothing.
    assert {(int(re.search(r"layers\.(\d+)\.", n).group(1)), n.rsplit(".", 1)[1]) for n in vision} == {
        (i, linear) for i in range(2) for linear in VISION_LINEARS
    }
    assert set(vision.values()) == {(32, 2.0, 0.2)}

    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in name or ".multi_modal_projector.modules_to_save." in name for name in trainable)
    assert any("prototype_extractor" in name for name in trainable)
    assert any("linear_2" in name for name in trainable)


def test_stage2_without_vision_lora():
    model = prepare_stage2(SQLlavaForConditionalGeneration(tiny_config()), SQLlavaStage2Config(use_vision_lora=False))
    assert not any(".vision_tower." in name for name in lora_layers(model))


def test_parameter_groups_learning_rates():
    model = prepare_stage2(SQLlavaForConditionalGeneration(tiny_config()))
    groups = stage2_parameter_groups(model)
    assert [g["name"] for g in groups] == ["llm_lora", "vision_lora", "projector"]
    assert [g["lr"] for g in groups] == [2e-4, 2e-5, 2e-5]
    assert all(g["weight_decay"] == 0.0 for g in groups)
    names = {id(p): n for n, p in model.named_parameters()}
    by_group = {g["name"]: {names[id(p)] for p in g["params"]} for g in groups}
    assert by_group["llm_lora"] and all(".language_model." in n and "lora_" in n for n in by_group["llm_lora"])
    assert len(by_group["llm_lora"]) == 2 * 7 * 2  # layers x projections x (A, B)
    assert len(by_group["vision_lora"]) == 2 * 6 * 2 and all(".vision_tower." in n for n in by_group["vision_lora"])
    assert all(".multi_modal_projector.modules_to_save." in n for n in by_group["projector"])
    assert sum(len(g) for g in by_group.values()) == sum(p.requires_grad for p in model.parameters())

    factory_cls, kwargs = stage2_optimizer_cls_and_kwargs()
    optimizer = factory_cls()(model, **kwargs)
    assert [(g["name"], g["lr"]) for g in optimizer.param_groups] == [
        ("llm_lora", 2e-4),
        ("vision_lora", 2e-5),
        ("projector", 2e-5),
    ]


def _train(model, steps: int = 3):
    factory_cls, kwargs = stage2_optimizer_cls_and_kwargs()
    optimizer = factory_cls()(model, **kwargs)
    model.train()
    for step in range(steps):
        loss = model(**make_batch(seed=step)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model


def _snapshot(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("mode", ["enabled", "reference"])
def test_vision_lora_trains_unless_the_reference_switch_is_on(mode):
    model = prepare_stage2(
        SQLlavaForConditionalGeneration(tiny_config()), SQLlavaStage2Config(vision_lora_gradients=mode)
    )
    before = _snapshot(model)
    _train(model)
    after = _snapshot(model)
    changed = {name for name in before if not torch.equal(before[name], after[name])}

    vision_lora_b = {n for n in before if ".vision_tower." in n and "lora_B" in n}
    assert vision_lora_b
    if mode == "enabled":
        assert vision_lora_b <= changed
    else:
        assert not vision_lora_b & changed
        assert all(torch.count_nonzero(after[n]) == 0 for n in vision_lora_b)  # B = 0: the merged ViT is the base ViT
    # Both modes: the LLM LoRA and the extractor + projector train, the base weights do not.
    assert {n for n in before if ".language_model." in n and "lora_B" in n} <= changed
    assert any("modules_to_save.default.prototype_extractor" in n for n in changed)
    assert all("lora_" in n or "modules_to_save" in n for n in changed)
    assert torch.is_grad_enabled()  # the hooks restored the gradient mode


def test_reference_switch_can_be_turned_off_again():
    model = prepare_stage2(
        SQLlavaForConditionalGeneration(tiny_config()), SQLlavaStage2Config(vision_lora_gradients="reference")
    )
    set_vision_lora_gradients(model, "enabled")
    model(**make_batch()).loss.backward()
    lora_b = [p for n, p in model.named_parameters() if ".vision_tower." in n and "lora_B" in n]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b)


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, num_samples: int):
        self.samples = [{k: v[0] for k, v in make_batch(1, seed=100 + i).items()} for i in range(num_samples)]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        return self.samples[index]


def _trainer(output_dir, max_steps):
    torch.manual_seed(0)
    model = prepare_stage2(SQLlavaForConditionalGeneration(tiny_config()))
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=2,
        save_steps=2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        seed=0,
        **{k: v for k, v in sft_config_kwargs(stage=2).items() if k not in ("dataset_kwargs", "max_length")},
    )
    return Trainer(
        model, args, train_dataset=_ListDataset(8), optimizer_cls_and_kwargs=stage2_optimizer_cls_and_kwargs(args=args)
    )


def test_trainer_uses_the_groups_and_resumes_from_a_checkpoint(tmp_path):
    uninterrupted = _trainer(tmp_path / "a", max_steps=4)
    uninterrupted.train()
    assert [g["name"] for g in uninterrupted.optimizer.param_groups] == ["llm_lora", "vision_lora", "projector"]
    # Cosine decay scales every group from its own base rate: the ratio stays 10 : 1.
    lrs = [g["lr"] for g in uninterrupted.optimizer.param_groups]
    assert lrs[0] == pytest.approx(10 * lrs[1]) and lrs[1] == pytest.approx(lrs[2])
    expected = {n: p.detach().clone() for n, p in uninterrupted.model.named_parameters() if p.requires_grad}

    resumed = _trainer(tmp_path / "b", max_steps=4)
    resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))
    for name, parameter in resumed.model.named_parameters():
        if parameter.requires_grad:
            torch.testing.assert_close(parameter, expected[name], msg=name)
    # The resumed run's history holds the checkpoint's two losses, then the two it computed itself.
    losses = [(log["step"], log["loss"]) for log in uninterrupted.state.log_history if "loss" in log]
    resumed_losses = [(log["step"], log["loss"]) for log in resumed.state.log_history if "loss" in log]
    # Steps and losses compared apart: pytest >= 9.2 rejects `approx` of nested tuples.
    assert len(losses) == 4 and [step for step, _ in resumed_losses] == [step for step, _ in losses]
    assert [loss for _, loss in resumed_losses] == pytest.approx([loss for _, loss in losses])


def tiny_llava(vocab_size: int = 421) -> LlavaForConditionalGeneration:
    sq = tiny_config(text_config={"vocab_size": vocab_size})
    config = LlavaConfig(
        vision_config=sq.vision_config.to_dict(),
        text_config=sq.text_config.to_dict(),
        image_token_index=IMAGE_TOKEN_ID,
        image_seq_length=16,
        projector_hidden_act="gelu",
        vision_feature_layer=-2,
    )
    return LlavaForConditionalGeneration(config).eval()


def tokenizer_with_image_and_pad():
    tokenizer = build_llama_style_tokenizer()
    tokenizer.add_tokens([AddedToken("<image>", special=True, normalized=False)], special_tokens=True)
    tokenizer.add_special_tokens({"pad_token": AddedToken("<pad>", special=True, normalized=False)})
    assert tokenizer.convert_tokens_to_ids(["<image>", "<pad>"]) == [419, 420]
    return tokenizer


def test_sqllava_from_llava_reuses_llava_weights_and_adds_vusr(tmp_path):
    llava = tiny_llava()
    llava_state = {k: v.clone() for k, v in llava.state_dict().items()}
    batch = make_batch()
    del batch["labels"]
    with torch.no_grad():
        llava_logits = llava(**batch).logits
    tokenizer = tokenizer_with_image_and_pad()

    model = sqllava_from_llava(llava, tokenizer, num_prototypes=6)

    assert isinstance(model, SQLlavaForConditionalGeneration)
    assert model.config.projector_hidden_act == "gelu" and model.config.image_token_id == IMAGE_TOKEN_ID
    state = model.state_dict()
    for key, value in llava_state.items():
        if "embed_tokens" in key or key == "lm_head.weight":
            torch.testing.assert_close(state[key][:421], value, msg=key)  # old rows kept, one row added
        else:
            torch.testing.assert_close(state[key], value, msg=key)  # same names: towers, lm_head, linear_1/2
    extractor = model.model.multi_modal_projector.prototype_extractor
    assert extractor.gate_scale.item() == 1.0 and extractor.gate_bias.item() == 0.0

    vusr = tokenizer.convert_tokens_to_ids("[vusr]")
    assert vusr == 421 and tokenizer("a [vusr]: b")["input_ids"].count(vusr) == 1  # one token, never split
    for embeddings in (model.get_input_embeddings(), model.get_output_embeddings()):
        assert embeddings.weight.shape[0] == 422
        torch.testing.assert_close(embeddings.weight[vusr], embeddings.weight[:421].mean(0))

    with torch.no_grad():
        logits = model(**batch).logits
    # A fresh extractor adds its residual to the image features: outputs change (stage 1 realigns them) ...
    assert not torch.allclose(logits[..., :421], llava_logits)
    # ... and without it the model is LLaVA, weight for weight.
    model.model.multi_modal_projector.prototype_extractor = None
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits[..., :421], llava_logits)


def test_sqllava_from_llava_save_and_reload(tmp_path):
    model = sqllava_from_llava(tiny_llava(), num_prototypes=4).eval()
    assert model.config.num_prototypes == 4
    batch = make_batch()
    del batch["labels"]
    model.save_pretrained(tmp_path)
    reloaded = SQLlavaForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert reloaded.config.projector_hidden_act == "gelu"
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, model(**batch).logits)


def test_vusr_lands_in_a_padding_row_without_resizing():
    llava = tiny_llava(vocab_size=448)  # LLaVA-1.5-hf pads its vocabulary to a multiple of 64
    model = sqllava_from_llava(llava, tokenizer_with_image_and_pad(), num_prototypes=6)
    weight = model.get_input_embeddings().weight
    assert weight.shape[0] == 448
    torch.testing.assert_close(weight[421], weight[:421].mean(0))


def test_qlora_stage2_on_cpu(tmp_path):
    torch.manual_seed(0)
    # 64 wide: bitsandbytes' 4-bit block size (see test_quantization.py).
    SQLlavaForConditionalGeneration(
        tiny_config(text_config={"hidden_size": 64, "intermediate_size": 128})
    ).save_pretrained(tmp_path)
    base = load_qlora_base(str(tmp_path), compute_dtype=torch.float32)
    quantized = {n for n, m in base.named_modules() if type(m).__name__ == "Linear4bit"}
    assert len(quantized) == 2 * 7 and all(".language_model." in n for n in quantized)

    model = prepare_stage2(base)
    layers = lora_layers(model)
    assert {n for n in layers if ".language_model." in n} == quantized
    assert sum(".vision_tower." in n for n in layers) == 2 * 6
    before = _snapshot(model)
    _train(model, steps=2)
    after = _snapshot(model)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert any(".vision_tower." in n and "lora_B" in n for n in changed)
    assert any(".language_model." in n and "lora_B" in n for n in changed)
    assert all("lora_" in n or "modules_to_save" in n for n in changed)


def test_stage2_adapter_saves_reloads_and_merges(tmp_path):
    import copy

    from peft import PeftModel

    base = SQLlavaForConditionalGeneration(tiny_config())
    pristine = copy.deepcopy(base)
    model = _train(prepare_stage2(base)).eval()
    batch = make_batch(seed=7)
    with torch.no_grad():
        expected = model(**batch).logits

    # One adapter: the LoRAs and the trained extractor + projector (modules_to_save) in one save / one load.
    model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(pristine, tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, expected)

    merged = reloaded.merge_and_unload()
    assert type(merged) is SQLlavaForConditionalGeneration
    assert type(merged.model.multi_modal_projector).__name__ == "SQLlavaMultiModalProjector"
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, expected, atol=1e-5, rtol=1e-5)
