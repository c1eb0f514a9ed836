"""`pipeline("image-text-to-text")` with SQ-LLaVA, loaded from a saved folder: answering and self-questioning."""

import pytest
from sqllava_tiny import picture, save_tiny_checkpoint, single_torch_thread
from transformers import pipeline

from transformers_sqllava import (
    SelfQuestioningConfig,
    SQLlavaForConditionalGeneration,
    SQLlavaProcessor,
    self_question,
)
from transformers_sqllava.self_questioning import generate_from_conversations, question_conversation



def greedy() -> dict:
    # A fresh dict per call: the pipeline writes `max_new_tokens` into the `generate_kwargs` it is given.
    return {"generate_kwargs": {"do_sample": False, "max_new_tokens": 6}}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_torch_thread():
        yield


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    folder = save_tiny_checkpoint(tmp_path_factory.mktemp("sqllava-tiny"))
    return pipeline("image-text-to-text", model=folder)


@pytest.fixture(scope="module")
def image():
    return picture(3, width=28)


def test_pipeline_resolves_the_sqllava_classes(pipe):
    assert type(pipe.model) is SQLlavaForConditionalGeneration
    assert type(pipe.processor) is SQLlavaProcessor
    assert pipe.processor.vuser_token == "VUSER"


def test_answering(pipe, image):
    content = [{"type": "image", "image": image}, {"type": "text", "text": "What is this?"}]
    messages = [{"role": "user", "content": content}]
    (output,) = pipe(text=messages, **greedy())
    # The chat comes back with the answer as a new assistant turn; the default system prompt is v1 (answering).
    assert output["generated_text"][:-1] == messages
    answer = output["generated_text"][-1]
    assert answer["role"] == "assistant"
    expected = generate_from_conversations(
        pipe.model, pipe.processor, [messages], "assistant", "v1", do_sample=False, max_new_tokens=6
    )
    assert answer["content"].strip() == expected[0] != ""


def test_self_questioning_with_chat_template_kwargs(pipe, image):
    # A chat ending in an assistant turn is a prefill for the pipeline: `continue_final_message=False` makes it a new
    # turn, and the other keyword arguments reach the chat template (`generation_role`, `system_prompt`).
    conversation = question_conversation(image, "A red circle.")
    (output,) = pipe(
        text=conversation,
        generation_role="vuser",
        system_prompt="v1_sq",
        continue_final_message=False,
        return_full_text=False,  # the full chat would label the question an "assistant" turn
        **greedy(),
    )
    greedy_questions = {"do_sample": False, "max_new_tokens": 6}
    config = SelfQuestioningConfig(num_questions=1, question_generation_kwargs=greedy_questions)
    (expected,) = self_question(pipe.model, pipe.processor, image, config, descriptions=["A red circle."])
    assert output["generated_text"].strip() == expected.questions[0] != ""

    # The same prompt rendered beforehand and passed as text with the image.
    prompt = pipe.processor.apply_chat_template(
        question_conversation(None, "A red circle."),
        add_generation_prompt=True,
        generation_role="vuser",
        system_prompt="v1_sq",
    )
    assert prompt.endswith(" ASSISTANT: A red circle.</s>VUSER:")
    (output,) = pipe(images=image, text=prompt, return_full_text=False, **greedy())
    assert output["generated_text"].strip() == expected.questions[0]


def test_asking_and_answering_give_different_text(pipe, image):
    # A check that `generation_role` really changes the prompt (the tiny model's text depends on it).
    conversation = question_conversation(image, "A red circle.")
    common = dict(continue_final_message=False, return_full_text=False, system_prompt="v1_sq")
    (asked,) = pipe(text=conversation, generation_role="vuser", **common, **greedy())
    answered = pipe(text=conversation + [{"role": "vuser", "content": "Why?"}], **common, **greedy())[0]
    assert asked["generated_text"] != answered["generated_text"]
