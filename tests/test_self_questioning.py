"""Self-questioning inference (docs/original.md#self-questioning-at-inference): prompts, batching, dialogues, stopping and streaming."""

import json

import pytest
import torch
from conftest import tiny_processor
from sqllava_tiny import picture, sensitive_model, single_torch_thread
from transformers import LogitsProcessor, LogitsProcessorList

from transformers_sqllava import (
    SYSTEM_PROMPT_V1_SQ,
    SelfQuestioningConfig,
    self_question,
    stream_self_questioning,
)
from transformers_sqllava.self_questioning import (
    answer_conversation,
    clean_generated_text,
    description_conversation,
    question_conversation,
)

DESCRIBE = "Can you describe the image in detail?"


def greedy_config(**overrides) -> SelfQuestioningConfig:
    """Short greedy rounds: deterministic, so batched and streamed runs can be compared with one-by-one runs."""
    settings = dict(
        num_questions=2,
        answer_questions=True,
        description_generation_kwargs={"max_new_tokens": 6},
        question_generation_kwargs={"do_sample": False, "max_new_tokens": 6},
        answer_generation_kwargs={"max_new_tokens": 6},
    )
    settings.update(overrides)
    return SelfQuestioningConfig(**settings)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_torch_thread():
        yield


@pytest.fixture(scope="module")
def model():
    return sensitive_model()


@pytest.fixture(scope="module")
def images():
    return [picture(0), picture(1, width=32), picture(2, height=28)]


class GenerateSpy:
    """Wraps `model.generate` and records each call's kwargs and output."""

    def __init__(self, model):
        self.original = model.generate
        self.calls = []

    def __call__(self, **kwargs):
        sequences = self.original(**kwargs)
        self.calls.append({**kwargs, "sequences": sequences})
        return sequences


@pytest.fixture
def spy(model, monkeypatch):
    spy = GenerateSpy(model)
    monkeypatch.setattr(model, "generate", spy)
    return spy


def unpadded_rows(call) -> list[list[int]]:
    return [ids[mask.bool()].tolist() for ids, mask in zip(call["input_ids"], call["attention_mask"])]


# --- configuration --------------------------------------------------------------------------------------------------


def test_defaults_are_the_reference_demo_settings():
    config = SelfQuestioningConfig()
    assert (config.num_questions, config.answer_questions, config.system_prompt) == (3, False, "v1_sq")
    assert config.description_prompt == DESCRIBE
    assert config.question_generation == {
        "do_sample": True, "temperature": 1.2, "top_k": 300, "top_p": 0.95, "num_beams": 1, "max_new_tokens": 300
    }
    assert config.description_generation == {"do_sample": False, "num_beams": 1, "max_new_tokens": 1024}
    assert config.answer_generation == {"do_sample": False, "num_beams": 1, "max_new_tokens": 1024}


def test_overrides_merge_over_the_defaults():
    config = SelfQuestioningConfig(question_generation_kwargs={"max_new_tokens": 64, "top_k": 50})
    assert config.question_generation == {
        "do_sample": True, "temperature": 1.2, "top_k": 50, "top_p": 0.95, "num_beams": 1, "max_new_tokens": 64
    }
    # Greedy drops the sampling defaults (transformers would warn that they are ignored), not the user's own.
    assert greedy_config().question_generation == {"do_sample": False, "num_beams": 1, "max_new_tokens": 6}
    kept = SelfQuestioningConfig(question_generation_kwargs={"do_sample": False, "temperature": 0.5})
    assert kept.question_generation["temperature"] == 0.5 and "top_k" not in kept.question_generation


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_questions": -1}, "num_questions"),
        ({"system_prompt": " "}, "system_prompt"),
        ({"num_questions": 0, "answer_questions": True}, "nothing to answer"),
    ],
)
def test_invalid_config_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SelfQuestioningConfig(**kwargs)


def test_clean_generated_text_is_the_reference_post_processing():
    assert clean_generated_text("  A red circle. </s> ") == "A red circle."
    assert clean_generated_text("What is it?</s>") == "What is it?"
    assert clean_generated_text(" a</s>b ") == "a</s>b"


# --- prompts --------------------------------------------------------------------------------------------------------


def test_round_conversations_render_the_reference_prompts(processor, images):
    def render(conversation, role):
        return processor.apply_chat_template(
            conversation, add_generation_prompt=True, generation_role=role, system_prompt="v1_sq"
        )

    image = images[0]
    assert render(description_conversation(image), "assistant") == (
        SYSTEM_PROMPT_V1_SQ + " USER: <image>\nCan you describe the image in detail? ASSISTANT:"
    )
    # Reference docs/original.md#self-questioning-at-inference step 4, the demo's self-question prompt.
    assert render(question_conversation(image, "A red circle."), "vuser") == (
        SYSTEM_PROMPT_V1_SQ
        + " USER: <image>\nCan you describe the image in detail? ASSISTANT: A red circle.</s>VUSER:"
    )
    # Answers use the training format "</s> ASSISTANT:" (docs/original.md#prompt-format-and-the-two-system-prompts),
    # not visual_qa.py's "</s>ASSISTANT:".
    assert render(answer_conversation(image, "A red circle.", "Why?"), "assistant") == (
        SYSTEM_PROMPT_V1_SQ
        + " USER: <image>\nCan you describe the image in detail? ASSISTANT: A red circle.</s>"
        + "VUSER: Why?</s> ASSISTANT:"
    )


@pytest.mark.parametrize("vuser_token", ["VUSER", "[vusr]"])
def test_generate_sees_the_reference_prompts_with_the_generated_text(vuser_token, images, monkeypatch):
    processor = tiny_processor(vuser_token=vuser_token)
    model = sensitive_model(processor)
    spy = GenerateSpy(model)
    monkeypatch.setattr(model, "generate", spy)
    results = self_question(model, processor, images[:2], greedy_config(num_questions=1))

    assert len(spy.calls) == 3  # describe, ask, answer: one batched call each
    prefix = SYSTEM_PROMPT_V1_SQ + f" USER: <image>\n{DESCRIBE} ASSISTANT:"
    expected_prompts = [
        [prefix for _ in results],
        [f"{prefix} {result.description}</s>{vuser_token}:" for result in results],
        [
            f"{prefix} {result.description}</s>{vuser_token}: {result.questions[0]}</s> ASSISTANT:"
            for result in results
        ],
    ]
    for call, prompts in zip(spy.calls, expected_prompts):
        expected_ids = [processor(text=prompt, images=image)["input_ids"] for prompt, image in zip(prompts, images)]
        assert unpadded_rows(call) == expected_ids
        assert call["eos_token_id"] == processor.tokenizer.convert_tokens_to_ids("</s>") == 2
    # The images are the processor's (pad to square, unlike the demo), one per row.
    pixel_values = processor.image_processor(images[:2], return_tensors="pt")["pixel_values"]
    assert torch.equal(spy.calls[1]["pixel_values"], pixel_values)


def test_a_system_prompt_of_its_own_is_the_system_message_of_every_round(images, monkeypatch):
    processor = tiny_processor(vuser_token="[vusr]")
    model = sensitive_model(processor)
    spy = GenerateSpy(model)
    monkeypatch.setattr(model, "generate", spy)
    results = self_question(model, processor, images[0], greedy_config(num_questions=1, system_prompt="Be brief."))
    prefix = f"Be brief. USER: <image>\n{DESCRIBE} ASSISTANT:"
    expected_prompts = [
        prefix,
        f"{prefix} {results[0].description}</s>[vusr]:",
        f"{prefix} {results[0].description}</s>[vusr]: {results[0].questions[0]}</s> ASSISTANT:",
    ]
    for call, prompt in zip(spy.calls, expected_prompts, strict=True):
        assert unpadded_rows(call) == [processor(text=prompt, images=images[0])["input_ids"]]


def test_questions_are_sampled_with_the_demo_settings(model, processor, images, spy):
    config = SelfQuestioningConfig(num_questions=4, question_generation_kwargs={"max_new_tokens": 8})
    torch.manual_seed(0)
    results = self_question(model, processor, images[0], config, descriptions=["A red circle."])

    (call,) = spy.calls  # the description was given: no round 1
    assert results[0].description == "A red circle."
    assert call["input_ids"].shape[0] == 4  # the prompt repeated num_questions times
    assert (call["do_sample"], call["temperature"], call["top_k"], call["top_p"]) == (True, 1.2, 300, 0.95)
    assert len(set(results[0].questions)) > 1  # independent draws


def test_descriptions_must_match_the_images(model, processor, images):
    with pytest.raises(ValueError, match="one description per image"):
        self_question(model, processor, images, descriptions=["only one"])


# --- results and batching -------------------------------------------------------------------------------------------


def test_results_structure_and_json(model, processor, images):
    results = self_question(model, processor, images[:2], greedy_config(num_questions=3))
    assert len(results) == 2
    for result in results:
        assert result.description and len(result.questions) == 3 and len(result.dialogues) == 3
        assert [dialogue.question for dialogue in result.dialogues] == result.questions
        assert all(dialogue.answer and "</s>" not in dialogue.answer for dialogue in result.dialogues)
    assert results[0].description != results[1].description  # each row saw its own image
    payload = json.loads(json.dumps([result.to_dict() for result in results]))
    second_dialogue = results[0].dialogues[1]
    assert payload[0]["dialogues"][1] == {"question": second_dialogue.question, "answer": second_dialogue.answer}
    assert self_question(model, processor, images[0], greedy_config(answer_questions=False))[0].dialogues == []


def test_batched_equals_one_by_one(model, processor, images):
    config = greedy_config()
    batched = self_question(model, processor, images, config)
    one_by_one = [self_question(model, processor, image, config)[0] for image in images]
    assert batched == one_by_one
    assert len({result.description for result in batched}) == 3


def test_file_paths_are_accepted(model, processor, images, tmp_path):
    path = tmp_path / "image.png"
    images[0].save(path)
    config = greedy_config(num_questions=1, answer_questions=False)
    assert self_question(model, processor, str(path), config) == self_question(model, processor, images[0], config)


class EndOfTurnAfter(LogitsProcessor):
    """Forces `</s>` once row r has `steps[r]` new tokens (the first call fixes the prompt length)."""

    def __init__(self, steps: list[int], eos_token_id: int = 2):
        self.steps, self.eos_token_id, self.prompt_length = steps, eos_token_id, None

    def __call__(self, input_ids, scores):
        self.prompt_length = self.prompt_length or input_ids.shape[1]
        for row, steps in enumerate(self.steps):
            if input_ids.shape[1] - self.prompt_length >= steps:
                scores[row] = -float("inf")
                scores[row, self.eos_token_id] = 0.0
        return scores


def test_generation_stops_at_end_of_turn(model, processor, images, spy, monkeypatch):
    # A checkpoint whose generation_config has no EOS still stops at `</s>`: the tokenizer's is passed explicitly.
    monkeypatch.setattr(model.generation_config, "eos_token_id", None)
    stopper = EndOfTurnAfter(steps=[1, 3])
    config = SelfQuestioningConfig(
        num_questions=2,
        question_generation_kwargs={
            "do_sample": False, "max_new_tokens": 20, "logits_processor": LogitsProcessorList([stopper])
        },
    )
    results = self_question(model, processor, images[0], config, descriptions=["A red circle."])

    (call,) = spy.calls
    prompt_length = call["input_ids"].shape[1]
    new_tokens = call["sequences"][:, prompt_length:]
    assert new_tokens.shape[1] == 4  # 3 tokens + `</s>`, far below max_new_tokens=20
    assert new_tokens[0, 1].item() == 2 and new_tokens[1, 3].item() == 2
    assert (new_tokens[0, 2:] == processor.tokenizer.pad_token_id).all()  # the finished row is padded
    expected = [processor.tokenizer.decode(row[:length]).strip() for row, length in zip(new_tokens, [1, 3])]
    assert results[0].questions == expected
    assert all("</s>" not in question and "<pad>" not in question for question in results[0].questions)


# --- streaming ------------------------------------------------------------------------------------------------------


def test_streaming_yields_the_same_text_as_greedy(model, processor, images):
    config = greedy_config()
    (expected,) = self_question(model, processor, images[1], config)
    chunks = list(stream_self_questioning(model, processor, images[1], config))

    texts = {}
    for chunk in chunks:
        texts[(chunk.part, chunk.index)] = texts.get((chunk.part, chunk.index), "") + chunk.text
    # Reading order: the description, then each question followed by its answer.
    assert list(texts) == [("description", 0), ("question", 0), ("answer", 0), ("question", 1), ("answer", 1)]
    assert texts[("description", 0)].strip() == expected.description
    for index, dialogue in enumerate(expected.dialogues):
        assert texts[("question", index)].strip() == dialogue.question
        assert texts[("answer", index)].strip() == dialogue.answer


def test_streamed_byte_fallback_pieces_add_up_to_the_final_text(processor):
    # `<0x64>` alone decodes to "d", but `<0x64><0xE5>` is an invalid UTF-8 run and decodes to "��": a streamer that
    # emits "d" at once (transformers >= 5.24) would disagree with the final text.
    from transformers_sqllava.self_questioning import WholeByteRunStreamer, _WholeByteRunIteratorStreamer

    tokenizer = processor.tokenizer
    ids = tokenizer.convert_tokens_to_ids(["<0x64>", "<0xE5>", "O", "<0x41>", "ti", "ing"])
    iterated = _WholeByteRunIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    printed = []

    class Recording(WholeByteRunStreamer):  # what `sqllava generate` prints
        def on_finalized_text(self, text, stream_end=False):
            printed.append(text)

    recording = Recording(tokenizer, skip_prompt=True, skip_special_tokens=True)
    for streamer in (iterated, recording):
        streamer.put(torch.tensor([[1, 300]]))  # the prompt
        for token_id in ids:
            streamer.put(torch.tensor([token_id]))
        streamer.end()
    expected = tokenizer.decode(ids, skip_special_tokens=True)
    assert "".join(iterated) == "".join(printed) == expected == "��OAtiing"


def test_streaming_with_a_given_description_and_errors(model, processor, images):
    config = greedy_config(num_questions=1, answer_questions=False)
    chunks = list(stream_self_questioning(model, processor, images[0], config, description="A red circle."))
    assert {chunk.part for chunk in chunks} == {"question"}
    (expected,) = self_question(model, processor, images[0], config, descriptions=["A red circle."])
    assert "".join(chunk.text for chunk in chunks).strip() == expected.questions[0]

    # An error in the generation thread reaches the caller instead of leaving the stream waiting forever.
    broken = greedy_config(description_generation_kwargs={"num_return_sequences": 2})
    with pytest.raises(ValueError, match="num_return_sequences"):
        list(stream_self_questioning(model, processor, images[0], broken))
