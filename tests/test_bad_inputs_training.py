"""Bad training data never gets through silently: `load_llava_dataset` / `convert_llava_sample` and the two collators
raise a `ValueError` (`TypeError`, `FileNotFoundError`) naming the sample and the fix, or skip and count a sample
under `on_overflow="skip"`; no internal exception (KeyError, TypeError on a None, a Jinja error) and no NaN loss.

Also: a LLaVA first human turn that is only `<image>` renders as the reference's `USER: <image> ASSISTANT:`
(docs/original.md#training-data). The messages are listed in docs/errors.md#training-data and docs/errors.md#collators.
"""

import json

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import tiny_config, tiny_processor

from transformers_sqllava import SYSTEM_PROMPT_V1_SQ, SQLlavaForConditionalGeneration
from transformers_sqllava.training import (
    SQLlavaAlignmentCollator,
    SQLlavaSelfQuestioningCollator,
    convert_llava_sample,
    encode_conversation,
    load_llava_dataset,
)
from transformers_sqllava.training.data import UnreadableImageError


@pytest.fixture(scope="module")
def processor():
    return tiny_processor()


IMAGE = {"type": "image"}


def image():
    return PIL.Image.new("RGB", (20, 14), (200, 30, 30))


def user(text=None, with_image=False):
    images = [{"type": "image"}] if with_image else []
    return {"role": "user", "content": images + ([{"type": "text", "text": text}] if text is not None else [])}


def assistant(text):
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def good_row(sample_id="good"):
    return {"id": sample_id, "images": [image()], "messages": [user("What is it?", True), assistant("A circle.")]}


# --------------------------------------------------------------------------------------------------------------------
# The loader
# --------------------------------------------------------------------------------------------------------------------

HUMAN, GPT = {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        (None, r"Sample #0 must be a JSON object, got NoneType"),
        ("text", r"Sample #0 must be a JSON object, got str"),
        ({"id": ["x"], "conversations": [HUMAN, GPT]}, r"Sample #0: 'id' must be a string or an integer"),
        ({"id": {"a": 1}, "conversations": [HUMAN, GPT]}, r"'id' must be a string or an integer"),
        ({"id": "c", "conversations": None}, r"'c' has no conversation"),
        ({"id": "c", "conversations": "Hi"}, r"'c' has no conversation"),
        ({"id": "c", "conversations": {"from": "human"}}, r"'c' has no conversation"),
        ({"id": "t", "conversations": [None]}, r"'t', turn 0: every turn must be a dict with 'from' and 'value'"),
        ({"id": "t", "conversations": [HUMAN, {"value": "x"}]}, r"'t', turn 1: every turn must be a dict"),
        ({"id": "f", "conversations": [{"from": ["human"], "value": "Hi"}, GPT]}, r"'f', turn 0: unknown speaker"),
        ({"id": "f", "conversations": [{"from": None, "value": "Hi"}, GPT]}, r"'f', turn 0: unknown speaker"),
        ({"id": "v", "conversations": [{"from": "human", "value": None}, GPT]}, r"'v', turn 0: 'value' must be a str"),
        ({"id": "v", "conversations": [HUMAN, {"from": "gpt", "value": ["a"]}]}, r"'v', turn 1: 'value' must be"),
        ({"id": "i", "image": 3, "conversations": [HUMAN, GPT]}, r"'i': 'image' must be one file path"),
        ({"id": "i", "image": " ", "conversations": [HUMAN, GPT]}, r"'i': 'image' is an empty string"),
        ({"id": "o", "conversations": [GPT, HUMAN]}, r"'o', turn 0: expected 'human', got 'gpt'"),
        ({"id": "o", "conversations": [HUMAN, HUMAN, GPT]}, r"'o', turn 1: expected 'gpt', got 'human'"),
        ({"id": "o", "conversations": [HUMAN, GPT, GPT]}, r"'o', turn 2: expected 'human' or 'vuser', got 'gpt'"),
        ({"id": "o", "conversations": [{"from": "vuser", "value": "Q"}, GPT]}, r"'o', turn 0: expected 'human'"),
        ({"id": "q", "conversations": [HUMAN]}, r"'q' has no 'gpt' turn: nothing to train on"),
    ],
)
def test_malformed_samples_raise_naming_sample_turn_and_fix(sample, message):
    with pytest.raises(ValueError, match=message):
        convert_llava_sample(sample)
    with pytest.raises(ValueError, match=message.replace("#0", "#1")):
        load_llava_dataset([{"id": "ok", "conversations": [HUMAN, GPT]}, sample])


def test_data_of_the_wrong_kind_names_the_fix(tmp_path):
    with pytest.raises(TypeError, match="wrap it in a list"):
        load_llava_dataset({"id": "x", "conversations": [HUMAN, GPT]})
    with pytest.raises(TypeError, match="iterable of sample dicts, got int"):
        load_llava_dataset(3)
    with pytest.raises(FileNotFoundError, match=r"LLaVA JSON file .*missing\.json.* not found"):
        load_llava_dataset(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text('[{"id": 1,')
    with pytest.raises(ValueError, match=r"broken\.json.* is not valid JSON.*JSON-lines"):
        load_llava_dataset(tmp_path / "broken.json")
    (tmp_path / "lines.jsonl").write_text(json.dumps({"id": 1}) + "\n" + json.dumps({"id": 2}) + "\n")
    with pytest.raises(ValueError, match=r"lines\.jsonl.* is not valid JSON"):
        load_llava_dataset(tmp_path / "lines.jsonl")


def test_empty_and_corrupt_image_files_are_named(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    samples = [{"id": "e", "image": "empty.png", "conversations": [{"from": "human", "value": "<image>"}, GPT]}]
    with pytest.raises(UnreadableImageError, match=r"'e': image .*empty\.png.*empty file \(0 bytes\)"):
        load_llava_dataset(samples, tmp_path)
    dataset, report = load_llava_dataset(samples + [{"id": "t", "conversations": [HUMAN, GPT]}], tmp_path,
                                         on_missing_image="skip", return_report=True)
    assert dataset["id"] == ["t"] and report.skipped[0].reason == "empty file (0 bytes)"

    (tmp_path / "corrupt.png").write_bytes(b"not a png")
    dataset = load_llava_dataset([{**samples[0], "id": "c", "image": "corrupt.png"}], tmp_path)
    with pytest.raises(UnreadableImageError, match=r"'c': cannot read image .*corrupt\.png") as raised:
        dataset[0]
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, OSError)


def test_an_image_only_first_turn_renders_as_the_reference(tmp_path, processor):
    # preprocess_multimodal turns "<image>\n" into "<image>" (docs/original.md#training-data): the prompt is
    # "USER: <image> ASSISTANT:", one `<0x0A>` token fewer than an image followed by a newline.
    image().save(tmp_path / "red.png")
    sample = {"id": "only", "image": "red.png",
              "conversations": [{"from": "human", "value": "<image>\n"}, {"from": "gpt", "value": "Two."}]}
    row = load_llava_dataset([sample], tmp_path)[0]
    assert row["messages"][0] == {"role": "user", "content": [{"type": "image"}]}

    batch = SQLlavaSelfQuestioningCollator(processor, sq_ratio=0.0)([row])
    reference = processor(text=f"{SYSTEM_PROMPT_V1_SQ} USER: <image> ASSISTANT: Two.</s>", images=row["images"])
    assert batch["input_ids"][0].tolist() == reference["input_ids"]
    with_newline = processor(text=f"{SYSTEM_PROMPT_V1_SQ} USER: <image>\n ASSISTANT: Two.</s>", images=row["images"])
    newline = processor.tokenizer.convert_tokens_to_ids("<0x0A>")
    assert with_newline["input_ids"].count(newline) == reference["input_ids"].count(newline) + 1
    assert len(with_newline["input_ids"]) == len(reference["input_ids"]) + 1
    # An empty text block (a hand-made row) renders the same; a question keeps its newline.
    empty_text = {**row, "messages": [user("", True), row["messages"][1]]}
    assert SQLlavaSelfQuestioningCollator(processor, sq_ratio=0.0)([empty_text])["input_ids"].equal(batch["input_ids"])
    ids = encode_conversation(processor, [user("Q", True), assistant("A")])["input_ids"]
    rendered = processor.apply_chat_template([user("Q", True), assistant("A")], system_prompt="v1_sq")
    assert ids == processor(text=rendered, images=[image()])["input_ids"] and "<image>\nQ" in rendered


# --------------------------------------------------------------------------------------------------------------------
# The collators: rows
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("collator_class", [SQLlavaSelfQuestioningCollator, SQLlavaAlignmentCollator])
def test_image_counts_are_checked_per_row(processor, collator_class):
    collator = collator_class(processor)
    block_without_image = {"id": "a", "images": [], "messages": [user("What is it?", True), assistant("A.")]}
    image_without_block = {"id": "b", "images": [image()], "messages": [user("What is it?"), assistant("A.")]}
    with pytest.raises(ValueError, match=r"Sample 'a' has 1 image block\(s\) in its messages but 0 image\(s\)"):
        collator([block_without_image])
    with pytest.raises(ValueError, match=r"Sample 'b' has 0 image block\(s\).* but 1 image\(s\): add \{'type'"):
        collator([image_without_block])
    # Together the batch has one image and one placeholder: still refused (it would train 'a' on b's image).
    with pytest.raises(ValueError, match=r"Sample 'a' has 1 image block"):
        collator([block_without_image, image_without_block])
    with pytest.raises(ValueError, match=r"Sample 'b' has 0 image block"):
        collator([image_without_block, block_without_image])


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("text", r"Row 0 of the batch is a str, not a dict"),
        ({"id": "m", "images": []}, r"Sample 'm' has no 'messages'.*its keys: \['id', 'images'\]"),
        ({"id": "m", "messages": None}, r"Sample 'm': 'messages' must be a non-empty list"),
        ({"id": "m", "messages": []}, r"Sample 'm': 'messages' must be a non-empty list"),
        ({"id": "m", "messages": "USER: hi"}, r"Sample 'm': 'messages' must be a non-empty list"),
        ({"id": "m", "messages": [None]}, r"Sample 'm', message 0: must be a dict with 'role' and 'content'"),
        ({"id": "r", "messages": [{"content": "hi"}]}, r"Sample 'r', message 0: unknown role None"),
        ({"id": "r", "messages": [{"role": "human", "content": "hi"}]}, r"unknown role 'human'; SQ-LLaVA roles"),
        ({"id": "r", "messages": [{"role": ["user"], "content": "hi"}]}, r"unknown role \['user'\]"),
        ({"id": "c", "messages": [{"role": "user"}]}, r"'c', message 0 \(user\): 'content' must .*no 'content' key"),
        ({"id": "c", "messages": [{"role": "user", "content": None}]}, r"'content' must be a string or a list"),
        ({"id": "c", "messages": [{"role": "user", "content": 3}]}, r"'content' must be a string or a list"),
        ({"id": "b", "messages": [{"role": "user", "content": ["hi"]}]}, r"'b', message 0 \(user\), block 0: 'hi'"),
        ({"id": "b", "messages": [{"role": "user", "content": [{"type": "video"}]}]}, r"block 0: .* not a content"),
        ({"id": "b", "messages": [{"role": "user", "content": [{"type": "text"}]}]}, r"text block needs a string"),
        ({"id": "b", "messages": [user(None) | {"content": [{"type": "text", "text": None}]}]}, r"needs a string"),
        ({"id": "i", "images": [image()], "messages": [user("Q"), {"role": "assistant", "content": [IMAGE]}]},
         r"'i', message 1 \(assistant\): images go in user turns"),
        ({"id": "o", "messages": [assistant("A"), user("Q")]}, r"'o', message 0 is a 'assistant' turn where a user"),
        ({"id": "o", "messages": [user("Q"), user("Q")]}, r"'o', message 1 is a 'user' turn where an assistant"),
        ({"id": "o", "messages": [{"role": "vuser", "content": "Q"}, assistant("A")]}, r"'o', message 0: a vuser"),
        ({"id": "o", "messages": [user("Q"), {"role": "system", "content": "S"}]}, r"message 1 is a 'system' turn"),
        ({"id": "o", "messages": [{"role": "system", "content": "S"}]}, r"'o' has no user message after the system"),
        ({"id": "g", "images": image(), "messages": [user("Q", True), assistant("A")]},
         r"'g': 'images' must be a list of images, got a Image: wrap it"),
        ({"id": "g", "images": [None], "messages": [user("Q", True), assistant("A")]}, r"'g': 'images' holds None"),
        ({"images": [], "messages": [user("Q"), assistant("A"), user("Q"), user("Q")]}, r"Sample '#0 of the batch'"),
    ],
)
def test_malformed_rows_raise_naming_the_sample(processor, row, message):
    with pytest.raises(ValueError, match=message):
        SQLlavaSelfQuestioningCollator(processor, seed=0)([row])


def test_bad_images_in_a_row_name_the_sample(processor, tmp_path):
    collator = SQLlavaSelfQuestioningCollator(processor, seed=0)
    missing = {**good_row("lost"), "images": [str(tmp_path / "gone.png")]}
    with pytest.raises(FileNotFoundError, match=r"Sample 'lost': Image file .*gone\.png.* not found"):
        collator([good_row(), missing])
    normalised = {**good_row("norm"), "images": [np.full((8, 8, 3), -1.5, np.float32)]}
    with pytest.raises(ValueError, match=r"Sample 'norm': Array \(float32\).*normalised already"):
        collator([normalised])
    with pytest.raises(TypeError, match=r"Sample 'kind': Unsupported image type dict"):
        collator([{**good_row("kind"), "images": [{"path": "a.png"}]}])
    # Arrays, files and the `image` key are images too.
    path = tmp_path / "red.png"
    image().save(path)
    batch = collator([{**good_row(), "images": [np.asarray(image())]}, {**good_row(), "images": [path]},
                      {"image": image(), "messages": good_row()["messages"]}])
    assert batch["pixel_values"].shape[0] == 3 and torch.equal(batch["pixel_values"][0], batch["pixel_values"][1])


def test_empty_batches_and_bad_arguments_name_the_fix(processor):
    for collator in (SQLlavaSelfQuestioningCollator(processor), SQLlavaAlignmentCollator(processor)):
        with pytest.raises(ValueError, match="empty batch"):
            collator([])
    with pytest.raises(ValueError, match=r"`system_prompt` must be one of \['v1', 'v1_sq'\].*system message"):
        SQLlavaSelfQuestioningCollator(processor, system_prompt="v2")
    for name, value in (("max_length", 0), ("max_length", "2048"), ("pad_to_multiple_of", -8)):
        with pytest.raises(ValueError, match=f"`{name}` must be a positive integer or None"):
            SQLlavaSelfQuestioningCollator(processor, **{name: value})


def test_a_system_message_and_an_explicit_prompt_raise_value_error_not_a_template_error(processor):
    messages = [{"role": "system", "content": "Be brief."}, user("Q"), assistant("A")]
    with pytest.raises(ValueError, match="system message and `system_prompt` was also given"):
        encode_conversation(processor, messages, system_prompt="v1_sq")
    with pytest.raises(ValueError, match=r"message 1 is a 'user' turn where an assistant"):
        encode_conversation(processor, [user("Q"), user("Q")])


# --------------------------------------------------------------------------------------------------------------------
# Nothing to supervise: never a NaN loss
# --------------------------------------------------------------------------------------------------------------------


def unsupervised_row(sample_id="empty"):
    return {"id": sample_id, "images": [image()], "messages": [user("What is it?", True)]}


def test_a_sample_with_nothing_to_train_on_raises_by_default(processor):
    with pytest.raises(ValueError, match=r"Sample 'empty' has nothing to train on: no assistant answer.*'skip'"):
        SQLlavaSelfQuestioningCollator(processor, seed=0)([good_row(), unsupervised_row()])
    with pytest.raises(ValueError, match=r"Sample 'empty' has nothing to train on"):
        SQLlavaSelfQuestioningCollator(processor, on_overflow="truncate_text")([unsupervised_row()])


def test_skip_counts_samples_with_nothing_to_train_on_and_the_loss_stays_finite(processor):
    collator = SQLlavaSelfQuestioningCollator(processor, seed=0, on_overflow="skip")
    batch = collator([unsupervised_row(), good_row()])
    assert batch["input_ids"].shape[0] == 1 and batch["pixel_values"].shape[0] == 1  # its image is dropped too
    stats = collator.stats
    assert (stats.num_skipped, stats.num_unsupervised, stats.skipped_ids) == (1, 1, ["empty"])
    assert collator.stats.as_log()["collator/num_unsupervised"] == 1
    model = SQLlavaForConditionalGeneration(tiny_config()).eval()
    with torch.no_grad():
        assert torch.isfinite(model(**batch).loss)
    with pytest.raises(ValueError, match=r"All 2 samples of the batch were skipped.*'a', 'b'"):
        collator([unsupervised_row("a"), unsupervised_row("b")])


def test_truncation_that_leaves_nothing_to_train_on_raises(processor):
    row = {**good_row("cut"), "messages": [user("What is in the image? " * 8, True), assistant("A circle.")]}
    full = SQLlavaSelfQuestioningCollator(processor, sq_ratio=0.0)([row])
    first_trained = int((full["labels"][0] != -100).nonzero()[0])
    collator = SQLlavaSelfQuestioningCollator(processor, max_length=first_trained, on_overflow="truncate_text")
    with pytest.raises(ValueError, match=r"'cut' has nothing to train on: .* left within max_length="):
        collator([row])
    skipping = SQLlavaSelfQuestioningCollator(processor, max_length=first_trained, on_overflow="skip")
    with pytest.raises(ValueError, match="All 1 samples"):
        skipping([row])  # over max_length: skipped and counted as too long
    assert skipping.stats.num_skipped == 1 and skipping.stats.num_unsupervised == 0


def test_the_alignment_collator_checks_rows_too(processor):
    collator = SQLlavaAlignmentCollator(processor)
    with pytest.raises(ValueError, match=r"Sample 'x': 'messages' must be a non-empty list"):
        collator([{"id": "x", "images": [image()], "messages": None}])
    with pytest.raises(ValueError, match="one user turn and one assistant turn"):
        collator([unsupervised_row()])
    batch = collator([{"images": [image()], "messages": [user(None, True), assistant("a red circle")]}])
    assert batch["labels"].shape[0] == 1
