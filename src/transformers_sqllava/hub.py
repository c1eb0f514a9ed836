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
"""Hub model cards and publishing.

The card templates are Jinja files shipped inside the package, `transformers_sqllava/hub_cards/` (the repository's
top-level `hub_cards/` is a symlink to that folder, so there is one copy):

- `sqllava.md`: a checkpoint converted from the original release. `render_model_card("sqllava-7b")` and
  `("sqllava-13b")` fill in the release's ids and the authors' reported results; `"sqllava"` is the same card without
  them (any other size, e.g. a test checkpoint);
- `tiny-demo.md`: the project's tiny offline demo model.

A converted folder is published with one `upload_folder` call (`push_folder_to_hub`), so weights, processor, remote
code and card land in the same commit.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, ModelCardData


CITATION = """\
@inproceedings{sun2024sqllava,
  title     = {SQ-LLaVA: Self-Questioning for Large Vision-Language Assistant},
  author    = {Sun, Guohao and Qin, Can and Wang, Jiamian and Chen, Zeyuan and Xu, Ran and Tao, Zhiqiang},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2024}
}"""

BENCHMARKS = ("VQAv2", "GQA", "VizWiz", "SQA-I", "TextVQA", "POPE", "MMB", "MMB-CN", "LLaVA-W", "MM-Vet")

# The released checkpoints (the original's MODEL_ZOO.md, docs/original.md#release-layout; the same numbers as the
# paper's Table 1, "SQ-LLaVA, ShareGPT4V data" rows). Reported by the authors, not re-measured here.
RELEASES = {
    "sqllava-7b": {
        "size": "7B",
        "release_repo": "ZachSun/sqllava-lora-7b",
        "base_llm": "Lin-Chen/ShareGPT4V-7B_Pretrained_vit-large336-l12_vicuna-7b-v1.5",
        "vision_tower": "Lin-Chen/ShareGPT4V-7B_Pretrained_vit-large336-l12",
        "results": dict(zip(BENCHMARKS, (80.3, 63.7, 55.3, 70.5, 60.5, 87.2, 66.6, 60.0, 74.3, 37.6))),
        "llava_results": dict(zip(BENCHMARKS, (78.5, 62.0, 50.0, 66.8, 58.2, 85.9, 64.3, 58.3, 63.4, 30.5))),
    },
    "sqllava-13b": {
        "size": "13B",
        "release_repo": "ZachSun/sqllava-lora-13b",
        "base_llm": "Lin-Chen/ShareGPT4V-13B_Pretrained_vit-large336-l12_vicuna-13b-v1.5",
        "vision_tower": "Lin-Chen/ShareGPT4V-13B_Pretrained_vit-large336-l12",
        "results": dict(zip(BENCHMARKS, (81.3, 65.0, 58.2, 71.5, 61.9, 87.4, 68.5, 62.5, 80.7, 39.7))),
        "llava_results": dict(zip(BENCHMARKS, (80.0, 63.3, 53.6, 71.6, 58.2, 85.9, 67.7, 63.6, 70.7, 35.4))),
    },
    "sqllava": {"size": None, "release_repo": None, "base_llm": None, "vision_tower": None, "results": None},
}

TAGS = ["sqllava", "llava", "vision-language", "multimodal", "self-questioning", "custom_code"]


def template_path(name: str) -> Path:
    """A card template shipped with the package (works for editable and regular installs)."""
    return Path(str(resources.files("transformers_sqllava") / "hub_cards" / name))


def render_model_card(kind: str, **fields) -> ModelCard:
    r"""
    Render a Hub model card for an SQ-LLaVA checkpoint.

    Args:
        kind (`str`):
            `"sqllava-7b"` or `"sqllava-13b"` (checkpoints converted from the release: its ids and the authors'
            reported results are filled in), `"sqllava"` (a converted checkpoint of another size, no results), or
            `"tiny-demo"` (the project's tiny offline demo model).
        **fields:
            Template variables; `None` values are ignored. For the converted kinds: `repo_id` (used in the code
            samples), `source_checkpoint`, `base_llm`, `vision_tower`, `dtype`, `merged`, `vision_lora`
            (`"merged"`, `"adapter"`, `"all-zero"` or `"absent"`), `lora_release`, `image_token_id`, `pad_token_id`.
            For `"tiny-demo"`: `repo_id`, `training_summary`, `demo_command`, `license_note`. Any of the release's
            defaults (`base_llm`, `results`, ...) can be overridden.

    Returns:
        [`huggingface_hub.ModelCard`]: the card (`card.save(path)`, `card.push_to_hub(repo_id)`); its metadata is
        validated YAML (`card.data`).
    """
    fields = {key: value for key, value in fields.items() if value is not None}
    if kind == "tiny-demo":
        card_data = ModelCardData(
            library_name="transformers",
            pipeline_tag="image-text-to-text",
            license="apache-2.0",
            language=["en"],
            tags=TAGS + ["tiny", "demo", "synthetic-data"],
        )
        variables = {"repo_id": "path/to/sqllava-tiny-demo", **fields}
        return ModelCard.from_template(card_data, template_path=str(template_path("tiny-demo.md")), **variables)

    if kind not in RELEASES:
        raise ValueError(f"Unknown model card kind {kind!r}: use one of {sorted(RELEASES) + ['tiny-demo']}.")
    variables = {**RELEASES[kind], "benchmarks": BENCHMARKS, "citation": CITATION, **fields}
    variables.setdefault("repo_id", f"path/to/{kind}-hf")
    base_model = variables.get("release_repo") or _hub_id(variables.get("source_checkpoint"))
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        # The weights derive from Vicuna-v1.5, i.e. Llama 2 (docs/original.md#license).
        license="llama2",
        language=["en"],
        base_model=base_model,
        datasets=["Lin-Chen/ShareGPT4V"] if variables.get("release_repo") else None,
        tags=TAGS,
    )
    return ModelCard.from_template(card_data, template_path=str(template_path("sqllava.md")), **variables)


def _hub_id(name: str | None) -> str | None:
    """`name` if it looks like a Hub repo id (`owner/name`, not a local path), else None."""
    if not name or name.startswith((".", "/", "~")) or name.count("/") != 1 or Path(name).exists():
        return None
    return name


def push_folder_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload SQ-LLaVA (converted with transformers-sqllava)",
) -> str:
    r"""
    Upload a converted folder (weights, processor, remote code, card) to the Hub in one commit.

    Args:
        folder (`str` or `Path`):
            The folder written by `convert_sqllava_checkpoint` or `save_pretrained`.
        repo_id (`str`):
            The target repo, created if it does not exist.
        private (`bool`, *optional*):
            Visibility of a newly created repo (the Hub's default when `None`).
        token (`str`, *optional*):
            A Hub token; defaults to the logged-in one (`hf auth login`).
        commit_message (`str`, *optional*):
            The commit message.

    Returns:
        `str`: the URL of the commit.
    """
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id, folder_path=str(folder), repo_type="model", commit_message=commit_message
    )
    return str(getattr(commit, "commit_url", commit))
