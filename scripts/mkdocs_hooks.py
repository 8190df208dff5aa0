"""MkDocs hook (``hooks:`` in mkdocs.yml): pages that list what the code allows are written from the code at
build time, so they cannot drift from it.

A page holds a marker such as ``<!-- generated: job-keys -->``; ``on_page_markdown`` replaces it with the
table below. ``job-keys``: every field of ``config.Job`` (name, flag, kind, each command's default, commands, help).
``schedule-functions`` and ``schedule-variables``: what a schedule expression may call and read
(``schedules.FUNCTIONS``, ``schedules.BINARY_OPERATORS``, ``schedules.CONSTANTS``, ``audio.NAMES``).
"""
from __future__ import annotations

import re
import sys
from dataclasses import fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the checkout's zoomdream, not an installed copy
    sys.path.insert(0, str(ROOT))

MARKER = re.compile(r"<!-- generated: ([a-z-]+) -->")


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def job_keys() -> str:
    """Every ``config.Job`` field as a table row: the TOML key, its flag, kind, default, commands and help."""
    from zoomdream.config import ALL, COMMANDS, RENAMED, Job

    made = {name: Job(command=name) for name in COMMANDS}  # defaults differ by command (zoom: 2 octaves)
    rows = ["| key | flag | kind | default | commands | what it does |", "| --- | --- | --- | --- | --- | --- |"]
    for f in fields(Job):
        meta = f.metadata
        shown = {name: getattr(made[name], f.name) for name in meta["commands"]}  # what a Job really holds
        if f.name == "command":
            shown = {"": f.default}
        values = set(map(repr, shown.values()))
        if values == {"None"}:
            default = ""
        elif len(values) == 1:
            default = f"`{next(iter(shown.values()))!r}`"
        else:
            default = ", ".join(f"{name}: `{value!r}`" for name, value in shown.items())
        commands = "all" if tuple(meta["commands"]) == ALL else ", ".join(meta["commands"])
        flag = "" if f.name in ("command", "input") else f"`--{f.name.replace('_', '-')}`"
        if meta["choices"]:
            kind = " / ".join(f"`{c}`" for c in meta["choices"])
        else:
            kind = meta["kind"]
        old = [o for o, new in RENAMED.items() if new == f.name]
        help_text = meta["help"] + (f" (old name: `{', '.join(old)}`)" if old else "")
        rows.append(f"| `{f.name}` | {flag} | {kind} | {_cell(default)} | {commands} | {_cell(help_text)} |")
    return "\n".join(rows)


def schedule_functions() -> str:
    """The functions and operators a schedule expression may use, with their argument counts."""
    from zoomdream.schedules import BINARY_OPERATORS, FUNCTIONS

    symbols = {"Add": "+", "Sub": "-", "Mult": "*", "Div": "/", "FloorDiv": "//", "Mod": "%", "Pow": "**"}
    operators = " ".join(f"`{symbols.get(op.__name__, op.__name__)}`" for op in BINARY_OPERATORS)
    rows = [f"Operators: {operators}, unary `-` and `+`, and parentheses.", "",
            "| function | arguments |", "| --- | --- |"]
    for name, (_, fewest, most) in FUNCTIONS.items():
        count = f"{fewest}" if fewest == most else f"{fewest} or more" if most is None else f"{fewest} to {most}"
        rows.append(f"| `{name}` | {count} |")
    rows.append("| `smooth` | 2 or 3: `smooth(feature, release)` or `smooth(feature, attack, release)`, times in "
                "seconds (0 to 60), with `--audio` |")
    return "\n".join(rows)


def schedule_variables() -> str:
    """The names a schedule expression may read."""
    from zoomdream.audio import NAMES, SERIES
    from zoomdream.schedules import CONSTANTS

    rows = ["| name | value |", "| --- | --- |", "| `t` | the frame number (0, 1, 2, ...) |"]
    rows += [f"| `{name}` | the constant {value:.6g} |" for name, value in CONSTANTS.items()]
    for name in NAMES:
        what = "per frame, 0 to 1 over the track" if name in SERIES else "a constant: the track's tempo"
        rows.append(f"| `{name}` | with `--audio`: {what} (see [Music](music.md)) |")
    return "\n".join(rows)


GENERATORS = {"job-keys": job_keys, "schedule-functions": schedule_functions,
              "schedule-variables": schedule_variables}


def on_page_markdown(markdown: str, **kwargs) -> str:
    return MARKER.sub(lambda m: GENERATORS[m.group(1)](), markdown)
