"""`sqllava generate`: prompt mode (streamed or JSON), self-questioning mode (streamed or JSON), 4-bit loading."""

import json
import re

import pytest
import torch
from sqllava_tiny import picture, save_tiny_checkpoint, single_torch_thread

from transformers_sqllava.cli import main
from transformers_sqllava.commands.generate import load_model_and_processor
from transformers_sqllava.self_questioning import description_conversation, generate_from_conversations


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_torch_thread():
        yield


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    image_path = folder / "image.png"
    picture(7, width=30).save(image_path)
    return {"model": save_tiny_checkpoint(folder / "sqllava-tiny"), "image": str(image_path)}


@pytest.fixture(scope="module")
def loaded(files):
    model, processor = load_model_and_processor(files["model"], device="cpu")
    image = processor.image_processor.fetch_images(files["image"])
    return model, processor, image


def generate_args(files, *extra) -> list[str]:
    return ["generate", "--model", files["model"], "--image", files["image"], "--device", "cpu", *extra]


def greedy_text(loaded, text: str, system_prompt: str, max_new_tokens: int = 8) -> str:
    model, processor, image = loaded
    (output,) = generate_from_conversations(
        model, processor, [description_conversation(image, text)], "assistant", system_prompt,
        do_sample=False, max_new_tokens=max_new_tokens,
    )
    return output


def test_prompt_is_answered_and_streamed(files, loaded, capsys):
    assert main(generate_args(files, "--prompt", "What is this?", "--max-new-tokens", "8")) == 0
    streamed = capsys.readouterr().out
    expected = greedy_text(loaded, "What is this?", "v1")  # greedy, v1 system prompt (the benchmarks' setting)
    assert expected and streamed.strip() == expected

    assert main(generate_args(files, "--prompt", "What is this?", "--max-new-tokens", "8", "--json")) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload == {"image": files["image"], "prompt": "What is this?", "answer": expected}


def test_self_question_json(files, loaded, capsys):
    args = generate_args(files, "--self-question", "2", "--answer-questions", "--max-new-tokens", "8", "--json")
    assert main([*args, "--seed", "0"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == {"image", "description", "questions", "dialogues"}
    assert payload["description"] == greedy_text(loaded, "Can you describe the image in detail?", "v1_sq")
    assert len(payload["questions"]) == 2
    assert [dialogue["question"] for dialogue in payload["dialogues"]] == payload["questions"]
    assert all(isinstance(dialogue["answer"], str) for dialogue in payload["dialogues"])

    assert main([*args, "--seed", "0"]) == 0  # the seed makes the sampled questions reproducible
    assert json.loads(capsys.readouterr().out) == payload

    assert main([*generate_args(files, "--self-question", "1", "--json"), "--description", "A red circle."]) == 0
    assert json.loads(capsys.readouterr().out)["description"] == "A red circle."


def test_self_question_streamed(files, loaded, capsys):
    args = generate_args(files, "--self-question", "2", "--answer-questions", "--max-new-tokens", "8", "--seed", "0")
    assert main(args) == 0
    out = capsys.readouterr().out
    headers = ["Description:", "Question 1:", "Answer 1:", "Question 2:", "Answer 2:"]
    positions = [out.find(header) for header in headers]
    assert positions[0] == 0 and positions == sorted(positions)
    description = out[len("Description:") : positions[1]].strip()
    assert description == greedy_text(loaded, "Can you describe the image in detail?", "v1_sq")
    assert re.search(r"Question 1: \S", out)


@pytest.mark.parametrize(
    "extra",
    [
        [],  # neither --prompt nor --self-question
        ["--prompt", "Q", "--self-question", "2"],
        ["--prompt", "Q", "--answer-questions"],
        ["--self-question", "0"],
    ],
)
def test_bad_arguments_exit(files, extra, capsys):
    with pytest.raises(SystemExit):
        main(generate_args(files, *extra))


def test_load_in_4bit(files, capsys):
    model, _ = load_model_and_processor(files["model"], device="cpu", load_in_4bit=True)
    quantization_config = model.config.quantization_config
    assert quantization_config.bnb_4bit_quant_type == "nf4"
    assert quantization_config.bnb_4bit_compute_dtype == torch.bfloat16  # on CPU, unless --dtype says otherwise
    assert type(model.model.language_model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    assert type(model.lm_head).__name__ == "Linear"  # the model class's default skip modules

    args = generate_args(files, "--prompt", "What is this?", "--max-new-tokens", "4", "--load-in-4bit", "--json")
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["prompt"] == "What is this?"
