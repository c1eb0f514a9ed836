"""The `sqllava` command: a fast top level (`--help`, `--version`), defaults in every help, snake_case flags; and
`sqllava generate`: prompt mode (streamed or JSON), self-questioning mode (streamed or JSON), 4-bit loading, and the
shipped demo checkpoint asked the way it was trained."""

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from sqllava_tiny import picture, save_tiny_checkpoint, single_torch_thread

import transformers_sqllava
from transformers_sqllava import cli
from transformers_sqllava.cli import COMMANDS, main
from transformers_sqllava.commands.generate import load_model_and_processor
from transformers_sqllava.demo.record import DEFAULT_CHECKPOINT, load_training_record
from transformers_sqllava.demo.run import ANSWER_MAX_NEW_TOKENS, generate_answers, held_out_scenes, load_demo_model
from transformers_sqllava.self_questioning import description_conversation, generate_from_conversations

SQLLAVA = Path(sys.executable).parent / "sqllava"  # the console script of this environment


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_torch_thread():
        yield


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    image_path = folder / "image.png"
    picture(7, width=30).save(image_path)
    return {"model": save_tiny_checkpoint(folder / "sqllava-tiny"), "image": str(image_path)}


@pytest.fixture(scope="module")
def loaded(files):
    model, processor = load_model_and_processor(files["model"], device="cpu")
    image = processor.image_processor.fetch_images(files["image"])
    return model, processor, image


def generate_args(files, *extra) -> list[str]:
    return ["generate", "--model", files["model"], "--image", files["image"], "--device", "cpu", *extra]


def greedy_text(loaded, text: str, system_prompt: str, max_new_tokens: int = 8) -> str:
    model, processor, image = loaded
    (output,) = generate_from_conversations(
        model, processor, [description_conversation(image, text)], "assistant", system_prompt,
        do_sample=False, max_new_tokens=max_new_tokens,
    )
    return output


def test_prompt_is_answered_and_streamed(files, loaded, capsys):
    assert main(generate_args(files, "--prompt", "What is this?", "--max-new-tokens", "8")) == 0
    streamed = capsys.readouterr().out
    expected = greedy_text(loaded, "What is this?", "v1")  # greedy, v1 system prompt (the benchmarks' setting)
    assert expected and streamed.strip() == expected

    assert main(generate_args(files, "--prompt", "What is this?", "--max-new-tokens", "8", "--json")) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload == {"image": files["image"], "prompt": "What is this?", "answer": expected}


def test_self_question_json(files, loaded, capsys):
    args = generate_args(files, "--self-question", "2", "--answer-questions", "--max-new-tokens", "8", "--json")
    assert main([*args, "--seed", "0"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == {"image", "description", "questions", "dialogues"}
    assert payload["description"] == greedy_text(loaded, "Can you describe the image in detail?", "v1_sq")
    assert len(payload["questions"]) == 2
    assert [dialogue["question"] for dialogue in payload["dialogues"]] == payload["questions"]
    assert all(isinstance(dialogue["answer"], str) for dialogue in payload["dialogues"])

    assert main([*args, "--seed", "0"]) == 0  # the seed makes the sampled questions reproducible
    assert json.loads(capsys.readouterr().out) == payload

    assert main([*generate_args(files, "--self-question", "1", "--json"), "--description", "A red circle."]) == 0
    assert json.loads(capsys.readouterr().out)["description"] == "A red circle."


def test_self_question_streamed(files, loaded, capsys):
    args = generate_args(files, "--self-question", "2", "--answer-questions", "--max-new-tokens", "8", "--seed", "0")
    assert main(args) == 0
    out = capsys.readouterr().out
    headers = ["Description:", "Question 1:", "Answer 1:", "Question 2:", "Answer 2:"]
    positions = [out.find(header) for header in headers]
    assert positions[0] == 0 and positions == sorted(positions)
    description = out[len("Description:") : positions[1]].strip()
    assert description == greedy_text(loaded, "Can you describe the image in detail?", "v1_sq")
    assert re.search(r"Question 1: \S", out)


@pytest.mark.parametrize(
    "extra",
    [
        [],  # neither --prompt nor --self-question
        ["--prompt", "Q", "--self-question", "2"],
        ["--prompt", "Q", "--answer-questions"],
        ["--self-question", "0"],
    ],
)
def test_bad_arguments_exit(files, extra, capsys):
    with pytest.raises(SystemExit):
        main(generate_args(files, *extra))


def test_load_in_4bit(files, capsys):
    model, _ = load_model_and_processor(files["model"], device="cpu", load_in_4bit=True)
    quantization_config = model.config.quantization_config
    assert quantization_config.bnb_4bit_quant_type == "nf4"
    assert quantization_config.bnb_4bit_compute_dtype == torch.bfloat16  # on CPU, unless --dtype says otherwise
    assert type(model.model.language_model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    assert type(model.lm_head).__name__ == "Linear"  # the model class's default skip modules

    args = generate_args(files, "--prompt", "What is this?", "--max-new-tokens", "4", "--load-in-4bit", "--json")
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["prompt"] == "What is this?"


def test_snake_case_flags_work_as_typed(files, loaded, capsys):
    assert main(generate_args(files, "--prompt", "What is this?", "--max_new_tokens", "8", "--json")) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == greedy_text(loaded, "What is this?", "v1")
    assert main(generate_args(files, "--prompt", "What is this?", "--max_new_tokens=8", "--json")) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == greedy_text(loaded, "What is this?", "v1")


@pytest.mark.parametrize(
    "flag, suggestion",
    [("--model_path", "--model"), ("--model_name_or_path", "--model"), ("--max_tokens", "--max-new-tokens")],
)
def test_unknown_flag_names_the_right_one(files, capsys, flag, suggestion):
    with pytest.raises(SystemExit):
        main(["generate", flag, files["model"], "--image", files["image"], "--prompt", "Q"])
    assert f"unrecognized arguments: {flag} (did you mean {suggestion}?)" in capsys.readouterr().err


# --- The top level --------------------------------------------------------------------------------------------------


def run_sqllava(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    command = [str(SQLLAVA)] if SQLLAVA.exists() else [sys.executable, "-m", "transformers_sqllava.cli"]
    started = time.perf_counter()
    result = subprocess.run([*command, *args], capture_output=True, text=True, check=False, timeout=120)
    return result, time.perf_counter() - started


def test_help_is_fast():
    run_sqllava("--help")  # warm the file cache: the measured run is the second one
    result, seconds = run_sqllava("--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: sqllava")
    assert all(name in result.stdout for name in COMMANDS)
    # Aim: well under a second. Every subcommand module is imported lazily (see the next test); what remains is the
    # interpreter and whatever `import transformers_sqllava` itself costs, which the entry point pays first.
    assert seconds < 1.5, (
        f"`sqllava --help` took {seconds:.2f} s: the console script imports `transformers_sqllava` (its `__init__`) "
        "before `cli.py`; `cli.py` alone takes ~0.1 s (test_cli_module_imports_no_subcommand_nor_torch)."
    )


def test_cli_module_imports_no_subcommand_nor_torch():
    """`cli.py` alone, run from its file so that the package's `__init__` is not imported: `--help` lists every
    command without importing their modules, torch or transformers."""
    script = (
        "import runpy, sys\n"
        "sys.argv = ['sqllava', '--help']\n"
        "try:\n"
        f"    runpy.run_path({cli.__file__!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('torch', 'transformers', 'transformers_sqllava')\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in heavy))\n"
    )
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("[]") and "generate" in result.stdout
    assert seconds < 1.5, f"`cli.py --help` took {seconds:.2f} s"


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"sqllava {transformers_sqllava.__version__}\n"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_default_is_in_the_help(command):
    subparser = cli._subparser(cli.build_parser(command), command)
    text = " ".join(subparser.format_help().split())  # unwrapped
    for action in subparser._actions:
        if action.help in (None, argparse.SUPPRESS) or action.default in (None, False, argparse.SUPPRESS):
            continue
        assert f"(default: {action.default})" in text, action.option_strings


def test_top_level_parser_imports_only_the_invoked_command():
    script = (
        "import sys\n"
        "from transformers_sqllava.cli import build_parser\n"
        "build_parser()\n"
        "before = sorted(m for m in sys.modules if m.startswith('transformers_sqllava.commands.'))\n"
        "build_parser('demo')\n"
        "after = sorted(m for m in sys.modules if m.startswith('transformers_sqllava.commands.'))\n"
        "print(before, after)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "['transformers_sqllava.commands.demo']"]


def test_convert_dtypes_are_the_conversions():
    from transformers_sqllava.commands.convert import DTYPES
    from transformers_sqllava.conversion import SUPPORTED_DTYPES

    assert set(DTYPES) == set(SUPPORTED_DTYPES)


# --- The shipped demo checkpoint -------------------------------------------------------------------------------------

DEMO_QUESTIONS = ["How many circles are there?", "What colour is the triangle?", "Is there a red square?"]


@pytest.fixture(scope="module")
def demo_scene(tmp_path_factory):
    """A held-out scene of the demo (the first one `sqllava demo` shows), as a PNG and as the image the demo uses."""
    scene = held_out_scenes(load_training_record(DEFAULT_CHECKPOINT), 1)[0]
    image = scene.render()
    path = tmp_path_factory.mktemp("demo") / "scene.png"
    image.save(path)
    return str(path), image


def test_generate_asks_the_demo_model_as_the_demo_does(demo_scene, capsys):
    path, image = demo_scene
    model, processor, record = load_demo_model()
    training = record["training_config"]
    # What the newcomer's flags below say: the demo model's own system prompt, the question before the image.
    assert training["system_prompt"] == "A chat about the image." and training["question_before_image"] is True
    for question in DEMO_QUESTIONS:
        (expected,) = generate_answers(
            model, processor, [image], [question], ANSWER_MAX_NEW_TOKENS,
            question_before_image=True, system_prompt=training["system_prompt"],
        )  # fmt: skip
        newcomer = [
            "generate", "--model", str(DEFAULT_CHECKPOINT), "--image", path, "--prompt", question,
            "--system-prompt", "A chat about the image.", "--question-first", "--device", "cpu",
        ]  # fmt: skip
        assert main(newcomer) == 0
        assert capsys.readouterr().out.strip() == expected
        # `--model demo` is the shipped checkpoint, and its training record gives the same defaults.
        assert main(["generate", "--model", "demo", "--image", path, "--prompt", question, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["answer"] == expected


def test_demo_model_self_questions_with_its_training_prompts(demo_scene, capsys):
    path, _ = demo_scene
    assert main(["generate", "--model", "demo", "--image", path, "--self-question", "1", "--seed", "0", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["description"].startswith("There are") and len(payload["questions"]) == 1


@pytest.mark.parametrize(
    "extra",
    [
        ["--self-question", "1", "--question-first"],  # self-questioning puts the image first, as in training
        ["--prompt", "Q", "--description-prompt", "Describe."],
        ["--prompt", "Q", "--system-prompt", " "],
    ],
)
def test_bad_prompt_format_arguments_exit(demo_scene, extra):
    with pytest.raises(SystemExit):
        main(["generate", "--model", "demo", "--image", demo_scene[0], *extra])


def test_missing_image_exits_before_loading(tmp_path):
    with pytest.raises(SystemExit, match="no such file"):
        main(["generate", "--model", "demo", "--image", str(tmp_path / "missing.png"), "--prompt", "Q"])


# --- Errors (the subprocess cases are in test_cli_errors.py) ---------------------------------------------------------


def test_debug_flag_is_in_every_help_and_taken_on_either_side(files):
    assert "--debug" in cli.build_parser().format_help()
    for command in COMMANDS:
        assert "--debug" in cli._subparser(cli.build_parser(command), command).format_help()
    missing = ["generate", "--model", "demo", "--image", "missing.png", "--prompt", "Q"]
    for argv in (["--debug", *missing], [*missing, "--debug"]):
        with pytest.raises(FileNotFoundError, match="--image missing.png: no such file"):
            main(argv)


def test_user_error_exits_2_with_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--model", "demo", "--image", str(tmp_path / "missing.png"), "--prompt", "Q"])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"sqllava generate: error: --image {tmp_path / 'missing.png'}: no such file")


def test_a_commands_own_exit_message_is_one_error_line(monkeypatch, capsys, files):
    from transformers_sqllava.commands import generate

    def run(args):
        raise SystemExit("install the training extras first")

    monkeypatch.setattr(generate, "run", run)
    with pytest.raises(SystemExit) as exit_info:
        main(generate_args(files, "--prompt", "Q"))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "sqllava generate: error: install the training extras first\n"
