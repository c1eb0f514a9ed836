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
"""The output folder of a conversion: never a source, never a folder with someone else's files in it.

A conversion reads every source before it writes anything, and writes only into a folder that is none of its sources
(nor inside one, nor around one) and is empty, or, with `overwrite=True`, holds nothing but what a previous
conversion wrote, which is then removed: a merged conversion into the folder of an earlier `--no-merge` one must not
leave that run's `adapter/` beside the merged weights.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path


logger = logging.getLogger(__name__)

# Everything `convert_sqllava_checkpoint` writes: the model's and the processor's `save_pretrained` (weights, configs,
# tokenizer, chat template, the remote-code files), the card and the `--no-merge` adapter folder.
CONVERSION_OUTPUTS = re.compile(
    r"README\.md|config\.json|generation_config\.json|model(-\d+-of-\d+)?\.safetensors|model\.safetensors\.index\.json"
    r"|\w+_sqllava\.py|(processor|preprocessor)_config\.json|tokenizer(_config)?\.json|tokenizer\.model"
    r"|special_tokens_map\.json|added_tokens\.json|chat_template\.(jinja|json)|adapter"
)


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def check_not_a_source(output_dir: Path, sources: dict[str, str | Path | None]):
    """
    Raise a `ValueError` if `output_dir` is one of the local `sources` (`{"--model-path": folder, ...}`), lies inside
    one, or holds one: writing (or overwriting) there could destroy the checkpoint being converted.
    """
    output = _resolved(output_dir)
    for flag, source in sources.items():
        if source is None or not Path(source).expanduser().exists():
            continue  # a Hub id: checked again once it is a local folder
        folder = _resolved(source)
        if output == folder:
            relation = f"is the {flag} folder"
        elif folder in output.parents:
            relation = f"is inside the {flag} folder {folder}"
        elif output in folder.parents:
            relation = f"holds the {flag} folder {folder}"
        else:
            continue
        raise ValueError(
            f"The output folder {output} {relation}: the conversion could overwrite its source. Pass an "
            "`output_dir` (`--output-dir`) outside every source folder."
        )


def _entries(folder: Path) -> list[Path]:
    # Dot-entries (`.git`, `.gitattributes`, `.cache/huggingface` of an upload) are not a conversion's, and are kept.
    return sorted(path for path in folder.iterdir() if not path.name.startswith("."))


def check_output_folder(output_dir: Path, overwrite: bool):
    """
    Raise a `ValueError` unless `output_dir` is missing or empty, or `overwrite` is set and the folder holds only
    what a previous conversion wrote (see `CONVERSION_OUTPUTS`). Called before any source is read: a refused folder
    costs nothing.
    """
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"The output folder {output_dir} is a file. Pass a folder for `output_dir` (`--output-dir`).")
    if not output_dir.is_dir() or not (entries := _entries(output_dir)):
        return
    names = [path.name + ("/" if path.is_dir() else "") for path in entries]
    if not overwrite:
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        raise ValueError(
            f"The output folder {output_dir} is not empty ({shown}). "
            "Pass `overwrite=True` (`--overwrite`) to replace a previous conversion there, or choose a new folder."
        )
    foreign = [name for path, name in zip(entries, names, strict=True) if not CONVERSION_OUTPUTS.fullmatch(path.name)]
    if foreign:
        raise ValueError(
            f"The output folder {output_dir} holds files that a conversion does not write: {foreign[:10]}. "
            "`overwrite=True` only replaces a previous conversion's files: move these away, or choose another folder."
        )


def clear_previous_conversion(output_dir: Path):
    """Remove what a previous conversion wrote in `output_dir` (checked by [`check_output_folder`]), its stale
    `adapter/` included, so that only this conversion's files are left."""
    if not output_dir.is_dir():
        return
    for path in _entries(output_dir):
        if not CONVERSION_OUTPUTS.fullmatch(path.name):
            continue  # cannot happen after `check_output_folder`; never remove what is not ours
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        logger.info(f"Removed {path} (previous conversion, `overwrite=True`).")
