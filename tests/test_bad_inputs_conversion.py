"""The converter cannot lose data: it never writes into (or around) a source, never into a folder with other files,
replaces a previous conversion only with `overwrite=True` (its stale `adapter/` included), and every read error names
the file: truncated safetensors, a `.bin` that is not a checkpoint, a pickle `weights_only` refuses, a non-tensor,
malformed or incomplete JSON. On tiny checkpoints in the original layouts (tests/test_conversion.py builds them).
Messages: docs/errors.md#conversion.
"""

import json
import re
import shutil
from pathlib import Path

import pytest
import test_conversion as original_layouts
import torch

from transformers_sqllava.conversion import convert_sqllava_checkpoint

KWARGS = original_layouts.CONVERT_KWARGS


class NotATensor:
    """Pickled into a `.bin`: `torch.load(weights_only=True)` refuses to unpickle it."""

    def __init__(self):
        self.value = 1


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return original_layouts.build_release(tmp_path_factory.mktemp("bad-inputs") / "release")


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and modification time: equal snapshots, untouched folder."""
    return {str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*")) if path.is_file()}


def copy_of(folder: Path, tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(folder, target)
    return target


def convert(release, output_dir, **overrides):
    kwargs = {"model_base": release.base_dir, **KWARGS, **overrides}
    model_path = kwargs.pop("model_path", release.model_dir)
    return convert_sqllava_checkpoint(model_path, output_dir, **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# The output folder
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (lambda r: r.model_dir, r"is the --model-path folder"),
        (lambda r: r.model_dir / "converted", r"is inside the --model-path folder"),
        (lambda r: r.model_dir / "Vit-lora", r"is inside the --model-path folder"),
        (lambda r: r.base_dir, r"is the --model-base folder"),
        (lambda r: r.base_dir / "sub" / "dir", r"is inside the --model-base folder"),
        (lambda r: r.vision_dir, r"is the vision tower \(`mm_vision_tower`\) folder"),
        (lambda r: r.root, r"holds the --model-path folder"),
    ],
    ids=["model-path", "inside-model-path", "vit-lora", "model-base", "inside-model-base", "config-vision-tower",
         "around-the-sources"],
)
@pytest.mark.parametrize("overwrite", [False, True])
def test_an_output_folder_that_is_or_touches_a_source_is_refused(release, where, message, overwrite):
    before = snapshot(release.root)
    with pytest.raises(ValueError, match=f"{message}.*could overwrite its source.*outside every source folder"):
        convert(release, where(release), overwrite=overwrite)
    assert snapshot(release.root) == before


def test_explicit_vision_tower_and_vision_lora_folders_are_sources_too(release, tmp_path):
    vision_lora = copy_of(release.model_dir / "Vit-lora", tmp_path, "vit-lora")
    before = snapshot(vision_lora)
    with pytest.raises(ValueError, match="is the --vision-lora folder"):
        convert(release, vision_lora, vision_lora=vision_lora, overwrite=True)
    with pytest.raises(ValueError, match="is the --vision-tower folder"):
        convert(release, release.clip_full_dir, vision_tower=release.clip_full_dir, overwrite=True)
    assert snapshot(vision_lora) == before


def test_a_non_empty_folder_needs_overwrite_and_is_left_alone(release, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"out is not empty \(notes\.txt\).*overwrite=True.*--overwrite"):
        convert(release, output)
    # overwrite replaces a conversion only: someone else's files are never removed.
    with pytest.raises(ValueError, match=r"holds files that a conversion does not write: \['notes\.txt'\]"):
        convert(release, output, overwrite=True)
    assert [path.name for path in output.iterdir()] == ["notes.txt"]
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        convert(release, tmp_path / "a-file")


def test_overwrite_replaces_a_no_merge_conversion_without_a_stale_adapter(release, tmp_path):
    output = convert(release, tmp_path / "out", merge=False)
    assert (output / "adapter" / "adapter_config.json").is_file()
    (output / ".gitattributes").write_text("*.safetensors filter=lfs\n")  # a Hub clone's files are kept
    with pytest.raises(ValueError, match="is not empty"):
        convert(release, output)

    convert(release, output, overwrite=True)  # merged this time
    fresh = convert(release, tmp_path / "fresh")
    assert not (output / "adapter").exists()
    assert {path.name for path in output.iterdir()} == {path.name for path in fresh.iterdir()} | {".gitattributes"}
    assert "LoRAs not merged" not in (output / "README.md").read_text()


def test_a_failed_conversion_removes_nothing(release, tmp_path):
    output = convert(release, tmp_path / "out", merge=False)
    before = snapshot(output)
    with pytest.raises(ValueError, match="--model-base"):
        convert(release, output, model_base=None, overwrite=True)  # fails while reading
    model_dir = copy_of(release.model_dir, tmp_path, "damaged")
    (model_dir / "non_lora_trainables.bin").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="non_lora_trainables.bin"):
        convert(release, output, model_path=model_dir, overwrite=True)
    assert snapshot(output) == before


# --------------------------------------------------------------------------------------------------------------------
# Read errors name the file
# --------------------------------------------------------------------------------------------------------------------


def test_a_truncated_safetensors_shard_is_named(release, tmp_path):
    base = copy_of(release.base_dir, tmp_path, "base")
    shard = base / "model-00001-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"Cannot read .*model-00001-of-00002\.safetensors.*truncated or damaged"):
        convert(release, tmp_path / "out", model_base=base)
    assert not (tmp_path / "out").exists()


def test_index_errors_name_the_index_and_the_shard(release, tmp_path):
    base = copy_of(release.base_dir, tmp_path, "base")
    (base / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"index\.json lists shard\(s\) .*\['model-00002-of-00002\.safet"):
        convert(release, tmp_path / "out", model_base=base)
    (base / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}}))
    with pytest.raises(ValueError, match=r"model\.safetensors\.index\.json has no `weight_map`"):
        convert(release, tmp_path / "out", model_base=base)
    (base / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"model\.safetensors\.index\.json is not valid JSON"):
        convert(release, tmp_path / "out", model_base=base)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"non_lora_trainables\.bin is empty \(0 bytes\)"),
        (b"this is not a zip archive", r"non_lora_trainables\.bin.*A `\.bin` must be a `torch\.save` state dict"),
        ("truncated", r"Cannot read .*non_lora_trainables\.bin.*truncated or damaged"),
        ("custom-object", r"non_lora_trainables\.bin holds Python objects other than tensors.*NotATensor.*weights_on"),
        ("int", r"non_lora_trainables\.bin: `base_model\.model\.model\.mm_projector\.extra` is a int, not a tensor"),
        ("nested", r"`state_dict` is a dict, not a tensor \(a training checkpoint\?"),
        ("list", r"non_lora_trainables\.bin holds a list, not a state dict"),
    ],
)
def test_bad_bin_files_are_named(release, tmp_path, content, message):
    model_dir = copy_of(release.model_dir, tmp_path, "model")
    path = model_dir / "non_lora_trainables.bin"
    state = torch.load(path, weights_only=True)
    if content == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif content == "custom-object":
        torch.save({**state, "base_model.model.model.mm_projector.extra": NotATensor()}, path)
    elif content == "int":
        torch.save({**state, "base_model.model.model.mm_projector.extra": 3}, path)
    elif content == "nested":
        torch.save({"state_dict": state}, path)
    elif content == "list":
        torch.save(list(state.values()), path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        convert(release, tmp_path / "out", model_path=model_dir)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda config: "{\"r\": 4,", r"adapter_config\.json is not valid JSON"),
        (lambda config: [config], r"adapter_config\.json must hold a JSON object, got a list"),
        (lambda config: {k: v for k, v in config.items() if k != "r"}, r"adapter_config\.json: no `r`"),
        (lambda config: {k: v for k, v in config.items() if k != "lora_alpha"}, r"no `lora_alpha`"),
        (lambda config: config | {"lora_alpha": "16"}, r"`lora_alpha` must be a positive number, got '16'"),
        (lambda config: config | {"r": 0}, r"`r` must be a positive number, got 0"),
        (lambda config: config | {"peft_type": "IA3"}, r"`peft_type` is 'IA3'; only LoRA"),
        (lambda config: config | {"rank_pattern": ["q_proj"]}, r"`rank_pattern` must be a dict"),
        (lambda config: config | {"target_modules": 3}, r"`target_modules` must be a regex or a list"),
    ],
    ids=["malformed", "list", "no-r", "no-alpha", "alpha-string", "r-zero", "ia3", "rank-pattern", "targets"],
)
@pytest.mark.parametrize("which", ["top-level", "Vit-lora"])
def test_bad_adapter_configs_are_named(release, tmp_path, edit, message, which):
    model_dir = copy_of(release.model_dir, tmp_path, "model")
    path = (model_dir if which == "top-level" else model_dir / "Vit-lora") / "adapter_config.json"
    edited = edit(json.loads(path.read_text()))
    path.write_text(edited if isinstance(edited, str) else json.dumps(edited))
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + message.removeprefix(r"adapter_config\.json")):
        convert(release, tmp_path / "out", model_path=model_dir)


def test_lora_matrices_that_do_not_pair_up_are_named(release, tmp_path):
    model_dir = copy_of(release.model_dir, tmp_path, "model")
    name = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
    original_layouts.rewrite_bin(model_dir / "adapter_model.bin", lambda state: state.update({name: torch.ones(8, 3)}))
    with pytest.raises(ValueError, match=r"`model\.layers\.0\.self_attn\.q_proj` has lora_A \(4, 32\) and lora_B \(8"):
        convert(release, tmp_path / "out", model_path=model_dir)


def test_bad_configs_and_tokenizers_are_named(release, tmp_path):
    model_dir = copy_of(release.model_dir, tmp_path, "model")
    (model_dir / "config.json").write_text("{")
    with pytest.raises(ValueError, match=r"model/config\.json is not valid JSON"):
        convert(release, tmp_path / "out", model_path=model_dir)

    base = copy_of(release.base_dir, tmp_path, "base")
    (base / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"No config\.json in .*base"):
        convert(release, tmp_path / "out", model_base=base)

    vision = copy_of(release.vision_dir, tmp_path, "vision")
    (vision / "config.json").write_text("[1, 2")
    with pytest.raises(ValueError, match=r"Cannot read the vision tower's .*vision/config\.json"):
        convert(release, tmp_path / "out", vision_tower=vision)
    (vision / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"No config\.json in the vision tower folder .*vision"):
        convert(release, tmp_path / "out", vision_tower=vision)

    base = copy_of(release.base_dir, tmp_path, "base-tokenizer")
    (base / "tokenizer.json").write_text("{\"model\": 3}")
    with pytest.raises(ValueError, match=r"Cannot load the tokenizer in .*base-tokenizer"):
        convert(release, tmp_path / "out", model_base=base)
    assert not (tmp_path / "out").exists()


def test_cli_overwrite_flag(release, tmp_path, capsys):
    from transformers_sqllava.cli import main as cli_main

    out = tmp_path / "cli-out"
    args = ["convert", "--model-path", str(release.model_dir), "--model-base", str(release.base_dir),
            "--output-dir", str(out), "--num-prototypes", str(original_layouts.NUM_PROTOTYPES)]
    assert cli_main([*args, "--no-merge"]) == 0 and (out / "adapter").is_dir()
    with pytest.raises(SystemExit, match="--overwrite") as refused:  # the CLI's one-line user error, status 2
        cli_main(args)
    assert refused.value.code == 2
    assert cli_main([*args, "--overwrite"]) == 0
    assert not (out / "adapter").exists() and f"Converted checkpoint written to {out}" in capsys.readouterr().out
