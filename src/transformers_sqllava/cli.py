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
"""The `sqllava` command.

Each subcommand lives in its own module under `transformers_sqllava.commands`, which exposes
`add_parser(subparsers, help=...)` (registers its sub-parser and sets `func`, a callable taking the parsed arguments
and returning an exit code) and `run(args)`. Adding a subcommand is one entry in [`COMMANDS`].

A subcommand's module is imported only when that subcommand is invoked (or its `--help` asked): `sqllava --help` and
`sqllava --version` build the top-level parser from [`COMMANDS`] alone, and import neither torch nor transformers.
Flags are spelled with dashes (`--max-new-tokens`); the snake_case spelling of Python and of the training scripts'
flags (`--max_new_tokens`) is accepted too.

Errors: a mistake of the user (a missing folder or image, a bad flag value, a Hub id that does not exist, no network)
is one line on stderr, `sqllava COMMAND: error: ...`, and exit status 2, as argparse reports a usage error. Anything
else is a bug and keeps its traceback. `--debug` (before or after the command) or `SQLLAVA_DEBUG=1` shows the
traceback of a user error too. Ctrl-C is one line and status 130. See docs/errors.md#the-command-line.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from collections.abc import Sequence

# name -> (module, one-line help). The help lives here, not in the module, so listing the commands imports nothing.
COMMANDS: dict[str, tuple[str, str]] = {
    "convert": (
        "transformers_sqllava.commands.convert",
        "convert a released SQ-LLaVA checkpoint to a transformers folder (and push it to the Hub)",
    ),
    "generate": (
        "transformers_sqllava.commands.generate",
        "answer a question about an image, or let the model ask its own questions (self-questioning)",
    ),
    "demo": (
        "transformers_sqllava.commands.demo",
        "offline demo: a tiny SQ-LLaVA answers and asks questions about generated scenes (no download)",
    ),
    "self-train": (
        "transformers_sqllava.commands.self_train",
        "self-training data from unlabeled images: STIC preferences, self-questioning preferences, descriptions",
    ),
    "ablate": (
        "transformers_sqllava.commands.ablate",
        "the paper's Table 3 ablation (Proto, SQ, ViT LoRA) trained and measured on the demo world",
    ),
    "eval": (
        "transformers_sqllava.commands.eval",
        "answer benchmark question files and score them as the paper's original scripts do (`run`, `score`)",
    ),
}
PROG = "sqllava"
DEBUG_ENV = "SQLLAVA_DEBUG"  # `SQLLAVA_DEBUG=1`: as `--debug`, for a command line one cannot (or would not) edit
EXIT_USER_ERROR = 2  # argparse's status for a usage error: scripts tell a bad invocation from a crash (1)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped with Ctrl-C
_DEBUG_HELP = "show the traceback of an error instead of one line (also: SQLLAVA_DEBUG=1)"


class ReportedError(SystemExit):
    """A user error that [`main`] has printed on stderr: exits with status 2, like argparse's `parser.error`.

    `str()` is the message (a plain `SystemExit(2)` would read "2"), for whoever calls `main()` from Python.
    """

    def __init__(self, message: str):
        super().__init__(EXIT_USER_ERROR)
        self.message = message

    def __str__(self) -> str:
        return self.message


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows "(default: ...)" after every option that has a default worth printing, and keeps the line breaks of the
    description and epilog (their command examples).

    `None` and `False` are left out: they mean "not given" (the help text says what happens then) and "off" (a flag).
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class _VersionAction(argparse.Action):
    """`--version`, computed when asked: the installed distribution's metadata, no import of the package's code."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{PROG} {package_version()}")  # stdout, as argparse's own "version" action
        parser.exit()


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transformers-sqllava")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from . import __version__

        return __version__


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `sqllava` parser. Only `command`'s sub-parser is complete (its module is imported); the others are
    name-and-help placeholders, enough for the top-level `--help` and for argparse to accept their names."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="SQ-LLaVA (Self-Questioning LLaVA) with Hugging Face Transformers.",
        epilog=f"Run `{PROG} COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help) in COMMANDS.items():
        if name == command:
            subparser = importlib.import_module(module_name).add_parser(subparsers, help=help)
            # Also after the command, where one adds a flag to a command line that just failed. SUPPRESS: left out,
            # the sub-parser does not overwrite a top-level `--debug` with False.
            subparser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
        else:
            subparsers.add_parser(name, help=help, add_help=False)
    return parser


def _invoked_command(argv: Sequence[str]) -> str | None:
    # The top level has no option that takes a value, so the first word that is not an option names the command.
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    (subparsers,) = (action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return subparsers.choices[command]


def _innermost_parser(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser of the most nested subcommand named in `argv` (`sqllava eval score pope ...` -> `pope`'s), whose
    flags are the ones to check."""
    for arg in argv:
        subparsers = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
        if not subparsers:
            break
        if not arg.startswith("-") and arg in subparsers[0].choices:
            parser = subparsers[0].choices[arg]
    return parser


def normalize_flags(subparser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """`--max_new_tokens 8` -> `--max-new-tokens 8` (also `--flag_name=value`) for every flag `subparser` knows in its
    dashed spelling: the snake_case of Python kwargs and of the TRL training scripts works as typed."""
    known = subparser._option_string_actions
    normalized = []
    for arg in argv:
        flag, equals, value = arg.partition("=")
        if arg.startswith("--") and "_" in flag and flag not in known:
            dashed = "--" + flag[2:].replace("_", "-")
            if any(option.startswith(dashed) for option in known):  # argparse also takes unambiguous prefixes
                arg = dashed + equals + value
        normalized.append(arg)
    return normalized


def unknown_flags(subparser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """The `--flags` of `argv` that `subparser` does not know, not even as an abbreviation (argparse accepts those)."""
    known = subparser._option_string_actions
    flags = (arg.partition("=")[0] for arg in argv if arg.startswith("--") and arg != "--")
    return [flag for flag in flags if not any(option.startswith(flag) for option in known)]


def suggest_flags(subparser: argparse.ArgumentParser, unknown: Sequence[str]) -> str:
    """`unrecognized arguments: --model_name_or_path (did you mean --model?)`: the closest spelling, else the longest
    flag the unknown one starts with (`--model_name_or_path`, the training scripts' name, starts with `--model`)."""
    options = [option for option in subparser._option_string_actions if option.startswith("--")]
    described = []
    for flag in unknown:
        dashed = flag.replace("_", "-")
        matches = difflib.get_close_matches(dashed, options, n=1, cutoff=0.6)
        matches = matches or sorted((o for o in options if dashed.startswith(o + "-")), key=len, reverse=True)
        described.append(f"{flag} (did you mean {matches[0]}?)" if matches else flag)
    return "unrecognized arguments: " + " ".join(described)


def debug_requested(args: argparse.Namespace | None = None) -> bool:
    """`--debug`, or `SQLLAVA_DEBUG` set to anything but "", "0", "false", "no" or "off"."""
    if args is not None and getattr(args, "debug", False):
        return True
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the input is wrong", not "the code is": a command reports them in one line.

    `OSError` covers `FileNotFoundError`, disk and permission errors, and huggingface_hub's HTTP and offline errors
    (`RepositoryNotFoundError`, `LocalEntryNotFoundError`, `OfflineModeIsEnabled` all derive from it);
    `HFValidationError` is a `ValueError`. Two more belong to libraries, looked up only if they were imported: an
    error cannot come from a module never imported, and importing one now would make every error slower.
    """
    types: list[type[BaseException]] = [ValueError, TypeError, OSError]
    if "jinja2" in sys.modules:  # the chat template's `raise_exception`, and a template that does not render
        types.append(sys.modules["jinja2"].TemplateError)
    if "huggingface_hub.errors" in sys.modules:  # the one "not found" error of huggingface_hub not an OSError
        types.append(sys.modules["huggingface_hub.errors"].EntryNotFoundError)
    return tuple(types)


def one_line(message: str) -> str:
    """`message` on one line: library messages (huggingface_hub's, transformers') span several, with blank lines."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def report_error(command: str | None, message: str) -> ReportedError:
    """Print `sqllava COMMAND: error: MESSAGE` on stderr; the `SystemExit` to raise then."""
    message = one_line(message)
    prefix = f"{PROG} {command}" if command else PROG
    print(f"{prefix}: error: {message}", file=sys.stderr, flush=True)
    return ReportedError(message)


def run_command(args: argparse.Namespace) -> int:
    """`args.func(args)`, its user errors reported in one line (see the module docstring)."""
    debug = debug_requested(args)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except SystemExit as exit:
        # A command that stops with its own message, `raise SystemExit("...")`: reported as any user error. A
        # numeric status (argparse's, or a `ReportedError`) is already reported, and goes through.
        if isinstance(exit.code, str) and not debug:
            raise report_error(args.command, exit.code) from None
        raise
    except user_error_types() as error:
        if debug:
            raise
        # `from None`: the traceback is what the one line replaces; --debug shows it.
        raise report_error(args.command, str(error) or type(error).__name__) from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _invoked_command(argv)
    parser = build_parser(command if command in COMMANDS else None)
    if command in COMMANDS:
        subparser = _innermost_parser(_subparser(parser, command), argv[argv.index(command) + 1 :])
        argv = normalize_flags(subparser, argv)
        # Before parsing: argparse would first complain about a required flag that a misspelt one was meant to be.
        unknown = unknown_flags(subparser, argv[argv.index(command) + 1 :])
        if unknown:
            subparser.error(suggest_flags(subparser, unknown))
    args = parser.parse_args(argv)
    return run_command(args)


if __name__ == "__main__":
    raise SystemExit(main())
