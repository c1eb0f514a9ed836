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
"""Draw the README's picture: one held-out scene of the offline demo and what the shipped tiny SQ-LLaVA says about it.

    python docs/figures/make_demo_figure.py                      # writes docs/figures/demo-scene.png
    python docs/figures/make_demo_figure.py --scene 2 --output /tmp/scene.png

It runs the demo exactly as `sqllava demo` does (same checkpoint, held-out scenes, seed and batch composition, so the
scene and the sampled questions are the ones `sqllava demo` prints), then draws the scene (upscaled, nearest
neighbour) with the truth, the model's description, its answers, the questions it asked itself as the virtual user
with its answers, each marked by the scene checker, and the held-out totals. Needs only the installed package
(PIL's default font); a few seconds on a CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from transformers_sqllava.demo import DEFAULT_CHECKPOINT, load_training_record, run_demo

OUTPUT = Path(__file__).resolve().parent / "demo-scene.png"
SCALE = 5  # 72 px scenes -> 360 px
MARGIN = 24
TEXT_WIDTH = 760
GREEN, RED, GREY, BLACK = (24, 128, 56), (190, 30, 30), (110, 110, 110), (20, 20, 20)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # scalable with FreeType (Pillow >= 10.1)
    except TypeError:
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """Greedy word wrap to `width` pixels."""
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and draw.textlength(candidate, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + ([line] if line else [])


def _mark(correct: bool | None) -> tuple[str, tuple[int, int, int]]:
    return {True: ("right", GREEN), False: ("wrong", RED), None: ("-", GREY)}[correct]


def figure_rows(result, report, record: dict) -> list[tuple[str, str, tuple[int, int, int] | None]]:
    """(style, text, colour of a trailing mark) rows; style is 'title', 'head', 'text' or 'small'."""
    rows = [("title", "SQ-LLaVA tiny demo: a held-out scene", None)]
    rows += [("head", "Truth (the scene's own caption)", None), ("text", result.scene.caption(), None)]
    mark, colour = _mark(result.description_correct)
    rows += [("head", "The model's description", None), ("text", f"{result.description}  [{mark}]", colour)]
    rows.append(("head", "Answers to questions about the scene", None))
    for item in result.answers:
        mark, colour = _mark(item.correct)
        rows.append(("text", f"Q: {item.question}   A: {item.answer}  [{mark}]", colour))
    rows.append(("head", "Questions it asked itself after its description ([vusr]:), and its answers", None))
    for item in result.self_asked:
        if item.valid:
            mark, colour = _mark(item.correct)
            rows.append(("text", f"[vusr]: {item.question}   A: {item.answer}  [valid, answer {mark}]", colour))
        else:
            rows.append(("text", f"[vusr]: {item.question}   A: {item.answer}  [not answerable here]", RED))
    totals = (
        f"Held out: {report.answer_accuracy:.1%} of {len(report.answers)} answers right, "
        f"{report.valid_question_share:.1%} of {len(report.self_asked)} own questions valid, "
        f"{report.num_descriptions_correct}/{report.num_descriptions} descriptions exact. "
        f"{record['num_parameters'] / 1e6:.2f} M parameters, trained on a CPU in "
        f"{record['training_minutes']:.0f} minutes."
    )
    rows.append(("small", totals, None))
    return rows


def draw_figure(result, report, record: dict) -> Image.Image:
    fonts = {"title": _font(22), "head": _font(16), "text": _font(16), "small": _font(14)}
    colours = {"title": BLACK, "head": GREY, "text": BLACK, "small": GREY}
    scene = result.scene.render()
    scene = scene.resize((scene.width * SCALE, scene.height * SCALE), resample=Image.Resampling.NEAREST)

    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    laid_out = []  # (font, colour, lines, gap before)
    for style, text, mark_colour in figure_rows(result, report, record):
        lines = _wrap(measure, text, fonts[style], TEXT_WIDTH)
        gap = {"title": 0, "head": 14, "text": 4, "small": 18}[style]
        laid_out.append((fonts[style], mark_colour or colours[style], lines, gap))
    line_height = {id(font): int(font.size * 1.35) for font in fonts.values()}
    text_height = sum(gap + line_height[id(font)] * len(lines) for font, _, lines, gap in laid_out)

    width = MARGIN * 3 + scene.width + TEXT_WIDTH
    height = MARGIN * 2 + max(scene.height, text_height)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    canvas.paste(scene, (MARGIN, MARGIN))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle(
        (MARGIN - 1, MARGIN - 1, MARGIN + scene.width, MARGIN + scene.height), outline=(180, 180, 180), width=1
    )
    x, y = MARGIN * 2 + scene.width, MARGIN
    for font, colour, lines, gap in laid_out:
        y += gap
        for line in lines:
            draw.text((x, y), line, font=font, fill=colour)
            y += line_height[id(font)]
    return canvas


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="a demo checkpoint folder")
    parser.add_argument(
        "--scene", type=int, default=1, help="which shown scene, 1-based, as `sqllava demo` numbers them"
    )
    parser.add_argument("--output", type=Path, default=OUTPUT, help="where to write the PNG")
    args = parser.parse_args(argv)
    # The demo's own defaults, so that the scene and its sampled questions are those `sqllava demo` prints.
    report = run_demo(args.checkpoint, output_dir=None, num_shown=max(args.scene, 3))
    figure = draw_figure(report.shown[args.scene - 1], report, load_training_record(args.checkpoint))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.output, optimize=True)
    print(f"wrote {args.output} ({figure.width}x{figure.height})")
    return args.output


if __name__ == "__main__":
    main()
