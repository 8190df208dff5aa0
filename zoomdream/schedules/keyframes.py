"""Keyframed schedules in the Deforum / Disco Diffusion syntax, a comma-separated list of ``frame:(value)``::

    0:(1.02), 120:(1.05)                 zoom 1.02 at frame 0, easing to 1.05 by frame 120
    0:(0), 60:(1.5)                      angle in degrees
    0: (1.02+0.01*sin(t/20))             an expression of the frame number t
    0:(sin((t+1)/2)), 30:(2)             parentheses may nest inside a value
    0:1.02, 10:1.5                       a plain number may skip the parentheses
    1.02   or   1.02+0.01*sin(t/20)      no keyframes: one value (or expression) for every frame

Each keyframe's expression is evaluated with ``t`` set to the *current* frame, then the values of the keyframes
around that frame are interpolated (linearly, or with a monotone cubic); before the first keyframe the first
value holds, after the last the last value holds.

Text schedules pick string values per keyframe, such as the layers to dream on: ``0:(mixed3), 200:(mixed5)``
or ``0:(block10:1.0,block12:0.5), 100:(block12)``; between keyframes the two values crossfade. Text that does
not start with ``frame:(`` is one constant value, so ``block10:1.0,block12:0.5`` stays a single layer spec.
"""
from __future__ import annotations

import ast
import math
import re
from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np

from zoomdream.errors import ZoomdreamError
from zoomdream.schedules.expressions import KEYFRAME_HINT, _compile, _run, _shown

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


