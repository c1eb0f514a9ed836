"""A user's mistake through the `sqllava` command is one line, `sqllava COMMAND: error: ...`, and exit status 2;
`--debug` (or `SQLLAVA_DEBUG=1`) shows the traceback instead; a bug keeps its traceback; Ctrl-C is status 130. And the
offline demo makes no Hub call.

The console script runs in a subprocess, as a user runs it. Every error here happens before a model is loaded (or
loads only the tiny demo checkpoint), so each run costs about the import of transformers_sqllava.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx2
import huggingface_hub
import huggingface_hub.file_download
import jinja2
import pytest
import transformers.utils.hub
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
from sqllava_tiny import picture

from transformers_sqllava import SQLlavaForConditionalGeneration, SQLlavaProcessor
from transformers_sqllava.cli import EXIT_INTERRUPTED, EXIT_USER_ERROR, ReportedError, main
from transformers_sqllava.commands import generate
from transformers_sqllava.demo.record import DEFAULT_CHECKPOINT
from transformers_sqllava.demo.run import load_demo_model

SQLLAVA = Path(sys.executable).parent / "sqllava"  # the console script of this environment
# Without the installed script: the launcher itself, which the script calls.
LAUNCHER = [sys.executable, "-c", "import sqllava_cli; raise SystemExit(sqllava_cli.main())"]


def sqllava(*args: str, env: dict | None = None, script: str | None = None) -> subprocess.CompletedProcess:
    """Run `sqllava ARGS`; `script`: Python run first, in the same process, then the launcher."""
    command = [str(SQLLAVA)] if SQLLAVA.exists() and script is None else list(LAUNCHER)
    if script is not None:
        command[2] = script + "\n" + command[2]
    # Offline: a Hub-shaped id must fail at once, not after retrying a network that tests do not have.
    environment = {key: value for key, value in os.environ.items() if key != "SQLLAVA_DEBUG"}
    environment.update(
        {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", **(env or {})}
    )
    return subprocess.run([*command, *args], capture_output=True, text=True, check=False, timeout=300, env=environment)


def assert_one_error_line(result: subprocess.CompletedProcess, command: str, *key_words: str) -> str:
    lines = result.stderr.splitlines()
    assert result.returncode == EXIT_USER_ERROR, result.stderr
    assert len(lines) == 1, result.stderr
    (line,) = lines
    assert line.startswith(f"sqllava {command}: error: "), line
    for words in key_words:
        assert words in line, line
    assert "Traceback" not in result.stderr and result.stdout == ""
    return line


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-errors")
    image = folder / "image.png"
    picture(3, width=16).save(image)
    not_an_image = folder / "notes.png"
    not_an_image.write_text("not a PNG\n")
    empty = folder / "empty.png"
    empty.touch()
    not_a_model = folder / "not-a-model"
    not_a_model.mkdir()
    (not_a_model / "weights.bin").write_bytes(b"")
    return {
        "image": str(image),
        "not_an_image": str(not_an_image),
        "empty": str(empty),
        "not_a_model": str(not_a_model),
        "folder": str(folder),
    }


def generate_args(model: str, image: str, *extra: str) -> list[str]:
    return ["generate", "--model", model, "--image", image, "--prompt", "What is this?", "--device", "cpu", *extra]


# --- Through the console script -------------------------------------------------------------------------------------


def test_missing_model_folder_is_named_as_such(files):
    result = sqllava(*generate_args("./no-such-dir", files["image"]))
    assert_one_error_line(result, "generate", "--model ./no-such-dir: no such folder, and not a Hub id")
    assert "Repo id must" not in result.stderr  # what transformers says of a path that does not exist


def test_hub_shaped_model_id_not_found_offline(files):
    result = sqllava(*generate_args("no-such-owner/no-such-model", files["image"]))
    assert_one_error_line(
        result, "generate", "--model no-such-owner/no-such-model: no such folder", "not in the Hub cache", "offline"
    )


def test_folder_that_is_not_a_checkpoint(files):
    result = sqllava(*generate_args(files["not_a_model"], files["image"]))
    assert_one_error_line(result, "generate", f"--model {files['not_a_model']}: no config.json", "sqllava convert")


@pytest.mark.parametrize(
    "image, key_words",
    [
        ("missing.png", "no such file"),
        ("not_an_image", "not an image that can be read"),
    ],
)
def test_bad_image_is_named(files, image, key_words):
    path = files.get(image, os.path.join(files["folder"], image))
    result = sqllava(*generate_args("demo", path))
    assert_one_error_line(result, "generate", f"--image {path}: {key_words}")


def test_bad_flag_combination(files):
    result = sqllava("generate", "--model", "demo", "--image", files["image"], "--self-question", "0")
    assert_one_error_line(result, "generate", "--self-question needs N >= 1")


def test_convert_missing_model_path(tmp_path):
    result = sqllava("convert", "--model-path", "./no-such-checkpoint", "--output-dir", str(tmp_path / "out"))
    assert_one_error_line(result, "convert", "--model-path", "./no-such-checkpoint", "not a directory")
    assert not (tmp_path / "out").exists()


def test_demo_missing_checkpoint(tmp_path):
    result = sqllava("demo", "--checkpoint", str(tmp_path / "nothing"), "--output-dir", str(tmp_path / "out"))
    assert_one_error_line(result, "demo", f"--checkpoint {tmp_path / 'nothing'}: no such folder")
    result = sqllava("demo", "--checkpoint", str(tmp_path), "--output-dir", str(tmp_path / "out"))
    assert_one_error_line(result, "demo", "is not a demo checkpoint", "demo_training.json")


@pytest.mark.parametrize(
    "where",
    ["before the command", "after the command", "SQLLAVA_DEBUG=1"],
)
def test_debug_shows_the_traceback(files, where):
    args = generate_args("./no-such-dir", files["image"])
    env = None
    if where == "before the command":
        args = ["--debug", *args]
    elif where == "after the command":
        args = [*args, "--debug"]
    else:
        env = {"SQLLAVA_DEBUG": "1"}
    result = sqllava(*args, env=env)
    assert result.returncode == 1  # Python's status for an uncaught exception
    assert result.stderr.startswith("Traceback (most recent call last):"), result.stderr
    assert (
        result.stderr.rstrip().splitlines()[-1].startswith("FileNotFoundError: --model ./no-such-dir: no such folder")
    )
    assert "sqllava generate: error:" not in result.stderr


# `generate.run` replaced in the launcher's process: what the command does when the work raises this.
RAISES = "import transformers_sqllava.commands.generate as g\ndef run(args):\n    raise {}\ng.run = run\n"


def test_ctrl_c_is_one_line_and_status_130(files):
    result = sqllava(*generate_args("demo", files["image"]), script=RAISES.format("KeyboardInterrupt"))
    assert result.returncode == EXIT_INTERRUPTED
    assert result.stderr == "sqllava generate: interrupted\n"


def test_a_bug_keeps_its_traceback(files):
    script = RAISES.format("IndexError('list index out of range')")
    result = sqllava(*generate_args("demo", files["image"]), script=script)
    assert result.returncode == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert result.stderr.rstrip().endswith("IndexError: list index out of range")
    assert "error:" not in result.stderr.splitlines()[0]


# --- In the process: the error classes, and Hub errors that need a network to happen for real -------------------


@pytest.mark.parametrize(
    "error, key_words",
    [
        (ValueError("a bad value"), "a bad value"),
        (TypeError("a bad type"), "a bad type"),
        (FileNotFoundError("missing.json"), "missing.json"),
        (OSError("disk full"), "disk full"),
        (jinja2.TemplateError("Conversation roles must alternate"), "Conversation roles must alternate"),
        (ValueError("several\n\nlines\n  of text"), "several lines of text"),
    ],
)
def test_user_error_classes_are_one_line(monkeypatch, capsys, files, error, key_words):
    def run(args):
        raise error

    monkeypatch.setattr(generate, "run", run)
    with pytest.raises(ReportedError) as raised:
        main(generate_args("demo", files["image"]))
    assert raised.value.code == EXIT_USER_ERROR and str(raised.value) == key_words
    assert capsys.readouterr().err == f"sqllava generate: error: {key_words}\n"


@pytest.mark.parametrize(
    "image, said", [("empty", "the file is empty (0 bytes)."), ("folder", "a folder, not an image file.")]
)
def test_image_that_is_no_file_to_read(capsys, files, image, said):
    with pytest.raises(ReportedError):
        main(generate_args("demo", files[image]))
    assert capsys.readouterr().err == f"sqllava generate: error: --image {files[image]}: {said}\n"


@pytest.mark.parametrize("value, debug", [("1", True), ("true", True), ("0", False), ("", False), ("off", False)])
def test_debug_environment_variable(monkeypatch, files, value, debug):
    monkeypatch.setenv("SQLLAVA_DEBUG", value)
    with pytest.raises(FileNotFoundError if debug else ReportedError):
        main(generate_args("./no-such-dir", files["image"]))


def test_checkpoint_folder_missing_its_weights(capsys, tmp_path, files):
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(DEFAULT_CHECKPOINT, checkpoint)
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(ReportedError):
        main(generate_args(str(checkpoint), files["image"]))
    line = capsys.readouterr().err.splitlines()[-1]  # after transformers' progress bar, if any
    assert line.startswith(f"sqllava generate: error: --model {checkpoint}: cannot load the checkpoint in this folder")
    assert "model.safetensors" in line


def test_a_bug_is_not_a_user_error(monkeypatch, files):
    def run(args):
        raise KeyError("image_token_id")

    monkeypatch.setattr(generate, "run", run)
    with pytest.raises(KeyError):
        main(generate_args("demo", files["image"]))


def _hub_error(error_class):
    request = httpx2.Request("GET", "https://huggingface.co/api/models/owner/name")
    return error_class("Repository Not Found for url", response=httpx2.Response(404, request=request))


@pytest.mark.parametrize(
    "error_class, said",
    [
        (RepositoryNotFoundError, "no Hub repository of that id (a private one needs a login: `hf auth login`)."),
        (GatedRepoError, "the Hub repository is gated: request access on its page, then log in (`hf auth login`)."),
    ],
)
def test_hub_errors_name_the_model(monkeypatch, capsys, files, error_class, said):
    """transformers re-raises these as an `OSError` in its own words; the line says what happened and what to do."""

    def download(*args, **kwargs):
        request = httpx2.Request("GET", "https://huggingface.co/api/models/owner/name")
        raise error_class("Repository Not Found for url", response=httpx2.Response(404, request=request))

    for module in (huggingface_hub, huggingface_hub.file_download, transformers.utils.hub):
        for name in ("hf_hub_download", "snapshot_download"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, download)
    with pytest.raises(ReportedError):
        main(generate_args("owner/name", files["image"]))
    assert capsys.readouterr().err == f"sqllava generate: error: --model owner/name: no such folder, and {said}\n"


# --- The offline demo -----------------------------------------------------------------------------------------------


# In the launcher's process, before it runs: every way to the network raises (and says so on stderr).
NO_NETWORK = """
import socket, httpx2
def refuse(*args, **kwargs):
    import sys
    print("NETWORK CALL", file=sys.stderr)
    raise OSError("no network in this test")
socket.socket.connect = socket.create_connection = socket.getaddrinfo = refuse
httpx2.Client.send = refuse
"""


def test_demo_command_runs_with_no_network(tmp_path):
    """The whole `sqllava demo`, a small one, with HF_HUB_OFFLINE unset and the network refused."""
    args = ["--num-shown", "1", "--num-eval-scenes", "2", "--questions-per-scene", "1"]
    args += ["--num-self-questioning-scenes", "1", "--questions-asked-per-scene", "1"]
    result = sqllava("demo", *args, "--output-dir", str(tmp_path), env={"HF_HUB_OFFLINE": ""}, script=NO_NETWORK)
    assert result.returncode == 0, result.stderr
    assert "NETWORK CALL" not in result.stderr
    assert "Held-out results" in result.stdout and len(list(tmp_path.glob("*.png"))) == 1


@pytest.fixture
def no_hub(monkeypatch):
    """The Hub's downloads (under every name transformers imports them by) and its HTTP client raise; returns the
    calls attempted."""
    attempted = []

    def refuse(name):
        def call(*args, **kwargs):
            attempted.append(name)
            raise AssertionError(f"the offline demo called {name}")

        return call

    for module in (huggingface_hub, huggingface_hub.file_download, transformers.utils.hub):
        for name in ("hf_hub_download", "snapshot_download", "model_info", "list_repo_files"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, refuse(name))
    monkeypatch.setattr(httpx2.Client, "send", refuse("httpx2.Client.send"))
    return attempted


def test_demo_model_loads_with_no_hub_call(monkeypatch, no_hub):
    local_files_only = []
    for cls in (SQLlavaForConditionalGeneration, SQLlavaProcessor):

        def spy(cls, *args, _original=cls.from_pretrained.__func__, **kwargs):
            local_files_only.append(kwargs.get("local_files_only"))
            return _original(cls, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    _, _, record = load_demo_model()
    assert no_hub == []
    assert local_files_only == [True, True]  # enforced, not merely unneeded: a missing file is never looked up
    assert record["training_config"]["question_before_image"] is True


def test_demo_checkpoint_missing_a_file_is_not_downloaded(tmp_path, no_hub):
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(DEFAULT_CHECKPOINT, checkpoint)
    (checkpoint / "tokenizer.json").unlink()
    with pytest.raises((OSError, ValueError)):
        load_demo_model(checkpoint)
    assert no_hub == []
