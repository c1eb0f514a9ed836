"""`torch.compile(fullgraph=True)` on SQ-LLaVA: the image path has no graph break, and static-cache generation works.

Backend: `aot_eager` traces the whole model through Dynamo and AOTAutograd (a graph break, or data-dependent control
flow such as `int(mask.sum())` in the placeholder check, fails with `fullgraph=True` exactly as with inductor) but
skips inductor's code generation, which takes 50-90 s for this tiny model on 2 CPU cores; `aot_eager` takes seconds.
"""

import pytest
import torch
from conftest import tiny_config
from sqllava_tiny import single_torch_thread

from transformers_sqllava import SQLlavaForConditionalGeneration

IMAGE_TOKEN = 419
BACKEND = "aot_eager"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_torch_thread():
        yield


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def make_model_and_inputs():
    torch.manual_seed(0)
    model = SQLlavaForConditionalGeneration(tiny_config()).eval()
    input_ids = torch.tensor([[1, 300, 301] + [IMAGE_TOKEN] * 16 + [305, 306]])
    inputs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": torch.randn(1, 3, 16, 16),
    }
    # The first call runs eagerly: transformers installs its output-capturing hooks on the first forward, under a
    # lock that Dynamo cannot trace (transformers' LLaVA behaves the same way).
    with torch.no_grad():
        expected_logits = model(**inputs).logits
    return model, inputs, expected_logits


def test_compiled_forward_with_an_image_has_no_graph_break():
    model, inputs, expected_logits = make_model_and_inputs()
    compiled = torch.compile(model, fullgraph=True, backend=BACKEND)
    with torch.no_grad():
        logits = compiled(**inputs).logits
    torch.testing.assert_close(logits, expected_logits, rtol=1e-5, atol=1e-5)

    # The image-token check is still there when compiled: a runtime assert in the graph instead of a Python `if`
    # (without it, `masked_scatter` would fail with an error that does not mention the check).
    one_image_token_too_many = inputs["input_ids"].clone()
    one_image_token_too_many[0, -1] = IMAGE_TOKEN
    with pytest.raises(RuntimeError, match="Runtime assertion failed"), torch.no_grad():
        compiled(**{**inputs, "input_ids": one_image_token_too_many})


def test_compiled_generate_with_static_cache_equals_eager_greedy():
    model, inputs, _ = make_model_and_inputs()
    expected = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    # transformers' recipe for compiled generation (docs "llm_optims"): a compiled forward and a static cache. The
    # prefill (image features, placeholder scatter) and the decoding steps both run through the compiled graph.
    model.forward = torch.compile(model.forward, fullgraph=True, backend=BACKEND)
    generated = model.generate(**inputs, max_new_tokens=4, do_sample=False, cache_implementation="static")
    assert torch.equal(generated, expected)
