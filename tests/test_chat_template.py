"""SQ-LLaVA's chat template renders the reference's prompts character for character
(docs/original.md#prompt-format-and-the-two-system-prompts), marks what the reference trains with generation blocks,
and writes the BOS for runtimes that tokenise without special tokens."""

from pathlib import Path

import pytest
from conftest import tiny_processor
from jinja2.exceptions import TemplateError
from transformers.utils.chat_template_utils import render_jinja_template

import transformers_sqllava
from transformers_sqllava import SYSTEM_PROMPT_V1, SYSTEM_PROMPT_V1_SQ, build_chat_template
from transformers_sqllava.training import conversation_segments

# Copied verbatim from the original's `llava/conversation.py`
# (docs/original.md#prompt-format-and-the-two-system-prompts; v1_sq keeps the missing space, "questions.Also").
REFERENCE_V1 = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, "
    "and polite answers to the user's questions."
)
REFERENCE_V1_SQ = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, "
    "and polite answers to the user's questions.Also, the artificial intelligence assistant is a curious virtual "
    "user. The virtual user asks complex questions that are relevant to the content in the image, for example, asking about "
    "background knowledge of the objects in the image, asking to discuss about events happening in the image, etc. "
    "Again, do not ask about uncertain details."
)

DESCRIBE = "Can you describe the image in detail?"
IMAGE_QUESTION = [{"type": "image"}, {"type": "text", "text": "Q0"}]
MULTI_TURN = [
    {"role": "user", "content": IMAGE_QUESTION},
    {"role": "assistant", "content": "A0"},
    {"role": "vuser", "content": "Q1"},
    {"role": "assistant", "content": "A1"},
    {"role": "user", "content": "Q2"},
    {"role": "assistant", "content": "A2"},
]


@pytest.fixture(scope="module")
def native_processor():
    return tiny_processor(vuser_token="[vusr]")


def test_system_prompts_are_the_reference_strings():
    assert SYSTEM_PROMPT_V1 == REFERENCE_V1
    assert SYSTEM_PROMPT_V1_SQ == REFERENCE_V1_SQ
    assert "questions.Also," in SYSTEM_PROMPT_V1_SQ


def test_question_answering_prompt(processor):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt == REFERENCE_V1 + " USER: <image>\nWhat is this? ASSISTANT:"


def test_multi_turn_with_vuser_turns(processor):
    prompt = processor.apply_chat_template(MULTI_TURN, system_prompt="v1_sq")
    assert prompt == (
        REFERENCE_V1_SQ
        + " USER: <image>\nQ0 ASSISTANT: A0</s>VUSER: Q1</s> ASSISTANT: A1</s>USER: Q2 ASSISTANT: A2</s>"
    )


def test_self_question_prompt(processor):
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": DESCRIBE}]},
        {"role": "assistant", "content": "A red circle."},
    ]
    prompt = processor.apply_chat_template(
        messages, add_generation_prompt=True, generation_role="vuser", system_prompt="v1_sq"
    )
    assert prompt == (
        REFERENCE_V1_SQ + " USER: <image>\nCan you describe the image in detail? ASSISTANT: A red circle.</s>VUSER:"
    )


def test_default_system_prompt_is_v1_and_an_explicit_system_message_wins(processor):
    messages = [{"role": "user", "content": "Hi"}]
    assert processor.apply_chat_template(messages) == REFERENCE_V1 + " USER: Hi "
    assert processor.apply_chat_template(messages, system_prompt="v1") == REFERENCE_V1 + " USER: Hi "
    with_system = [{"role": "system", "content": "SYS"}, *messages]
    assert processor.apply_chat_template(with_system, add_generation_prompt=True) == "SYS USER: Hi ASSISTANT:"


def test_native_marker_renders_as_vusr_colon(native_processor):
    prompt = native_processor.apply_chat_template(MULTI_TURN[:4])
    assert prompt == REFERENCE_V1 + " USER: <image>\nQ0 ASSISTANT: A0</s>[vusr]: Q1</s> ASSISTANT: A1</s>"
    ask = native_processor.apply_chat_template(MULTI_TURN[:2], add_generation_prompt=True, generation_role="vuser")
    assert ask.endswith("ASSISTANT: A0</s>[vusr]:")


def test_saved_template_carries_its_marker_for_other_runtimes():
    # Rendered without the processor's `vuser_token` variable, the template falls back to the marker it was built for.
    assert '| default("VUSER")' in build_chat_template("VUSER")
    assert '| default("[vusr]")' in build_chat_template("[vusr]")


def test_images_come_first_and_plain_strings_are_accepted(processor):
    text_then_image = [{"role": "user", "content": [{"type": "text", "text": "Q"}, {"type": "image"}]}]
    assert processor.apply_chat_template(text_then_image).endswith(" USER: <image>\nQ ")
    plain = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": [{"type": "text", "text": "A"}]}]
    assert processor.apply_chat_template(plain).endswith(" USER: Q ASSISTANT: A</s>")


@pytest.mark.parametrize("images_first", [True, False])
def test_an_image_only_turn_ends_at_the_image_as_the_reference_strips_it(processor, images_first):
    # preprocess_multimodal writes ("<image>\n" + "").strip(): "USER: <image> ASSISTANT:", no newline token.
    image_only = [{"role": "user", "content": [{"type": "image"}]}]
    prompt = processor.apply_chat_template(image_only, add_generation_prompt=True, images_first=images_first)
    assert prompt.endswith(" USER: <image> ASSISTANT:")
    segments = conversation_segments(processor, image_only + [{"role": "assistant", "content": "A"}], "v1_sq",
                                     images_first=images_first)
    assert "".join(segment.text for segment in segments).endswith(" USER: <image> ASSISTANT: A</s>")


@pytest.mark.parametrize(
    "messages, kwargs, message",
    [
        ([{"role": "user", "content": "Q"}, {"role": "user", "content": "Q"}], {}, 'follows a "user" turn'),
        ([{"role": "assistant", "content": "A"}], {}, "comes first"),
        (
            [{"role": "user", "content": "Q"}, {"role": "assistant", "content": [{"type": "image"}]}],
            {},
            "Images go in user turns",
        ),
        ([{"role": "human", "content": "Q"}], {}, "Unknown role"),
        ([{"role": "vuser", "content": "Q"}], {}, "must follow an assistant turn"),
        (
            [{"role": "user", "content": "Q"}, {"role": "system", "content": "S"}],
            {},
            "can only be the first message",
        ),
        ([{"role": "user", "content": "Q"}], {"add_generation_prompt": True, "generation_role": "vuser"}, "first"),
        ([{"role": "user", "content": "Q"}], {"add_generation_prompt": True, "generation_role": "bot"}, "must be"),
        ([{"role": "user", "content": "Q"}], {"system_prompt": "v2"}, '"v1" (answering'),
        ([{"role": "user", "content": [{"type": "video"}]}], {}, "Unsupported content type"),
    ],
)
def test_malformed_conversations_raise_a_clear_error(processor, messages, kwargs, message):
    with pytest.raises(TemplateError, match=message.replace("(", r"\(")):
        processor.apply_chat_template(messages, **kwargs)


def test_ending_on_assistant_with_an_answer_prompt_raises(processor):
    with pytest.raises(TemplateError, match='generation_role="vuser"'):
        processor.apply_chat_template(MULTI_TURN, add_generation_prompt=True)


def test_images_first_false_keeps_the_block_order_and_the_segments_agree(processor):
    question_then_image = [
        {"role": "user", "content": [{"type": "text", "text": "Q0"}, {"type": "image"}]},
        {"role": "assistant", "content": "A0"},
        {"role": "user", "content": [{"type": "text", "text": "Q1"}, {"type": "text", "text": "more"}]},
        {"role": "assistant", "content": "A1"},
    ]
    rendered = processor.apply_chat_template(question_then_image, images_first=False)
    assert rendered.endswith(" USER: Q0\n<image> ASSISTANT: A0</s>USER: Q1 more ASSISTANT: A1</s>")
    # The default is the reference's: images first, whatever the block order.
    assert " USER: <image>\nQ0 ASSISTANT:" in processor.apply_chat_template(question_then_image)
    # Image first in the blocks renders the same either way.
    image_first = [{"role": "user", "content": IMAGE_QUESTION}]
    assert processor.apply_chat_template(image_first, images_first=False) == processor.apply_chat_template(image_first)
    for images_first in (True, False):
        segments = conversation_segments(processor, question_then_image, "v1_sq", images_first=images_first)
        expected = processor.apply_chat_template(question_then_image, system_prompt="v1_sq", images_first=images_first)
        assert "".join(text for text, _, _ in segments) == expected


@pytest.mark.parametrize("vuser_token", ["VUSER", "[vusr]"])
def test_generation_blocks_hold_the_trained_spans(vuser_token):
    # Answers and vuser questions from the space after the marker's colon to their </s>, as training.labels trains;
    # the vuser turn's separator " " and every role marker stay outside.
    processor = tiny_processor(vuser_token=vuser_token)
    messages = [*MULTI_TURN, {"role": "vuser", "content": "Q3"}, {"role": "assistant", "content": "A3"}]
    (prompt,), (spans,) = render_jinja_template(
        [messages], chat_template=processor.chat_template, return_assistant_tokens_mask=True, system_prompt="v1_sq",
        vuser_token=vuser_token, add_bos_token=False, **processor.tokenizer.special_tokens_map,
    )
    assert prompt == processor.apply_chat_template(messages, system_prompt="v1_sq")
    expected = [" A0</s>", " Q1</s>", " A1</s>", " A2</s>", " Q3</s>", " A3</s>"]
    assert [prompt[start:end] for start, end in spans] == expected
    segments = conversation_segments(processor, messages, "v1_sq")
    trained = [segment.text for segment in segments if segment.trained_role is not None]
    assert "".join(prompt[start:end] for start, end in spans) == "".join(trained)


def test_other_runtimes_get_the_bos_from_the_template(processor):
    # A runtime that renders the saved template itself (the tokenizer's apply_chat_template, vLLM) gets the BOS, as
    # from Llama chat templates; the processor's strings stay the reference's prompt text.
    messages = MULTI_TURN[:2]
    rendered = processor.tokenizer.apply_chat_template(messages, chat_template=processor.chat_template, tokenize=False)
    assert rendered == "<s>" + processor.apply_chat_template(messages)
    assert processor.apply_chat_template(messages, add_bos_token=True) == rendered
    assert not processor.apply_chat_template(messages).startswith("<s>")


def test_the_demo_checkpoint_ships_the_packaged_template():
    folder = Path(transformers_sqllava.__file__).parent / "demo" / "checkpoint"
    assert (folder / "chat_template.jinja").read_text() == build_chat_template("[vusr]")


def test_the_template_policy_is_importable_from_both_modules():
    # It lives in chat_template_sqllava (a Hub file of its own); processing_sqllava re-exports it for the package.
    from transformers_sqllava import chat_template_sqllava, processing_sqllava

    names = ["SYSTEM_PROMPTS", "SYSTEM_PROMPT_V1", "SYSTEM_PROMPT_V1_SQ", "NATIVE_VUSER_TOKEN", "CHAT_TEMPLATE_FILE"]
    for name in [*names, "ORIGINAL_VUSER_MARKER", "build_chat_template", "ConversationError", "check_conversation"]:
        assert getattr(processing_sqllava, name) is getattr(chat_template_sqllava, name), name
    assert chat_template_sqllava.SYSTEM_PROMPTS == {"v1": REFERENCE_V1, "v1_sq": REFERENCE_V1_SQ}


def test_template_errors_are_value_errors_too(processor):
    # The template's `raise_exception` errors reach the caller as ConversationError: a ValueError and a TemplateError.
    from transformers_sqllava.chat_template_sqllava import ConversationError

    with pytest.raises(ConversationError, match="Unknown role") as raised:
        processor.apply_chat_template([{"role": "human", "content": "Q"}])
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, TemplateError)
