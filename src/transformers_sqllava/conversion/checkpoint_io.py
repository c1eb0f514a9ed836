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

`.bin` files are unpickled with `torch.load(weights_only=True)` (tensors only); safetensors are read lazily. Every
read error names its file and what to do (docs/errors.md#conversion): a truncated or damaged file, a `.bin` that is
not a PyTorch checkpoint, a pickle that `weights_only` refuses, a value that is not a tensor, malformed JSON.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Iterator, Mapping
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
    from huggingface_hub import HfApi, constants, snapshot_download

    # Read now, not at import (as huggingface_hub does): no network attempt, hence no wait, when offline.
    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    if constants.HF_HUB_OFFLINE or any(str(flag).upper() in ("1", "ON", "YES", "TRUE") for flag in flags if flag):
        raise FileNotFoundError(
            f"The {what} {str(name_or_path)!r} is not a local directory, and offline mode (HF_HUB_OFFLINE) is set, "
            f"so it is not downloaded from the Hub. Pass the local folder. {hint}"
        )
    try:
        files = HfApi().list_repo_files(str(name_or_path))
        weights = "*.safetensors" if any(file.endswith(".safetensors") for file in files) else "*.bin"
        folder = snapshot_download(
            str(name_or_path), allow_patterns=["*.json", "*.model", "*.txt", weights, f"*/{weights}", "*/*.json"]
        )
    except Exception as error:  # network, authentication, missing repo: say which input it was
        raise FileNotFoundError(
            f"The {what} {str(name_or_path)!r} is not a local directory and could not be downloaded from the Hub "
            f"({type(error).__name__}: {error}). Download it yourself and pass the local folder. {hint}"
        ) from error
    return Path(folder)


DAMAGED = "The file is truncated or damaged: download it again (and check the disk is not full)."


def _load_pickle(path: Path):
    """`torch.load(weights_only=True)` of `path`, with every failure a `ValueError` naming the file."""
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes). {DAMAGED}")
    try:
        try:
            # mmap keeps a multi-GB shard out of memory until its tensors are read.
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap can only be used" not in str(error):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # a legacy (non-zip) pickle
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            raise ValueError(f"{path} is not a PyTorch checkpoint ({error}). {DAMAGED}") from error
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        raise ValueError(
            f"{path} holds Python objects other than tensors"
            + (f" ({found[1]})" if found else "")
            + ": `torch.load(weights_only=True)` refuses to unpickle them, and this converter never runs a pickle's "
            "code. Re-save the tensors alone (`torch.save(state_dict, path)` with tensor values), or get a "
            "safetensors copy."
        ) from error
    except Exception as error:  # zip errors (RuntimeError), a bare pickle's KeyError or EOFError, ...
        raise ValueError(
            f"Cannot read {path}: {type(error).__name__}: {error}. {DAMAGED} A `.bin` must be a `torch.save` "
            "state dict."
        ) from error


def _tensor_items(path: Path, state_dict) -> Iterator[tuple[str, torch.Tensor]]:
    if not isinstance(state_dict, Mapping):
        raise ValueError(
            f"{path} holds a {type(state_dict).__name__}, not a state dict (a dict of tensors by name)."
        )
    for name in list(state_dict):
        value = state_dict.pop(name)
        if not isinstance(value, torch.Tensor):
            nested = " (a training checkpoint? take its model state dict)" if isinstance(value, Mapping) else ""
            raise ValueError(
                f"{path}: `{name}` is a {type(value).__name__}, not a tensor{nested}. Weight files hold tensors only."
            )
        yield str(name), value


def iterate_torch_file(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs of one `.safetensors` or `.bin` file, each tensor read when it is needed and not kept by
    the reader, so a multi-GB shard is never held twice (source dtype and output dtype) while it is converted.

    Raises:
        `FileNotFoundError`: no file at `path`; `ValueError`: a file that cannot be read, naming it.
    """
    if not path.is_file():
        raise FileNotFoundError(f"Weight file {path} not found.")
    if path.suffix != ".safetensors":
        yield from _tensor_items(path, _load_pickle(path))
        return
    try:
        file = safe_open(path, framework="pt")
    except Exception as error:  # SafetensorError: a bad header, a truncated file
        raise ValueError(f"Cannot read {path}: {error}. {DAMAGED}") from error
    with file:
        for name in file.keys():
            try:
                tensor = file.get_tensor(name)
            except Exception as error:  # data cut short after a valid header
                raise ValueError(f"Cannot read `{name}` from {path}: {error}. {DAMAGED}") from error
            yield name, tensor


def load_torch_file(path: Path) -> dict[str, torch.Tensor]:
    """A whole `.safetensors` or `.bin` state dict (for the small files: adapters, the projector)."""
    return dict(iterate_torch_file(path))


def checkpoint_shards(folder: Path) -> list[Path]:
    """The weight files of a transformers checkpoint folder, single-file or sharded with an index."""
    for index_name in CHECKPOINT_INDEXES:
        if (folder / index_name).is_file():
            weight_map = read_json(folder / index_name).get("weight_map")
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise ValueError(
                    f"{folder / index_name} has no `weight_map` of tensor name -> shard file. {DAMAGED}"
                )
            shards = [folder / shard for shard in sorted(set(weight_map.values()))]
            missing = [shard.name for shard in shards if not shard.is_file()]
            if missing:
                raise FileNotFoundError(
                    f"{folder / index_name} lists shard(s) that are not in {folder}: {missing[:5]}. Download the "
                    "whole checkpoint."
                )
            return shards
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
    """A JSON object from `path`; a missing file, malformed JSON or another top-level type raises, naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"No {path.name} in {path.parent}.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}). {DAMAGED}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got a {type(data).__name__}.")
    return data


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

    The reference strips `base_model.`, then one `model.` if the keys start with `model.model.`
    (docs/original.md#loading-a-release); this accepts the same two spellings.
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
