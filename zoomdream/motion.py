"""Keyframed motion for the infinite-zoom loop: schedules, safe expressions and the per-frame transform.

Schedules use the Deforum / Disco Diffusion syntax, a comma-separated list of ``frame:(value)`` keyframes::

    0:(1.02), 120:(1.05)                 zoom 1.02 at frame 0, easing to 1.05 by frame 120
    0:(0), 60:(1.5)                      angle in degrees
    0: (1.02+0.01*sin(t/20))             an expression of the frame number t
    0:(sin((t+1)/2)), 30:(2)             parentheses may nest inside a value
    0:1.02, 10:1.5                       a plain number may skip the parentheses
    1.02   or   1.02+0.01*sin(t/20)      no keyframes: one value (or expression) for every frame

Each keyframe's expression is evaluated with ``t`` set to the *current* frame, then the values of the keyframes
around that frame are interpolated (linearly, or with a monotone cubic); before the first keyframe the first
value holds, after the last the last value holds. Expressions are parsed with :mod:`ast` against a whitelist
(numbers, ``t``, ``pi``, ``e``, ``tau``, ``+ - * / // % **`` and a few math functions) and evaluated by a
small interpreter, so schedule text from a command line or a config file can never run code.

Expressions may also read per-frame variables by name, such as the audio features of ``--audio`` (see
:mod:`zoomdream.audio`): ``1.01 + 0.04*onset``, and ``smooth(onset, 0.5)`` for a feature that falls back slowly.
A name that is not known gets a one-line error listing the valid ones.

Text schedules pick string values per keyframe, such as the layers to dream on: ``0:(mixed3), 200:(mixed5)``
or ``0:(block10:1.0,block12:0.5), 100:(block12)``; between keyframes the two values crossfade. Text that does
not start with ``frame:(`` is one constant value, so ``block10:1.0,block12:0.5`` stays a single layer spec.
"""
from __future__ import annotations

import ast
import math
import operator
import re
from bisect import bisect_right
from functools import lru_cache
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from zoomdream.audio import NAMES as AUDIO_NAMES
from zoomdream.audio import SERIES as AUDIO_SERIES
from zoomdream.errors import ZoomdreamError

__all__ = [
    "Schedule",
    "TextSchedule",
    "compile_expression",
    "parse_schedule",
    "parse_text_schedule",
    "transform_frame",
    "transform_matrix",
]

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


# ---------------------------------------------------------------------------------------------------------
# Safe expressions
# ---------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------
# Keyframe text
# ---------------------------------------------------------------------------------------------------------


def _skip_spaces(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _closing_paren(text: str, start: int, name: str) -> int:
    """Index of the ')' matching the '(' at ``start``, so values may hold commas and nested parentheses."""
    depth = 0
    for pos in range(start, len(text)):
        if text[pos] == "(":
            depth += 1
        elif text[pos] == ")":
            depth -= 1
            if depth == 0:
                return pos
    raise ZoomdreamError(f"{name}: unclosed '(' at position {start} in \"{_shown(text)}\" (add the missing ')')")


def _scan_keyframes(text: str, name: str, *, parens_required: bool) -> list[tuple[int, str, int]]:
    """Split ``0:(a), 10:(b)`` into (frame, value text, position of the value text) entries, in written order."""

    def fail(problem: str, pos: int, hint: str = KEYFRAME_HINT) -> None:
        raise ZoomdreamError(f'{name}: {problem} at position {pos} in "{_shown(text)}" ({hint})')

    entries: list[tuple[int, str, int]] = []
    seen: set[int] = set()
    pos = _skip_spaces(text, 0)
    while pos < len(text):
        start = pos
        while pos < len(text) and text[pos] in "0123456789":
            pos += 1
        if pos == start:
            negative = text[pos] == "-" and pos + 1 < len(text) and text[pos + 1].isdigit()
            fail("negative frame number" if negative else "expected a frame number", pos,
                 "frame numbers start at 0" if negative else KEYFRAME_HINT)
        if pos - start > 9:
            fail(f"frame number {text[start:start + 12]}... is too large", start, "frame numbers stop at 999999999")
        frame = int(text[start:pos])
        pos = _skip_spaces(text, pos)
        if pos == len(text) or text[pos] != ":":
            fail("expected ':' after frame number", pos)
        pos = _skip_spaces(text, pos + 1)
        if pos < len(text) and text[pos] == "(":
            close = _closing_paren(text, pos, name)
            value, value_pos = text[pos + 1 : close], pos + 1
            pos = close + 1
        elif parens_required:
            fail("expected '(' after ':'", pos, "wrap each value in parentheses, as in 0:(mixed3), 100:(mixed5)")
        else:
            end = text.find(",", pos)
            end = len(text) if end < 0 else end
            value, value_pos = text[pos:end], pos
            try:
                float(value)
            except ValueError:
                fail("a value that is not a plain number needs parentheses", pos, "write it as 0:(1+sin(t))")
            pos = end
        if frame in seen:
            fail(f"frame {frame} appears twice", start, "give each frame number once")
        seen.add(frame)
        entries.append((frame, value, value_pos))
        pos = _skip_spaces(text, pos)
        if pos < len(text):
            if text[pos] == ")":
                fail("unmatched ')'", pos, "remove it or add the missing '('")
            if text[pos] != ",":
                fail("expected ',' between keyframes", pos)
            pos = _skip_spaces(text, pos + 1)
    return entries


# ---------------------------------------------------------------------------------------------------------
# Number schedules
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """A number per frame: keyframe expressions of t, interpolated between keyframes and held beyond them."""

    keys: tuple[tuple[int, str], ...]
    interpolation: str = "linear"
    name: str = field(default="schedule", compare=False)
    variables: object = field(default=None, repr=False, compare=False)  # per-frame names, e.g. an audio.Track
    _trees: tuple[ast.expr, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise ZoomdreamError(f"{self.name}: the schedule has no keyframes (give at least one, as in 0:(1.0))")
        if self.interpolation not in ("linear", "cubic"):
            raise ZoomdreamError(
                f"{self.name}: unknown interpolation {self.interpolation!r} (use 'linear' or 'cubic')"
            )
        frames = [frame for frame, _ in self.keys]
        if any(frame < 0 for frame in frames) or frames != sorted(set(frames)):
            raise ZoomdreamError(
                f"{self.name}: keyframes must have distinct non-negative frame numbers in increasing order "
                f"(got {frames})"
            )
        trees = tuple(_compile(text, self.name, text, 0, self.variables) for _, text in self.keys)
        object.__setattr__(self, "_trees", trees)

    def _value(self, index: int, t: float) -> float:
        return _run(self._trees[index], t, self.name, self.keys[index][1], self.variables)

    def at(self, t: int) -> float:
        """The value at frame t."""
        frames = [frame for frame, _ in self.keys]
        if t <= frames[0]:
            return self._value(0, t)
        if t >= frames[-1]:
            return self._value(len(frames) - 1, t)
        i = bisect_right(frames, t) - 1  # frames[i] <= t < frames[i + 1]
        x0, x1 = frames[i], frames[i + 1]
        u = (t - x0) / (x1 - x0)
        if self.interpolation == "linear":
            p0, p1 = self._value(i, t), self._value(i + 1, t)
            return p0 + (p1 - p0) * u
        values = {k: self._value(k, t) for k in range(max(i - 1, 0), min(i + 3, len(frames)))}
        m0, m1 = self._slope(i, frames, values), self._slope(i + 1, frames, values)
        h = x1 - x0
        u2, u3 = u * u, u * u * u
        return (
            (2 * u3 - 3 * u2 + 1) * values[i]
            + (u3 - 2 * u2 + u) * h * m0
            + (-2 * u3 + 3 * u2) * values[i + 1]
            + (u3 - u2) * h * m1
        )

    @staticmethod
    def _slope(k: int, frames: list[int], values: dict[int, float]) -> float:
        """Monotone (PCHIP) tangent at keyframe k: no overshoot past the key values, flat at the first and last key
        so the curve joins the held values smoothly."""
        if k == 0 or k == len(frames) - 1:
            return 0.0
        h0, h1 = frames[k] - frames[k - 1], frames[k + 1] - frames[k]
        d0 = (values[k] - values[k - 1]) / h0
        d1 = (values[k + 1] - values[k]) / h1
        if d0 * d1 <= 0:
            return 0.0
        w0, w1 = 2 * h1 + h0, h1 + 2 * h0
        return (w0 + w1) / (w0 / d0 + w1 / d1)

    def series(self, n: int) -> np.ndarray:
        """Values for frames 0..n-1, as float64."""
        if n < 0:
            raise ZoomdreamError(f"{self.name}: frame count must not be negative (got {n})")
        return np.array([self.at(t) for t in range(n)], dtype=np.float64)


def parse_schedule(text: str | float | int, *, name: str = "schedule", interpolation: str = "linear",
                   variables=None) -> Schedule:
    """Read ``0:(1.02), 120:(1.05)``, a bare number or expression, or a Python number, into a Schedule whose
    expressions may read ``variables`` (per-frame values by name, such as an ``audio.Track``)."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ZoomdreamError(f"{name}: expected a number or schedule text, got {type(text).__name__} (write 0:(1.0))")
    if not isinstance(text, str):
        if not math.isfinite(text):
            raise ZoomdreamError(f"{name}: {text} is not a finite number (give a number such as 1.0)")
        return Schedule(((0, repr(float(text))),), interpolation, name, variables)
    if not text.strip():
        raise ZoomdreamError(f"{name}: the schedule is empty (give a number such as 1.0, or {KEYFRAME_HINT})")
    if not re.match(r"\s*-?[0-9]+\s*:", text):
        _compile(text, name, text, 0, variables)
        return Schedule(((0, text.strip()),), interpolation, name, variables)
    entries = _scan_keyframes(text, name, parens_required=False)
    for _, value, value_pos in entries:
        _compile(value, name, text, value_pos, variables)
    keys = tuple(sorted((frame, value.strip()) for frame, value, _ in entries))
    return Schedule(keys, interpolation, name, variables)


# ---------------------------------------------------------------------------------------------------------
# Text schedules
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextSchedule:
    """A string per keyframe (such as a layer spec), crossfaded between keyframes and held beyond them."""

    keys: tuple[tuple[int, str], ...]

    def __post_init__(self) -> None:
        frames = [frame for frame, _ in self.keys]
        if not frames or any(frame < 0 for frame in frames) or frames != sorted(set(frames)):
            raise ZoomdreamError(
                f"text schedule needs distinct non-negative frame numbers in increasing order (got {frames})"
            )

    def blend_at(self, t: int) -> tuple[tuple[str, float], ...]:
        """The keyframe values active at t with their blend weights, e.g. (("mixed3", 0.25), ("mixed5", 0.75)); weights
        sum to 1; linear crossfade between consecutive keys; a single entry with weight 1.0 at/after the last key or
        before the first."""
        frames = [frame for frame, _ in self.keys]
        if t <= frames[0]:
            return ((self.keys[0][1], 1.0),)
        if t >= frames[-1]:
            return ((self.keys[-1][1], 1.0),)
        i = bisect_right(frames, t) - 1
        (x0, first), (x1, second) = self.keys[i], self.keys[i + 1]
        weight = (t - x0) / (x1 - x0)
        if weight == 0 or first == second:
            return ((first, 1.0),)
        return ((first, 1.0 - weight), (second, weight))


def parse_text_schedule(text: str, *, name: str = "layers") -> TextSchedule:
    """Read ``0:(mixed3), 200:(mixed5)`` into a TextSchedule; text not starting with ``frame:(`` is one constant."""
    if not isinstance(text, str) or not text.strip():
        raise ZoomdreamError(f"{name}: the value is empty (give one, or keyframes as 0:(mixed3), 200:(mixed5))")
    if not re.match(r"\s*-?[0-9]+\s*:\s*\(", text):
        return TextSchedule(((0, text.strip()),))
    entries = _scan_keyframes(text, name, parens_required=True)
    for _, value, value_pos in entries:
        if not value.strip():
            raise ZoomdreamError(
                f'{name}: empty value at position {value_pos} in "{_shown(text)}" (put a value inside the parentheses)'
            )
    return TextSchedule(tuple(sorted((frame, value.strip()) for frame, value, _ in entries)))


# ---------------------------------------------------------------------------------------------------------
# Frame transform
# ---------------------------------------------------------------------------------------------------------


def transform_matrix(
    width: int,
    height: int,
    *,
    zoom: float = 1.0,
    angle: float = 0.0,
    tx: float = 0.0,
    ty: float = 0.0,
    center: tuple[float, float] | None = None,
) -> np.ndarray:
    """The 2x3 forward affine map (source pixel -> output pixel) for cv2.warpAffine: zoom and rotate about
    ``center``, then translate.

    ``angle`` is counter-clockwise in degrees as seen on screen (y points down), like cv2.getRotationMatrix2D.
    """
    if width <= 0 or height <= 0:
        raise ZoomdreamError(f"frame size must be positive (got {width}x{height})")
    if not (math.isfinite(zoom) and zoom > 0):
        raise ZoomdreamError(f"zoom must be a positive number (got {zoom}); use values near 1, such as 1.02")
    if not all(math.isfinite(v) for v in (angle, tx, ty)):
        raise ZoomdreamError(f"angle and translation must be finite numbers (got {angle}, {tx}, {ty})")
    cx, cy = ((width - 1) / 2.0, (height - 1) / 2.0) if center is None else (float(center[0]), float(center[1]))
    theta = math.radians(angle)
    a, b = zoom * math.cos(theta), zoom * math.sin(theta)
    return np.array(
        [
            [a, b, (1 - a) * cx - b * cy + tx],
            [-b, a, b * cx + (1 - a) * cy + ty],
        ],
        dtype=np.float64,
    )


def transform_frame(
    img: np.ndarray,
    *,
    zoom: float = 1.0,
    angle: float = 0.0,
    tx: float = 0.0,
    ty: float = 0.0,
    center: tuple[float, float] | None = None,
) -> np.ndarray:
    """Zoom, rotate and shift an HxWxC frame in one bilinear resample, reflecting at the borders so that
    zooming out never leaves black corners. Returns the same dtype and shape; identity returns a copy."""
    if img.dtype not in (np.uint8, np.float32, np.float64):
        raise TypeError(f"transform_frame supports uint8, float32 and float64 images, got {img.dtype}")
    if zoom == 1 and angle == 0 and tx == 0 and ty == 0:
        return img.copy()
    height, width = img.shape[:2]
    return warp_affine(img, as_3x3(transform_matrix(width, height, zoom=zoom, angle=angle, tx=tx, ty=ty,
                                                    center=center)))


def as_3x3(matrix: np.ndarray) -> np.ndarray:
    """A 2x3 affine map as 3x3, so maps compose by matrix product."""
    return np.vstack([matrix, [0.0, 0.0, 1.0]])


def warp_affine(img: np.ndarray, matrix: np.ndarray, *, reflect: bool = True) -> np.ndarray:
    """Apply a 3x3 forward affine map (source pixel -> output pixel) to an HxW(xC) frame, bilinear, dtype and
    shape kept; ``reflect`` False leaves zeros where the map brings nothing in (use it for validity masks)."""
    height, width = img.shape[:2]
    border = cv2.BORDER_REFLECT_101 if reflect else cv2.BORDER_CONSTANT
    out = cv2.warpAffine(np.ascontiguousarray(img), matrix[:2], (width, height), flags=cv2.INTER_LINEAR,
                         borderMode=border)
    return out.reshape(img.shape)


def warp_evenly(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``warp_affine``, then each pixel blurred along x and y by what its bilinear weights left out, so every
    pixel gets the blur of a half-pixel offset (variance 1/4 per axis; a ``[1/4, 1/2, 1/4]`` kernel has 1/2).

    Bilinear resampling blurs by ``f * (1 - f)`` for a sample ``f`` past a whole pixel: on the row and column
    through the zoom's fixed point ``f`` stays near 0 frame after frame, so the feedback kept their detail and
    faint lines crossed the centre of long zooms (zoom_health's centre-line ratio 1.5-2.6 at 160x160)."""
    out = warp_affine(np.asarray(image, np.float32), matrix)
    channels = image.shape[2] if image.ndim == 3 else 0
    for kernel, missing in zip(EVEN_DIFFERENCES, _missing_blur(image.shape[:2], _key(matrix), channels)):
        # out + missing * (blur(out) - out), in two OpenCV passes (numpy's four took 15 ms a 720p frame)
        cv2.accumulateProduct(cv2.filter2D(out, -1, kernel, borderType=cv2.BORDER_REFLECT_101), missing, out)
    return out


EVEN_KERNELS = (np.array([[0.25, 0.5, 0.25]], np.float32), np.array([[0.25], [0.5], [0.25]], np.float32))
EVEN_DIFFERENCES = tuple(kernel - (kernel == 0.5) for kernel in EVEN_KERNELS)  # blur(out) - out, in one kernel


def missing_blur(shape: tuple[int, int], matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the share of ``EVEN_KERNELS``' blur along x and along y that bilinear sampling under
    ``matrix`` left out (see ``warp_evenly``). Cached: a zoom's motion is mostly the same every frame, and
    these maps cost more than the warp."""
    return _missing_blur(tuple(shape), _key(matrix))


def _key(matrix: np.ndarray) -> bytes:
    return np.asarray(matrix, np.float64).tobytes()


@lru_cache(maxsize=4)  # the maps and their 3-channel copies, for the last two motions
def _missing_blur(shape: tuple[int, int], matrix: bytes, channels: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The maps, repeated over ``channels`` (OpenCV's per-pixel products take them at the image's shape)."""
    if channels:
        return tuple(np.repeat(m[..., None], channels, axis=2) for m in _missing_blur(shape, matrix))
    h, w = shape
    y, x = np.mgrid[:h, :w].astype(np.float32)
    back = np.linalg.inv(np.frombuffer(matrix).reshape(3, 3))
    maps = []
    for axis in (0, 1):  # x, then y
        source = back[axis, 0] * x + back[axis, 1] * y + back[axis, 2]
        f = source - np.floor(source)
        maps.append((2.0 * (0.25 - f * (1.0 - f))).astype(np.float32))
    return tuple(maps)
