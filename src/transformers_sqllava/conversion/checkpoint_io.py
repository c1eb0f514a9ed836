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
"""Reading the original checkpoints: local folders or Hub ids, weight files and shards, the original config.

`.bin` files are unpickled with `torch.load(weights_only=True)` (tensors only); safetensors are read lazily.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open


# Files that mark the two original layouts (the LoRA release has an adapter, a merged checkpoint has model weights).
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
CHECKPOINT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
CHECKPOINT_FILES = ("model.safetensors", "pytorch_model.bin")
PROJECTOR_FILES = ("non_lora_trainables.bin", "non_lora_trainables.safetensors")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")


def resolve_checkpoint(name_or_path: str | Path, what: str, hint: str = "") -> Path:
    r"""
    A local folder as is; anything else is a Hub repo id, downloaded with `snapshot_download`.

    Only the files a conversion reads are fetched: configs, tokenizer files, and one weights format (safetensors when
    the repo has them, else `.bin`), so a repo that ships both is not downloaded twice.

    Args:
        name_or_path (`str` or `Path`):
            A local folder or a Hub repo id of the form `owner/name`.
        what (`str`):
            Which input it is (e.g. `"--model-base"`), for the error messages.
        hint (`str`, *optional*, defaults to `""`):
            Added to the error when neither works.

    Returns:
        `Path`: the local folder.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists() or str(name_or_path).startswith((".", "/", "~")) or str(name_or_path).count("/") != 1:
        raise FileNotFoundError(
            f"The {what} {str(name_or_path)!r} is not a directory, nor a Hub repo id of the form `owner/name`. {hint}"
        )
    from huggingface_hub import HfApi, snapshot_download

    try:
        files = HfApi().list_repo_files(str(name_or_path))
        weights = "*.safetensors" if any(file.endswith(".safetensors") for file in files) else "*.bin"
        folder = snapshot_download(
            str(name_or_path), allow_patterns=["*.json", "*.model", "*.txt", weights, f"*/{weights}", "*/*.json"]
        )
    except Exception as error:  # network, authentication, missing repo: say which input it was
        raise OSError(
            f"The {what} {str(name_or_path)!r} is not a local directory and could not be downloaded from the Hub "
            f"({type(error).__name__}: {error}). Download it yourself and pass the local folder. {hint}"
        ) from error
    return Path(folder)


def iterate_torch_file(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs of one `.safetensors` or `.bin` file, each tensor read when it is needed and not kept by
    the reader, so a multi-GB shard is never held twice (source dtype and output dtype) while it is converted."""
    if path.suffix == ".safetensors":
        with safe_open(path, framework="pt") as file:
            for name in file.keys():
                yield name, file.get_tensor(name)
        return
    try:
        # mmap keeps a multi-GB shard out of memory until its tensors are read.
        state_dict = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) pickles cannot be memory-mapped
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    for name in list(state_dict):
        yield name, state_dict.pop(name)


def load_torch_file(path: Path) -> dict[str, torch.Tensor]:
    """A whole `.safetensors` or `.bin` state dict (for the small files: adapters, the projector)."""
    return dict(iterate_torch_file(path))


def checkpoint_shards(folder: Path) -> list[Path]:
    """The weight files of a transformers checkpoint folder, single-file or sharded with an index."""
    for index_name in CHECKPOINT_INDEXES:
        if (folder / index_name).is_file():
            weight_map = json.loads((folder / index_name).read_text())["weight_map"]
            return [folder / shard for shard in sorted(set(weight_map.values()))]
    for file_name in CHECKPOINT_FILES:
        if (folder / file_name).is_file():
            return [folder / file_name]
    raise FileNotFoundError(
        f"No weights in {folder}: expected one of {CHECKPOINT_FILES + CHECKPOINT_INDEXES}. Is it the right folder?"
    )


def iterate_checkpoint(folder: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs of a checkpoint folder, shard by shard."""
    for shard in checkpoint_shards(folder):
        yield from iterate_torch_file(shard)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def read_original_config(model_dir: Path) -> dict:
    """The original `config.json`, read as JSON and checked to be an SQ-LLaVA one this converter supports.

    It is a flat Llama config with `model_type "llava"`, which modern transformers maps to its own `LlavaConfig` and
    would mis-parse (docs/original.md#architecture), so it is never given to `AutoConfig`.
    """
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"No config.json in {model_dir}: `--model-path` must be an SQ-LLaVA checkpoint folder."
        )
    config = read_json(model_dir / "config.json")
    projector_type = config.get("mm_projector_type", "linear")
    if projector_type != "cluster":
        raise ValueError(
            f"{model_dir}/config.json has `mm_projector_type={projector_type!r}`; SQ-LLaVA checkpoints have "
            "\"cluster\" (the prototype extractor). This converter handles SQ-LLaVA checkpoints only."
        )
    if config.get("mm_use_im_start_end") or config.get("mm_use_im_patch_token"):
        raise ValueError(
            f"{model_dir}/config.json sets `mm_use_im_start_end` or `mm_use_im_patch_token`: extra image tokens that "
            "the released SQ-LLaVA checkpoints do not use (docs/original.md#the-vuser-marker) and this converter does not support."
        )
    if config.get("mm_vision_select_feature", "patch") not in ("patch", "cls_patch"):
        raise ValueError(f"Unknown `mm_vision_select_feature` {config['mm_vision_select_feature']!r} in config.json.")
    return config


def is_lora_release(model_dir: Path) -> bool:
    """Whether `model_dir` is the LoRA release (an adapter on a base LLM) rather than a merged checkpoint."""
    return any((model_dir / name).is_file() for name in ADAPTER_WEIGHTS)


def has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in TOKENIZER_FILES)


def projector_tensors(model_dir: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """`non_lora_trainables.bin` without its PEFT prefix (`base_model.model.model.mm_projector.*` becomes
    `model.mm_projector.*`).

    The reference strips `base_model.`, then one `model.` if the keys start with `model.model.` (docs/original.md#loading-a-release); this accepts
    the same two spellings.
    """
    for file_name in PROJECTOR_FILES:
        if (model_dir / file_name).is_file():
            for name, tensor in iterate_torch_file(model_dir / file_name):
                yield name.removeprefix("base_model.model."), tensor
            return
    raise FileNotFoundError(
        f"No non_lora_trainables.bin in {model_dir}: the LoRA release keeps the projector (`model.mm_projector.*`) "
        "there. Download the whole repository."
    )
