"""Bad input to the processor and the chat template never gets through silently: `apply_chat_template` and
`__call__` raise a `TypeError` (a wrong type, an unknown keyword) or a `ValueError` (a missing or wrong value) that
names the input and the fix; no `KeyError`, `IndexError`, Jinja `UndefinedError` or torch error from deep inside.

Conversation errors are `ConversationError`s: a `ValueError`, and a `jinja2.TemplateError` as the template's own
errors are. The messages are listed in docs/errors.md#the-processor-and-chat-template.
"""

import jinja2
import numpy as np
import PIL.Image
import pytest
import torch
from conftest import tiny_processor

from transformers_sqllava.chat_template_sqllava import ConversationError
from transformers_sqllava.processing_sqllava import ConversationError as ReExported


@pytest.fixture(scope="module")
def processor():
    return tiny_processor()


def image():
    return PIL.Image.new("RGB", (20, 14), (200, 30, 30))


def user(content):
    return {"role": "user", "content": content}


def assistant(content):
    return {"role": "assistant", "content": content}


IMAGE_QUESTION = [{"type": "image"}, {"type": "text", "text": "What is it?"}]


def test_conversation_errors_are_value_errors_and_template_errors():
    assert ConversationError is ReExported
    assert issubclass(ConversationError, ValueError) and issubclass(ConversationError, jinja2.TemplateError)


# --- conversations: the shape, checked before transformers or the template touch it ---------------------------------

SHAPE_ERRORS = {
    "a dict, not a list": ({"role": "user", "content": "Hi"}, TypeError, r"`conversation` must be a list .* got dict"),
    "a prompt string": ("USER: Hi", TypeError, r"got str .*A prompt string goes to `processor\(text=\.\.\.\)`"),
    "None": (None, TypeError, r"`conversation` must be a list"),
    "empty": ([], ConversationError, r"The conversation is empty: give at least one user message"),
    "an empty conversation in a batch": ([[user("Hi")], []], ConversationError, r"Conversation 1 of the batch is em"),
    "a message that is a string": (["Hi"], TypeError, r"Message 0 is a str 'Hi', not a dict with 'role' and 'conte"),
    "a message that is a number": ([user("Hi"), 3], TypeError, r"Message 1 is a int 3, not a dict"),
    "no role": ([{"content": "Hi"}], ConversationError, r"Message 0 has no 'role': give one of 'system', 'user'"),
    "role None": ([{"role": None, "content": "Hi"}], ConversationError, r"Message 0 has no 'role'"),
    "role not a string": ([{"role": 1, "content": "Hi"}], TypeError, r"Message 0: 'role' must be a string.*not int 1"),
    "no content": ([{"role": "user"}], ConversationError, r"Message 0 \('user'\) has no 'content': give its text"),
    "content None": ([user(None)], ConversationError, r"Message 0 \('user'\) has no 'content'.*'' for an empty turn"),
    "content a number": ([user(3)], TypeError, r"Message 0 \('user'\): 'content' must be a string or a list.*int 3"),
    "content a dict": ([user({"type": "text"})], TypeError, r"'content' must be a string or a list .*got dict"),
    "a block that is a string": ([user(["Hi"])], TypeError, r"Message 0 \('user'\), block 0 is a str 'Hi', not a"),
    "a block without type": ([user([{"text": "Hi"}])], ConversationError, r"block 0 has no 'type': use \{'type': 'te"),
    "a type that is not a string": ([user([{"type": 1}])], TypeError, r"block 0: 'type' must be a string.*int 1"),
    "a text block without text": ([user([{"type": "text"}])], ConversationError, r"block 0 is a text block without"),
    "a text block with text None": (
        [user([{"type": "text", "text": None}])], ConversationError, r"text block without 'text'"
    ),
    "a text block with a number": (
        [user([{"type": "text", "text": 5}])], TypeError, r"block 0: a text block's 'text' must be a string, got int 5"
    ),
    "an audio block": ([user([{"type": "audio", "url": "a.wav"}])], ConversationError, r'Unsupported content typ'),
    "an image_url block without its url": ([user([{"type": "image_url"}])], ConversationError, r"without 'image_url'"),
    "a batch that mixes a conversation and a message": (
        [[user("Hi")], user("Hi")], TypeError, r"Conversation 1 of the batch is a dict .*not a list of messages"
    ),
    "a conversation that mixes a message and a conversation": (
        [user("Hi"), [user("Hi")]], TypeError, r"Message 1 is a list, not a message dict.*Do not mix the two"
    ),
    "a batch whose second conversation is bad": (
        [[user("Hi")], [user(None)]], ConversationError, r"Conversation 1 of the batch, message 0 \('user'\) has no"
    ),
}  # fmt: skip


@pytest.mark.parametrize("tokenize", [False, True])
@pytest.mark.parametrize("case", sorted(SHAPE_ERRORS))
def test_a_malformed_conversation_is_named(processor, case, tokenize):
    conversation, error, message = SHAPE_ERRORS[case]
    with pytest.raises(error, match=message):
        processor.apply_chat_template(conversation, tokenize=tokenize)


# --- conversations: what the template checks, re-raised as ConversationError ----------------------------------------

TEMPLATE_ERRORS = {
    "an unknown role": ([{"role": "human", "content": "Hi"}], {}, r'Unknown role in message 0 \(role "human"\)'),
    "an assistant turn first": ([assistant("A")], {}, r"message 0 \(role \"assistant\"\) comes first"),
    "two user turns": ([user("Q"), user("Q")], {}, r'follows a "user" turn'),
    "an image in an assistant turn": ([user("Q"), assistant([{"type": "image"}])], {}, r"Images go in user turns"),
    "an image in a system message": (
        [{"role": "system", "content": [{"type": "image"}]}, user("Q")], {}, r"The system message can only hold text"
    ),
    "only a system message": ([{"role": "system", "content": "S"}], {}, r"no user message after the system message"),
    "a video block": ([user([{"type": "video"}])], {}, r'Unsupported content type "video"'),
    "an unknown system prompt": ([user("Q")], {"system_prompt": "v2"}, r'`system_prompt` must be "v1"'),
    "a system prompt twice": (
        [{"role": "system", "content": "S"}, user("Q")], {"system_prompt": "v1"}, r"`system_prompt` was also given"
    ),
    "an unknown generation role": (
        [user("Q")], {"add_generation_prompt": True, "generation_role": "bot"}, r'generation_role must be "assistant"'
    ),
    "a vuser question after a user turn": (
        [user("Q")], {"add_generation_prompt": True, "generation_role": "vuser"}, r"A vuser question follows an"
    ),
}  # fmt: skip


@pytest.mark.parametrize("tokenize", [False, True])
@pytest.mark.parametrize("case", sorted(TEMPLATE_ERRORS))
def test_what_the_template_rejects_is_a_conversation_error(processor, case, tokenize):
    conversation, kwargs, message = TEMPLATE_ERRORS[case]
    with pytest.raises(ConversationError, match=message) as raised:
        processor.apply_chat_template(conversation, tokenize=tokenize, **kwargs)
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, jinja2.TemplateError)


def test_a_custom_template_that_fails_is_a_conversation_error(processor):
    with pytest.raises(ConversationError, match=r"cannot render the conversation \(UndefinedError: .*'foo'"):
        processor.apply_chat_template([user("Q")], chat_template="{{ messages[0].foo.bar }}")
    with pytest.raises(ConversationError, match=r"\(TemplateSyntaxError: "):
        processor.apply_chat_template([user("Q")], chat_template="{% if %}")


def test_typed_special_tokens_and_marker_characters(processor):
    with pytest.raises(ConversationError, match=r"Message 0 \('user'\) contains '</s>'.*tokenize=True"):
        processor.apply_chat_template([user("Say </s>")])
    with pytest.raises(ValueError, match=r"`sanitize_control_tokens=True` needs `tokenize=True`"):
        processor.apply_chat_template([user("Hi")], sanitize_control_tokens=True)
    # The private-use characters that mark typed special tokens: refused, not dropped from the text.
    for typed in ("\U000f0000", "a\U000f0001b"):
        with pytest.raises(ConversationError, match=r"Message 0 \('user'\) contains U\+F0000 or U\+F0001"):
            processor.apply_chat_template([user(typed)], tokenize=True)


# --- keywords -------------------------------------------------------------------------------------------------------


def test_a_misspelt_template_variable_is_named_with_the_fix(processor):
    with pytest.raises(TypeError, match=r"unknown keyword argument\(s\) 'system_promt' \(did you mean 'system_pro"):
        processor.apply_chat_template([user("Q")], system_promt="v1_sq")
    with pytest.raises(TypeError, match=r"'image_first' \(did you mean 'images_first'\?\)"):
        processor.apply_chat_template([user("Q")], image_first=False)
    # Template variables, transformers' own keywords and processor options still pass.
    assert processor.apply_chat_template([user("Q")], images_first=False, return_dict=False).endswith("USER: Q ")


@pytest.mark.parametrize("name", ["images_first", "add_bos_token"])
def test_template_switches_are_booleans(processor, name):
    # Jinja reads "false" as true: the switch would be silently on.
    with pytest.raises(TypeError, match=rf"`{name}` must be True or False, got str 'false'"):
        processor.apply_chat_template([user("Q")], **{name: "false"})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"do_resise": False}, r"'do_resise' \(did you mean 'do_resize'\?\)"),
        ({"paddding": True}, r"'paddding' \(did you mean 'padding'\?\)"),
        ({"text_kwargs": {"max_lenght": 9}}, r"'max_lenght' \(did you mean 'max_length'\?\)"),
        ({"images_kwargs": {"do_padd": False}}, r"'do_padd' \(did you mean 'do_pad'\?\)"),
        ({"zzz": 1}, r"unknown keyword argument\(s\) 'zzz'\. It takes tokenizer options"),
    ],
)
def test_a_misspelt_processor_option_is_named_with_the_fix(processor, kwargs, message):
    with pytest.raises(TypeError, match=message):
        processor(text="<image>\nHi", images=image(), **kwargs)


def test_a_misspelt_option_in_processor_kwargs_is_named(processor):
    conversation = [user([{"type": "image", "image": image()}, {"type": "text", "text": "Q"}])]
    with pytest.raises(TypeError, match=r"'do_resise' \(did you mean 'do_resize'\?\)"):
        processor.apply_chat_template(conversation, tokenize=True, processor_kwargs={"do_resise": False})


@pytest.mark.parametrize("modality", ["videos", "audio"])
def test_videos_and_audio_are_refused(processor, modality):
    with pytest.raises(ValueError, match=rf"SQ-LLaVA takes text and images only, not `{modality}`"):
        processor(text="Hi", **{modality: [np.zeros(16)]})
    processor(text="Hi", **{modality: None})  # what `apply_chat_template` passes


# --- text -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, error, message",
    [
        (None, ValueError, r"SQLlavaProcessor needs `text`"),
        (3, TypeError, r"`text` must be a string or a list of strings \(one prompt a row\), got int"),
        (b"USER: Hi", TypeError, r"got bytes"),
        ([], ValueError, r"`text` is an empty list: give at least one prompt"),
        (["Hi", 3], TypeError, r"but text\[1\] is a int"),
        (["Hi", [user("Hi")]], TypeError, r"text\[1\] is a list: a conversation goes to `apply_chat_template`"),
        ([None], TypeError, r"text\[0\] is a NoneType"),
    ],
)
def test_text_of_a_wrong_type_is_named(processor, text, error, message):
    with pytest.raises(error, match=message):
        processor(text=text)


# --- images and placeholders, per prompt ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, images, message",
    [
        ("USER: <image>\nHi", None, r"has 1 <image> placeholder\(s\) but no image was given.*'image': \.\.\."),
        ("USER: Hi", [image()], r"1 image\(s\) were given but the text has no <image> placeholder"),
        ("USER: <image>\n<image>\nHi", [image()], r"2 <image> placeholder\(s\) but 1 image\(s\).*exactly one image"),
        ("USER: <image>\nHi", [], r"but no image was given"),
        (["<image> A", "<image> B"], [image()], r"\(per prompt: \[1, 1\]; images go to the placeholders in order"),
        (["<image> A", "B"], [[image()], [image()]], r"Prompt 1 of the batch has 0 <image> .* in `images` has 1"),
        (["<image><image> A", "B"], [[image()], []], r"Prompt 0 of the batch has 2 <image> .* in `images` has 1"),
        (["<image> A", "<image> B"], [[image(), image()]], r"`images` holds 1 lists of images for 2 prompts"),
        (["<image> A", "<image> B"], [[image()], [image()], []], r"`images` holds 3 lists of images for 2 prompts"),
    ],
)  # fmt: skip
def test_images_and_placeholders_must_match(processor, text, images, message):
    with pytest.raises(ValueError, match=message):
        processor(text=text, images=images)


def test_a_list_of_images_per_prompt_is_checked_and_flattened(processor):
    batch = processor(text=["<image><image> A", "B", "<image> C"], images=[[image(), image()], [], [image()]])
    assert len(batch["pixel_values"]) == 3
    assert [row.count(processor.image_token_id) for row in batch["input_ids"]] == [32, 0, 16]
    # A flat list goes to the placeholders in order: the same images, the same ids.
    flat = processor(text=["<image><image> A", "B", "<image> C"], images=[image(), image(), image()])
    assert flat["input_ids"] == batch["input_ids"]
    # Empty lists of images are no images.
    assert "pixel_values" not in processor(text=["A", "B"], images=[[], []])


def test_a_batch_of_conversations_is_checked_conversation_by_conversation(processor):
    # Conversation 1's image block carries no image: its image must not be taken from another conversation.
    with_image = [user([{"type": "image", "image": image()}, {"type": "text", "text": "Q"}])]
    without = [user([{"type": "image"}, {"type": "text", "text": "Q"}])]
    padded = {"processor_kwargs": {"padding": True}}
    with pytest.raises(ValueError, match=r"Prompt 1 of the batch has 1 <image> placeholder\(s\) but its .* has 0"):
        processor.apply_chat_template([with_image, without], tokenize=True, **padded)
    two = [user([{"type": "image", "image": image()}, *with_image[0]["content"]])]
    output = processor.apply_chat_template([two, with_image], tokenize=True, return_dict=True, **padded)
    assert [row.count(processor.image_token_id) for row in output["input_ids"]] == [32, 16]


# --- lengths, padding, tensors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("truncation", [None, False, True, "longest_first"])
def test_max_length_is_a_limit_with_or_without_truncation(processor, truncation):
    # SQLlavaProcessor never truncates (a cut could split the image tokens or a turn): a longer prompt raises.
    kwargs = {} if truncation is None else {"truncation": truncation}
    prompt = "USER: <image>\nHi ASSISTANT:"
    with pytest.raises(ValueError, match=r"Prompts of \[\d+\] tokens exceed max_length=8\. SQLlavaProcessor does no"):
        processor(text=prompt, images=image(), max_length=8, **kwargs)
    fits = processor(text=prompt, images=image(), max_length=64, padding="max_length", **kwargs)
    assert len(fits["input_ids"]) == 64


def test_truncation_without_max_length_uses_the_tokenizers_limit():
    processor = tiny_processor()
    processor.tokenizer.model_max_length = 10
    with pytest.raises(ValueError, match=r"exceed max_length=10"):
        processor(text="USER: <image>\nHi ASSISTANT:", images=image(), truncation=True)
    assert processor(text="USER: <image>\nHi ASSISTANT:", images=image())  # no truncation asked: no limit


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"padding": "max_length"}, r"`padding='max_length'` needs `max_length`: pass `max_length=N`, or `paddin"),
        ({"padding": "maxlen"}, r"`padding` must be True, False, 'longest', 'max_length' or 'do_not_pad', got 'max"),
        ({"truncation": "only_last"}, r"`truncation` must be True, False, 'longest_first' or 'do_not_truncate'"),
        ({"max_length": 0}, r"`max_length` must be a positive int or None, got 0"),
        ({"max_length": "64"}, r"`max_length` must be a positive int or None, got '64'"),
        ({"max_length": True}, r"`max_length` must be a positive int or None, got True"),
        ({"pad_to_multiple_of": -8}, r"`pad_to_multiple_of` must be a positive int or None, got -8"),
        ({"padding_side": "middle"}, r"`padding_side` must be 'left' or 'right', got 'middle'"),
        ({"return_tensors": "tf"}, r"`return_tensors` must be 'pt' \(torch\), 'np' \(NumPy\) or None \(lists\): 'tf'"),
    ],
)  # fmt: skip
def test_invalid_tokenizer_options_are_named(processor, kwargs, message):
    with pytest.raises(ValueError, match=message):
        processor(text="USER: <image>\nHi", images=image(), **kwargs)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"return_tensors": True}, "return_tensors"), ({"do_pad": "yes"}, "do_pad"), ({"image_mean": "0"}, "image_mean")],
)
def test_options_of_a_wrong_type_are_type_errors(processor, kwargs, name):
    # transformers checks each option against its typed dict; its huggingface_hub error becomes a TypeError.
    with pytest.raises(TypeError, match=rf"SQLlavaProcessor.__call__: Validation error for field '{name}'"):
        processor(text="USER: <image>\nHi", images=image(), **kwargs)


def test_unpadded_prompts_of_different_lengths_cannot_be_tensors(processor):
    prompts = ["USER: Hi", "USER: What is in the image?"]
    with pytest.raises(ValueError, match=r"The prompts have \d+ to \d+ tokens and are not padded.*`padding=True`"):
        processor(text=prompts, return_tensors="pt")
    assert isinstance(processor(text=prompts, return_tensors="pt", padding=True)["input_ids"], torch.Tensor)
    assert len(processor(text=prompts)["input_ids"]) == 2  # lists may be ragged
    conversations = [[user("Hi")], [user("What is in the image?")]]
    with pytest.raises(ValueError, match=r"are not padded"):
        processor.apply_chat_template(conversations, tokenize=True, return_dict=True, return_tensors="pt")
