"""Safe expressions of the frame ``t`` (and per-frame variables such as ``--audio`` features), parsed with
:mod:`ast` against a whitelist and run by a small interpreter, so schedule text from a command line or a job
file can never run code.

The whitelist: numbers, ``t``, ``pi``, ``e``, ``tau``, ``+ - * / // % **`` and a few math functions.
Expressions may read per-frame variables by name, such as the audio features of ``--audio`` (see
:mod:`zoomdream.audio`): ``1.01 + 0.04*onset``, and ``smooth(onset, 0.5)`` for a feature that falls back slowly.
A name that is not known gets a one-line error listing the valid ones.
"""
from __future__ import annotations

import ast
import math
import operator
import re
from typing import Callable

from zoomdream.audio import NAMES as AUDIO_NAMES
from zoomdream.audio import SERIES as AUDIO_SERIES
from zoomdream.errors import ZoomdreamError

MAX_EXPONENT = 1000.0
MAX_ARGUMENTS = 100  # of one call, such as max(...)
MAX_NODES = 2000  # numbers, names, operators and calls of one expression
ALLOWED_HINT = "use numbers, t, + - * / ** and math functions such as sin, cos, exp"
KEYFRAME_HINT = "write keyframes as 0:(1.0), 30:(1.5)"

CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _power(base: float, exponent: float) -> float:
    """``**`` through math.pow, so a negative base never yields a complex number and huge exponents fail fast."""
    if abs(exponent) > MAX_EXPONENT:
        raise OverflowError(f"exponent {exponent:g} is larger than {MAX_EXPONENT:g}")
    return math.pow(base, exponent)


def _clamp(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


# name -> (function, fewest arguments, most arguments or None for any number)
FUNCTIONS: dict[str, tuple[Callable[..., float], int, int | None]] = {
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
    "asin": (math.asin, 1, 1),
    "acos": (math.acos, 1, 1),
    "atan": (math.atan, 1, 1),
    "atan2": (math.atan2, 2, 2),
    "sinh": (math.sinh, 1, 1),
    "cosh": (math.cosh, 1, 1),
    "tanh": (math.tanh, 1, 1),
    "exp": (math.exp, 1, 1),
    "log": (math.log, 1, 2),
    "log10": (math.log10, 1, 1),
    "log2": (math.log2, 1, 1),
    "sqrt": (math.sqrt, 1, 1),
    "abs": (abs, 1, 1),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "min": (min, 2, None),
    "max": (max, 2, None),
    "pow": (_power, 2, 2),
    "hypot": (math.hypot, 1, None),
    "radians": (math.radians, 1, 1),
    "degrees": (math.degrees, 1, 1),
    "clamp": (_clamp, 3, 3),
}

BINARY_OPERATORS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _power,
}


def _shown(text: str) -> str:
    """The text as it appears in a one-line message; whitespace is swapped one for one so positions still match."""
    return re.sub(r"\s", " ", text)


def _compile(text: str, name: str, source: str, offset: int, variables=None) -> ast.expr:
    """Parse and whitelist-check ``text``, which sits at ``offset`` in ``source`` (the text the user wrote);
    ``variables`` (such as an ``audio.Track``) answers the extra names it lists in ``names``."""
    body = _shown(text)
    stripped = body.lstrip()
    offset += len(body) - len(stripped)
    stripped = stripped.rstrip()
    if not stripped:
        raise ZoomdreamError(
            f'{name}: empty expression at position {offset} in "{_shown(source)}" (give a number such as 1.0)'
        )
    try:
        tree = ast.parse(stripped, mode="eval")
    except SyntaxError as exc:
        column = offset + max((exc.offset or 1) - 1, 0)
        raise ZoomdreamError(
            f'{name}: invalid expression ({exc.msg}) at position {column} in "{_shown(source)}" ({ALLOWED_HINT})'
        ) from None
    except (MemoryError, RecursionError, ValueError):
        raise ZoomdreamError(f'{name}: expression is too deeply nested in "{_shown(source)}" (simplify it)') from None
    nodes = sum(isinstance(node, ast.expr) for node in ast.walk(tree))
    if nodes > MAX_NODES:  # evaluated for every frame: a schedule stays a formula, not a program
        raise ZoomdreamError(f'{name}: expression has {nodes:,} terms (at most {MAX_NODES:,}: simplify it, or use '
                             f'keyframes)')
    try:
        _check(tree.body, stripped, name, source, offset, variables)
    except RecursionError:
        raise ZoomdreamError(f'{name}: expression is too deeply nested in "{_shown(source)}" (simplify it)') from None
    return tree.body


def _names_hint(variables) -> str:
    """The names an expression may read, for the message about one it may not."""
    known = ", ".join(("t", *CONSTANTS, *(variables.names if variables is not None else ())))
    return f"valid names: {known}" + ("" if variables is not None else
                                      f"; with --audio FILE also {', '.join(AUDIO_NAMES)}")


def _check_smooth(node: ast.Call, refuse, variables) -> None:
    """``smooth(feature, release)`` or ``smooth(feature, attack, release)``: a per-frame variable and times
    in seconds."""
    series = variables.series_names if variables is not None else AUDIO_SERIES
    if node.keywords or not 2 <= len(node.args) <= 3:
        refuse(node, hint="write smooth(onset, 0.5) or smooth(onset, attack, release), times in seconds")
    feature = node.args[0]
    if not isinstance(feature, ast.Name) or feature.id not in series:
        refuse(feature, hint=f"smooth's first argument is one of {', '.join(series)}")
    if variables is None:
        refuse(feature, hint=f"{feature.id} is an audio feature: give --audio FILE")
    for arg in node.args[1:]:
        if not (isinstance(arg, ast.Constant) and type(arg.value) in (int, float) and 0 <= arg.value <= 60):
            refuse(arg, hint="smooth's times are plain numbers of seconds from 0 to 60")


def _check(node: ast.AST, text: str, name: str, source: str, offset: int, variables=None) -> None:
    """Raise unless every node is a number, an allowed name, an arithmetic operator or an allowed function call."""

    def refuse(bad: ast.AST, what: str | None = None, hint: str = ALLOWED_HINT) -> None:
        what = what or ast.get_source_segment(text, bad) or type(bad).__name__
        position = offset + getattr(bad, "col_offset", 0)
        raise ZoomdreamError(f"{name}: '{what}' is not allowed at position {position} in \"{_shown(source)}\" ({hint})")

    if isinstance(node, ast.Constant):
        if type(node.value) not in (int, float):
            refuse(node)
    elif isinstance(node, ast.Name):
        if node.id in FUNCTIONS:
            refuse(node, hint=f"{node.id} is a function: call it, as in {node.id}(t)")
        if node.id in AUDIO_NAMES and variables is None:
            refuse(node, hint=f"{node.id} is an audio feature: give --audio FILE")
        if node.id != "t" and node.id not in CONSTANTS and node.id not in getattr(variables, "names", ()):
            refuse(node, hint=_names_hint(variables))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        _check(node.operand, text, name, source, offset, variables)
    elif isinstance(node, ast.BinOp) and type(node.op) in BINARY_OPERATORS:
        _check(node.left, text, name, source, offset, variables)
        _check(node.right, text, name, source, offset, variables)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "smooth":
        _check_smooth(node, refuse, variables)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            refuse(node.func)
        if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
            refuse(node)
        function_name = node.func.id
        _, fewest, most = FUNCTIONS[function_name]
        most = MAX_ARGUMENTS if most is None else most  # each is evaluated every frame: max(...) stays small
        if len(node.args) < fewest or (most is not None and len(node.args) > most):
            wanted = f"{fewest}" if fewest == most else f"{fewest} or more" if most is None else f"{fewest} to {most}"
            refuse(node, hint=f"{function_name} takes {wanted} arguments, got {len(node.args)}")
        for arg in node.args:
            _check(arg, text, name, source, offset, variables)
    else:
        refuse(node)


def _evaluate(node: ast.expr, t: float, variables=None) -> float:
    """Interpret a checked expression tree at frame ``t`` (``variables`` answers the names it was checked
    with)."""
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        if node.id == "t":
            return t
        return CONSTANTS[node.id] if node.id in CONSTANTS else variables.value(node.id, int(t))
    if isinstance(node, ast.UnaryOp):
        value = _evaluate(node.operand, t, variables)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        return BINARY_OPERATORS[type(node.op)](_evaluate(node.left, t, variables),
                                               _evaluate(node.right, t, variables))
    if node.func.id == "smooth":  # type: ignore[attr-defined]  # _check admits only named calls
        times = [float(arg.value) for arg in node.args[1:]]
        return variables.smoothed(node.args[0].id, int(t), *([0.0] * (3 - len(node.args)) + times))
    function = FUNCTIONS[node.func.id][0]  # type: ignore[attr-defined]
    return float(function(*(_evaluate(arg, t, variables) for arg in node.args)))


def _run(tree: ast.expr, t: float, name: str, text: str, variables=None) -> float:
    """Evaluate, turning math failures into a message that names the frame."""
    try:
        value = _evaluate(tree, float(t), variables)
        if not math.isfinite(value):
            raise OverflowError("the result is not a finite number")
    except (ArithmeticError, ValueError, RecursionError) as exc:
        reason = str(exc) or type(exc).__name__
        raise ZoomdreamError(
            f'{name}: cannot evaluate "{_shown(text)}" at frame t={t:g}: {reason} '
            "(change the expression so it is defined for every frame)"
        ) from None
    return value


def compile_expression(text: str, *, name: str = "expression", variables=None) -> Callable[[float], float]:
    """Turn expression text such as ``1.02+0.01*sin(t/20)`` into a function of t, without ever calling eval."""
    tree = _compile(text, name, text, 0, variables)
    return lambda t: _run(tree, t, name, text, variables)


