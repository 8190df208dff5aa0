"""The command line's parser: argparse with the house's errors (one line naming the option and the fix, the
nearest option for a misspelling, no usage block, exit 2)."""
from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from typing import NoReturn

from zoomdream.config import COMMANDS, FIELDS
from zoomdream.errors import one_line


class Parser(argparse.ArgumentParser):
    """argparse with the house's errors: one line naming the option and the fix, no usage block, exit 2."""

    commands: dict[str, Parser] = {}  # every command's parser, by name (set by build_parser)

    def _print_message(self, message, file=None):
        """--help into a pipe its reader closed (``zoomdream zoom --help | head -1``) ends quietly, as Python 3.11's
        argparse does; 3.10's raised BrokenPipeError."""
        try:
            super()._print_message(message, file)
        except OSError:
            pass

    def parse_known_args(self, args=None, namespace=None):
        self.argv = list(sys.argv[1:] if args is None else args)  # what the error line looks at
        return super().parse_known_args(args, namespace)

    def parse_args(self, args=None, namespace=None):
        args, extras = self.parse_known_args(args, namespace)
        if extras:  # left over by the command's own parser: explained with its options
            command = self.commands.get(getattr(args, "command", None), self)
            command.fail(command.unexpected(extras))
        return args

    def error(self, message: str) -> NoReturn:
        self.fail(self.explain(message))

    def fail(self, line: str) -> NoReturn:
        self.exit(2, f"zoomdream: error: {one_line(line)}\n")

    def options(self) -> list[str]:
        return [o for action in self._actions for o in action.option_strings]

    def dashed_file(self) -> str | None:
        """A word of the command line that reads as an option but names a file (``-clip.mp4``)."""
        for word in self.argv[:self.argv.index("--")] if "--" in self.argv else self.argv:
            if (word.startswith("-") and word != "-" and word.split("=", 1)[0] not in self.options()
                    and (os.path.exists(word) or re.search(r"\.[A-Za-z0-9]{2,4}$", word))):
                return word
        return None

    def dashed_file_line(self, word: str) -> str:
        return (f"'{word}' reads as an option: write ./{word}, or put it last after -- "
                f"({self.prog} -o OUT -- {word})")

    def unexpected(self, extras: list[str]) -> str:
        """The line for words the command does not take: an unknown option (with the nearest one), a file
        named like an option, or one word too many."""
        word = self.dashed_file()
        if word:
            return self.dashed_file_line(word)
        word = extras[0]
        if word.startswith("-") and word != "-":
            option = word.split("=", 1)[0]
            owners = [name for name, parser in self.commands.items()
                      if name != "render" and option in parser.options()]  # render takes every job setting
            near = difflib.get_close_matches(option, [o for o in self.options() if o.startswith("--")], n=1)
            if owners:
                fix = f"that is an option of {' and '.join(owners)}; see `{self.prog} --help`"
            else:
                fix = f"did you mean {near[0]}?" if near else f"see `{self.prog} --help`"
            return f"{self.prog} has no option {option} ({fix})"
        return f"unexpected argument '{word}' (see `{self.prog} --help`)"

    def explain(self, message: str) -> str:
        """argparse's message as one line that names the option and the fix."""
        word = self.dashed_file()
        if word:
            return self.dashed_file_line(word)
        required = re.match(r"the following arguments are required: (.*)", message)
        if required:
            return self.missing(required.group(1).split(", ")[0])
        named = re.match(r"argument (\S+): (.*)", message)
        if not named:
            return f"{message} (see `{self.prog} --help`)"
        option, problem = named.group(1).split("/")[0], named.group(2)
        action = next((a for a in self._actions if option in a.option_strings or a.metavar == option), None)
        bad_value = re.match(r"invalid (int|float) value: (.*)", problem)
        if bad_value:
            kind = "whole number" if bad_value.group(1) == "int" else "number"
            example = self.example(action) or ("10" if kind == "whole number" else "0.5")
            return f"{option} {bad_value.group(2)} is not a {kind} (give one, e.g. {option} {example})"
        choice = re.match(r"invalid choice: (.*) \(choose from", problem)
        if choice and action is not None and action.choices:
            value, choices = choice.group(1).strip("'\""), [str(c) for c in action.choices]
            near = difflib.get_close_matches(value, choices, n=1)
            what = "command" if option == "COMMAND" else f"{option} value"
            hint = f"did you mean {near[0]}? " if near else ""
            return f"unknown {what} '{value}' ({hint}choose from {', '.join(choices)})"
        if problem.startswith("expected"):
            after = self.argv[self.argv.index(option) + 1:] if option in self.argv else []
            if after and after[0].startswith("-"):
                return f"{option} needs a value, and '{after[0]}' reads as an option (write {option}={after[0]})"
            example = self.example(action)
            if example:
                return f"{option} needs a value (e.g. {option} {example})"
            return f"{option} needs a value ({option} {(action.metavar or action.dest.upper()) if action else 'VALUE'})"
        if problem.startswith("ignored explicit argument"):
            return f"{option} takes no value (write {option} alone)"
        return f"{option}: {problem} (see `{self.prog} --help`)"

    def missing(self, name: str) -> str:
        """The line for a missing positional argument: what to give, with the command's first example."""
        if name == "COMMAND":
            return f"give a command: {', '.join(self.commands)} (see `zoomdream --help`)"
        command = COMMANDS.get(self.prog.split()[-1])
        if command is not None and name == "input":
            example = command.examples.splitlines()[1].split("#")[0].strip()
            return f"no {command.input_help} given (e.g. {example})"
        if name == "job_file":
            return "no job file given (e.g. zoomdream render job.toml)"
        return f"{self.prog} needs {name.replace('_', ' ')} (see `{self.prog} --help`)"

    def example(self, action) -> str | None:
        """A value that ``action`` takes, for the fix: the setting's default for this command."""
        if action is None:
            return None
        command = COMMANDS.get(self.prog.split()[-1])
        value = action.default
        if action.dest in FIELDS:
            value = (command.defaults if command else {}).get(action.dest, FIELDS[action.dest].default)
        return None if value in (None, argparse.SUPPRESS) or isinstance(value, bool) else str(value)
