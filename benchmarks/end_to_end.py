# Copyright 2026 The transformers-sqllava authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""End-to-end latency: SQ-LLaVA vs transformers' `LlavaForConditionalGeneration`, same towers, same weights.

Three models built from one tiny-but-not-trivial configuration (CLIP 336 px / 14 px patches, hidden 256, 4 layers:
576 image tokens; Llama hidden 512, 4 layers, vocabulary 32002), sharing every weight they have in common:

- `llava`: `LlavaForConditionalGeneration` with `projector_hidden_act="quick_gelu"`, feature layer -2, CLS dropped;
- `sqllava`: `SQLlavaForConditionalGeneration`, i.e. the same model plus the prototype extractor (256 prototypes,
  2 iterations) in front of the projector MLP;
- `sqllava-no-extractor`: SQ-LLaVA with `use_prototype_extractor=False`, a sanity row that must equal `llava`
  (the script checks its logits and generated ids against LLaVA's).

So the only difference between `llava` and `sqllava` is the extractor. For one image + `--text-tokens` text tokens
per sample, at each batch size, it times:

- **image encoding**: `get_image_features` (vision tower + projector), where the extractor's cost is most visible;
- **prefill**: one forward over the whole prompt (576 image tokens + text) with a KV cache and the logits of the last
  position only, as `generate` does;
- **generate**: greedy `generate` of exactly `--new-tokens` tokens with the KV cache (prefill included), reported as
  wall time and as new tokens per second (batch x new tokens / time).

Models run round-robin (`--repeats` each after a warm-up) so that load from other processes hits all of them alike; the
table reports medians and minimums, the JSON every sample. Weights are random: the numbers are about speed, not
quality.

Usage:

```bash
python benchmarks/end_to_end.py                      # batch 1 and 4, 5 repeats
python benchmarks/end_to_end.py --batch-sizes 1 4 --repeats 7
python benchmarks/end_to_end.py --quick              # small sizes, a smoke test
```

Writes `benchmarks/results/end_to_end.{json,md}` (`--output-dir` to change; `--quick` writes `*_quick.*`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import LlavaConfig, LlavaForConditionalGeneration

from common import machine_info, write_report
from transformers_sqllava import SQLlavaConfig, SQLlavaForConditionalGeneration

MODELS = ("llava", "sqllava", "sqllava-no-extractor")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
IMAGE_TOKEN_ID = 32000
PAD_TOKEN_ID = 32001


@dataclass(frozen=True)
class Sizes:
    """Model and prompt sizes. Defaults: 576 image tokens, as in the real model, with small towers."""

    image_size: int = 336
    patch_size: int = 14
    vision_hidden_size: int = 256
    vision_intermediate_size: int = 1024
    vision_layers: int = 4
    vision_heads: int = 4
    text_hidden_size: int = 512
    text_intermediate_size: int = 1376
    text_layers: int = 4
    text_heads: int = 8
    vocab_size: int = 32002
    num_prototypes: int = 256
    prototype_iterations: int = 2
    text_tokens: int = 64
    new_tokens: int = 32

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


REAL_SIZES = Sizes()
QUICK_SIZES = Sizes(
    image_size=56,
    vision_hidden_size=32,
    vision_intermediate_size=64,
    vision_layers=2,
    vision_heads=2,
    text_hidden_size=64,
    text_intermediate_size=128,
    text_layers=2,
    text_heads=4,
    num_prototypes=8,
    text_tokens=8,
    new_tokens=4,
)


def sub_configs(sizes: Sizes) -> dict:
    vision_config = {
        "model_type": "clip_vision_model",
        "hidden_size": sizes.vision_hidden_size,
        "intermediate_size": sizes.vision_intermediate_size,
        "num_hidden_layers": sizes.vision_layers,
        "num_attention_heads": sizes.vision_heads,
        "image_size": sizes.image_size,
        "patch_size": sizes.patch_size,
    }
    text_config = {
        "model_type": "llama",
        "hidden_size": sizes.text_hidden_size,
        "intermediate_size": sizes.text_intermediate_size,
        "num_hidden_layers": sizes.text_layers,
        "num_attention_heads": sizes.text_heads,
        "num_key_value_heads": sizes.text_heads,
        "vocab_size": sizes.vocab_size,
        "max_position_embeddings": 2048,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": PAD_TOKEN_ID,
    }
    return {"vision_config": vision_config, "text_config": text_config}


def build_models(sizes: Sizes, models=MODELS, seed: int = 0) -> dict[str, torch.nn.Module]:
    """The requested models, in eval mode, all with the weights of one seeded SQ-LLaVA where they have them."""
    common = {
        "image_token_index": IMAGE_TOKEN_ID,
        "image_seq_length": sizes.image_tokens,
        "projector_hidden_act": "quick_gelu",
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
    }
    torch.manual_seed(seed)
    source = SQLlavaForConditionalGeneration(
        SQLlavaConfig(
            **sub_configs(sizes),
            **common,
            num_prototypes=sizes.num_prototypes,
            prototype_iterations=sizes.prototype_iterations,
        )
    )
    source_state = source.state_dict()
    # Everything but the extractor: the state dict of a plain LLaVA, under the same names.
    shared_state = {name: tensor for name, tensor in source_state.items() if ".prototype_extractor." not in name}

    built = {}
    for name in models:
        if name == "sqllava":
            model = source
        elif name == "llava":
            model = LlavaForConditionalGeneration(LlavaConfig(**sub_configs(sizes), **common))
            model.load_state_dict(shared_state, strict=True)
        elif name == "sqllava-no-extractor":
            config = SQLlavaConfig(**sub_configs(sizes), **common, use_prototype_extractor=False)
            model = SQLlavaForConditionalGeneration(config)
            model.load_state_dict(shared_state, strict=True)
        else:
            raise ValueError(f"Unknown model {name!r}; choose from {MODELS}.")
        built[name] = model.eval()
    return built


def make_inputs(sizes: Sizes, batch_size: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """One image per sample: `<s>`, the image tokens, then random text tokens (`text_tokens` in all, with `<s>`)."""
    generator = torch.Generator().manual_seed(seed)
    text = torch.randint(3, IMAGE_TOKEN_ID, (batch_size, sizes.text_tokens - 1), generator=generator)
    bos = torch.ones(batch_size, 1, dtype=torch.long)
    image = torch.full((batch_size, sizes.image_tokens), IMAGE_TOKEN_ID, dtype=torch.long)
    input_ids = torch.cat([bos, image, text], dim=1)
    pixel_values = torch.randn(batch_size, 3, sizes.image_size, sizes.image_size, generator=generator)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "pixel_values": pixel_values}


@torch.no_grad()
def encode_images(model, inputs: dict[str, torch.Tensor]):
    config = model.config
    return model.model.get_image_features(
        pixel_values=inputs["pixel_values"],
        vision_feature_layer=config.vision_feature_layer,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
    )


@torch.no_grad()
def prefill(model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**inputs, use_cache=True, logits_to_keep=1).logits


def generate(model, inputs: dict[str, torch.Tensor], new_tokens: int) -> torch.Tensor:
    output = model.generate(
        **inputs,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,  # random weights may emit `</s>` early: always time the same number of steps
        do_sample=False,
        use_cache=True,
        pad_token_id=PAD_TOKEN_ID,
    )
    return output[:, inputs["input_ids"].shape[1] :]


def check_models(models: dict, inputs: dict[str, torch.Tensor], new_tokens: int) -> dict:
    """`sqllava-no-extractor` must reproduce `llava`; `sqllava` must differ from it (the extractor does something)."""
    with torch.no_grad():
        logits = {name: model(**inputs).logits for name, model in models.items()}
    generated = {name: generate(model, inputs, new_tokens) for name, model in models.items()}
    report = {}
    for name in models:
        if name != "llava" and "llava" in models:
            report[name] = {
                "logits_max_abs_diff_vs_llava": (logits[name] - logits["llava"]).abs().max().item(),
                "same_generated_ids_as_llava": bool(torch.equal(generated[name], generated["llava"])),
            }
    return report


def time_call(function) -> float:
    start = time.perf_counter()
    function()
    return (time.perf_counter() - start) * 1000


def measure(sizes: Sizes, batch_size: int, repeats: int, models=MODELS, built=None) -> dict:
    """Median times of image encoding, prefill and generate for each model at one batch size, round-robin."""
    built = built or build_models(sizes, models)
    inputs = make_inputs(sizes, batch_size)
    stages = {
        "image_encoding": lambda model: encode_images(model, inputs),
        "prefill": lambda model: prefill(model, inputs),
        "generate": lambda model: generate(model, inputs, sizes.new_tokens),
    }
    check = check_models(built, inputs, sizes.new_tokens)  # also the warm-up
    samples = {(name, stage): [] for name in built for stage in stages}
    for stage, run in stages.items():
        for _ in range(repeats):
            for name, model in built.items():
                samples[(name, stage)].append(time_call(lambda: run(model)))
    rows = []
    for name in built:
        row = {"model": name, "batch_size": batch_size}
        for stage in stages:
            row[f"{stage}_ms"] = statistics.median(samples[(name, stage)])
            row[f"{stage}_samples_ms"] = samples[(name, stage)]
        row["generate_tokens_per_s"] = batch_size * sizes.new_tokens / (row["generate_ms"] / 1000)
        rows.append(row)
    return {"rows": rows, "check": {"batch_size": batch_size, **check}}


def run_benchmark(sizes: Sizes, batch_sizes: list[int], repeats: int, log=print) -> dict:
    built = build_models(sizes)
    rows, checks = [], []
    for batch_size in batch_sizes:
        log(f"batch {batch_size} ({repeats} repeats)...")
        result = measure(sizes, batch_size, repeats, built=built)
        rows += result["rows"]
        checks.append(result["check"])
    return {
        "benchmark": "end_to_end",
        "machine": machine_info(),
        "sizes": asdict(sizes) | {"image_tokens": sizes.image_tokens},
        "repeats": repeats,
        "parameters": {name: sum(p.numel() for p in model.parameters()) for name, model in built.items()},
        "results": rows,
        "checks": checks,
    }


def to_markdown(report: dict) -> str:
    """Result table: "median (min)" per stage, and both ratios against LLaVA (on a shared CPU the min is steadier)."""
    by_key = {(row["model"], row["batch_size"]): row for row in report["results"]}

    def cell(row, stage):
        samples = row[f"{stage}_samples_ms"]
        return f"{statistics.median(samples):.0f} ({min(samples):.0f})"

    def ratio(row, llava, stage):
        samples, baseline = row[f"{stage}_samples_ms"], llava[f"{stage}_samples_ms"]
        return f"{statistics.median(samples) / statistics.median(baseline):.2f} / {min(samples) / min(baseline):.2f}"

    new_tokens = report["sizes"]["new_tokens"]
    lines = [
        "| batch | model | image encoding, ms: median (min) | prefill, ms | generate, ms | generate tokens/s: median "
        "(best) | image encoding vs llava: median / min | prefill vs llava | generate time vs llava |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["results"]:
        llava = by_key[("llava", row["batch_size"])]
        best_tokens_per_s = row["batch_size"] * new_tokens / (min(row["generate_samples_ms"]) / 1000)
        lines.append(
            f"| {row['batch_size']} | {row['model']} | {cell(row, 'image_encoding')} | {cell(row, 'prefill')} "
            f"| {cell(row, 'generate')} | {row['generate_tokens_per_s']:.1f} ({best_tokens_per_s:.1f}) "
            f"| {ratio(row, llava, 'image_encoding')} | {ratio(row, llava, 'prefill')} "
            f"| {ratio(row, llava, 'generate')} |"
        )
    lines += [
        "",
        "| batch | model | logits max abs diff vs llava | same generated ids as llava |",
        "|---:|---|---|---|",
    ]
    for check in report["checks"]:
        for name in MODELS:
            if name in check:
                lines.append(
                    f"| {check['batch_size']} | {name} | {check[name]['logits_max_abs_diff_vs_llava']:.2e} "
                    f"| {check[name]['same_generated_ids_as_llava']} |"
                )
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4], help="Images (prompts) per batch.")
    parser.add_argument("--repeats", type=int, default=5, help="Timed runs per model and stage (median reported).")
    parser.add_argument("--quick", action="store_true", help="Small sizes (16 image tokens, 2 layers): a smoke test.")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR, help="Where the JSON and markdown go.")
    parser.add_argument("--render", type=Path, help="Only print the table of a saved JSON report; measure nothing.")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.render:
        print(to_markdown(json.loads(args.render.read_text())))
        return
    sizes = QUICK_SIZES if args.quick else REAL_SIZES
    report = run_benchmark(sizes, args.batch_sizes, args.repeats)
    table = to_markdown(report)
    print(table)
    write_report(args.output_dir, "end_to_end_quick" if args.quick else "end_to_end", report, table)


if __name__ == "__main__":
    main()
