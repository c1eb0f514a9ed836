"""Converting the original SQ-LLaVA checkpoint layouts (docs/original.md#release-layout), on tiny checkpoints built on disk.

The checkpoints use the original key names exactly (docs/original.md#release-layout), bf16 where the release is bf16,
non-zero LoRA B matrices, and scalings that differ between the LLM LoRA (alpha / r = 2) and the ViT LoRA (3), so a
mixed-up scaling shows. The converted model is compared with a direct implementation of the reference forward written
here with the original names: CLIP hidden state -2 without CLS, the `Clustering` formulas, the image features spliced
at the `-200` position, and the LLM with its LoRA merged by hand.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import build_llama_style_tokenizer
from huggingface_hub import HfApi, ModelCard
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from transformers import (
    AutoProcessor,
    CLIPConfig,
    CLIPModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from transformers_sqllava import SQLlavaForConditionalGeneration, SQLlavaProcessor
from transformers_sqllava.cli import main as cli_main
from transformers_sqllava.conversion import convert_sqllava_checkpoint
from transformers_sqllava.hub import render_model_card

TINY_CLIP = {
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4, "image_size": 16,
    "patch_size": 4,
}
TINY_LLAMA = {
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 419, "max_position_embeddings": 256, "pad_token_id": 0,
    "bos_token_id": 1, "eos_token_id": 2, "rms_norm_eps": 1e-5,
}
LLM_TARGETS = ["gate_proj", "q_proj", "up_proj", "down_proj", "o_proj", "k_proj", "v_proj"]
VIT_TARGETS = ["fc2", "fc1", "v_proj", "k_proj", "out_proj", "q_proj"]
LLM_RANK, LLM_ALPHA = 4, 8  # scaling 2, as the release's r=128, alpha=256
VIT_RANK, VIT_ALPHA = 2, 6  # scaling 3: differs on purpose
IMAGE_TOKEN_INDEX = -200
NUM_PROTOTYPES = 6
CONVERT_KWARGS = {"num_prototypes": NUM_PROTOTYPES, "prototype_iterations": 2}


# --------------------------------------------------------------------------------------------------------------------
# Building the original layouts on disk
# --------------------------------------------------------------------------------------------------------------------


def llm_module(layer: int, target: str) -> str:
    group = "mlp" if target in ("gate_proj", "up_proj", "down_proj") else "self_attn"
    return f"model.layers.{layer}.{group}.{target}"


def vit_module(layer: int, target: str) -> str:
    group = "mlp" if target in ("fc1", "fc2") else "self_attn"
    return f"vision_model.encoder.layers.{layer}.{group}.{target}"


def random_lora(weight: torch.Tensor, rank: int, zero_b: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    out_features, in_features = weight.shape
    lora_a = (torch.randn(rank, in_features) * 0.2).bfloat16()
    lora_b = torch.zeros(out_features, rank) if zero_b else torch.randn(out_features, rank) * 0.2
    return lora_a, lora_b.bfloat16()


def save_sharded_safetensors(state: dict[str, torch.Tensor], folder: Path, num_shards: int = 2):
    names = sorted(state)
    weight_map = {}
    for index in range(num_shards):
        shard = f"model-{index + 1:05d}-of-{num_shards:05d}.safetensors"
        part = {name: state[name].contiguous() for name in names[index::num_shards]}
        save_file(part, folder / shard, metadata={"format": "pt"})
        weight_map |= {name: shard for name in part}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def save_sharded_bin(state: dict[str, torch.Tensor], folder: Path, num_shards: int = 2):
    names = sorted(state)
    weight_map = {}
    for index in range(num_shards):
        shard = f"pytorch_model-{index + 1:05d}-of-{num_shards:05d}.bin"
        part = {name: state[name].clone() for name in names[index::num_shards]}
        torch.save(part, folder / shard)
        weight_map |= {name: shard for name in part}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def original_llava_config(vision_tower: str) -> dict:
    """The flat config.json the original training writes (docs/original.md#release-layout)."""
    config = LlamaConfig(**TINY_LLAMA).to_dict()
    config.update(
        architectures=["LlavaLlamaForCausalLM"], model_type="llava", mm_vision_tower=vision_tower,
        mm_projector_type="cluster", mm_hidden_size=TINY_CLIP["hidden_size"], mm_vision_select_layer=-2,
        mm_vision_select_feature="patch", image_aspect_ratio="pad", image_grid_pinpoints=None, num_latents=256,
        use_mm_proj=True, tune_mm_mlp_adapter=False, freeze_mm_mlp_adapter=False, mm_use_im_start_end=False,
        mm_use_im_patch_token=False, mm_projector_lr=2e-5, vision_tower_lr=2e-5, qav_loss=False, loss_alpha=0.5,
        torch_dtype="bfloat16", use_cache=True,
    )
    return config


def peft04_adapter_config(rank: int, alpha: int, targets: list[str], task_type: str | None, dropout: float) -> dict:
    return {
        "auto_mapping": None, "base_model_name_or_path": "./checkpoints/base", "bias": "none",
        "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True, "layers_pattern": None,
        "layers_to_transform": None, "lora_alpha": alpha, "lora_dropout": dropout, "modules_to_save": None,
        "peft_type": "LORA", "r": rank, "revision": None, "target_modules": targets, "task_type": task_type,
    }


@dataclass
class OriginalRelease:
    root: Path
    model_dir: Path  # the LoRA release layout
    merged_dir: Path  # the merge_lora_weights.py layout
    base_dir: Path
    vision_dir: Path  # a CLIPVisionModel, like ShareGPT4V's tower
    vision_state: dict  # its weights, original names (`vision_model.*`)
    clip_full_dir: Path  # the same vision weights inside a full CLIPModel, like openai/clip-vit-large-patch14-336
    base_state: dict  # original names
    merged_llm_state: dict  # the LLM of merged_dir: base + LoRA, rounded to fp16 as merge_lora_weights.py saves it
    projector: dict  # original names (`model.mm_projector.*`), bf16
    llm_lora: dict  # module -> (A, B)
    vit_lora: dict  # module (CLIP name) -> (A, B)


def build_release(root: Path, vit_lora_zero: bool = False) -> OriginalRelease:
    torch.manual_seed(0)
    root.mkdir(parents=True, exist_ok=True)

    # The vision tower, as a CLIPVisionModel and inside a full CLIPModel (text tower + projections to drop).
    tiny_text = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                 "vocab_size": 99, "bos_token_id": 0, "eos_token_id": 1}
    clip = CLIPModel(CLIPConfig(vision_config=TINY_CLIP, text_config=tiny_text, projection_dim=8)).eval()
    clip_full_dir, vision_dir = root / "clip-full", root / "vision-tower"
    clip.save_pretrained(clip_full_dir)
    # A CLIPVisionModel as the Hub stores it (ShareGPT4V's tower, saved by transformers 4): `vision_model.*` keys.
    vision_dir.mkdir()
    CLIPVisionConfig(**TINY_CLIP).save_pretrained(vision_dir)
    vision_state = {f"vision_model.{name}": tensor.clone() for name, tensor in clip.vision_model.state_dict().items()}
    save_file(vision_state, vision_dir / "model.safetensors", metadata={"format": "pt"})
    # The original CLIPImageProcessor format (int sizes), as in openai/clip-vit-large-patch14-336.
    preprocessor = {
        "crop_size": 16, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 16,
    }
    for folder in (vision_dir, clip_full_dir):
        (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))

    # The base LLM, shaped like ShareGPT4V's Vicuna: model_type "share4v", its own mlp2x projector, fp16, sharded.
    base_dir = root / "base"
    base_dir.mkdir()
    llm = LlamaForCausalLM(LlamaConfig(**TINY_LLAMA))
    with torch.no_grad():
        for parameter in llm.parameters():
            parameter.normal_(0, 0.3) if parameter.dim() == 2 else parameter.uniform_(0.5, 1.5)
    base_state = {name: tensor.half() for name, tensor in llm.state_dict().items()}
    stored = dict(base_state)
    for layer in (0, 2):
        stored[f"model.mm_projector.{layer}.weight"] = torch.randn(32, 32).half()
        stored[f"model.mm_projector.{layer}.bias"] = torch.zeros(32).half()
    stored |= {f"model.layers.{i}.self_attn.rotary_emb.inv_freq": torch.rand(4) for i in range(2)}
    save_sharded_safetensors(stored, base_dir)
    base_config = LlamaConfig(**TINY_LLAMA).to_dict() | {"model_type": "share4v", "mm_projector_type": "mlp2x_gelu"}
    (base_dir / "config.json").write_text(json.dumps(base_config))
    build_llama_style_tokenizer().save_pretrained(base_dir)

    # The LoRA release: bf16 adapter (LLM LoRA + a copy of the ViT LoRA), non_lora_trainables, Vit-lora/.
    model_dir = root / "sqllava-lora-tiny"
    (model_dir / "Vit-lora").mkdir(parents=True)
    (model_dir / "config.json").write_text(json.dumps(original_llava_config(str(vision_dir))))
    llm_lora = {
        llm_module(layer, target): random_lora(base_state[llm_module(layer, target) + ".weight"], LLM_RANK)
        for layer in range(TINY_LLAMA["num_hidden_layers"]) for target in LLM_TARGETS
    }
    vit_lora = {
        vit_module(layer, target): random_lora(vision_state[vit_module(layer, target) + ".weight"], VIT_RANK,
                                               zero_b=vit_lora_zero)
        for layer in range(TINY_CLIP["num_hidden_layers"]) for target in VIT_TARGETS
    }
    adapter = {}
    for module, (lora_a, lora_b) in llm_lora.items():
        adapter[f"base_model.model.{module}.lora_A.weight"] = lora_a
        adapter[f"base_model.model.{module}.lora_B.weight"] = lora_b
    vit_adapter = {}
    for module, (lora_a, lora_b) in vit_lora.items():
        for matrix, tensor in (("A", lora_a), ("B", lora_b)):
            adapter[f"base_model.model.model.vision_tower.vision_tower.{module}.lora_{matrix}.weight"] = tensor
            vit_adapter[f"base_model.model.vision_tower.{module}.lora_{matrix}.weight"] = tensor
    torch.save(adapter, model_dir / "adapter_model.bin")
    (model_dir / "adapter_config.json").write_text(
        json.dumps(peft04_adapter_config(LLM_RANK, LLM_ALPHA, LLM_TARGETS, "CAUSAL_LM", 0.05))
    )
    torch.save(vit_adapter, model_dir / "Vit-lora" / "adapter_model.bin")
    (model_dir / "Vit-lora" / "adapter_config.json").write_text(
        json.dumps(peft04_adapter_config(VIT_RANK, VIT_ALPHA, VIT_TARGETS, None, 0.2))
    )

    channels, hidden = TINY_CLIP["hidden_size"], TINY_LLAMA["hidden_size"]
    projector = {
        "model.mm_projector.sim_alpha": torch.full((1, 1, 1), 3.0),
        "model.mm_projector.sim_beta": torch.full((1, 1, 1), -0.5),
        "model.mm_projector.ln_1.weight": torch.ones(channels),
        "model.mm_projector.ln_1.bias": torch.zeros(channels),
    }
    for name, (out_features, in_features) in {"c": (channels, channels), "v": (channels, channels),
                                              "f": (channels, channels), "mlp.0": (hidden, channels),
                                              "mlp.2": (hidden, hidden)}.items():
        projector[f"model.mm_projector.{name}.weight"] = torch.randn(out_features, in_features) * in_features**-0.5
        projector[f"model.mm_projector.{name}.bias"] = torch.randn(out_features) * 0.1
    projector = {name: tensor.bfloat16() for name, tensor in projector.items()}
    torch.save({f"base_model.model.{name}": tensor for name, tensor in projector.items()},
               model_dir / "non_lora_trainables.bin")

    # The merged layout of merge_lora_weights.py: fp16 LLM with the LLM LoRA merged, the projector, an unmerged CLIP
    # copy under the reference's module path, rotary buffers; sharded .bin; the tokenizer saved beside it.
    merged_dir = root / "sqllava-merged-tiny"
    merged_dir.mkdir()
    merged_llm_state = {}
    for name, tensor in base_state.items():
        module = name.removesuffix(".weight")
        if module in llm_lora:
            lora_a, lora_b = llm_lora[module]
            tensor = (tensor.float() + LLM_ALPHA / LLM_RANK * (lora_b.float() @ lora_a.float())).half()
        merged_llm_state[name] = tensor
    merged = dict(merged_llm_state)
    merged |= {name: tensor.half() for name, tensor in projector.items()}
    merged |= {f"model.vision_tower.vision_tower.{name}": tensor.half() for name, tensor in vision_state.items()}
    merged |= {f"model.layers.{i}.self_attn.rotary_emb.inv_freq": torch.rand(4) for i in range(2)}
    save_sharded_bin(merged, merged_dir)
    config = original_llava_config("openai/clip-vit-large-patch14-336") | {"torch_dtype": "float16"}
    (merged_dir / "config.json").write_text(json.dumps(config))
    build_llama_style_tokenizer().save_pretrained(merged_dir)

    return OriginalRelease(root, model_dir, merged_dir, base_dir, vision_dir, vision_state, clip_full_dir, base_state,
                           merged_llm_state, projector, llm_lora, vit_lora)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> OriginalRelease:
    return build_release(tmp_path_factory.mktemp("original") / "release")


@pytest.fixture(scope="module")
def converted(release, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("converted") / "sqllava-tiny-hf"
    return convert_sqllava_checkpoint(
        release.model_dir, out, model_base=release.base_dir, dtype="float32", **CONVERT_KWARGS
    )


def copy_release(release: OriginalRelease, tmp_path: Path) -> Path:
    model_dir = tmp_path / "sqllava-lora-copy"
    shutil.copytree(release.model_dir, model_dir)
    return model_dir


# --------------------------------------------------------------------------------------------------------------------
# The reference forward, with the original names
# --------------------------------------------------------------------------------------------------------------------


def reference_clustering(x: torch.Tensor, p: dict[str, torch.Tensor], num_centers: int, iterations: int = 2):
    """The reference `Clustering.forward` (docs/original.md#prototype-extractor), with its own parameter names and broadcasts (`ln_1` unused)."""
    def linear(name, tensor):
        return F.linear(tensor, p[f"model.mm_projector.{name}.weight"], p[f"model.mm_projector.{name}.bias"])

    pool = nn.AdaptiveAvgPool1d(num_centers)
    value = linear("v", x).permute(0, 2, 1)  # [B, C, L], later normalised over L
    feature = linear("f", x)
    centers = pool(x.permute(0, 2, 1)).permute(0, 2, 1)
    centers_feature = pool(feature.permute(0, 2, 1)).permute(0, 2, 1)
    for _ in range(iterations):
        centers = linear("c", centers)
        similarity = torch.softmax(F.normalize(centers, dim=-1) @ F.normalize(value, dim=-1), dim=-2)
        centers = similarity @ feature
    cosine = F.normalize(centers, dim=-1) @ F.normalize(x, dim=-1).transpose(-2, -1)
    similarity = torch.sigmoid(p["model.mm_projector.sim_beta"] + p["model.mm_projector.sim_alpha"] * cosine)
    _, max_idx = similarity.max(dim=1, keepdim=True)
    mask = torch.zeros_like(similarity).scatter_(1, max_idx, 1.0)
    similarity = similarity * mask
    out = ((feature.unsqueeze(1) * similarity.unsqueeze(-1)).sum(dim=2) + centers_feature) / (
        mask.sum(dim=-1, keepdim=True) + 1.0
    )
    out = (out.unsqueeze(2) * similarity.unsqueeze(-1)).sum(dim=1) + x
    hidden = linear("mlp.0", out)
    hidden = hidden * torch.sigmoid(1.702 * hidden)  # QuickGELU
    return linear("mlp.2", hidden)


def reference_logits(release: OriginalRelease, ids: list[int], pixel_values: torch.Tensor, merge_vit=True,
                     merged_layout=False):
    """Logits of the reference model for one prompt with one `-200`, everything in fp32."""
    vision = CLIPVisionModel(CLIPVisionConfig(**TINY_CLIP)).eval()  # transformers 5: no `vision_model.` level
    vision.load_state_dict({name.removeprefix("vision_model."): t for name, t in release.vision_state.items()})
    if merge_vit:
        with torch.no_grad():
            for module, (lora_a, lora_b) in release.vit_lora.items():
                linear = vision.get_submodule(module.removeprefix("vision_model."))
                linear.weight += VIT_ALPHA / VIT_RANK * (lora_b.float() @ lora_a.float())
    llm = LlamaForCausalLM(LlamaConfig(**TINY_LLAMA)).eval()
    if merged_layout:  # the LoRA was merged by merge_lora_weights.py, in the file
        state = {name: tensor.float() for name, tensor in release.merged_llm_state.items()}
    else:  # merged here, by hand
        state = {name: tensor.float() for name, tensor in release.base_state.items()}
        for module, (lora_a, lora_b) in release.llm_lora.items():
            delta = LLM_ALPHA / LLM_RANK * (lora_b.float() @ lora_a.float())
            state[module + ".weight"] = state[module + ".weight"] + delta
    llm.load_state_dict(state)
    projector = {name: tensor.float() for name, tensor in release.projector.items()}
    with torch.no_grad():
        features = vision(pixel_values, output_hidden_states=True).hidden_states[-2][:, 1:]  # layer -2, no CLS
        image_embeds = reference_clustering(features, projector, NUM_PROTOTYPES)[0]
        position = ids.index(IMAGE_TOKEN_INDEX)
        embed = llm.get_input_embeddings()
        inputs_embeds = torch.cat(
            [embed(torch.tensor(ids[:position])), image_embeds, embed(torch.tensor(ids[position + 1 :]))]
        )
        return llm(inputs_embeds=inputs_embeds[None]).logits[0]


def tokenizer_image_token(tokenizer, prompt: str) -> list[int]:
    """The reference's `tokenizer_image_token` (docs/original.md#tokenisation-chunk-by-chunk): chunks tokenised apart, one BOS, `-200` between them."""
    chunks = [tokenizer(chunk).input_ids for chunk in prompt.split("<image>")]
    ids = chunks[0]
    for chunk in chunks[1:]:
        ids += [IMAGE_TOKEN_INDEX] + chunk[1:]
    return ids


def sample_image() -> Image.Image:
    torch.manual_seed(3)
    pixels = (torch.rand(12, 20, 3) * 255).to(torch.uint8).numpy()  # not square: exercises pad-to-square
    return Image.fromarray(pixels)


PROMPT_QUESTION = "What is in the image?"


def converted_inputs(folder: Path):
    processor = AutoProcessor.from_pretrained(folder)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT_QUESTION}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    return processor, prompt, processor(images=sample_image(), text=prompt, return_tensors="pt")


def assert_matches_reference(folder: Path, release: OriginalRelease, merge_vit=True, merged_layout=False):
    processor, prompt, inputs = converted_inputs(folder)
    model = SQLlavaForConditionalGeneration.from_pretrained(folder).eval()
    reference_ids = tokenizer_image_token(build_llama_style_tokenizer(), prompt)
    position = reference_ids.index(IMAGE_TOKEN_INDEX)
    image_token = model.config.image_token_id
    # The converted processor gives the reference's ids, with the `-200` expanded into 16 image tokens.
    expected_ids = reference_ids[:position] + [image_token] * 16 + reference_ids[position + 1 :]
    assert inputs["input_ids"][0].tolist() == expected_ids
    with torch.no_grad():
        logits = model(**inputs).logits[0]
    reference = reference_logits(release, reference_ids, inputs["pixel_values"], merge_vit, merged_layout)
    assert logits.shape[0] == reference.shape[0]
    # Every position, the text ones in particular, over the original vocabulary (the 2 added rows are new).
    torch.testing.assert_close(logits[:, : TINY_LLAMA["vocab_size"]], reference, rtol=1e-4, atol=1e-4)
    return model, logits


# --------------------------------------------------------------------------------------------------------------------
# Equality with the reference
# --------------------------------------------------------------------------------------------------------------------


def test_lora_release_matches_reference_forward(converted, release):
    model, logits = assert_matches_reference(converted, release)
    assert model.dtype == torch.float32
    config = model.config
    assert (config.image_seq_length, config.num_prototypes, config.prototype_iterations) == (16, NUM_PROTOTYPES, 2)
    assert (config.vision_feature_layer, config.vision_feature_select_strategy) == (-2, "default")
    assert config.projector_hidden_act == "quick_gelu"
    # The merged LoRA really changed the weights (a conversion that forgot it would not match the reference anyway).
    q_proj = model.model.language_model.layers[0].self_attn.q_proj.weight
    assert not torch.allclose(q_proj, release.base_state["model.layers.0.self_attn.q_proj.weight"].float())


def test_merged_checkpoint_matches_reference_forward(release, tmp_path):
    # Sharded .bin + index, an unmerged CLIP copy inside (dropped), a full CLIPModel as `--vision-tower` (text tower
    # dropped); the merged layout never carries a ViT LoRA (docs/original.md#merge-scripts-and-conversion-facts), so
    # the reference runs the plain tower.
    out = convert_sqllava_checkpoint(
        release.merged_dir, tmp_path / "out", vision_tower=release.clip_full_dir, dtype="float32", **CONVERT_KWARGS
    )
    assert_matches_reference(out, release, merge_vit=False, merged_layout=True)


def test_output_folder_contents(converted):
    files = {path.name for path in converted.iterdir()}
    for name in ("config.json", "generation_config.json", "model.safetensors", "README.md", "configuration_sqllava.py",
                 "modeling_sqllava.py", "processing_sqllava.py", "tokenizer.json", "processor_config.json"):
        assert name in files, name
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    config = json.loads((converted / "config.json").read_text())
    assert config["model_type"] == "sqllava"
    assert config["auto_map"]["AutoModelForImageTextToText"] == "modeling_sqllava.SQLlavaForConditionalGeneration"
    # Vocabulary: the base's 419 pieces + <image> (419) + <pad> (420); the new rows are the mean of the old ones.
    assert config["image_token_index"] == 419 and config["text_config"]["vocab_size"] == 421
    assert config["text_config"]["pad_token_id"] == 420
    with safe_open(converted / "model.safetensors", "pt") as weights:
        embed = weights.get_tensor("model.language_model.embed_tokens.weight")
        lm_head = weights.get_tensor("lm_head.weight")
        assert not any("ln_1" in name or "mm_projector" in name for name in weights.keys())
    torch.testing.assert_close(embed[419], embed[:419].mean(0))
    torch.testing.assert_close(lm_head[420], lm_head[:419].mean(0))

    processor = AutoProcessor.from_pretrained(converted)
    assert isinstance(processor, SQLlavaProcessor)
    assert processor.vuser_token == "VUSER"  # the plain-text marker the release learned (docs/original.md#the-vuser-marker)
    assert processor.image_processor.do_pad and processor.image_processor.crop_size["height"] == 16
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q0"}]},
        {"role": "assistant", "content": "A0"},
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, generation_role="vuser")
    assert prompt.endswith("ASSISTANT: A0</s>VUSER:")
    generation = json.loads((converted / "generation_config.json").read_text())
    assert (generation["eos_token_id"], generation["pad_token_id"], generation["do_sample"]) == (2, 420, False)


def test_conversion_logs_every_dropped_tensor(release, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="transformers_sqllava.conversion"):
        convert_sqllava_checkpoint(release.model_dir, tmp_path / "out", model_base=release.base_dir, **CONVERT_KWARGS)
    text = caplog.text
    assert "model.mm_projector.ln_1.weight" in text  # unused by the reference forward
    assert "rotary_emb.inv_freq" in text
    assert "model.mm_projector.0.weight" in text  # the base LLM's own projector
    assert "copy of the ViT LoRA" in text  # the top-level adapter's ViT keys


def test_float16_output_is_float16_and_close(converted, release, tmp_path):
    out = convert_sqllava_checkpoint(release.model_dir, tmp_path / "fp16", model_base=release.base_dir,
                                     **CONVERT_KWARGS)  # the default dtype
    with safe_open(out / "model.safetensors", "pt") as weights:
        assert {weights.get_tensor(name).dtype for name in weights.keys()} == {torch.float16}
        half_q = weights.get_tensor("model.language_model.layers.0.self_attn.q_proj.weight")
    with safe_open(converted / "model.safetensors", "pt") as weights:
        full_q = weights.get_tensor("model.language_model.layers.0.self_attn.q_proj.weight")
    # Merged in fp32, then cast once: the fp16 weight is the fp32 merge rounded.
    assert torch.equal(half_q, full_q.half())


# --------------------------------------------------------------------------------------------------------------------
# The ViT LoRA
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zero_vit_release(tmp_path_factory) -> OriginalRelease:
    return build_release(tmp_path_factory.mktemp("original-zero-vit") / "release", vit_lora_zero=True)


def test_zero_vit_lora_is_reported_and_skipped(zero_vit_release, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="transformers_sqllava.conversion"):
        out = convert_sqllava_checkpoint(zero_vit_release.model_dir, tmp_path / "out",
                                         model_base=zero_vit_release.base_dir, dtype="float32", **CONVERT_KWARGS)
    assert "all-zero B matrices" in caplog.text and "not merged" in caplog.text
    model = SQLlavaForConditionalGeneration.from_pretrained(out)
    converted_tower = model.model.vision_tower.state_dict()
    for name, tensor in zero_vit_release.vision_state.items():
        torch.testing.assert_close(converted_tower[name.removeprefix("vision_model.")], tensor, rtol=0, atol=0)
    assert_matches_reference(out, zero_vit_release, merge_vit=False)


def test_zero_vit_lora_without_vit_folder_is_reported(zero_vit_release, tmp_path, caplog):
    model_dir = copy_release(zero_vit_release, tmp_path)
    shutil.rmtree(model_dir / "Vit-lora")
    with caplog.at_level(logging.WARNING, logger="transformers_sqllava.conversion"):
        convert_sqllava_checkpoint(model_dir, tmp_path / "out", model_base=zero_vit_release.base_dir, **CONVERT_KWARGS)
    assert "all-zero B matrices" in caplog.text


def test_nonzero_vit_lora_without_its_config_stops(release, tmp_path):
    # The top-level adapter's config describes the LLM LoRA: the ViT copy's alpha is unknown without Vit-lora/.
    model_dir = copy_release(release, tmp_path)
    shutil.move(model_dir / "Vit-lora", tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="--vision-lora"):
        convert_sqllava_checkpoint(model_dir, tmp_path / "out", model_base=release.base_dir, **CONVERT_KWARGS)
    # ... and `--vision-lora` is the fix.
    out = convert_sqllava_checkpoint(model_dir, tmp_path / "out", model_base=release.base_dir, dtype="float32",
                                     vision_lora=tmp_path / "elsewhere", **CONVERT_KWARGS)
    assert_matches_reference(out, release)


# --------------------------------------------------------------------------------------------------------------------
# Strictness
# --------------------------------------------------------------------------------------------------------------------


def rewrite_bin(path: Path, edit):
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)


def test_missing_projector_tensor_stops_with_its_name(release, tmp_path):
    model_dir = copy_release(release, tmp_path)
    rewrite_bin(model_dir / "non_lora_trainables.bin", lambda s: s.pop("base_model.model.model.mm_projector.f.bias"))
    expected = r"(?s)Missing tensor.*value_proj\.bias \(original: model\.mm_projector\.f\.bias\)"
    with pytest.raises(ValueError, match=expected):
        convert_sqllava_checkpoint(model_dir, tmp_path / "out", model_base=release.base_dir, **CONVERT_KWARGS)


def test_unexpected_projector_tensor_stops_with_its_name(release, tmp_path):
    model_dir = copy_release(release, tmp_path)
    rewrite_bin(
        model_dir / "non_lora_trainables.bin",
        lambda s: s.update({"base_model.model.model.mm_projector.extra.weight": torch.zeros(2)}),
    )
    with pytest.raises(ValueError, match=r"(?s)Unexpected tensor.*model\.mm_projector\.extra\.weight"):
        convert_sqllava_checkpoint(model_dir, tmp_path / "out", model_base=release.base_dir, **CONVERT_KWARGS)


def test_unexpected_base_tensor_stops_with_its_name(release, tmp_path):
    base_dir = tmp_path / "base"
    shutil.copytree(release.base_dir, base_dir)
    save_file({"model.layers.0.self_attn.q_norm.weight": torch.ones(8)}, base_dir / "extra.safetensors")
    index = json.loads((base_dir / "model.safetensors.index.json").read_text())
    index["weight_map"]["model.layers.0.self_attn.q_norm.weight"] = "extra.safetensors"
    (base_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"(?s)Unexpected tensor.*model\.layers\.0\.self_attn\.q_norm\.weight"):
        convert_sqllava_checkpoint(release.model_dir, tmp_path / "out", model_base=base_dir, **CONVERT_KWARGS)


def test_missing_lora_matrix_stops_with_its_name(release, tmp_path):
    model_dir = copy_release(release, tmp_path)
    rewrite_bin(model_dir / "adapter_model.bin",
                lambda s: s.pop("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"))
    with pytest.raises(ValueError, match=r"model\.layers\.1\.mlp\.down_proj` has no lora_B"):
        convert_sqllava_checkpoint(model_dir, tmp_path / "out", model_base=release.base_dir, **CONVERT_KWARGS)


def test_missing_lora_module_stops_with_its_name(release, tmp_path):
    model_dir = copy_release(release, tmp_path)

    def drop_module(state):
        for matrix in "AB":
            state.pop(f"base_model.model.model.layers.1.self_attn.k_proj.lora_{matrix}.weight")

    rewrite_bin(model_dir / "adapter_model.bin", drop_module)
    with pytest.raises(ValueError, match=r"(?s)no LoRA weights.*model\.layers\.1\.self_attn\.k_proj"):
        convert_sqllava_checkpoint(model_dir, tmp_path / "out", model_base=release.base_dir, **CONVERT_KWARGS)


def test_lora_rank_that_contradicts_its_config_stops(release, tmp_path):
    model_dir = copy_release(release, tmp_path)
    config = json.loads((model_dir / "adapter_config.json").read_text())
    (model_dir / "adapter_config.json").write_text(json.dumps(config | {"r": 8}))
    with pytest.raises(ValueError, match="r=8 but its lora_A has rank 4"):
        convert_sqllava_checkpoint(model_dir, tmp_path / "out", model_base=release.base_dir, **CONVERT_KWARGS)


def test_lora_release_without_model_base_names_the_fix(release, tmp_path):
    with pytest.raises(ValueError, match="--model-base"):
        convert_sqllava_checkpoint(release.model_dir, tmp_path / "out", **CONVERT_KWARGS)


def test_vision_tower_path_from_the_authors_machine_names_the_fix(release, tmp_path):
    model_dir = copy_release(release, tmp_path)
    config = json.loads((model_dir / "config.json").read_text())
    config["mm_vision_tower"] = "./checkpoints/ShareGPT4V-7B_Pretrained_vit-large336-l12"
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match="pass `--vision-tower`"):
        convert_sqllava_checkpoint(model_dir, tmp_path / "out", model_base=release.base_dir, **CONVERT_KWARGS)
    convert_sqllava_checkpoint(model_dir, tmp_path / "out", model_base=release.base_dir,
                               vision_tower=release.vision_dir, **CONVERT_KWARGS)


def test_rank_and_alpha_patterns_and_rslora_are_honoured(release, tmp_path):
    # One module gets another alpha through `alpha_pattern`; rsLoRA scales by alpha / sqrt(r) (r=4: alpha / 2).
    model_dir = copy_release(release, tmp_path)
    config = json.loads((model_dir / "adapter_config.json").read_text())
    config |= {"use_rslora": True, "alpha_pattern": {r"layers\.0\.self_attn\.q_proj": 2}}
    (model_dir / "adapter_config.json").write_text(json.dumps(config))
    out = convert_sqllava_checkpoint(model_dir, tmp_path / "out", model_base=release.base_dir, dtype="float32",
                                     **CONVERT_KWARGS)
    with safe_open(out / "model.safetensors", "pt") as weights:
        for module, alpha in (("model.layers.0.self_attn.q_proj", 2), ("model.layers.0.self_attn.k_proj", LLM_ALPHA)):
            lora_a, lora_b = release.llm_lora[module]
            expected = release.base_state[module + ".weight"].float() + alpha / 2 * (lora_b.float() @ lora_a.float())
            converted = weights.get_tensor(module.replace("model.", "model.language_model.", 1) + ".weight")
            torch.testing.assert_close(converted, expected)


# --------------------------------------------------------------------------------------------------------------------
# --no-merge
# --------------------------------------------------------------------------------------------------------------------


def test_no_merge_adapter_on_the_base_equals_the_merged_model(converted, release, tmp_path):
    from peft import PeftModel

    out = convert_sqllava_checkpoint(release.model_dir, tmp_path / "unmerged", model_base=release.base_dir,
                                     dtype="float32", merge=False, **CONVERT_KWARGS)
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert isinstance(adapter_config["target_modules"], str)  # a regex over full names: never the wrong tower
    assert (adapter_config["r"], adapter_config["lora_alpha"]) == (LLM_RANK, LLM_ALPHA)
    assert list(adapter_config["rank_pattern"].values()) == [VIT_RANK]
    assert list(adapter_config["alpha_pattern"].values()) == [VIT_ALPHA]

    base = SQLlavaForConditionalGeneration.from_pretrained(out).eval()
    _, _, inputs = converted_inputs(out)
    with torch.no_grad():
        base_logits = base(**inputs).logits
    peft_model = PeftModel.from_pretrained(base, out / "adapter").eval()
    lora_modules = {name for name, module in peft_model.named_modules() if hasattr(module, "lora_A")}
    expected = {f"base_model.model.model.language_model.{m.removeprefix('model.')}" for m in release.llm_lora} | {
        f"base_model.model.model.vision_tower.{m.removeprefix('vision_model.')}" for m in release.vit_lora
    }
    assert {name.removesuffix(".base_layer") for name in lora_modules} == expected
    merged = SQLlavaForConditionalGeneration.from_pretrained(converted).eval()
    with torch.no_grad():
        adapted_logits = peft_model(**inputs).logits
        merged_logits = merged(**inputs).logits
    assert not torch.allclose(base_logits, merged_logits, atol=1e-3)
    torch.testing.assert_close(adapted_logits, merged_logits, rtol=1e-4, atol=1e-4)
    card = (out / "README.md").read_text()
    assert "LoRAs not merged" in card and "ViT LoRA: in the PEFT adapter" in card
    assert str(release.root) not in card  # local folders appear by name only


# --------------------------------------------------------------------------------------------------------------------
# CLI, remote code, model cards, publishing
# --------------------------------------------------------------------------------------------------------------------


def test_cli_convert(release, tmp_path, capsys):
    out = tmp_path / "cli-out"
    exit_code = cli_main([
        "convert", "--model-path", str(release.model_dir), "--model-base", str(release.base_dir),
        "--output-dir", str(out), "--dtype", "bfloat16", "--num-prototypes", str(NUM_PROTOTYPES),
    ])
    assert exit_code == 0
    assert f"Converted checkpoint written to {out}" in capsys.readouterr().out
    with safe_open(out / "model.safetensors", "pt") as weights:
        assert {weights.get_tensor(name).dtype for name in weights.keys()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["num_prototypes"] == NUM_PROTOTYPES


REMOTE_LOAD = textwrap.dedent(
    """
    import sys
    sys.modules["transformers_sqllava"] = None  # any `import transformers_sqllava` now raises ImportError

    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder, image_path, inputs_path, logits_path = sys.argv[1:]
    try:
        import transformers_sqllava  # noqa: F401
        raise SystemExit("the package is importable: the test would prove nothing")
    except ImportError:
        pass

    model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
    assert type(processor).__module__.startswith("transformers_modules."), type(processor).__module__
    inputs = torch.load(inputs_path)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in the image?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    from PIL import Image
    remote_inputs = processor(images=Image.open(image_path), text=prompt, return_tensors="pt")
    assert torch.equal(remote_inputs["input_ids"], inputs["input_ids"])
    torch.testing.assert_close(remote_inputs["pixel_values"], inputs["pixel_values"], rtol=0, atol=0)
    with torch.no_grad():
        logits = model(**inputs).logits
    torch.testing.assert_close(logits, torch.load(logits_path), rtol=0, atol=0)
    print("REMOTE-CODE-OK")
    """
)


def test_converted_folder_loads_with_trust_remote_code_without_the_package(converted, tmp_path):
    _, _, inputs = converted_inputs(converted)
    model = SQLlavaForConditionalGeneration.from_pretrained(converted).eval()
    with torch.no_grad():
        torch.save(model(**inputs).logits, tmp_path / "logits.pt")
    torch.save(dict(inputs), tmp_path / "inputs.pt")
    sample_image().save(tmp_path / "image.png")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_LOAD, str(converted), str(tmp_path / "image.png"), str(tmp_path / "inputs.pt"),
         str(tmp_path / "logits.pt")],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "REMOTE-CODE-OK" in result.stdout


def test_push_to_hub_uploads_the_whole_folder_in_one_commit(release, tmp_path, monkeypatch):
    calls = []
    def create_repo(self, repo_id, **kwargs):
        calls.append(("create", repo_id, kwargs))

    monkeypatch.setattr(HfApi, "create_repo", create_repo)

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls.append(("upload", repo_id, sorted(path.name for path in Path(folder_path).iterdir())))
        return "https://huggingface.co/me/sqllava-tiny/commit/0"

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    convert_sqllava_checkpoint(release.model_dir, tmp_path / "out", model_base=release.base_dir,
                               push_to_hub="me/sqllava-tiny", private=True, **CONVERT_KWARGS)
    assert [call[0] for call in calls] == ["create", "upload"]
    assert calls[0][1] == "me/sqllava-tiny" and calls[0][2]["private"] is True
    uploaded = calls[1][2]
    for name in ("model.safetensors", "config.json", "README.md", "modeling_sqllava.py", "processing_sqllava.py",
                 "configuration_sqllava.py", "tokenizer.json", "processor_config.json", "generation_config.json"):
        assert name in uploaded, name
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert 'repo = "me/sqllava-tiny"' in card.text


@pytest.mark.parametrize("kind, base_model, reported", [
    ("sqllava-7b", "ZachSun/sqllava-lora-7b", "| 80.3 | 63.7 | 55.3 |"),
    ("sqllava-13b", "ZachSun/sqllava-lora-13b", "| 81.3 | 65.0 | 58.2 |"),
])
def test_release_model_cards(kind, base_model, reported):
    card = render_model_card(kind, repo_id="me/" + kind)
    reparsed = ModelCard(str(card))
    data = reparsed.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "image-text-to-text"
    assert data["base_model"] == base_model and data["license"] == "llama2"
    assert "sqllava" in data["tags"] and data["datasets"] == ["Lin-Chen/ShareGPT4V"]
    text = reparsed.text
    assert reported in text and "Results reported by the authors" in text and "not re-measured" in text
    for section in ("### 4-bit", "### Self-questioning", "## Differences from the original code", "## License",
                    "Llama 2 Community License", "prototype_extractor_fp32", "Sun, Guohao and Qin, Can"):
        assert section in text, section
    assert f'repo = "me/{kind}"' in text
    assert "{{" not in text and "{%" not in text


def test_tiny_demo_and_generic_cards():
    demo = ModelCard(str(render_model_card("tiny-demo", repo_id="me/tiny", training_summary="Trained on scenes.")))
    assert demo.data.license == "apache-2.0" and demo.data.pipeline_tag == "image-text-to-text"
    assert "Trained on scenes." in demo.text and "Results reported" not in demo.text
    generic = render_model_card("sqllava", source_checkpoint="/local/checkpoint")
    assert generic.data.base_model is None and "Results reported" not in generic.text
    with pytest.raises(ValueError, match="tiny-demo"):
        render_model_card("sqllava-70b")


def test_card_templates_ship_with_the_package_and_hub_cards_points_at_them():
    from transformers_sqllava.hub import template_path

    assert template_path("sqllava.md").is_file() and template_path("tiny-demo.md").is_file()
    top_level = Path(__file__).resolve().parents[1] / "hub_cards"
    assert top_level.resolve() == template_path("sqllava.md").parent.resolve()
