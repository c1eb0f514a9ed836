"""Self-training data: STIC's corruptions and prompts, the preference builder (STIC and self-questioning pairs,
resumable, deterministic) and description infusion, on the shipped demo checkpoint and a few training-split scenes
(images only)."""

import json
import random
import re

import numpy as np
import pytest
from PIL import Image

from transformers_sqllava.cli import main
from transformers_sqllava.commands.generate import checkpoint_prompt_format, load_model_and_processor
from transformers_sqllava.demo.data import split_scenes
from transformers_sqllava.demo.record import DEFAULT_CHECKPOINT
from transformers_sqllava.self_training import (
    DEMO_PROMPTS,
    PreferenceBuildConfig,
    build_preferences,
    corrupt_image,
    infuse_descriptions,
    infuse_llava_json,
    load_preference_dataset,
)
from transformers_sqllava.self_training.corruption import jitter_colours, shrink
from transformers_sqllava.self_training.prompts import STIC_HALLUCINATION_PROMPTS

TRAINED = checkpoint_prompt_format(str(DEFAULT_CHECKPOINT))
DEMO_GENERATION = {"do_sample": False, "max_new_tokens": 64}
DEMO_QUESTIONS = {"do_sample": True, "temperature": 1.2, "top_p": 0.95, "top_k": 0, "max_new_tokens": 16}


@pytest.fixture(scope="module")
def demo():
    return load_model_and_processor(str(DEFAULT_CHECKPOINT), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def unlabeled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("unlabeled")
    for scene in split_scenes(6, 0, image_size=72).train:
        scene.render().save(folder / f"scene-{scene.seed}.png")
    return folder


def demo_config(**overrides):
    return PreferenceBuildConfig(**{"prompts": DEMO_PROMPTS, "system_prompt": TRAINED["system_prompt"],
                                    "answer_generation": DEMO_GENERATION, "question_generation": DEMO_QUESTIONS,
                                    **overrides})  # fmt: skip


def test_corruptions_follow_stic(tmp_path):
    image = Image.new("RGB", (80, 60), (220, 40, 40))
    assert shrink(image).size == (27, 20)  # T.Resize(size=20): the shorter side to 20, aspect kept
    unchanged = np.array(jitter_colours(image, 1.0, 0.0)).astype(int) - np.array(image).astype(int)
    assert np.abs(unchanged).max() <= 2  # factor 1, no shift: the image, up to the HSV round trip
    darker = np.array(jitter_colours(image, 0.5, 0.0)).astype(int)
    assert abs(darker[0, 0, 0] - 110) <= 2  # brightness halved
    shifted = np.array(jitter_colours(image, 1.0, 1 / 3))[0, 0]
    assert shifted[1] > shifted[0] and shifted[1] > shifted[2]  # red rotated a third of the circle: green
    kinds = {corrupt_image(image, random.Random(seed))[1] for seed in range(20)}
    assert kinds == {"resize", "color_jitter"}  # both branches, 1/2 each


def test_stic_prompts_are_the_scripts(tmp_path):
    assert len(STIC_HALLUCINATION_PROMPTS) == 8 and STIC_HALLUCINATION_PROMPTS[0].startswith("Describe the image with")


def test_builder_writes_every_kind_in_the_preference_format(demo, unlabeled, tmp_path):
    model, processor = demo
    output = tmp_path / "prefs.jsonl"
    summary = build_preferences(model, processor, unlabeled, output,
                                demo_config(kinds=("stic", "sq-question", "sq-answer")), batch_size=4)  # fmt: skip
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert sum(summary.num_written.values()) == len(rows)
    assert {kind: summary.num_written[kind] + summary.num_identical[kind] for kind in summary.num_written} == {
        "stic": 6,
        "sq-question": 6,
        "sq-answer": 6,
    }  # one pair of each kind per image, written or counted
    for row in rows:
        assert row["prompt"][0]["content"][0] == {"type": "image"}  # the image is in the first user turn
        assert row["chosen"][0]["role"] == row["rejected"][0]["role"]
        assert row["chosen"][0]["content"][0]["text"] != row["rejected"][0]["content"][0]["text"]
        if row["kind"] == "sq-question":
            assert row["chosen"][0]["role"] == "vuser" and row["prompt"][-1]["role"] == "assistant"
            assert row["prompt"][-1]["content"][0]["text"].startswith("There ")  # its own clean description
        if row["kind"] == "stic":
            branch = row["metadata"]["branch"]
            assert (row["metadata"]["corruption"] is None) == (branch == "hallucination_prompt")
    dataset = load_preference_dataset(output, unlabeled, kinds=("sq-question",))
    assert len(dataset) == summary.num_written["sq-question"] and dataset[0]["images"][0].size == (72, 72)


def test_builder_is_deterministic_and_resumes(demo, unlabeled, tmp_path):
    model, processor = demo
    config = demo_config(kinds=("stic", "sq-question"))
    full = tmp_path / "full.jsonl"
    build_preferences(model, processor, unlabeled, full, config, batch_size=6)
    again = tmp_path / "again.jsonl"
    build_preferences(model, processor, unlabeled, again, config, batch_size=6)
    assert full.read_text() == again.read_text()
    lines = full.read_text().splitlines(keepends=True)
    first_images = {json.loads(line)["image"] for line in lines[:3]}
    killed = tmp_path / "killed.jsonl"
    killed.write_text("".join(lines[:3]) + lines[3][:20])
    summary = build_preferences(model, processor, unlabeled, killed, config, batch_size=6)
    assert summary.num_already_done == len(first_images)
    written = [json.loads(line) for line in killed.read_text().splitlines()]
    assert len({row["id"] for row in written}) == len(written)  # no pair twice


def test_description_infusion(demo, tmp_path):
    model, processor = demo
    scenes = split_scenes(2, 0, image_size=72).train
    rows = [{"images": [scene.render()], "messages": [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many objects are there?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Two."}]}]} for scene in scenes]  # fmt: skip
    infused = infuse_descriptions(model, processor, rows, prompts=DEMO_PROMPTS, system_prompt=TRAINED["system_prompt"],
                                  generation_kwargs=DEMO_GENERATION)  # fmt: skip
    text = infused[0]["messages"][0]["content"][1]["text"]
    assert re.fullmatch(r"Image description:\nThere .+\n\nHow many objects are there\?", text, re.DOTALL)
    assert rows[0]["messages"][0]["content"][1]["text"] == "How many objects are there?"  # the input is untouched
    scenes[0].render().save(tmp_path / "a.png")
    data = [
        {
            "id": "a",
            "image": "a.png",
            "conversations": [{"from": "human", "value": "<image>\nWhere is it?"}, {"from": "gpt", "value": "Left."}],
        },
        {"id": "t", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]},
    ]
    (tmp_path / "data.json").write_text(json.dumps(data))
    count = infuse_llava_json(model, processor, tmp_path / "data.json", tmp_path, tmp_path / "out.json",
                              prompts=DEMO_PROMPTS, system_prompt=TRAINED["system_prompt"],
                              generation_kwargs=DEMO_GENERATION)  # fmt: skip
    out = json.loads((tmp_path / "out.json").read_text())
    assert count == 1 and out[0]["conversations"][0]["value"].startswith("<image>\nImage description:\nThere ")
    assert out[0]["conversations"][0]["value"].endswith("\n\nWhere is it?") and out[1] == data[1]


def test_command_line(unlabeled, tmp_path, capsys):
    output = tmp_path / "prefs.jsonl"
    assert main(["self-train", "build-preferences", "--model", "demo", "--image-folder", str(unlabeled),
                 "--output", str(output), "--kinds", "sq-question", "--prompts", "demo", "--max-new-tokens", "64",
                 "--limit", "3"]) == 0  # fmt: skip
    assert "sq-question pairs written" in capsys.readouterr().out
    assert {json.loads(line)["kind"] for line in output.read_text().splitlines()} == {"sq-question"}
    with pytest.raises(SystemExit):
        main(["self-train", "build-preferences", "--model", "demo", "--image-folder", str(tmp_path / "none"),
              "--output", str(output)])  # fmt: skip
    assert "no such folder" in capsys.readouterr().err
