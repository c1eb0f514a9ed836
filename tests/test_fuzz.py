"""Property-based tests (hypothesis) of the processor and chat-template boundary, over random conversations (roles,
turn orders, system messages, texts with `</s>`, `<s>`, `<image>`, `[vusr]`, `VUSER:`, unicode, whitespace and empty
strings, image blocks in any order), random prompts and small random images:

- structure comes from the template only: a tokenised conversation has one BOS, one EOS per turn the template
  closes (answers and vuser questions), `image_seq_length` image ids per image block and one `[vusr]` id per vuser
  turn, whatever the text types (`test_tokenised_structure_comes_from_the_template_only`);
- image tokens are never cut: every run of image ids is one whole image, with or without `max_length`
  (`test_call_keeps_placeholders_images_and_special_tokens_whole`);
- the training labels (`encode_conversation`) have the ids of `apply_chat_template(..., tokenize=True)`, and its
  assistant masks are the labels (`test_labels_agree_with_the_tokenised_template`); a rendered string gives those
  ids too (`test_a_rendered_prompt_gives_the_tokenised_ids`);
- anything else raises only the documented types: `ValueError` (a `ConversationError` for conversations),
  `TypeError`, and `FileNotFoundError` for an image path that is not a file
  (`test_any_conversation_raises_only_documented_errors`; for `__call__`, whose errors may only be a `ValueError` or
  a `TypeError`, `test_call_keeps_placeholders_images_and_special_tokens_whole`).

Example counts (`max_examples`): 120 structure, 80 labels, 60 rendered prompts, 300 arbitrary conversations, 200
calls, 40 flat-versus-per-prompt image lists; 800 in all, each about a millisecond of tokenising: the tests take about
7 s (under 30 s on a busy 2-core machine). `derandomize=True` draws the same examples on every run, so CI is
reproducible.
"""

import functools

import numpy as np
import PIL.Image
import pytest
from conftest import tiny_processor
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from transformers_sqllava.training import IGNORE_INDEX, encode_conversation

IMAGE_TOKENS = 16
# The conftest seeds torch in a function-scoped autouse fixture: harmless here, as the processors are shared.
FUZZ = {"deadline": None, "derandomize": True, "database": None,
        "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]}  # fmt: skip
DOCUMENTED = (ValueError, TypeError, FileNotFoundError)


@functools.cache
def processor(vuser_token: str):
    return tiny_processor(vuser_token=vuser_token)


# --- strategies -----------------------------------------------------------------------------------------------------

SPECIAL = ("</s>", "<s>", "<image>", "[vusr]", "[vusr]:", "VUSER:", "VUSER", "USER:", "ASSISTANT:", "<unk>", "<pad>")
WORDS = ("Two.", "What is it?", "a red circle", "naïve 日本", "🙂", "\u200b", "é")
WHITESPACE = (" ", "  ", "\n", "\t", "\r\n", "\u00a0", "\u3000", "")
# Any character but lone surrogates (not text) and the two private-use characters that mark typed special tokens
# (refused: tests/test_bad_inputs_processor.py).
CHARACTERS = st.characters(exclude_categories=("Cs",), exclude_characters="\U000f0000\U000f0001")
PLAIN_PIECES = st.one_of(*map(st.sampled_from, (WORDS, WHITESPACE)), st.text(CHARACTERS, max_size=6))
TEXTS = st.lists(st.one_of(st.sampled_from(SPECIAL), PLAIN_PIECES), max_size=4).map("".join)
PLAIN_TEXTS = st.lists(PLAIN_PIECES, max_size=4).map("".join)  # no special token, but for a rare random one


@st.composite
def images(draw):
    size, mode = (draw(st.integers(1, 24)), draw(st.integers(1, 24))), draw(st.sampled_from(["RGB", "L", "RGBA"]))
    red, green, blue, alpha = (draw(st.integers(0, 255)) for _ in range(4))
    return PIL.Image.new(mode, size, {"RGB": (red, green, blue), "L": red, "RGBA": (red, green, blue, alpha)}[mode])


@st.composite
def text_content(draw, texts):
    if draw(st.booleans()):
        return draw(texts)
    return [{"type": "text", "text": draw(texts)} for _ in range(draw(st.integers(0, 2)))]


@st.composite
def user_content(draw, texts):
    if draw(st.booleans()):
        return draw(texts)
    blocks, num_images = [], 0
    for kind in draw(st.lists(st.sampled_from(["text", "image"]), max_size=4)):
        if kind == "text":
            blocks.append({"type": "text", "text": draw(texts)})
        elif num_images < 2:  # at most two images a turn: a few hundred ids in all
            blocks.append({"type": "image", "image": draw(images())})
            num_images += 1
    return blocks


@st.composite
def conversations(draw, texts=TEXTS):
    """A valid conversation, and the template options that render it."""
    messages = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(text_content(texts))})
    for turn in range(draw(st.integers(1, 3))):
        role = "user" if turn == 0 else draw(st.sampled_from(["user", "vuser"]))
        content = draw(user_content(texts)) if role == "user" else draw(text_content(texts))
        messages.append({"role": role, "content": content})
        messages.append({"role": "assistant", "content": draw(text_content(texts))})
    if draw(st.booleans()):
        messages.pop()  # end on a question
    options = {"images_first": draw(st.booleans())}
    if messages[0]["role"] != "system":
        options["system_prompt"] = draw(st.sampled_from(["v1", "v1_sq"]))
    if draw(st.booleans()):
        options["add_generation_prompt"] = True
        options["generation_role"] = "vuser" if messages[-1]["role"] == "assistant" else "assistant"
    return messages, options


def image_blocks(messages) -> int:
    return sum(
        isinstance(block, dict) and block.get("type") == "image"
        for message in messages
        if isinstance(message["content"], list)
        for block in message["content"]
    )


def image_runs(ids, image_id) -> list[int]:
    runs, length = [], 0
    for token in [*ids, None]:
        if token == image_id:
            length += 1
        elif length:
            runs.append(length)
            length = 0
    return runs


# --- valid conversations --------------------------------------------------------------------------------------------


@settings(max_examples=120, **FUZZ)
@given(conversations())
def test_tokenised_structure_comes_from_the_template_only(drawn):
    messages, options = drawn
    native = processor("[vusr]")
    tokenizer = native.tokenizer
    ids = native.apply_chat_template(messages, tokenize=True, return_dict=True, **options)["input_ids"]
    roles = [message["role"] for message in messages]
    asks = options.get("add_generation_prompt") and options["generation_role"] == "vuser"
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    assert ids.count(tokenizer.eos_token_id) == roles.count("assistant") + roles.count("vuser")
    assert ids.count(tokenizer.convert_tokens_to_ids("[vusr]")) == roles.count("vuser") + bool(asks)
    assert ids.count(native.image_token_id) == IMAGE_TOKENS * image_blocks(messages)
    assert all(run == IMAGE_TOKENS for run in image_runs(ids, native.image_token_id))
    assert tokenizer.pad_token_id not in ids and tokenizer.unk_token_id not in ids


@settings(max_examples=80, **FUZZ)
@given(conversations(), st.sampled_from(["VUSER", "[vusr]"]))
def test_labels_agree_with_the_tokenised_template(drawn, vuser_token):
    messages, options = drawn
    options.pop("add_generation_prompt", None), options.pop("generation_role", None)  # labels are for whole turns
    model_processor = processor(vuser_token)
    output = model_processor.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, **options
    )
    expected = encode_conversation(
        model_processor, messages, options.get("system_prompt"), images_first=options["images_first"]
    )
    assert output["input_ids"] == [expected["input_ids"]]
    assert output["assistant_masks"] == [[int(label != IGNORE_INDEX) for label in expected["labels"]]]
    # The trained tokens close on the EOS of every answer and vuser question.
    trained_eos = [token for token, label in zip(expected["input_ids"], expected["labels"]) if label != IGNORE_INDEX]
    roles = [message["role"] for message in messages]
    assert trained_eos.count(model_processor.tokenizer.eos_token_id) == roles.count("assistant") + roles.count("vuser")


@settings(max_examples=60, **FUZZ)
@given(conversations(PLAIN_TEXTS))
def test_a_rendered_prompt_gives_the_tokenised_ids(drawn):
    # Without typed special tokens, rendering then calling the processor is tokenising.
    messages, options = drawn
    native = processor("[vusr]")
    try:
        prompt = native.apply_chat_template(messages, **options)
    except ValueError as error:
        assert "a special token of SQ-LLaVA's prompt format" in str(error)
        event("refused: a typed special token in a string")
        return
    event("rendered")
    given_images = [block["image"] for message in messages if isinstance(message["content"], list)
                    for block in message["content"] if block["type"] == "image"]  # fmt: skip
    encoded = native(text=prompt, images=given_images or None)
    assert encoded["input_ids"] == native.apply_chat_template(messages, tokenize=True, **options)


# --- anything at all ------------------------------------------------------------------------------------------------

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 3), st.sampled_from(["user", "assistant", "vuser", "system", "human"]),
    st.sampled_from(["text", "image", "image_url", "video", "audio"]), TEXTS, st.just(np.zeros((4, 4, 3), np.uint8)),
)  # fmt: skip
KEYS = st.sampled_from(["role", "content", "type", "text", "image", "image_url"])
ANYTHING = st.recursive(
    st.one_of(VALUES, images()),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(KEYS, children, max_size=3)),
    max_leaves=12,
)
MESSAGES = st.lists(st.one_of(ANYTHING, st.fixed_dictionaries({"role": ANYTHING, "content": ANYTHING})), max_size=4)


@settings(max_examples=300, **FUZZ)
@given(
    st.one_of(ANYTHING, MESSAGES, st.lists(MESSAGES, max_size=2), conversations().map(lambda drawn: drawn[0])),
    st.booleans(),
    st.fixed_dictionaries({}, optional={
        "add_generation_prompt": st.booleans(), "generation_role": st.sampled_from(["assistant", "vuser", "bot"]),
        "system_prompt": st.sampled_from(["v1", "v1_sq", "v2"]), "images_first": st.booleans(),
        "return_dict": st.booleans(), "return_assistant_tokens_mask": st.booleans(),
    }),
)  # fmt: skip
def test_any_conversation_raises_only_documented_errors(conversation, tokenize, options):
    native = processor("[vusr]")
    try:
        native.apply_chat_template(conversation, tokenize=tokenize, **options)
    except DOCUMENTED as error:
        event(f"raised {type(error).__name__}")
        return
    event("rendered")


CALL_OPTIONS = st.fixed_dictionaries({}, optional={
    "padding": st.sampled_from([False, True, "longest", "max_length", "do_not_pad", "most"]),
    "max_length": st.one_of(st.none(), st.integers(-1, 160)), "truncation": st.sampled_from([None, False, True]),
    "padding_side": st.sampled_from(["left", "right"]), "return_tensors": st.sampled_from([None, "pt", "np"]),
    "add_special_tokens": st.booleans(), "return_offsets_mapping": st.booleans(), "do_pad": st.booleans(),
})  # fmt: skip


@settings(max_examples=200, **FUZZ)
@given(st.one_of(TEXTS, st.lists(TEXTS, min_size=1, max_size=3)), st.booleans(), CALL_OPTIONS, st.data())
def test_call_keeps_placeholders_images_and_special_tokens_whole(text, nested, options, data):
    native = processor("[vusr]")
    texts = [text] if isinstance(text, str) else text
    counts = [prompt.count("<image>") for prompt in texts]
    # Mostly one image per placeholder (as a flat list, or one list per prompt), sometimes any number.
    if data.draw(st.integers(0, 4)):
        pictures = [data.draw(st.lists(images(), min_size=count, max_size=count)) for count in counts]
    else:
        pictures = [data.draw(st.lists(images(), max_size=2)) for _ in counts]
    if not nested or isinstance(text, str):
        pictures = [picture for row in pictures for picture in row]
    try:
        encoded = native(text=text, images=pictures or None, **options)
    except (ValueError, TypeError) as error:
        assert str(error)  # every error says what is wrong
        event(f"raised {type(error).__name__}: {str(error)[:24]}")
        return
    event("encoded")
    single = isinstance(text, str) and options.get("return_tensors") is None  # unbatched lists
    ids, mask = ([encoded[key]] if single else encoded[key] for key in ("input_ids", "attention_mask"))
    tokenizer = native.tokenizer
    for prompt, row, row_mask in zip(texts, ids, mask):
        row = [token for token, keep in zip(np.asarray(row).tolist(), np.asarray(row_mask).tolist()) if keep]
        # In `__call__` text, special tokens are structure: each one is its id, an `<image>` its whole image.
        assert row.count(native.image_token_id) == IMAGE_TOKENS * prompt.count("<image>")
        assert all(run == IMAGE_TOKENS for run in image_runs(row, native.image_token_id))
        assert row.count(tokenizer.eos_token_id) == prompt.count("</s>")
        added_bos = options.get("add_special_tokens", True) and not prompt.startswith("<s>")
        assert row.count(tokenizer.bos_token_id) == prompt.count("<s>") + added_bos
        if options.get("max_length") is not None:
            assert len(row) <= options["max_length"]


@settings(max_examples=40, **FUZZ)
@given(st.lists(images(), min_size=1, max_size=2), st.integers(1, 2))
def test_a_flat_list_of_images_goes_to_the_placeholders_in_order(pictures, rows):
    # The same images as one flat list or one list per prompt give the same batch.
    native = processor("[vusr]")
    texts = ["<image> " * len(pictures)] + ["no image"] * (rows - 1)
    flat = native(text=texts, images=pictures, padding=True, return_tensors="np")
    per_prompt = native(text=texts, images=[pictures] + [[]] * (rows - 1), padding=True, return_tensors="np")
    assert np.array_equal(flat["input_ids"], per_prompt["input_ids"])
    assert np.array_equal(flat["pixel_values"], per_prompt["pixel_values"])


@pytest.mark.parametrize("vuser_token", ["VUSER", "[vusr]"])
def test_the_fuzzed_processors_are_the_tiny_ones(vuser_token):
    assert processor(vuser_token).image_seq_length == IMAGE_TOKENS
