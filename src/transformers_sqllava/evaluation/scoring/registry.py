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
"""Benchmark name -> scorer, with each scorer's file arguments under the original script's names, and the command
line `sqllava eval score BENCHMARK --...`.

```python
>>> from transformers_sqllava.evaluation.scoring.registry import SCORERS, main
>>> SCORERS["pope"].original
'llava/eval/eval_pope.py'
>>> main(["pope", "--annotation-dir", "pope/coco", "--question-file", "pope/llava_pope_test.jsonl",
...       "--result-file", "answers.jsonl"])  # doctest: +SKIP
{"benchmark": "pope", "score": 86.7, ...}
0
```

`main` prints one JSON object, the scorer's result, as the last line of standard output (and writes it to
`--output-json FILE` when given); it returns 0, or 1 after printing `error: ...` to standard error when the files
are missing or malformed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .caption import METRICS, score_caption
from .judged import LLAVA_BENCH_JUDGE_MODEL, MMVET_JUDGE_MODEL, score_llava_bench, score_mmvet
from .mme import score_mme
from .multiple_choice import score_mmbench, score_seed
from .pope import ANSWER_PARSINGS, score_pope
from .scienceqa import score_scienceqa
from .vqa import score_gqa, score_textvqa, score_vizwiz, score_vqav2


@dataclass(frozen=True)
class Argument:
    r"""
    One command-line argument of a scorer.

    Args:
        flags (`tuple[str, ...]`): As the original script spells them (`"--annotation-dir"`, `"-q"`,
            `"--results_dir"`).
        dest (`str`): The scorer's keyword argument.
        help (`str`): The help text.
        options (`dict`): Further `argparse.add_argument` options (`required`, `nargs`, `type`, `choices`, ...).
    """

    flags: tuple[str, ...]
    dest: str
    help: str
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Scorer:
    r"""
    A benchmark's scorer.

    Args:
        name (`str`): The benchmark, as `sqllava eval score` names it.
        function (`Callable[..., dict]`): `score_<benchmark>(**file_arguments) -> dict`.
        original (`str`): The original script whose numbers it reproduces.
        description (`str`): One line for `--help`.
        arguments (`tuple[Argument, ...]`): Its command-line arguments.
    """

    name: str
    function: Callable[..., dict]
    original: str
    description: str
    arguments: tuple[Argument, ...]


def _file(flags, dest, help, **options) -> Argument:
    flags = (flags,) if isinstance(flags, str) else tuple(flags)
    return Argument(flags, dest, help, options)


def _required(flags, dest, help, **options) -> Argument:
    return _file(flags, dest, help, required=True, **options)


def _mmbench_cn(**kwargs) -> dict:
    return {**score_mmbench(**kwargs), "benchmark": "mmbench-cn"}


_MMBENCH_ARGUMENTS = (
    _required("--annotation-file", "annotation_file", "the MMBench TSV (e.g. mmbench_dev_20230712.tsv)"),
    _file("--result-dir", "result_dir", "folder of <experiment>.jsonl answers"),
    _file("--upload-dir", "upload_dir", "folder for <experiment>.xlsx (the upload sheet)"),
    _file("--experiment", "experiment", "the run's name"),
    _file("--result-file", "result_file", "the answers, instead of --result-dir/--experiment"),
    _file("--result-upload-file", "result_upload_file", "the sheet's path, instead of --upload-dir"),
)
_JUDGE_HELP = "'openai' (OPENAI_API_KEY, OPENAI_BASE_URL; the default) or package.module:function"

SCORERS: dict[str, Scorer] = {
    scorer.name: scorer
    for scorer in (
        Scorer("vqav2", score_vqav2, "scripts/convert_vqav2_for_submission.py",
               "VQAv2 upload file (EvalAI); official accuracy with --annotation-file", (
            _file("--dir", "dir", "the original's data folder", default="./playground/data/eval/vqav2"),
            _file("--ckpt", "ckpt", "the run's name (answers/<split>/<ckpt>/merge.jsonl)"),
            _file("--split", "split", "the split's name, e.g. llava_vqav2_mscoco_test-dev2015"),
            _file("--result-file", "result_file", "the answers, instead of the path from --dir/--split/--ckpt"),
            _file("--test-split", "test_split", "test questions (default <dir>/llava_vqav2_mscoco_test2015.jsonl)"),
            _file("--result-upload-file", "result_upload_file", "the upload file's path"),
            _file("--annotation-file", "annotation_file", "official VQA annotations (e.g. val2014) to score against"),
        )),
        Scorer("gqa", score_gqa, "scripts/convert_gqa_for_eval.py + GQA eval.py --tier testdev_balanced",
               "GQA accuracy (testdev-balanced)", (
            _file("--src", "src", "the model's answers (merge.jsonl)"),
            _file("--dst", "dst", "where to write testdev_balanced_predictions.json"),
            _file("--questions", "questions", "testdev_balanced_questions.json"),
            _file("--predictions", "predictions", "already converted predictions, instead of --src"),
        )),
        Scorer("vizwiz", score_vizwiz, "scripts/convert_vizwiz_for_submission.py", "VizWiz upload file (EvalAI)", (
            _required("--annotation-file", "annotation_file", "llava_test.jsonl"),
            _required("--result-file", "result_file", "the model's answers"),
            _required("--result-upload-file", "result_upload_file", "the upload file's path"),
        )),
        Scorer("textvqa", score_textvqa, "llava/eval/eval_textvqa.py", "TextVQA accuracy (m4c evaluator)", (
            _required("--annotation-file", "annotation_file", "TextVQA_0.5.1_val.json"),
            _file("--result-file", "result_file", "the model's answers"),
            _file("--result-dir", "result_dir", "score every .jsonl of this folder too"),
        )),
        Scorer("pope", score_pope, "llava/eval/eval_pope.py", "POPE F1 / accuracy per category", (
            _required("--annotation-dir", "annotation_dir", "folder of coco_pope_<category>.json"),
            _required("--question-file", "question_file", "llava_pope_test.jsonl"),
            _required("--result-file", "result_file", "the model's answers"),
            _file("--answer-parsing", "answer_parsing", "how answers are read (default: llava, the original)",
                  choices=ANSWER_PARSINGS, default="llava"),
        )),
        Scorer("scienceqa", score_scienceqa, "llava/eval/eval_science_qa.py", "ScienceQA accuracy (SQA-I)", (
            _required("--base-dir", "base_dir", "folder of problems.json and pid_splits.json"),
            _required("--result-file", "result_file", "the model's answers"),
            _file("--output-file", "output_file", "where to write the per-problem analysis"),
            _file("--output-result", "output_result", "where to write the result summary"),
            _file("--split", "split", "split of pid_splits.json", default="test"),
        )),
        Scorer("mme", score_mme, "MME/convert_answer_to_mme.py + eval_tool/calculation.py",
               "MME Perception / Cognition scores", (
            _file("--results_dir", "results_dir", "folder of <task>.txt files (written there with --answers-file)"),
            _file("--answers-file", "answers_file", "the model's answers, converted first"),
            _file("--data-path", "data_path", "MME_Benchmark_release_version, for --answers-file"),
        )),
        Scorer("mmbench", score_mmbench, "scripts/convert_mmbench_for_submission.py",
               "MMBench upload sheet (+ a local estimate on dev)", _MMBENCH_ARGUMENTS),
        Scorer("mmbench-cn", _mmbench_cn, "scripts/convert_mmbench_for_submission.py",
               "MMBench-CN upload sheet (+ a local estimate on dev)", _MMBENCH_ARGUMENTS),
        Scorer("seed", score_seed, "scripts/convert_seed_for_submission.py", "SEED-Bench accuracy + upload file", (
            _required("--annotation-file", "annotation_file", "SEED-Bench.json"),
            _required("--result-file", "result_file", "the model's answers"),
            _file("--result-upload-file", "result_upload_file", "the upload file's path"),
        )),
        Scorer("llava-bench", score_llava_bench, "llava/eval/eval_gpt_review_bench.py + summarize_gpt_review.py",
               "LLaVA-Bench (in-the-wild) relative score, GPT-reviewed", (
            _file(("-q", "--question"), "question", "questions.jsonl"),
            _file(("-c", "--context"), "context", "context.jsonl"),
            _file(("-a", "--answer-list"), "answer_list", "answers_gpt4.jsonl and the model's answers", nargs="+"),
            _file(("-r", "--rule"), "rule", "rule.json (default: its LLaVA-Bench entries)"),
            _file(("-o", "--output"), "output", "the review file (resumed)"),
            _file("--max-tokens", "max_tokens", "review length limit", type=int, default=1024),
            _file("--judge", "judge", _JUDGE_HELP),
            _file("--judge-model", "judge_model", "the judge model", default=LLAVA_BENCH_JUDGE_MODEL),
            _file(("-f", "--files"), "files", "review files to summarise instead", nargs="*"),
            _file(("-i", "--ignore"), "ignore", "question ids to leave out", nargs="*"),
        )),
        Scorer("mm-vet", score_mmvet, "MM-Vet mm-vet_evaluator.py (+ scripts/convert_mmvet_for_eval.py)",
               "MM-Vet total and per capability, GPT-graded", (
            _required("--mmvet_path", "mmvet_path", "the MM-Vet folder (mm-vet.json)"),
            _file("--result_file", "result_file", "the results JSON (written there with --src)"),
            _file("--src", "src", "LLaVA's answers, converted first"),
            _file("--result_path", "result_path", "folder of the grade file", default="results"),
            _file("--gpt_model", "gpt_model", "the grader model", default=MMVET_JUDGE_MODEL),
            _file("--use_sub_set", "use_sub_set", "only the Bard subset", action="store_true"),
            _file("--decimal_places", "decimal_places", "rounding", type=int, default=1),
            _file("--num_run", "num_run", "grading runs", type=int, default=1),
            _file("--judge", "judge", _JUDGE_HELP),
        )),
        Scorer("caption", score_caption, "sqllava/eval/eval_image_caption.py",
               "BLEU, METEOR, ROUGE-L, CIDEr-D, SPICE", (
            _required("--answers-file", "answers_file", "the model's captions"),
            _file("--annotation", "annotation", "COCO captions_val2014.json, or a Karpathy/Flickr/NoCaps list"),
            _file("--QA", "qa", "Conceptual Captions question file (label per question_id)"),
            _file("--max_words", "max_words", "prediction truncation", type=int, default=20),
            _file("--model_name", "model_name", "a label", default=""),
            _file("--dataset", "dataset", "a label", default=""),
            _file("--metrics", "metrics", f"a subset of {list(METRICS)}", nargs="+", choices=METRICS),
        )),
    )
}  # fmt: skip


def score(benchmark: str, **file_arguments) -> dict:
    """Run the scorer of `benchmark` (a key of [`SCORERS`]) on its file arguments."""
    if benchmark not in SCORERS:
        raise ValueError(f"Unknown benchmark {benchmark!r}: choose from {sorted(SCORERS)}.")
    return SCORERS[benchmark].function(**file_arguments)


def add_scorer_subparsers(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add one subcommand per benchmark (and `--output-json`) to `parser`, e.g. the CLI's `eval score` parser."""
    subparsers = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for scorer in SCORERS.values():
        subparser = subparsers.add_parser(
            scorer.name, help=scorer.description, description=f"{scorer.description}. Equals {scorer.original}."
        )
        for argument in scorer.arguments:
            subparser.add_argument(*argument.flags, dest=argument.dest, help=argument.help, **argument.options)
        subparser.add_argument("--output-json", dest="output_json", help="also write the result to this JSON file")
    return parser


def build_parser(prog: str = "sqllava eval score") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Score a benchmark's answer files as the original SQ-LLaVA / LLaVA scripts do."
    )
    return add_scorer_subparsers(parser)


def run_scorer_from_args(args: argparse.Namespace) -> dict:
    """Call the scorer named by `args.benchmark` with the parsed arguments; returns its result."""
    scorer = SCORERS[args.benchmark]
    kwargs = {argument.dest: getattr(args, argument.dest) for argument in scorer.arguments}
    if scorer.function is score_mmvet and kwargs.get("result_path") == "":
        kwargs["result_path"] = None
    return scorer.function(**kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    r"""
    `sqllava eval score BENCHMARK --<the original script's arguments> [--output-json FILE]`.

    Prints the result as one JSON object on the last line of standard output; returns the exit status.
    """
    args = build_parser().parse_args(argv)
    try:
        result = run_scorer_from_args(args)
    except (FileNotFoundError, ValueError, ImportError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyError as error:  # a record without a field the benchmark's format has
        print(f"error: a file lacks the field {error} that {args.benchmark}'s format has", file=sys.stderr)
        return 1
    text = json.dumps(result, default=_json_default)
    if args.output_json:
        path = Path(args.output_json).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, default=_json_default) + "\n", encoding="utf-8")
    print(text)
    return 0


def _json_default(value):
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)
