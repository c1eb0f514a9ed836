"""How fast the offline demo's tiny SQ-LLaVA learns each kind of scene question, from scratch, on 1 CPU thread.

The demo's blocker (README, "The offline demo") is learning, not speed: the model reads a colour in 50 steps when
colour is all it is asked, yet stays at chance on colour for thousands of steps when every kind of question about 1
to 4 objects comes at once (the demo's mix). This script is the instrument for that question. It trains the demo's
model (the package's `build_demo_model` / `build_demo_processor`, same sizes as `DemoTrainingConfig` unless told
otherwise) in a plain AdamW loop on a chosen slice of the scene language, and every `--eval-every` steps measures
teacher-forced answer accuracy per question kind on 200 scenes from seeds never used in training (1 to 4 objects, or
`--objects`), asking the same questions at every evaluation. Small scenes recur: there are only 270 one-object
scenes, and training draws all of them, so unlike `sqllava demo`'s evaluation (which excludes every training scene)
this one includes some; it measures how fast lookup is learned.

It strips everything that is not the lookup itself, so a run takes a minute or two instead of twenty: no system
prompt, no chat template, no vuser turns, single-question samples `<s><image>*N Q: <question> A: <answer>`.
A curriculum is a `--schedule` of phases `LOW-HIGH[/kind+kind...]:STEPS` (object-count range, question kinds,
steps); after the last phase, `--objects` and `--kinds` apply.

```bash
python benchmarks/demo_learnability.py --kinds colour --objects 1 1 --steps 100         # colour alone: ~50 steps
python benchmarks/demo_learnability.py --kinds colour where --objects 1 1 --steps 400   # both: ~200 steps
python benchmarks/demo_learnability.py --steps 5000 --eval-every 500                    # the demo's mix: stuck
python benchmarks/demo_learnability.py --quick                                          # smoke test, seconds
```

Writes `benchmarks/results/demo_learnability_<name>.json` (the arguments, the machine, the accuracy curve).
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import torch
from common import machine_info, write_report
from transformers.modeling_outputs import BaseModelOutputWithPooling

from transformers_sqllava.demo.scenes import QuestionKind, answer, generate_scene, sample_question
from transformers_sqllava.demo.train import DemoTrainingConfig, build_demo_model, build_demo_processor
from transformers_sqllava.demo.vision_pretraining import (
    CellCodebook,
    cell_contents,
    freeze_image_path,
    pretrain_vision,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
EVAL_SEED = 10**6  # training scenes are seeds 0, 1, 2, ...; evaluation scenes (and question draws) start here
ALL_KINDS = [kind.value for kind in QuestionKind if kind is not QuestionKind.DESCRIBE]


def parse_schedule(text: str) -> list[tuple[tuple[int, int], list[str], int]]:
    """`"1-1/colour+shape:200,1-2:400"` -> `[((1, 1), ["colour", "shape"], 200), ((1, 2), ALL_KINDS, 400)]`."""
    phases = []
    for part in filter(None, text.split(",")):
        head, steps = part.split(":")
        objects, _, kinds = head.partition("/")
        low, high = (int(value) for value in objects.split("-"))
        phases.append(((low, high), kinds.split("+") if kinds else ALL_KINDS, int(steps)))
    return phases


class QuestionStream:
    """Single-question samples from seeded scenes, the object range and kinds given by the curriculum's phase."""

    def __init__(
        self, processor, image_size: int, seed: int = 0, question_before_image: bool = False, oracle: bool = False
    ):
        self.processor, self.image_size = processor, image_size
        self.tokenizer = processor.tokenizer
        self.rng = random.Random(seed)
        self.question_before_image, self.oracle = question_before_image, oracle

    def sample(self, scene_seed: int, objects: tuple[int, int], kinds: list[str], rng: random.Random):
        scene = generate_scene(scene_seed, image_size=self.image_size, num_objects=objects)
        try:
            question = sample_question(rng, scene, kinds=[QuestionKind(kind) for kind in kinds])
        except ValueError:  # e.g. two identical objects and only "the REF" kinds: nothing is answerable
            question = sample_question(rng, scene, kinds=[QuestionKind.COUNT])
        image = [self.processor.image_token_id] * self.processor.image_seq_length
        encode = lambda text: self.tokenizer(text, add_special_tokens=False).input_ids
        if self.question_before_image:  # the image tokens can attend to the question
            prompt = [self.tokenizer.bos_token_id] + encode(f"Q: {question.text}") + image + encode(" A:")
        else:
            prompt = [self.tokenizer.bos_token_id] + image + encode(f"Q: {question.text} A:")
        target = self.tokenizer(answer(question, scene), add_special_tokens=False).input_ids
        return prompt + target, [-100] * len(prompt) + target, scene, question.kind.value

    def batch(self, scene_seeds, objects, kinds, rng: random.Random | None = None):
        """Padded tensors for the model and each sample's kind; questions drawn from `rng` (default: the stream's)."""
        rng = rng or self.rng
        samples = [self.sample(seed, objects, kinds, rng) for seed in scene_seeds]
        length = max(len(ids) for ids, *_ in samples)
        input_ids = torch.zeros(len(samples), length, dtype=torch.long)
        labels = torch.full((len(samples), length), -100)
        attention_mask = torch.zeros(len(samples), length, dtype=torch.long)
        for row, (ids, target, _, _) in enumerate(samples):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(ids)] = torch.tensor(target)
            attention_mask[row, : len(ids)] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        scenes, kinds = [scene for *_, scene, _ in samples], [kind for *_, kind in samples]
        if self.oracle:  # the "pixels" are the true cell contents, which the oracle image path turns into codes
            return batch | {"pixel_values": torch.stack([cell_contents(scene) for scene in scenes])}, kinds
        pixel_values = self.processor.image_processor([scene.render() for scene in scenes], return_tensors="pt")
        return batch | {"pixel_values": pixel_values.pixel_values}, kinds


def use_oracle_image_features(model) -> None:
    """Replace the model's image path by a perfect one: each image token is the [`CellCodebook`] code of its cell's
    true contents (what stage 0 trains the real image path to write), so a run measures the language model alone."""
    codebook = CellCodebook(model.config.text_config.hidden_size)

    def get_image_features(pixel_values, **kwargs):  # `pixel_values` are the cell contents, see `QuestionStream`
        return BaseModelOutputWithPooling(pooler_output=list(codebook(pixel_values)))

    model.model.get_image_features = get_image_features


def evaluation_batch(stream: QuestionStream, objects, kinds, num_scenes: int):
    """The evaluation's scenes and questions: unseen seeds and their own seeded question draws, so every call (every
    point of a curve) asks the same questions whatever training drew in between."""
    scene_seeds = range(EVAL_SEED, EVAL_SEED + num_scenes)
    return stream.batch(scene_seeds, objects, kinds, rng=random.Random(EVAL_SEED))


@torch.no_grad()
def evaluate(model, stream: QuestionStream, objects, kinds, num_scenes: int) -> dict[str, float]:
    """Teacher-forced accuracy per kind: an answer is right when every one of its tokens is the arg-max."""
    model.eval()
    batch, sample_kinds = evaluation_batch(stream, objects, kinds, num_scenes)
    labels = batch.pop("labels")
    predictions = model(**batch).logits.argmax(-1)[:, :-1]
    targets = labels[:, 1:]
    right = ((predictions == targets) | (targets == -100)).all(dim=1)
    per_kind = defaultdict(list)
    for kind, correct in zip(sample_kinds, right.tolist()):
        per_kind[kind].append(correct)
    model.train()
    scores = {kind: sum(values) / len(values) for kind, values in sorted(per_kind.items())}
    return {"all": right.float().mean().item()} | scores


def run(args) -> dict:
    """Train and evaluate as `args` say; torch's thread count is `args.threads` meanwhile and restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _train_and_evaluate(args)
    finally:
        torch.set_num_threads(threads)  # callers in the same process (the test suite) keep their own setting


def _train_and_evaluate(args) -> dict:
    config = replace(
        DemoTrainingConfig(),
        patch_size=args.patch_size,
        vision_position_init_std=args.vision_position_std,
        text_hidden_size=args.text_hidden_size,
        text_intermediate_size=3 * args.text_hidden_size,
        text_layers=args.text_layers,
        text_attention_heads=args.text_attention_heads,
        seed=args.seed,
    )
    processor = build_demo_processor(config.image_size, config.patch_size)
    model = build_demo_model(config, processor).train()
    if args.no_prototype_extractor:  # an ablation: the projector then sees the vision tower's tokens as they are
        model.model.multi_modal_projector.prototype_extractor = None
        model.config.use_prototype_extractor = False
    if args.vision_pretraining_steps:  # the demo's stage 0, then its image path is frozen
        pretrain_vision(model, processor, args.vision_pretraining_steps, seed=args.seed, log_every=10**9)
        freeze_image_path(model)
    if args.oracle_image_features:
        use_oracle_image_features(model)
    stream = QuestionStream(
        processor,
        config.image_size,
        seed=args.seed,
        question_before_image=args.question_before_image,
        oracle=args.oracle_image_features,
    )
    phases = parse_schedule(args.schedule)
    final = (tuple(args.objects), args.kinds or ALL_KINDS)

    def phase_at(step: int):
        end = 0
        for objects, kinds, steps in phases:
            end += steps
            if step < end:
                return objects, kinds
        return final

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.01)
    warmup = max(1, args.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
    )
    curve, started = [], time.perf_counter()
    for step in range(args.steps):
        objects, kinds = phase_at(step)
        seeds = range(step * args.batch_size, (step + 1) * args.batch_size)
        batch, _ = stream.batch(seeds, objects, kinds)
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step(), schedule.step(), optimizer.zero_grad()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            # Questions of the kinds being trained now, about unseen-seed scenes of the final object range.
            accuracy = evaluate(model, stream, final[0], kinds, args.eval_scenes)
            curve.append({"step": step + 1, "seconds": round(time.perf_counter() - started, 1), **accuracy})
            print(" ".join(f"{key} {value:.2f}" if isinstance(value, float) else f"{key} {value}"
                           for key, value in curve[-1].items()), flush=True)  # fmt: skip
    return {"arguments": vars(args), "machine": machine_info(), "curve": curve}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="run", help="Report name: results/demo_learnability_<name>.json.")
    parser.add_argument("--objects", type=int, nargs=2, default=[1, 4], help="Object-count range after the schedule.")
    parser.add_argument("--kinds", nargs="*", choices=ALL_KINDS, help="Question kinds after the schedule (all).")
    parser.add_argument("--schedule", default="", help="Curriculum phases LOW-HIGH[/kind+kind]:STEPS, comma-separated")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--patch-size", type=int, default=24, help="24: one token per grid cell; 12: the demo's 2x2.")
    parser.add_argument("--text-hidden-size", type=int, default=128)
    parser.add_argument("--text-layers", type=int, default=3)
    parser.add_argument("--text-attention-heads", type=int, default=4)
    parser.add_argument(
        "--vision-position-std",
        type=float,
        default=0.02,
        help="Std of CLIP's position embeddings at init: CLIP's 0.02 by default (the results before stage 0 existed); "
        "the demo uses 1.0.",
    )
    parser.add_argument(
        "--vision-pretraining-steps",
        type=int,
        default=0,
        help="Run the demo's stage 0 (batch 64) this many steps first and freeze the image path; 0: end to end.",
    )
    parser.add_argument(
        "--oracle-image-features",
        action="store_true",
        help="Image tokens are the exact cell codes of the scene (a perfect image path): the language model alone.",
    )
    parser.add_argument(
        "--question-before-image",
        action="store_true",
        help="Samples <s>Q: <question><image>... A: <answer> (the demo's order) instead of the image first.",
    )
    parser.add_argument(
        "--no-prototype-extractor", action="store_true", help="Ablation: drop the prototype extractor from the model."
    )
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--eval-scenes", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="A few steps at tiny evaluation size (smoke test).")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.batch_size, args.eval_every, args.eval_scenes, args.name = 4, 4, 2, 8, "quick"
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    report = run(args)
    columns = sorted({key for row in report["curve"] for key in row} - {"step", "seconds", "all"})
    table = "| step | seconds | all | " + " | ".join(columns) + " |\n|" + "---|" * (len(columns) + 3) + "\n"
    for row in report["curve"]:
        cells = [f"{row[key]:.2f}" if key in row else "-" for key in ["all", *columns]]
        table += f"| {row['step']} | {row['seconds']} | " + " | ".join(cells) + " |\n"
    write_report(RESULTS_DIR, f"demo_learnability_{args.name}", report, table)
    return report


if __name__ == "__main__":
    main()
