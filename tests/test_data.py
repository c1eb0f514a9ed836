"""The LLaVA JSON loader: TRL vision rows, lazy images, missing images, schema errors."""

import json
import logging

import pytest
from PIL import Image

from transformers_sqllava.training import data as data_module
from transformers_sqllava.training import load_llava_dataset


def _write_samples(tmp_path, samples, images=("red.png",)):
    (tmp_path / "images").mkdir()
    for name in images:
        Image.new("P", (12, 8), 3).save(tmp_path / "images" / name)  # palette image: the loader must give RGB
    path = tmp_path / "data.json"
    path.write_text(json.dumps(samples))
    return path


IMAGE_SAMPLE = {
    "id": "000000033471",
    "image": "red.png",
    "conversations": [
        {"from": "human", "value": "What colour is it?\n<image>"},
        {"from": "gpt", "value": "Red."},
        {"from": "human", "value": "Is it square?"},
        {"from": "gpt", "value": "No."},
    ],
}
TEXT_SAMPLE = {
    "id": 7,
    "conversations": [
        {"from": "human", "value": "Hello"},
        {"from": "gpt", "value": "Hi."},
        {"from": "vuser", "value": "Why?"},
    ],
}


def test_image_and_text_only_rows(tmp_path):
    path = _write_samples(tmp_path, [IMAGE_SAMPLE, TEXT_SAMPLE])
    dataset, report = load_llava_dataset(path, tmp_path / "images", return_report=True)

    assert len(dataset) == 2
    assert (report.num_samples, report.num_image_samples, report.num_text_only_samples, report.num_skipped) == (
        2,
        1,
        1,
        0,
    )
    row = dataset[0]
    assert row["id"] == "000000033471"
    assert row["messages"] == [
        # preprocess_multimodal (docs/original.md#training-data): the image first, the placeholder gone, the text
        # stripped.
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour is it?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Red."}]},
        {"role": "user", "content": [{"type": "text", "text": "Is it square?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "No."}]},
    ]
    assert len(row["images"]) == 1
    assert row["images"][0].mode == "RGB" and row["images"][0].size == (12, 8)

    text_row = dataset[1]
    assert text_row["id"] == "7"  # int ids become strings, one Arrow type
    assert text_row["images"] == []
    assert [m["role"] for m in text_row["messages"]] == ["user", "assistant", "vuser"]
    # Batched access, as a DataLoader with a sampler does it, goes through the same transform.
    assert [len(images) for images in dataset[0:2]["images"]] == [1, 0]


def test_images_are_opened_only_when_a_row_is_read(tmp_path, monkeypatch):
    path = _write_samples(tmp_path, [IMAGE_SAMPLE, {**IMAGE_SAMPLE, "id": "b"}])
    opened = []
    real_open = Image.open
    monkeypatch.setattr(data_module.Image, "open", lambda p, *a, **k: opened.append(p) or real_open(p, *a, **k))

    dataset = load_llava_dataset(path, tmp_path / "images")
    assert opened == []
    dataset[1]
    assert opened == [str(tmp_path / "images" / "red.png")]


def test_image_folder_defaults_to_the_json_folder(tmp_path):
    sample = {**IMAGE_SAMPLE, "image": "images/red.png"}
    path = _write_samples(tmp_path, [sample])
    assert len(load_llava_dataset(path)[0]["images"]) == 1


def test_missing_image_raises_naming_id_and_path(tmp_path):
    path = _write_samples(tmp_path, [IMAGE_SAMPLE, {**IMAGE_SAMPLE, "id": "lost-42", "image": "gone.jpg"}])
    with pytest.raises(FileNotFoundError, match=r"lost-42.*gone\.jpg.*on_missing_image='skip'"):
        load_llava_dataset(path, tmp_path / "images")


def test_missing_image_skip_counts_and_logs(tmp_path, caplog):
    samples = [IMAGE_SAMPLE, {**IMAGE_SAMPLE, "id": "lost-42", "image": "gone.jpg"}, TEXT_SAMPLE]
    path = _write_samples(tmp_path, samples)
    with caplog.at_level(logging.WARNING, logger=data_module.__name__):
        dataset, report = load_llava_dataset(path, tmp_path / "images", on_missing_image="skip", return_report=True)
    assert dataset["id"] == ["000000033471", "7"]
    assert report.num_skipped == 1 and report.num_samples == 2
    assert report.skipped[0].id == "lost-42" and report.skipped[0].image_path.endswith("gone.jpg")
    assert "Skipped 1 of 3 samples" in caplog.text and "lost-42" in caplog.text


def test_corrupt_image_raises_on_access_or_is_skipped_when_verified(tmp_path):
    path = _write_samples(tmp_path, [IMAGE_SAMPLE, {**IMAGE_SAMPLE, "id": "bad-1", "image": "bad.png"}])
    (tmp_path / "images" / "bad.png").write_bytes(b"not an image")

    dataset = load_llava_dataset(path, tmp_path / "images")  # exists, so loading passes
    with pytest.raises(OSError, match=r"bad-1.*bad\.png"):
        dataset[1]

    dataset, report = load_llava_dataset(
        path, tmp_path / "images", verify_images=True, on_missing_image="skip", return_report=True
    )
    assert dataset["id"] == ["000000033471"]
    assert report.skipped[0].id == "bad-1" and "unreadable" in report.skipped[0].reason


def test_accepts_samples_in_memory(tmp_path):
    dataset = load_llava_dataset([TEXT_SAMPLE])
    assert dataset[0]["messages"][2] == {"role": "vuser", "content": [{"type": "text", "text": "Why?"}]}


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ({"id": "e", "conversations": []}, r"'e' has no conversation"),
        ({"id": "e"}, r"'e' has no conversation"),
        ({"id": "u", "conversations": [{"from": "robot", "value": "hi"}]}, r"'u', turn 0: unknown speaker.*'robot'"),
        ({"id": "m", "conversations": [{"from": "human"}]}, r"'m', turn 0: every turn must be a dict"),
        ({"id": "v", "conversations": [{"from": "human", "value": 3}]}, r"'v', turn 0: 'value' must be a string"),
        (
            {"id": "n", "conversations": [{"from": "human", "value": "<image>\nhi"}]},
            r"'n', turn 0 contains '<image>' but the sample has no 'image'",
        ),
        (
            {
                "id": "l",
                "image": "red.png",
                "conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "<image>"}],
            },
            r"'l': '<image>' appears in turn 1",
        ),
        (
            {"id": "p", "image": "red.png", "conversations": [{"from": "human", "value": "a"}]},
            r"'p' has an image but its first human turn has no '<image>'",
        ),
        (
            {"id": "two", "image": ["a.png", "b.png"], "conversations": [{"from": "human", "value": "<image>"}]},
            r"'two': 'image' must be one file path",
        ),
    ],
)
def test_schema_errors_name_the_sample(tmp_path, sample, message):
    path = _write_samples(tmp_path, [IMAGE_SAMPLE, sample])
    with pytest.raises(ValueError, match=message):
        load_llava_dataset(path, tmp_path / "images")


def test_top_level_must_be_a_list(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps({"id": "x"}))
    with pytest.raises(ValueError, match="JSON list of samples"):
        load_llava_dataset(path)
    with pytest.raises(ValueError, match="on_missing_image"):
        load_llava_dataset([TEXT_SAMPLE], on_missing_image="ignore")


def test_length_column_counts_words_and_128_per_image(tmp_path):
    # The reference's `lengths` (docs/original.md#training-data): words of all turns, plus 128 for an image sample.
    path = _write_samples(tmp_path, [IMAGE_SAMPLE, TEXT_SAMPLE])
    dataset = load_llava_dataset(path, tmp_path / "images")
    assert dataset[0]["length"] == len("What colour is it? Red. Is it square? No.".split()) + 128
    assert dataset[1]["length"] == 3
    # A column query, as Trainer's length-grouped sampler makes it, goes through the lazy transform without
    # opening any image.
    assert dataset["length"] == [137, 3]


def test_sample_length_accepts_string_and_part_contents():
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]},
        {"role": "assistant", "content": "A red circle."},
    ]
    assert data_module.sample_length(messages, num_images=1) == 6 + data_module.IMAGE_LENGTH
    assert data_module.sample_length(messages, num_images=2, image_length=9) == 6 + 18
