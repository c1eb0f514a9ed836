"""A saved SQ-LLaVA folder loads with `trust_remote_code=True` in a Python process that cannot import this package."""

import os
import subprocess
import sys
import textwrap

import torch
from conftest import tiny_config, tiny_processor
from PIL import Image

from transformers_sqllava import SQLlavaForConditionalGeneration

REMOTE_LOAD = textwrap.dedent(
    """
    import sys
    sys.modules["transformers_sqllava"] = None  # any `import transformers_sqllava` now raises ImportError

    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    folder = sys.argv[1]
    try:
        import transformers_sqllava  # noqa: F401
        raise SystemExit("the package is importable: the test would prove nothing")
    except ImportError:
        pass

    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__name__ == "SQLlavaForConditionalGeneration", type(model)
    assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
    assert type(config).__module__.startswith("transformers_modules."), type(config).__module__
    inputs = torch.load(f"{folder}/inputs.pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    torch.testing.assert_close(logits, torch.load(f"{folder}/expected_logits.pt"), rtol=0, atol=0)
    generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert torch.equal(generated, torch.load(f"{folder}/expected_generate.pt"))

    # The processor, its image processor (a Hub file of its own) and the saved chat_template.jinja.
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    assert type(processor).__module__.startswith("transformers_modules."), type(processor).__module__
    assert type(processor.image_processor).__name__ == "SQLlavaImageProcessor", type(processor.image_processor)
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]},
        {"role": "assistant", "content": "A square."},
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, generation_role="vuser")
    encoded = processor(images=Image.new("RGB", (20, 12), (200, 30, 30)), text=prompt, return_tensors="pt")
    expected = torch.load(f"{folder}/expected_processor.pt")
    assert prompt == expected["prompt"], prompt
    for key in ("input_ids", "attention_mask", "pixel_values"):
        torch.testing.assert_close(encoded[key], expected[key], rtol=0, atol=0)
    print("REMOTE-CODE-OK")
    """
)


def test_saved_folder_loads_with_trust_remote_code_without_the_package(tmp_path):
    model = SQLlavaForConditionalGeneration(tiny_config()).eval()
    folder = tmp_path / "sqllava-tiny"
    model.save_pretrained(folder)
    input_ids = torch.tensor([[1, 300, 301] + [419] * 16 + [305, 306]])
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "pixel_values": torch.randn(1, 3, 16, 16)}
    with torch.no_grad():
        torch.save(model(**inputs).logits, folder / "expected_logits.pt")
    torch.save(model.generate(**inputs, max_new_tokens=4, do_sample=False), folder / "expected_generate.pt")
    torch.save(inputs, folder / "inputs.pt")
    processor = tiny_processor(vuser_token="[vusr]")
    processor.save_pretrained(folder)
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]},
        {"role": "assistant", "content": "A square."},
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, generation_role="vuser")
    encoded = processor(images=Image.new("RGB", (20, 12), (200, 30, 30)), text=prompt, return_tensors="pt")
    torch.save({"prompt": prompt, **encoded}, folder / "expected_processor.pt")

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_LOAD, str(folder)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "REMOTE-CODE-OK" in result.stdout
