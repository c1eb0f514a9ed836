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
"""`sqllava eval run` throughput: questions per second at batch 1 (the original scripts' only batch size) vs larger
batches, with the answers checked identical, and what each answering mode costs, on the shipped demo checkpoint.

The questions are held-out demo scenes' questions in LLaVA's JSONL (`model_vqa_loader.py`'s format), answered through
`answer_question_file`, greedy, 8 new tokens at most (the demo's answers are 1-3 tokens). Each batch size answers the
whole file `--repeats` times (the first pass is a warm-up and not timed); the table gives the median questions per
second. The answering modes are timed at the largest batch size, with their generated tokens per question.

```bash
python benchmarks/eval_throughput.py                 # writes benchmarks/results/eval_throughput.{json,md}
python benchmarks/eval_throughput.py --quick         # small sizes, for the smoke test
```
"""

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info, write_report  # noqa: E402

from transformers_sqllava.commands.generate import checkpoint_prompt_format, load_model_and_processor  # noqa: E402
from transformers_sqllava.demo.record import DEFAULT_CHECKPOINT, load_training_record  # noqa: E402
from transformers_sqllava.demo.run import held_out_scenes, sample_questions  # noqa: E402
from transformers_sqllava.evaluation.answering import ANSWERING_MODES, AnsweringConfig  # noqa: E402
from transformers_sqllava.evaluation.runner import answer_question_file  # noqa: E402


def write_question_file(folder: Path, num_scenes: int, per_scene: int) -> Path:
    scenes = held_out_scenes(load_training_record(DEFAULT_CHECKPOINT), num_scenes)
    path = folder / "questions.jsonl"
    with open(path, "w") as file:
        for number, (index, text) in enumerate(sample_questions(scenes, per_scene, seed=0)):
            if not (folder / f"scene{index}.png").exists():
                scenes[index].render().save(folder / f"scene{index}.png")
            file.write(json.dumps({"question_id": number, "image": f"scene{index}.png", "text": text}) + "\n")
    return path


def timed_run(model, processor, question_file: Path, config: AnsweringConfig, batch_size: int, repeats: int):
    """`repeats` timed passes after one warm-up; returns the questions/s of each and the last pass's answers."""
    rates, tokens = [], 0
    for repeat in range(repeats + 1):
        answers_file = Path(tempfile.mkdtemp(dir=question_file.parent)) / "answers.jsonl"  # a fresh run, no resume
        torch.manual_seed(0)  # self-question samples its questions
        summary = answer_question_file(
            model, processor, question_file, answers_file, question_file.parent, answering=config,
            batch_size=batch_size, progress=False,
        )  # fmt: skip
        if repeat:
            rates.append(summary.questions_per_second)
        tokens = summary.generated_tokens / summary.num_answered
    answers = [json.loads(line)["text"] for line in answers_file.read_text().splitlines()]
    return rates, tokens, answers


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--num-scenes", type=int, default=100)
    parser.add_argument("--questions-per-scene", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="8 scenes, batch 1 and 4, one repeat")
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.num_scenes, args.questions_per_scene, args.repeats = [1, 4], 8, 2, 1
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        report = measure(args)
    finally:
        torch.set_num_threads(previous_threads)
    write_report(args.output_dir, "eval_throughput_quick" if args.quick else "eval_throughput", report, render(report))
    return report


def measure(args) -> dict:
    model, processor = load_model_and_processor(str(DEFAULT_CHECKPOINT), device="cpu", dtype="float32")
    trained = checkpoint_prompt_format(str(DEFAULT_CHECKPOINT))
    with tempfile.TemporaryDirectory() as folder:
        question_file = write_question_file(Path(folder), args.num_scenes, args.questions_per_scene)
        base = {"system_prompt": trained["system_prompt"], "question_first": trained["question_first"]}
        answer = AnsweringConfig(**base, generation_kwargs={"do_sample": False, "max_new_tokens": 8})
        batches, reference = {}, None
        for batch_size in args.batch_sizes:
            rates, tokens, answers = timed_run(model, processor, question_file, answer, batch_size, args.repeats)
            reference = answers if reference is None else reference
            batches[batch_size] = {"questions_per_second": rates, "identical_to_first": answers == reference}
        modes, largest = {}, max(args.batch_sizes)
        for mode in ANSWERING_MODES:
            config = AnsweringConfig(
                **base, mode=mode, description_prompt=trained["description_prompt"], num_questions=3,
                generation_kwargs={"do_sample": False, "max_new_tokens": 8 if mode == "answer" else 64},
            )  # fmt: skip
            rates, tokens, _ = timed_run(model, processor, question_file, config, largest, 1)
            modes[mode] = {"questions_per_second": rates, "generated_tokens_per_question": tokens}
    num_questions = args.num_scenes * args.questions_per_scene
    return {"machine": machine_info(), "num_questions": num_questions, "batch_sizes": batches, "modes": modes,
            "modes_batch_size": largest}  # fmt: skip


def render(report: dict) -> str:
    batches = report["batch_sizes"]
    first = statistics.median(next(iter(batches.values()))["questions_per_second"])
    lines = [
        f"`sqllava eval run` on the demo checkpoint, {report['num_questions']} questions, "
        f"{report['machine']['torch_threads']} threads ({report['machine']['cpu']})",
        "",
        "| batch size | questions/s (median) | speed-up | answers identical to the first row |",
        "|---|---|---|---|",
    ]
    for batch_size, row in batches.items():
        rate = statistics.median(row["questions_per_second"])
        lines.append(f"| {batch_size} | {rate:.1f} | {rate / first:.1f}x | {row['identical_to_first']} |")
    lines += [
        "",
        f"Answering modes at batch {report['modes_batch_size']}:",
        "",
        "| mode | questions/s | generated tokens per question |",
        "|---|---|---|",
    ]
    for mode, row in report["modes"].items():
        rate = statistics.median(row["questions_per_second"])
        lines.append(f"| {mode} | {rate:.1f} | {row['generated_tokens_per_question']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(main()))
