"""TRL's own paths train SQ-LLaVA as the reference does: `SFTTrainer` with TRL's built-in vision collator and
`assistant_only_loss=True` gives the ids and labels of `SQLlavaSelfQuestioningCollator(sq_ratio=0)`, and the `trl sft`
script trains a tiny saved checkpoint with exactly those labels (docs/ecosystem.md)."""

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import tiny_processor
from datasets import Dataset, Features, Image, List, Value
from PIL import Image as PILImage
from sqllava_tiny import sensitive_model, single_torch_thread
from trl import SFTConfig, SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

from transformers_sqllava import SYSTEM_PROMPT_V1_SQ
from transformers_sqllava.training import IGNORE_INDEX, SQLlavaSelfQuestioningCollator


def picture(seed: int, width: int, height: int) -> PILImage.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return PILImage.fromarray(pixels)


def text(value: str) -> dict:
    return {"type": "text", "text": value}


def turns(*pairs: tuple[str, str], image: bool = True) -> list[dict]:
    """User/assistant turns in TRL's conversational vision format, the image block first in the first user turn."""
    messages = []
    for number, (question, answer) in enumerate(pairs):
        content = [{"type": "image"}, text(question)] if image and number == 0 else [text(question)]
        messages += [{"role": "user", "content": content}, {"role": "assistant", "content": [text(answer)]}]
    return messages


def plain_rows() -> list[dict]:
    """Plain (non-self-questioning) LLaVA samples: one to three rounds, images of several sizes, a text-only sample,
    and special tokens typed in the text (which stay text)."""
    return [
        {"images": [picture(0, 24, 16)], "messages": turns(
            ("What is in the image?", "There is a red circle."), ("How many objects are there?", "Two."))},
        {"images": [picture(1, 12, 20)], "messages": turns(("Where is the square? </s>", "On the left <image>."))},
        {"images": [picture(2, 20, 20)], "messages": turns(
            ("Describe the image in detail.", "A red circle and a blue square."), ("Is there a yellow star?", "No."),
            ("What colour is the circle?", "Red."))},
        {"images": [], "messages": turns(("Answer the question using a single word or phrase.", "Yes."), image=False)},
    ]  # fmt: skip


def with_system_message(rows: list[dict]) -> list[dict]:
    # TRL's collator renders with the template's default system prompt ("v1", for answering); the reference trains
    # with "v1_sq", so the data carries it as a system message.
    system = {"role": "system", "content": [text(SYSTEM_PROMPT_V1_SQ)]}
    return [{**row, "messages": [system, *row["messages"]]} for row in rows]


def reference_batch(processor, rows):
    return SQLlavaSelfQuestioningCollator(processor, sq_ratio=0)(copy.deepcopy(rows))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with single_torch_thread():
        yield


def test_sft_trainers_vision_collator_gives_the_reference_ids_and_labels(tmp_path):
    processor = tiny_processor()
    args = SFTConfig(
        output_dir=str(tmp_path), assistant_only_loss=True, max_length=None, use_cpu=True, bf16=False,
        activation_checkpointing=False, report_to=[],
    )  # fmt: skip
    dataset = Dataset.from_list(with_system_message(plain_rows()))
    trainer = SFTTrainer(model=sensitive_model(processor), args=args, train_dataset=dataset, processing_class=processor)
    assert type(trainer.data_collator) is DataCollatorForVisionLanguageModeling

    trl_batch = trainer.data_collator(copy.deepcopy(with_system_message(plain_rows())))
    expected = reference_batch(processor, plain_rows())  # its default system prompt is v1_sq
    assert sorted(trl_batch) == sorted(expected)
    for key in expected:
        torch.testing.assert_close(trl_batch[key], expected[key], rtol=0, atol=0)
    # Trained: answers and their </s>; never the BOS, the system prompt, the image tokens or the user turns.
    labels, ids = trl_batch["labels"], trl_batch["input_ids"]
    assert (labels[:, 0] == IGNORE_INDEX).all() and (labels[ids == processor.image_token_id] == IGNORE_INDEX).all()
    assert (labels == processor.tokenizer.eos_token_id).sum() == 7  # one </s> per answer
    assert (ids[:, 0] == processor.tokenizer.bos_token_id).all()


def test_trl_sft_trains_a_tiny_checkpoint_on_the_reference_labels(tmp_path):
    processor = tiny_processor()
    model = sensitive_model(processor)
    checkpoint, data, output = tmp_path / "tiny-sqllava", tmp_path / "data", tmp_path / "output"
    model.save_pretrained(checkpoint)
    processor.save_pretrained(checkpoint)
    rows = with_system_message(plain_rows())
    message = {"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})}
    features = Features({"images": List(Image()), "messages": List(message)})
    data.mkdir()
    Dataset.from_list(rows, features=features).to_parquet(str(data / "train.parquet"))

    command = [
        sys.executable, "-m", "trl.scripts.sft",
        "--model_name_or_path", str(checkpoint), "--trust_remote_code", "true",
        "--dataset_name", str(data), "--output_dir", str(output),
        "--assistant_only_loss", "true", "--max_length", "None",
        "--per_device_train_batch_size", str(len(rows)), "--max_steps", "2", "--logging_steps", "1",
        "--use_cpu", "--bf16", "false", "--activation_checkpointing", "false", "--report_to", "none",
        "--save_strategy", "steps", "--save_steps", "2", "--save_only_model", "true", "--seed", "0",
    ]  # fmt: skip
    env = {
        **os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
        "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_DATASETS_CACHE": str(tmp_path / "datasets"),
    }  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Training completed" in result.stdout
    assert (output / "model.safetensors").is_file() and (output / "chat_template.jinja").is_file()

    # The first step's loss is the loss at the saved weights over the whole dataset (one batch): it equals the model's
    # loss on the reference collator's batch, and not the loss over every token TRL trains on without
    # `assistant_only_loss`.
    log_history = json.loads((output / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    first_loss = next(log["loss"] for log in log_history if log.get("step") == 1 and "loss" in log)
    batch = reference_batch(processor, plain_rows())
    model.train()
    with torch.no_grad():
        reference_loss = model(**batch).loss.item()
        every_token = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)
        every_token_loss = model(**{**batch, "labels": every_token}).loss.item()
    assert first_loss == pytest.approx(reference_loss, rel=1e-4)
    assert abs(every_token_loss - reference_loss) > 100 * 1e-4 * reference_loss
