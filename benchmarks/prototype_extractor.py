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
"""Time and peak memory of the SQ-LLaVA projector: the package's prototype extractor vs the reference's broadcasts.

Three implementations of the projector, all holding the **same weights**:

- `sqllava`: the package's `SQLlavaMultiModalProjector` (`SQLlavaPrototypeExtractor` + Linear -> QuickGELU -> Linear),
  which aggregates clusters with `scatter_add` and dispatches them back with `gather`;
- `reference`: `ReferenceClustering` below, a faithful re-implementation of the reference `Clustering` module
  (docs/original.md#prototype-extractor) with its parameter names `c`, `v`, `f`, `sim_alpha`, `sim_beta`, `mlp`, which
  materialises the batch x prototypes x tokens x channels products exactly as the reference does
  (docs/original.md#broadcast-memory-cost);
- `mlp`: the package's projector with `use_prototype_extractor=False` (plain LLaVA-1.5 MLP), the floor.

Each is measured for an inference forward (`torch.no_grad`) and a training step (forward + backward of a fixed random
output gradient into the parameters; the input does not require grad, as with the frozen vision tower of stage 1).

**Time.** One subprocess per batch size builds the three projectors and runs them round-robin, `--repeats` times each
after a warm-up pass, so that load from other processes on the machine hits every implementation alike. The table
reports the median and the minimum (the JSON keeps every sample). The warm-up passes also check that `sqllava` and
`reference` agree: max abs difference of the outputs and of the parameter gradients.

**Peak memory.** PyTorch's CPU allocator has no `max_memory_allocated`, so we measure what the OS sees: the peak
resident set size of a **fresh subprocess per (implementation, batch size, pass)**. The subprocess

1. makes glibc serve every allocation above 128 KiB with its own `mmap` (`mallopt(M_MMAP_THRESHOLD)`), so freed
   tensors go back to the OS at once instead of staying in the heap, and the resident size follows live memory;
2. builds the projector and its inputs and runs one warm-up pass (one-time allocations such as BLAS buffers and thread
   pools belong to the baseline, not to the pass), then drops the gradients;
3. resets the kernel's peak-RSS counter (`echo 5 > /proc/self/clear_refs`; Linux >= 4.0), reads the current RSS as
   the baseline, runs the measured pass and reads the peak (`VmHWM`).

The reported number is peak minus baseline: the extra memory the pass needs, i.e. activations, temporaries and (for
forward + backward) the parameter gradients, but not the weights or the input. Where `clear_refs` is not writable the
baseline falls back to `ru_maxrss` before the pass, which can only under-report.

Usage:

```bash
python benchmarks/prototype_extractor.py                       # real size, batch 1 and 8, 5 repeats
python benchmarks/prototype_extractor.py --batch-sizes 1 8 --repeats 7
python benchmarks/prototype_extractor.py --quick               # small sizes, a smoke test
```

Writes `benchmarks/results/prototype_extractor.{json,md}` (`--output-dir` to change; `--quick` writes `*_quick.*`).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common import machine_info, write_report
from transformers_sqllava import SQLlavaConfig
from transformers_sqllava.modeling_sqllava import SQLlavaMultiModalProjector

IMPLEMENTATIONS = ("sqllava", "reference", "mlp")
PASSES = ("forward", "forward+backward")
RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Sizes:
    """Projector sizes. The defaults are SQ-LLaVA-7B's: CLIP-L features in, Vicuna-7B width out (docs/original.md#prototype-extractor)."""

    channels: int = 1024
    hidden_size: int = 4096
    num_tokens: int = 576
    num_prototypes: int = 256
    prototype_iterations: int = 2


REAL_SIZES = Sizes()
QUICK_SIZES = Sizes(channels=64, hidden_size=128, num_tokens=36, num_prototypes=16, prototype_iterations=2)


# ---------------------------------------------------------------------------------------------------------------------
# The reference formulation
# ---------------------------------------------------------------------------------------------------------------------


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def pairwise_cos_sim(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    return F.normalize(x1, dim=-1) @ F.normalize(x2, dim=-1).transpose(-2, -1)


class ReferenceClustering(nn.Module):
    """The reference `Clustering(channels, channels_out, num_centers, num_clusters)` (docs/original.md#prototype-extractor).

    Written the way the reference writes it, including its names and its quirks: the 4th argument is the number of
    iterations, the keys are normalised over tokens, `ln_1` exists but is unused, and the aggregate and dispatch are
    broadcasts that materialise `(batch, centres, tokens, channels)` tensors.
    """

    def __init__(self, channels: int, channels_out: int, num_centers: int, num_clusters: int):
        super().__init__()
        self.c = nn.Linear(channels, channels)
        self.v = nn.Linear(channels, channels)
        self.f = nn.Linear(channels, channels)
        self.sim_alpha = nn.Parameter(torch.ones(1, 1, 1))
        self.sim_beta = nn.Parameter(torch.zeros(1, 1, 1))
        self.centers_proposal = nn.AdaptiveAvgPool1d(num_centers)
        self.softmax = nn.Softmax(dim=-2)
        self.clust_itr = num_clusters
        self.ln_1 = nn.LayerNorm(channels)  # in the checkpoint, never called (docs/original.md#prototype-extractor)
        self.mlp = nn.Sequential(nn.Linear(channels, channels_out), QuickGELU(), nn.Linear(channels_out, channels_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = self.v(x).permute(0, 2, 1)  # [B, C, L]
        feature = self.f(x)  # [B, L, C]
        centers = self.centers_proposal(x.permute(0, 2, 1))  # [B, C, N]
        centers_feature = self.centers_proposal(feature.permute(0, 2, 1)).permute(0, 2, 1)  # [B, N, C]
        centers = centers.permute(0, 2, 1)  # [B, N, C]
        for _ in range(self.clust_itr):
            centers = self.c(centers)
            similarity = self.softmax(F.normalize(centers, dim=-1) @ F.normalize(value, dim=-1))  # [B, N, L]
            centers = similarity @ feature  # [B, N, C]

        similarity = torch.sigmoid(self.sim_beta + self.sim_alpha * pairwise_cos_sim(centers, x))  # [B, N, L]
        _, max_idx = similarity.max(dim=1, keepdim=True)
        mask = torch.zeros_like(similarity)
        mask.scatter_(1, max_idx, 1.0)
        similarity = similarity * mask
        # The two broadcasts below each materialise a [B, N, L, C] tensor (docs/original.md#broadcast-memory-cost).
        out = ((feature.unsqueeze(1) * similarity.unsqueeze(-1)).sum(dim=2) + centers_feature) / (
            mask.sum(dim=-1, keepdim=True) + 1.0
        )
        out = (out.unsqueeze(2) * similarity.unsqueeze(-1)).sum(dim=1) + x
        return self.mlp(out)


# ---------------------------------------------------------------------------------------------------------------------
# Building the three projectors with the same weights
# ---------------------------------------------------------------------------------------------------------------------


def sqllava_config(sizes: Sizes, use_prototype_extractor: bool = True) -> SQLlavaConfig:
    """An `SQLlavaConfig` whose projector has the given sizes (14 px patches, as many as there are tokens)."""
    side = int(round(sizes.num_tokens**0.5))
    if side * side != sizes.num_tokens:
        raise ValueError(f"`num_tokens` must be a square number of CLIP patches, got {sizes.num_tokens}.")
    vision_config = {
        "model_type": "clip_vision_model",
        "hidden_size": sizes.channels,
        "num_attention_heads": max(1, sizes.channels // 64),
        "image_size": 14 * side,
        "patch_size": 14,
    }
    text_config = {
        "model_type": "llama",
        "hidden_size": sizes.hidden_size,
        "num_attention_heads": max(1, sizes.hidden_size // 128),
    }
    return SQLlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_seq_length=sizes.num_tokens,
        num_prototypes=sizes.num_prototypes,
        prototype_iterations=sizes.prototype_iterations,
        use_prototype_extractor=use_prototype_extractor,
    )


def reference_to_package_state_dict(reference: ReferenceClustering, with_extractor: bool) -> dict[str, torch.Tensor]:
    """The reference's weights under the package projector's names (`c` -> `prototype_proj`, ...)."""
    state_dict = {
        "linear_1.weight": reference.mlp[0].weight,
        "linear_1.bias": reference.mlp[0].bias,
        "linear_2.weight": reference.mlp[2].weight,
        "linear_2.bias": reference.mlp[2].bias,
    }
    if with_extractor:
        state_dict |= {
            "prototype_extractor.prototype_proj.weight": reference.c.weight,
            "prototype_extractor.prototype_proj.bias": reference.c.bias,
            "prototype_extractor.key_proj.weight": reference.v.weight,
            "prototype_extractor.key_proj.bias": reference.v.bias,
            "prototype_extractor.value_proj.weight": reference.f.weight,
            "prototype_extractor.value_proj.bias": reference.f.bias,
            "prototype_extractor.gate_scale": reference.sim_alpha.reshape(1),
            "prototype_extractor.gate_bias": reference.sim_beta.reshape(1),
        }
    return {name: tensor.detach().clone() for name, tensor in state_dict.items()}


def build_projectors(sizes: Sizes, implementations=IMPLEMENTATIONS, seed: int = 0) -> dict[str, nn.Module]:
    """The requested projectors, all carrying the weights of one seeded `ReferenceClustering`."""
    torch.manual_seed(seed)
    reference = ReferenceClustering(
        sizes.channels, sizes.hidden_size, sizes.num_prototypes, sizes.prototype_iterations
    )
    projectors = {}
    for name in implementations:
        if name == "reference":
            projectors[name] = reference
        elif name in ("sqllava", "mlp"):
            with_extractor = name == "sqllava"
            projector = SQLlavaMultiModalProjector(sqllava_config(sizes, use_prototype_extractor=with_extractor))
            projector.load_state_dict(reference_to_package_state_dict(reference, with_extractor), strict=True)
            projectors[name] = projector
        else:
            raise ValueError(f"Unknown implementation {name!r}; choose from {IMPLEMENTATIONS}.")
    return {name: projector.train() for name, projector in projectors.items()}


def make_inputs(sizes: Sizes, batch_size: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Image features `(batch, tokens, channels)` and a fixed output gradient `(batch, tokens, hidden)`."""
    generator = torch.Generator().manual_seed(seed)
    image_features = torch.randn(batch_size, sizes.num_tokens, sizes.channels, generator=generator)
    grad_output = torch.randn(batch_size, sizes.num_tokens, sizes.hidden_size, generator=generator)
    return image_features, grad_output


def run_pass(projector: nn.Module, image_features: torch.Tensor, grad_output: torch.Tensor, pass_name: str):
    """One inference forward or one training step; returns the output (detached)."""
    if pass_name == "forward":
        with torch.no_grad():
            return projector(image_features)
    if pass_name == "forward+backward":
        projector.zero_grad(set_to_none=True)
        output = projector(image_features)
        output.backward(grad_output)
        return output.detach()
    raise ValueError(f"Unknown pass {pass_name!r}; choose from {PASSES}.")


def gradients_by_reference_name(projector: nn.Module) -> dict[str, torch.Tensor]:
    """Parameter gradients keyed by the reference's names, so the two formulations can be compared."""
    if isinstance(projector, ReferenceClustering):
        return {name: p.grad.reshape(-1) for name, p in projector.named_parameters() if p.grad is not None}
    package_to_reference = {
        "linear_1": "mlp.0",
        "linear_2": "mlp.2",
        "prototype_extractor.prototype_proj": "c",
        "prototype_extractor.key_proj": "v",
        "prototype_extractor.value_proj": "f",
        "prototype_extractor.gate_scale": "sim_alpha",
        "prototype_extractor.gate_bias": "sim_beta",
    }
    gradients = {}
    for name, parameter in projector.named_parameters():
        for package_prefix, reference_prefix in package_to_reference.items():
            if name.startswith(package_prefix):
                gradients[reference_prefix + name[len(package_prefix) :]] = parameter.grad.reshape(-1)
    return gradients


# ---------------------------------------------------------------------------------------------------------------------
# Measurements (each runs inside one worker process)
# ---------------------------------------------------------------------------------------------------------------------


def compare_outputs(sizes: Sizes, batch_size: int, projectors: dict[str, nn.Module] | None = None) -> dict:
    """Max abs differences between `sqllava` and `reference`: forward outputs and parameter gradients."""
    projectors = projectors or build_projectors(sizes, ("sqllava", "reference"))
    image_features, grad_output = make_inputs(sizes, batch_size)
    outputs, gradients = {}, {}
    for name in ("sqllava", "reference"):
        outputs[name] = run_pass(projectors[name], image_features, grad_output, "forward+backward")
        gradients[name] = gradients_by_reference_name(projectors[name])
        projectors[name].zero_grad(set_to_none=True)
    grad_diffs = {
        name: (gradients["sqllava"][name] - gradient).abs().max().item()
        for name, gradient in gradients["reference"].items()
        if name in gradients["sqllava"]
    }
    return {
        "batch_size": batch_size,
        "output_max_abs_diff": (outputs["sqllava"] - outputs["reference"]).abs().max().item(),
        "output_max_abs": outputs["reference"].abs().max().item(),
        "grad_max_abs_diff": max(grad_diffs.values()),
        "grad_max_abs": max(g.abs().max().item() for g in gradients["reference"].values()),
        "worst_grad": max(grad_diffs, key=grad_diffs.get),
        "missing_grads": sorted(set(gradients["reference"]) ^ set(gradients["sqllava"])),
    }


def measure_latency(sizes: Sizes, batch_size: int, repeats: int, implementations=IMPLEMENTATIONS) -> dict:
    """Wall time per pass, implementations interleaved round-robin; also the output check (from the warm-up)."""
    projectors = build_projectors(sizes, implementations)
    image_features, grad_output = make_inputs(sizes, batch_size)
    check = None
    if {"sqllava", "reference"} <= set(implementations):
        check = compare_outputs(sizes, batch_size, projectors)  # doubles as the forward+backward warm-up
    samples = {(name, pass_name): [] for name in implementations for pass_name in PASSES}
    for pass_name in PASSES:
        for name in implementations:  # warm-up
            run_pass(projectors[name], image_features, grad_output, pass_name)
        for _ in range(repeats):
            for name in implementations:
                start = time.perf_counter()
                run_pass(projectors[name], image_features, grad_output, pass_name)
                samples[(name, pass_name)].append((time.perf_counter() - start) * 1000)
    return {
        "check": check,
        "latency": [
            {"implementation": name, "batch_size": batch_size, "pass": pass_name, "times_ms": times}
            for (name, pass_name), times in samples.items()
        ],
    }


def _read_status_kib(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process's RSS (`VmHWM`). False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _return_freed_memory_to_the_os():
    """Serve every allocation above 128 KiB with its own mmap, so that `free` unmaps it and RSS tracks live memory.

    By default glibc raises this threshold up to 32 MiB as large blocks get freed, after which freed tensors stay in
    the heap and the peak RSS also counts fragmentation. Setting the threshold explicitly turns that off.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: measure with the platform's allocator
        return
    m_mmap_threshold = -3
    libc.mallopt(m_mmap_threshold, 128 * 1024)


def measure_peak_memory(sizes: Sizes, batch_size: int, implementation: str, pass_name: str) -> dict:
    """Extra peak RSS of one pass, in MiB. Meant to run in a fresh process (see the module docstring)."""
    projector = build_projectors(sizes, (implementation,))[implementation]
    image_features, grad_output = make_inputs(sizes, batch_size)
    run_pass(projector, image_features, grad_output, pass_name)  # warm-up: one-time allocations go to the baseline
    projector.zero_grad(set_to_none=True)
    gc.collect()

    exact = _reset_peak_rss()
    if exact:
        baseline_kib = _read_status_kib("VmRSS")
    else:
        baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    run_pass(projector, image_features, grad_output, pass_name)
    peak_kib = _read_status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "implementation": implementation,
        "batch_size": batch_size,
        "pass": pass_name,
        "peak_memory_mib": (peak_kib - baseline_kib) / 1024,
        "memory_method": "VmHWM - VmRSS (clear_refs)" if exact else "ru_maxrss delta",
    }


# ---------------------------------------------------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------------------------------------------------


def run_worker(task: dict) -> dict:
    sizes = Sizes(**task["sizes"])
    if task["kind"] == "latency":
        return measure_latency(sizes, task["batch_size"], task["repeats"])
    if task["kind"] == "memory":
        return measure_peak_memory(sizes, task["batch_size"], task["implementation"], task["pass"])
    raise ValueError(f"Unknown task kind {task['kind']!r}.")


def run_in_fresh_process(task: dict) -> dict:
    """Run `run_worker(task)` in a new Python process and return its result (the last line of its stdout)."""
    completed = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(task)], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"Benchmark worker failed for {task}:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_benchmark(
    sizes: Sizes, batch_sizes: list[int], repeats: int, isolate: bool = True, log=print
) -> dict:
    """All measurements. `isolate=False` runs them in this process (fast, for smoke tests; memory is then coarser)."""
    run = run_in_fresh_process if isolate else run_worker
    rows, checks = {}, []
    for batch_size in batch_sizes:
        log(f"timing batch {batch_size} ({repeats} repeats)...")
        latency = run({"kind": "latency", "sizes": asdict(sizes), "batch_size": batch_size, "repeats": repeats})
        checks.append(latency["check"])
        for row in latency["latency"]:
            times = row["times_ms"]
            row |= {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times)}
            rows[(row["implementation"], batch_size, row["pass"])] = row
        for pass_name in PASSES:
            for name in IMPLEMENTATIONS:
                log(f"peak memory: {name}, batch {batch_size}, {pass_name}...")
                task = {"kind": "memory", "sizes": asdict(sizes), "batch_size": batch_size}
                memory = run(task | {"implementation": name, "pass": pass_name})
                rows[(name, batch_size, pass_name)] |= memory
    return {
        "benchmark": "prototype_extractor",
        "machine": machine_info(),
        "sizes": asdict(sizes),
        "repeats": repeats,
        "isolated_processes": isolate,
        "results": [rows[key] for key in sorted(rows, key=_row_order)],
        "checks": checks,
    }


def _row_order(key):
    name, batch_size, pass_name = key
    return batch_size, PASSES.index(pass_name), IMPLEMENTATIONS.index(name)


def to_markdown(report: dict) -> str:
    """Result table: one row per (batch, pass, implementation), ratios against the reference formulation."""
    by_key = {(r["implementation"], r["batch_size"], r["pass"]): r for r in report["results"]}
    lines = [
        "| batch | pass | implementation | median time (ms) | min time (ms) | peak extra memory (MiB) "
        "| time vs reference: median / min | memory vs reference |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["results"]:
        reference = by_key[("reference", row["batch_size"], row["pass"])]
        time_ratio = f"{row['median_ms'] / reference['median_ms']:.2f} / {row['min_ms'] / reference['min_ms']:.2f}"
        memory_ratio = row["peak_memory_mib"] / max(reference["peak_memory_mib"], 1e-9)
        lines.append(
            f"| {row['batch_size']} | {row['pass']} | {row['implementation']} | {_significant(row['median_ms'])} "
            f"| {_significant(row['min_ms'])} | {_significant(row['peak_memory_mib'])} | {time_ratio} "
            f"| {memory_ratio:.3f}x |"
        )
    lines += [
        "",
        "| batch | output max abs diff (max abs output) | grad max abs diff (max abs grad) |",
        "|---:|---|---|",
    ]
    for check in report["checks"]:
        lines.append(
            f"| {check['batch_size']} | {check['output_max_abs_diff']:.2e} ({check['output_max_abs']:.2f}) "
            f"| {check['grad_max_abs_diff']:.2e} ({check['grad_max_abs']:.2f}) |"
        )
    return "\n".join(lines) + "\n"


def _significant(value: float) -> str:
    """Three significant digits, without scientific notation: 12345 -> 12345, 12.34 -> 12.3, 0.01234 -> 0.0123."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{float(f'{value:.3g}'):g}"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], help="Images per batch.")
    parser.add_argument("--repeats", type=int, default=5, help="Timed passes per configuration (median reported).")
    parser.add_argument("--quick", action="store_true", help="Small sizes (64 channels, 36 tokens): a smoke test.")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR, help="Where the JSON and markdown go.")
    parser.add_argument("--render", type=Path, help="Only print the table of a saved JSON report; measure nothing.")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one measurement, in a fresh process
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        task = json.loads(args.worker)
        if task["kind"] == "memory":
            _return_freed_memory_to_the_os()  # before anything is built; timing keeps glibc's default behaviour
        print(json.dumps(run_worker(task)))
        return
    if args.render:
        print(to_markdown(json.loads(args.render.read_text())))
        return
    sizes = QUICK_SIZES if args.quick else REAL_SIZES
    report = run_benchmark(sizes, args.batch_sizes, args.repeats)
    table = to_markdown(report)
    print(table)
    write_report(args.output_dir, "prototype_extractor_quick" if args.quick else "prototype_extractor", report, table)


if __name__ == "__main__":
    main()
