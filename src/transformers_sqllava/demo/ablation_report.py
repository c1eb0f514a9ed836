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
"""The ablation's table and plot: the paper's Table 3 layout from the per-run benchmark numbers of `demo/ablate.py`.

One row per variant (its switches as check marks), one column per benchmark on a 0-100 scale ([`COLUMNS`]), the
average of those columns ([`AVERAGE_COLUMNS`]) and its difference to the baseline, each as mean ± spread over the
training seeds. The difference is paired by seed (a seed gives every variant the same data stream), and it is said to
exceed the spread when its mean is larger than the standard deviation of the per-seed differences; with two seeds that
is a sanity check, not a significance test (docs/ablation.md#reading-the-table).

The plot is drawn with PIL alone (the package has no plotting dependency): one group of bars per column, one bar per
variant, error bars of one standard deviation over seeds.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

# (key, header, task, metric of the task's headlines, factor to 0-100). CIDEr-D x100 is at most 1000 with one
# reference caption, MME perception at most 400 (two tasks of 200): divided by 10 and 4 they are on the others' scale.
COLUMNS = (
    ("pope", "POPE F1", "pope", "f1", 1.0),
    ("vqa", "VQA acc", "vqa", "accuracy", 1.0),
    ("caption", "CIDEr-D/10", "caption", "CIDEr-D", 0.1),
    ("mme", "MME/4", "mme", "perception", 0.25),
    ("mc", "MC acc", "multiple-choice", "accuracy", 1.0),
    ("sq", "valid own Qs", "self-questioning", "valid_questions", 1.0),
)
# The benchmark average: the five benchmarks, not the self-asked questions, which only SQ-trained variants can be
# expected to ask (they are reported, not averaged).
AVERAGE_COLUMNS = ("pope", "vqa", "caption", "mme", "mc")
AVERAGE_DEFINITION = "mean of POPE F1, VQA accuracy, CIDEr-D/10, MME perception/4 and MC accuracy (each 0-100)"
SWITCHES = (("prototype_extractor", "Proto"), ("self_questioning", "SQ"), ("vision_lora", "ViT LoRA"))
DELTA_NOTE = (
    "Δ is paired by seed (same data stream): mean ± std of the per-seed differences of Avg; it exceeds the spread "
    "when |mean| > std (with 2 seeds a sanity check, not a significance test)."
)
# A benchmark with no number (POPE's F1 when the model never answers yes) scores 0 in the average: it was not passed.
MISSING_SCORE = 0.0


def run_columns(headlines: dict[str, dict[str, float | None]]) -> dict[str, float | None]:
    """One run's numbers on the table's 0-100 scales, and their `average` ([`AVERAGE_DEFINITION`])."""
    values = {}
    for key, _, task, metric, factor in COLUMNS:
        value = headlines.get(task, {}).get(metric)
        values[key] = None if value is None else value * factor
    values["average"] = statistics.fmean(
        MISSING_SCORE if values[key] is None else values[key] for key in AVERAGE_COLUMNS
    )
    return values


def _spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    # The sample standard deviation (n - 1): with 2 seeds, |a - b| / sqrt(2). 0 with one seed.
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"n": len(values), "mean": statistics.fmean(values), "std": std, "min": min(values), "max": max(values)}


def build_ablation_table(runs: list[dict[str, Any]], baseline: str = "baseline") -> dict[str, Any]:
    r"""
    The table of the ablation, as JSON-ready data.

    Args:
        runs (`list[dict]`): One entry per (variant, seed): `variant`, `seed`, `switches` (the three booleans) and
            `headlines` ([`DemoBenchmarkReport.headlines`]); other keys (`seconds`, `collator_stats`) are kept.
        baseline (`str`, *optional*, defaults to `"baseline"`): The row the differences are taken to.

    Returns:
        `dict`: `columns`, `average` (its definition), `seeds`, `baseline` and `rows`, one per variant in the runs'
        order, each with its `switches`, `per_seed` numbers, `summary` (per column and `average`: mean, std, min,
        max over seeds) and `delta_to_baseline` (the average's per-seed differences, their mean and std, and
        `exceeds_spread`; `None` for the baseline itself or without a baseline run).
    """
    order = list(dict.fromkeys(run["variant"] for run in runs))
    seeds = sorted({run["seed"] for run in runs})
    per_variant = {name: {run["seed"]: run for run in runs if run["variant"] == name} for name in order}
    numbers = {name: {seed: run_columns(run["headlines"]) for seed, run in by_seed.items()}
               for name, by_seed in per_variant.items()}  # fmt: skip
    rows = []
    for name in order:
        keys = [key for key, *_ in COLUMNS] + ["average"]
        summary = {key: _spread([numbers[name][seed][key] for seed in numbers[name]
                                 if numbers[name][seed][key] is not None]) for key in keys}  # fmt: skip
        delta = None
        if baseline in numbers and name != baseline:
            paired = sorted(set(numbers[name]) & set(numbers[baseline]))
            differences = [numbers[name][seed]["average"] - numbers[baseline][seed]["average"] for seed in paired]
            delta = {"per_seed": dict(zip(paired, differences)), **_spread(differences)}
            delta["exceeds_spread"] = (abs(delta["mean"]) > delta["std"]) if len(differences) > 1 else None
        first = next(iter(per_variant[name].values()))
        rows.append({
            "variant": name, "switches": first["switches"], "per_seed": numbers[name], "summary": summary,
            "delta_to_baseline": delta,
            "runs": {seed: {key: value for key, value in run.items() if key not in ("headlines",)}
                     for seed, run in per_variant[name].items()},
        })  # fmt: skip
    return {
        "columns": [
            {"key": key, "header": header, "task": task, "metric": metric, "factor": factor}
            for key, header, task, metric, factor in COLUMNS
        ],
        "average": {"columns": list(AVERAGE_COLUMNS), "definition": AVERAGE_DEFINITION},
        "seeds": seeds,
        "baseline": baseline if baseline in numbers else None,
        "rows": rows,
    }


def _cell(summary: dict[str, float | None], digits: int = 1) -> str:
    if summary["mean"] is None:
        return "n/a"
    if summary["n"] < 2:  # one seed: no spread to show
        return f"{summary['mean']:.{digits}f}"
    return f"{summary['mean']:.{digits}f} ± {summary['std']:.{digits}f}"


def format_ablation_markdown(table: dict[str, Any]) -> str:
    """The table in Markdown: the paper's Table 3 layout, mean ± standard deviation over seeds."""
    seeds = table["seeds"]
    headers = [label for _, label in SWITCHES] + [column["header"] for column in table["columns"]]
    headers += ["Avg", "Δ Avg vs baseline", "Δ > spread"]
    title = (
        f"Ablation on the demo world (seeds {', '.join(map(str, seeds))}; mean ± std over seeds; "
        f"Avg = {table['average']['definition']}; 'valid own Qs' = % of self-asked questions valid for their scene, "
        "not in Avg)."
    )
    lines = [
        title,
        "",
        "| variant | " + " | ".join(headers) + " |",
        "|---|" + "|".join([":-:"] * len(SWITCHES) + ["--:"] * (len(headers) - len(SWITCHES))) + "|",
    ]
    for row in table["rows"]:
        marks = ["✓" if row["switches"][key] else "–" for key, _ in SWITCHES]
        cells = [_cell(row["summary"][column["key"]]) for column in table["columns"]]
        delta = row["delta_to_baseline"]
        if delta is None:
            delta_cells = ["—", "—"]
        else:
            delta_cells = [f"{delta['mean']:+.1f} ± {delta['std']:.1f}",
                           "n/a (1 seed)" if delta["exceeds_spread"] is None else
                           ("yes" if delta["exceeds_spread"] else "no")]  # fmt: skip
        lines.append(f"| {row['variant']} | " + " | ".join(marks + cells + [_cell(row["summary"]["average"])]
                                                            + delta_cells) + " |")  # fmt: skip
    lines += ["", DELTA_NOTE]
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    # Seeds key several dicts; JSON object keys are strings.
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


def write_ablation_report(table: dict[str, Any], output_dir: str | Path) -> dict[str, Path]:
    """`ablation.json`, `ablation.md` and `ablation.png` in `output_dir`; returns their paths."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": output_dir / "ablation.json", "markdown": output_dir / "ablation.md",
             "plot": output_dir / "ablation.png"}  # fmt: skip
    files["json"].write_text(json.dumps(_jsonable(table), indent=1) + "\n")
    files["markdown"].write_text(format_ablation_markdown(table) + "\n")
    draw_ablation_plot(table, files["plot"])
    return files


# --- The plot -------------------------------------------------------------------------------------------------------

# One colour per row, in the table's order (colour-blind-safe Okabe-Ito hues).
PLOT_COLOURS = ((0, 114, 178), (230, 159, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233), (213, 94, 0),
                (240, 228, 66), (0, 0, 0))  # fmt: skip
PLOT_SIZE = (1200, 560)
PLOT_MARGINS = {"left": 70, "right": 20, "top": 60, "bottom": 110}
PLOT_MAX = 100.0  # every column is on a 0-100 scale
PLOT_TICKS = (0, 20, 40, 60, 80, 100)
FONT_SIZE = 15


def _font(size: int):
    from PIL import ImageFont

    try:  # Pillow's bundled font at a size (needs FreeType); the bitmap default otherwise
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):
        return ImageFont.load_default()


def draw_ablation_plot(table: dict[str, Any], path: str | Path) -> None:
    """A PNG bar chart: for the average and each column, one bar per variant (mean over seeds, error bar ±1 std)."""
    from PIL import Image, ImageDraw

    width, height = PLOT_SIZE
    image = Image.new("RGB", PLOT_SIZE, "white")
    draw = ImageDraw.Draw(image)
    font, small = _font(FONT_SIZE), _font(FONT_SIZE - 3)
    left, right = PLOT_MARGINS["left"], width - PLOT_MARGINS["right"]
    top, bottom = PLOT_MARGINS["top"], height - PLOT_MARGINS["bottom"]

    def y_of(value: float) -> float:
        return bottom - (bottom - top) * max(0.0, min(value, PLOT_MAX)) / PLOT_MAX

    seeds = ", ".join(map(str, table["seeds"]))
    draw.text((left, 15), f"Ablation on the demo world (mean over seeds {seeds}, error bars ±1 std)", fill="black",
              font=font)  # fmt: skip
    for tick in PLOT_TICKS:
        y = y_of(tick)
        draw.line([(left, y), (right, y)], fill=(225, 225, 225))
        draw.text((left - 8, y), str(tick), fill="black", font=small, anchor="rm")
    draw.line([(left, top), (left, bottom), (right, bottom)], fill="black")
    groups = [("average", "Avg")] + [(column["key"], column["header"]) for column in table["columns"]]
    rows = table["rows"]
    group_width = (right - left) / len(groups)
    bar_width = group_width * 0.8 / max(len(rows), 1)
    for index, (key, header) in enumerate(groups):
        start = left + index * group_width + group_width * 0.1
        for position, row in enumerate(rows):
            summary = row["summary"][key]
            if summary["mean"] is None:
                continue
            colour = PLOT_COLOURS[position % len(PLOT_COLOURS)]
            x0 = start + position * bar_width
            draw.rectangle([x0, y_of(summary["mean"]), x0 + bar_width - 2, bottom], fill=colour)
            if summary["std"]:
                centre = x0 + (bar_width - 2) / 2
                low, high = y_of(summary["mean"] - summary["std"]), y_of(summary["mean"] + summary["std"])
                draw.line([(centre, low), (centre, high)], fill="black", width=2)
                for y in (low, high):
                    draw.line([(centre - bar_width / 4, y), (centre + bar_width / 4, y)], fill="black", width=2)
        draw.text((left + (index + 0.5) * group_width, bottom + 8), header, fill="black", font=small, anchor="ma")
    x = left
    for position, row in enumerate(rows):  # the legend, under the axis
        colour = PLOT_COLOURS[position % len(PLOT_COLOURS)]
        marks = "/".join(label for key, label in SWITCHES if row["switches"][key]) or "none"
        label = f"{row['variant']} ({marks})"
        draw.rectangle([x, height - 55, x + 14, height - 41], fill=colour)
        draw.text((x + 20, height - 48), label, fill="black", font=small, anchor="lm")
        x += 30 + draw.textlength(label, font=small)
    draw.text((left, height - 18), f"Avg: {AVERAGE_DEFINITION}; valid own Qs is not in Avg.", fill=(90, 90, 90),
              font=small, anchor="lm")  # fmt: skip
    image.save(path, format="PNG")


__all__ = [
    "AVERAGE_COLUMNS",
    "AVERAGE_DEFINITION",
    "COLUMNS",
    "build_ablation_table",
    "draw_ablation_plot",
    "format_ablation_markdown",
    "run_columns",
    "write_ablation_report",
]
