"""Bad inputs at the model's `forward` / `generate` boundary: each raises a `ValueError` or `TypeError` naming the input,
what is wrong and the fix, instead of passing silently or failing deep inside with a torch shape error or an
`IndexError`. Valid inputs that look unusual (decoding steps, caches, a generated image token) still work.
Rules: docs/errors.md#the-model.
"""

import inspect
import re

import pytest
import torch
from conftest import tiny_config
from sqllava_tiny import single_torch_thread
from transformers import DynamicCache

from transformers_sqllava import SQLlavaForConditionalGeneration, SQLlavaModel

IMAGE_TOKEN = 419
VOCAB_SIZE = 421


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_torch_thread():
        yield


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SQLlavaForConditionalGeneration(tiny_config()).eval()


def make_inputs(batch_size=2):
    input_ids = torch.tensor([[1, 300, 301] + [IMAGE_TOKEN] * 16 + [305, 306]] * batch_size)
    pixel_values = torch.randn(batch_size, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "pixel_values": pixel_values}


def raises(error, *key_words):
    """`pytest.raises` whose message must contain every key word (plain text, not regexes)."""
    return pytest.raises(error, match="(?s)" + "".join(f"(?=.*{re.escape(word)})" for word in key_words))


def cache_keyword(model) -> str:
    # transformers 5.23 names the cache `past_key_values`, 5.24 `cache` (the old name still works, with a warning).
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


# --------------------------------------------------------------------------------------------------------------------
# input_ids / inputs_embeds
# --------------------------------------------------------------------------------------------------------------------


def test_image_tokens_without_pixel_values_raise(model):
    inputs = make_inputs()
    with raises(ValueError, "input_ids has 32 image tokens but no pixel_values", "pass the images the processor"):
        model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])


def test_text_only_prompt_without_pixel_values_works(model):
    input_ids = torch.tensor([[1, 300, 301, 305]])
    assert model(input_ids=input_ids).logits.shape == (1, 4, VOCAB_SIZE)


@pytest.mark.parametrize("bad_id", [VOCAB_SIZE, 5000, -1])
def test_out_of_vocabulary_ids_raise(model, bad_id):
    inputs = make_inputs()
    inputs["input_ids"][1, 2] = bad_id
    with raises(
        ValueError, "input_ids has ids outside the vocabulary [0, 421)", str(bad_id), "resize_token_embeddings"
    ):
        model(**inputs)


def test_original_llava_image_sentinel_raises_naming_the_processor(model):
    # The original LLaVA's `tokenizer_image_token` writes one -200 where the image goes.
    input_ids = torch.tensor([[1, 300, -200, 305, 306]])
    with raises(
        ValueError,
        "-200 is the original LLaVA's IMAGE_TOKEN_INDEX",
        "tokenize with SQLlavaProcessor",
        "config.image_token_id (419) repeated image_seq_length (16) times",
    ):
        model(input_ids=input_ids, pixel_values=torch.randn(1, 3, 16, 16))


def test_labels_ignore_index_as_input_id_raises_with_a_hint(model):
    input_ids = torch.tensor([[1, 300, 301, -100]])
    with raises(ValueError, "outside the vocabulary", "-100 is the labels' ignore index", "pad_token_id"):
        model(input_ids=input_ids)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_non_integer_input_ids_raise_type_error(model, dtype):
    inputs = make_inputs()
    with raises(TypeError, f"input_ids is {dtype}", "token ids are an integer tensor", ".long()"):
        model(**{**inputs, "input_ids": inputs["input_ids"].to(dtype)})


def test_input_ids_as_a_list_raise_type_error(model):
    with raises(TypeError, "input_ids is list", "return_tensors='pt'"):
        model(input_ids=[[1, 300, 301]])


@pytest.mark.parametrize("shape", [(21,), (2, 0), (1, 2, 21)])
def test_input_ids_of_the_wrong_rank_raise(model, shape):
    with raises(ValueError, f"input_ids has shape {shape}", "(batch_size, sequence_length)", "input_ids[None]"):
        model(input_ids=torch.ones(shape, dtype=torch.long))


def test_int32_input_ids_work(model):
    inputs = make_inputs()
    expected = model(**inputs).logits
    torch.testing.assert_close(model(**{**inputs, "input_ids": inputs["input_ids"].int()}).logits, expected)


def test_inputs_embeds_together_with_input_ids_raise(model):
    inputs = make_inputs()
    embeds = model.get_input_embeddings()(inputs["input_ids"])
    with raises(ValueError, "Got both input_ids and inputs_embeds", "pass exactly one"):
        model(**inputs, inputs_embeds=embeds)
    with raises(ValueError, "Got neither input_ids nor inputs_embeds"):
        model(pixel_values=inputs["pixel_values"])


def test_inputs_embeds_of_the_wrong_width_raise(model):
    with raises(ValueError, "inputs_embeds has shape (1, 5, 8)", "(batch_size, sequence_length, 32)"):
        model(inputs_embeds=torch.randn(1, 5, 8))


# --------------------------------------------------------------------------------------------------------------------
# attention_mask
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask_shape", [(2, 18), (2, 30), (1, 21), (21,), (2, 21, 1)])
def test_attention_mask_of_another_shape_than_input_ids_raises(model, mask_shape):
    inputs = make_inputs()
    mask = torch.ones(mask_shape, dtype=torch.long)
    with raises(ValueError, f"attention_mask has shape {mask_shape}", "input_ids has shape (2, 21)", "(2, 21)"):
        model(**{**inputs, "attention_mask": mask})


def test_attention_mask_in_a_decoding_step_covers_the_cache(model):
    # A decoding step passes only the new token; its mask covers the cached tokens as well.
    inputs = make_inputs(batch_size=1)
    cache = DynamicCache(config=model.config.text_config)
    prefill = model(**inputs, **{cache_keyword(model): cache}, use_cache=True)
    new_token = prefill.logits[:, -1:].argmax(-1)
    step = {"input_ids": new_token, cache_keyword(model): cache, "use_cache": True}
    assert model(**step, attention_mask=torch.ones(1, 22, dtype=torch.long)).logits.shape == (1, 1, VOCAB_SIZE)
    with raises(ValueError, "attention_mask has shape (1, 1)", "input_ids has shape (1, 1) after 22 cached tokens"):
        model(**step, attention_mask=torch.ones(1, 1, dtype=torch.long))


# --------------------------------------------------------------------------------------------------------------------
# pixel_values and the image count
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 16, 16), (2, 1, 16, 16), (2, 3, 32, 32), (2, 3, 16, 12), (1, 2, 3, 16, 16)])
def test_pixel_values_of_the_wrong_shape_raise_naming_the_expected_one(model, shape):
    inputs = make_inputs()
    with raises(ValueError, f"pixel_values has shape {shape}", "(num_images, 3, 16, 16)", "processor"):
        model(**{**inputs, "pixel_values": torch.randn(shape)})


def test_integer_pixel_values_raise_type_error(model):
    # Raw 0-255 pixels would otherwise run through the vision tower as if normalised.
    inputs = make_inputs()
    with raises(TypeError, "pixel_values is torch.uint8", "normalised float pixels", "processor(images=...)"):
        model(**{**inputs, "pixel_values": torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)})


def test_image_count_mismatch_names_the_counts_and_the_fix(model):
    inputs = make_inputs()
    with raises(ValueError, "the text has 32 image tokens", "but 1 images were given", "exactly one image per"):
        model(**{**inputs, "pixel_values": inputs["pixel_values"][:1]})
    with raises(ValueError, "the text has 32 image tokens", "but 3 images were given"):
        model(**{**inputs, "pixel_values": torch.randn(3, 3, 16, 16)})
    text_only = torch.tensor([[1, 300, 301]] * 2)
    with raises(ValueError, "the text has 0 image tokens", "but 2 images were given"):
        model(input_ids=text_only, pixel_values=inputs["pixel_values"])


def test_base_model_checks_its_inputs_too():
    model = SQLlavaModel(tiny_config()).eval()
    inputs = make_inputs()
    with raises(ValueError, "32 image tokens but no pixel_values"):
        model(input_ids=inputs["input_ids"])
    with raises(ValueError, "attention_mask has shape (2, 20)"):
        model(**{**inputs, "attention_mask": inputs["attention_mask"][:, 1:]})
    assert model(**inputs).last_hidden_state.shape == (2, 21, 32)


def test_positional_inputs_are_checked_and_work(model):
    inputs = make_inputs()
    expected = model(**inputs).logits
    # LLaVA's positional order: input_ids, pixel_values, attention_mask.
    positional = model(inputs["input_ids"], inputs["pixel_values"], inputs["attention_mask"]).logits
    torch.testing.assert_close(positional, expected)
    with raises(ValueError, "no pixel_values"):
        model(inputs["input_ids"])
    with pytest.raises(TypeError, match="multiple values"):
        model(inputs["input_ids"], input_ids=inputs["input_ids"])


# --------------------------------------------------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------------------------------------------------


def test_labels_of_another_shape_raise(model):
    inputs = make_inputs()
    with raises(ValueError, "labels has shape (2, 19) but the input has shape (2, 21)", "one label per input token"):
        model(**inputs, labels=inputs["input_ids"][:, 2:])
    embeds = model.get_input_embeddings()(inputs["input_ids"])
    with raises(ValueError, "labels has shape (1, 21) but the input has shape (2, 21)"):
        model(inputs_embeds=embeds, pixel_values=inputs["pixel_values"], labels=inputs["input_ids"][:1])


@pytest.mark.parametrize("bad_label", [VOCAB_SIZE, -1, -200])
def test_labels_outside_the_vocabulary_raise(model, bad_label):
    inputs = make_inputs()
    labels = inputs["input_ids"].clone()
    labels[:, :19] = -100  # the ignore index stays valid
    labels[0, -1] = bad_label
    with raises(ValueError, "labels has values outside the vocabulary [0, 421) other than -100", "with -100"):
        model(**inputs, labels=labels)


def test_original_llava_sentinel_in_labels_is_named(model):
    inputs = make_inputs()
    labels = torch.full_like(inputs["input_ids"], -100)
    labels[0, 3] = -200
    with raises(ValueError, "-200 is the original LLaVA IMAGE_TOKEN_INDEX"):
        model(**inputs, labels=labels)


def test_float_labels_raise_type_error(model):
    inputs = make_inputs()
    with raises(TypeError, "labels is torch.float32", "token ids (torch.long)"):
        model(**inputs, labels=inputs["input_ids"].float())


# --------------------------------------------------------------------------------------------------------------------
# generate
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, error, key_words",
    [
        ({"pixel_values": None}, ValueError, ["32 image tokens but no pixel_values"]),
        ({"attention_mask": torch.ones(2, 18, dtype=torch.long)}, ValueError, ["attention_mask has shape (2, 18)"]),
        ({"pixel_values": torch.randn(2, 3, 32, 32)}, ValueError, ["(num_images, 3, 16, 16)"]),
        ({"pixel_values": torch.randn(1, 3, 16, 16)}, ValueError, ["32 image tokens", "1 images were given"]),
        ({"input_ids": torch.tensor([[1, -200, 305]] * 2)}, ValueError, ["-200 is the original LLaVA's"]),
        ({"input_ids": torch.tensor([[1, 300, 999]] * 2)}, ValueError, ["outside the vocabulary", "max 999"]),
        ({"input_ids": torch.ones(2, 21)}, TypeError, ["input_ids is torch.float32"]),
    ],
)
def test_generate_checks_the_prompt(model, change, error, key_words):
    inputs = {**make_inputs(), **change}
    if change.get("input_ids") is not None and change["input_ids"].shape[1] != 21:
        inputs["attention_mask"] = torch.ones_like(change["input_ids"])
    with raises(error, *key_words):
        model.generate(**{k: v for k, v in inputs.items() if v is not None}, max_new_tokens=2, do_sample=False)


def test_generate_checks_a_positional_prompt(model):
    with raises(ValueError, "outside the vocabulary"):
        model.generate(torch.tensor([[1, 300, 999]]), max_new_tokens=2)


def image_token_model() -> SQLlavaForConditionalGeneration:
    """A tiny model that always writes the image token: a decoding step then feeds `<image>` back, without images."""
    torch.manual_seed(0)
    model = SQLlavaForConditionalGeneration(tiny_config()).eval()
    model.lm_head = torch.nn.Linear(32, VOCAB_SIZE)  # logits = the bias, whatever the hidden state
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.bias.zero_()
        model.lm_head.bias[IMAGE_TOKEN] = 10.0
    return model


@pytest.mark.parametrize("generation", [{}, {"cache_implementation": "static"}, {"num_beams": 2}])
def test_a_generated_image_token_does_not_trip_the_checks(generation):
    model = image_token_model()
    inputs = make_inputs()
    generated = model.generate(**inputs, max_new_tokens=3, do_sample=False, **generation)
    assert (generated[:, 21:] == IMAGE_TOKEN).all()
    # Without a cache every step is a full forward of the prompt and what was generated (text-only here).
    text_only = torch.tensor([[1, 300, 301]])
    generated = model.generate(input_ids=text_only, max_new_tokens=3, do_sample=False, use_cache=False, **generation)
    assert (generated[:, 3:] == IMAGE_TOKEN).all()
    assert not model.model._prompt_checked  # reset after generate


def test_generate_continues_a_cached_chat_without_its_images(model):
    # Turn 2 of a chat: the cache holds turn 1 and its image; the prompt repeats turn 1's ids (image tokens included)
    # and adds new text, with no pixel_values. Only the uncached part is checked.
    inputs = make_inputs(batch_size=1)
    cache = DynamicCache(config=model.config.text_config)
    first = model.generate(**inputs, max_new_tokens=2, do_sample=False, **{cache_keyword(model): cache})
    prompt = torch.cat([first, torch.tensor([[305, 306]])], dim=1)
    second = model.generate(
        input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=2, do_sample=False,
        **{cache_keyword(model): cache},
    )  # fmt: skip
    assert second.shape == (1, prompt.shape[1] + 2)


def test_compiled_generate_raises_value_error_for_an_image_count_mismatch():
    # The compiled graph carries the count check only as a runtime assert (a bare RuntimeError, see test_compile.py);
    # `generate` checks the prompt eagerly first, so the message names the counts.
    torch._dynamo.reset()
    model = SQLlavaForConditionalGeneration(tiny_config()).eval()
    inputs = make_inputs(batch_size=1)
    with torch.no_grad():
        model(**inputs)  # transformers installs its output-capturing hooks on the first, eager, forward
    model.forward = torch.compile(model.forward, fullgraph=True, backend="aot_eager")
    try:
        assert (
            model.generate(**inputs, max_new_tokens=2, do_sample=False, cache_implementation="static").shape[1] == 23
        )
        with raises(ValueError, "the text has 16 image tokens", "but 2 images were given"):
            model.generate(
                **{**inputs, "pixel_values": torch.randn(2, 3, 16, 16)},
                max_new_tokens=2,
                cache_implementation="static",
            )
    finally:
        torch._dynamo.reset()


@pytest.mark.parametrize("generation", [{}, {"cache_implementation": "static"}, {"use_cache": False}])
def test_value_checks_run_once_per_generate_not_per_step(model, monkeypatch, generation):
    # The value checks read the ids back (a device sync): once for the prompt, never in a decoding step.
    from transformers_sqllava import modeling_sqllava

    calls = []
    check = modeling_sqllava.check_token_values
    monkeypatch.setattr(modeling_sqllava, "check_token_values", lambda *args: calls.append(args) or check(*args))
    model.generate(**make_inputs(), max_new_tokens=5, min_new_tokens=5, do_sample=False, **generation)
    assert len(calls) == 1
    # A forward with a cache: the prefill is checked, the decoding step is not.
    calls.clear()
    inputs = make_inputs(batch_size=1)
    cache = DynamicCache(config=model.config.text_config)
    model(**inputs, **{cache_keyword(model): cache}, use_cache=True)
    model(input_ids=torch.tensor([[IMAGE_TOKEN]]), **{cache_keyword(model): cache}, use_cache=True)
    assert len(calls) == 1
