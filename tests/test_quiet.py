"""Quiet by default: the common paths print nothing but their results and transformers' own loading bar.

Each check runs in a fresh interpreter with Python's default warning filters (what a user sees), not pytest's: a
warning or a log line that a user cannot act on fails the test. And the package's own training defaults use the
argument names of the installed transformers (no `FutureWarning` for a renamed `TrainingArguments` field).
"""

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest


BIN = Path(sys.executable).parent
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# transformers' weight-loading bar (tqdm, on stderr) is the one thing any model prints.
LOADING_BAR = re.compile(r"^Loading weights:.*$")

# Build a tiny model and processor, answer one question, then run `sqllava generate` on the shipped demo checkpoint
# (in this process, to see what it imported): the import chains of the common paths must not reach peft or
# bitsandbytes (on an AVX512-BF16 CPU, importing bitsandbytes logs a notice about a CPU kernel the package never uses).
INFERENCE_SCRIPT = r"""
import sys

import torch
from PIL import Image

import transformers_sqllava
from transformers_sqllava import SQLlavaConfig, SQLlavaForConditionalGeneration, SQLlavaImageProcessor
from transformers_sqllava import SQLlavaProcessor, add_sqllava_tokens
from transformers_sqllava.cli import main
from transformers_sqllava.demo import build_scene_tokenizer
from transformers_sqllava.demo.record import load_training_record, DEFAULT_CHECKPOINT
from transformers_sqllava.demo.run import held_out_scenes
from transformers_sqllava.self_questioning import description_conversation, generate_from_conversations

torch.set_num_threads(1)
tokenizer = build_scene_tokenizer()
add_sqllava_tokens(tokenizer, vuser_token="VUSER")
image_processor = SQLlavaImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
processor = SQLlavaProcessor(image_processor, tokenizer, image_seq_length=16, vuser_token="VUSER")
config = SQLlavaConfig(
    vision_config={"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                   "num_hidden_layers": 2, "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
    text_config={"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
                 "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id},
    image_token_index=processor.image_token_id, image_seq_length=16, num_prototypes=8,
)
model = SQLlavaForConditionalGeneration(config).eval()
image = Image.new("RGB", (48, 32), (200, 30, 30))
generate_from_conversations(
    model, processor, [description_conversation(image, "What is in the image?")], "assistant", "v1",
    do_sample=False, max_new_tokens=4,
)

scene_path = sys.argv[1]
held_out_scenes(load_training_record(DEFAULT_CHECKPOINT), 1)[0].render().save(scene_path)
exit_code = main([
    "generate", "--model", "demo", "--image", scene_path, "--prompt", "How many circles are there?",
    "--device", "cpu", "--seed", "0", "--json",
])
assert exit_code == 0
imported = sorted(name for name in ("peft", "bitsandbytes", "trl") if name in sys.modules)
assert not imported, f"the inference path imported {imported}"
"""


def run_quietly(command: list[str]) -> tuple[str, str]:
    """Run `command` as a user would (default warning filters, offline); returns stdout and stderr, the loading bar
    removed from stderr."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    stderr_lines = [line for line in re.split(r"[\r\n]+", result.stderr) if line.strip()]
    return result.stdout, "\n".join(line for line in stderr_lines if not LOADING_BAR.match(line))


def sqllava_command() -> str:
    return str(BIN / "sqllava") if (BIN / "sqllava").exists() else "sqllava"


def test_inference_paths_print_nothing_but_results(tmp_path):
    stdout, stderr = run_quietly([sys.executable, "-c", INFERENCE_SCRIPT, str(tmp_path / "scene.png")])
    assert stderr == ""
    assert stdout.strip().startswith('{"image"')  # the JSON answer, and nothing else
    assert len(stdout.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["demo", "--help"], ["generate", "--help"]])
def test_cli_help_prints_no_warning(args):
    stdout, stderr = run_quietly([sqllava_command(), *args])
    assert stderr == ""
    assert stdout.startswith(("usage: sqllava", "sqllava "))
    assert "warn" not in stdout.lower()


# --- Renamed TrainingArguments fields -------------------------------------------------------------------------------


def checkpointing_future_warnings(caught) -> list[str]:
    return [
        str(warning.message)
        for warning in caught
        if issubclass(warning.category, FutureWarning) and "checkpointing" in str(warning.message)
    ]


@pytest.mark.parametrize("stage", [1, 2])
def test_sft_config_from_the_recipe_raises_no_future_warning(tmp_path, stage):
    SFTConfig = pytest.importorskip("trl").SFTConfig
    from transformers_sqllava.training import sft_config_kwargs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        args = SFTConfig(str(tmp_path), **sft_config_kwargs(stage=stage, use_cpu=True, bf16=False, report_to="none"))
    assert checkpointing_future_warnings(caught) == []
    assert args.activation_checkpointing is True  # the released scripts' setting (and TRL's default)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kwargs = sft_config_kwargs(stage=stage, use_cpu=True, bf16=False, report_to="none")
        args = SFTConfig(str(tmp_path), **{**kwargs, "activation_checkpointing": False})
    assert checkpointing_future_warnings(caught) == []
    assert args.activation_checkpointing is False and args.gradient_checkpointing is False  # the old name mirrors


def test_the_old_name_still_works_and_says_the_new_one(tmp_path):
    SFTConfig = pytest.importorskip("trl").SFTConfig
    from transformers_sqllava.training import sft_config_kwargs

    with pytest.warns(FutureWarning, match="pass `activation_checkpointing` instead"):
        kwargs = sft_config_kwargs(stage=2, gradient_checkpointing=False, use_cpu=True, bf16=False, report_to="none")
    assert "gradient_checkpointing" not in kwargs
    assert SFTConfig(str(tmp_path), **kwargs).activation_checkpointing is False  # not overridden by the default


def test_training_examples_parse_without_future_warning(tmp_path, monkeypatch):
    pytest.importorskip("trl")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    from train_stage2 import make_parser

    base = ["--output_dir", str(tmp_path), "--use_cpu", "--bf16", "false", "--report_to", "none"]
    for extra, expected in (([], True), (["--activation_checkpointing", "false"], False)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _, training_args = make_parser(stage=2).parse_args_and_config([*base, *extra])
        assert checkpointing_future_warnings(caught) == [], extra
        assert training_args.activation_checkpointing is expected

    # The pre-5.23 flag still takes effect (the recipe's default for the new name would otherwise win), and warns.
    with pytest.warns(FutureWarning, match="use --activation_checkpointing"):
        _, training_args = make_parser(stage=2).parse_args_and_config([*base, "--gradient_checkpointing", "false"])
    assert training_args.activation_checkpointing is False


# --- bitsandbytes' CPU-kernel notice --------------------------------------------------------------------------------


def test_the_kernel_notice_filter_drops_that_message_only(caplog):
    import logging

    from transformers_sqllava.commands._logging import (
        BITSANDBYTES_CPU_LOGGER,
        KERNEL_NOTICE_PREFIX,
        quiet_bitsandbytes_cpu_kernel_notice,
    )

    logger = logging.getLogger(BITSANDBYTES_CPU_LOGGER)
    with caplog.at_level(logging.WARNING, logger=BITSANDBYTES_CPU_LOGGER):
        with quiet_bitsandbytes_cpu_kernel_notice():
            logger.warning("%s: No module named 'kernels'.", KERNEL_NOTICE_PREFIX)
            logger.warning("another bitsandbytes warning")
        logger.warning("%s: after the block.", KERNEL_NOTICE_PREFIX)
    assert [record.getMessage() for record in caplog.records] == [
        "another bitsandbytes warning",
        f"{KERNEL_NOTICE_PREFIX}: after the block.",
    ]


def test_paths_that_import_bitsandbytes_stay_quiet():
    """`sqllava generate --load-in-4bit` and `sqllava demo --retrain` import bitsandbytes (through transformers'
    quantizer, and TRL -> peft); inside the filter that import prints nothing (on any CPU)."""
    pytest.importorskip("bitsandbytes")
    script = (
        "from transformers_sqllava.commands._logging import quiet_bitsandbytes_cpu_kernel_notice\n"
        "with quiet_bitsandbytes_cpu_kernel_notice():\n"
        "    import peft, bitsandbytes\n"
    )
    stdout, stderr = run_quietly([sys.executable, "-c", script])
    assert stdout == "" and stderr == ""
