"""What may change while `zoomdream live` runs: the dream's strength (step size), steps, octaves and layers, its
coherence (blend, smooth) and a ``--noise`` zoom's motion. OSC, the studio's Live tab and presets set them
here; the live frame source reads them once a frame. A change is checked whole before it lands (a bad value
raises ZoomdreamError and changes nothing), so a controller's slip never stops a show.

Schedules may read the room's music by name, as ``--audio`` features do in a render: ``variables`` records
each frame's features when its source frame is taken, so no feature comes from audio after its frame.
"""
from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from zoomdream.audio import NAMES as AUDIO_NAMES
from zoomdream.audio import SERIES as AUDIO_SERIES
from zoomdream.config import MAX_TEXT, Job, load_job_file
from zoomdream.engine import check_terms
from zoomdream.errors import ZoomdreamError, one_line
from zoomdream.loops.zoom import MOTION, check_motion
from zoomdream.objective import parse_layers
from zoomdream.schedules import Schedule, parse_schedule
from zoomdream.settings import MAX_OCTAVES, MAX_STEPS, DreamSettings, number

SCHEDULES = ("steps", "step_size", *MOTION)  # a number or an expression, which may read the music
NUMBERS = {"octaves": dict(low=1, high=MAX_OCTAVES, integer=True), "octave_scale": dict(above=1, high=10),
           "blend": dict(low=0, high=1), "smooth": dict(low=0, high=0.99)}
LIMITS = {"steps": dict(low=0, high=MAX_STEPS), "step_size": dict(low=0, high=10)}  # each frame's value
NAMES = (*SCHEDULES, *NUMBERS, "layers")  # every setting a running live session takes
KEPT_FRAMES = 8  # frames whose variables are kept (a schedule reads its own frame's)


def live_schedule(name: str, value: Any, easing: str, variables: LiveVariables) -> Schedule:
    """Setting ``name``'s schedule, reading the music through ``variables``."""
    return parse_schedule(value, name=f"--{name.replace('_', '-')}", interpolation=easing, variables=variables)


def at_first_frame(name: str, value: Any, easing: str) -> float:
    """A live schedule's value at frame 0 in silence: what a session starts from, and what a change is
    checked by (on variables of its own, so the check reads no music)."""
    return live_schedule(name, value, easing, LiveVariables()).at(0)


class LiveVariables:
    """The variables live schedules read by name (as ``audio.Track`` offers a render's): the room's music at
    each frame, as ``record``ed when that frame's source frame was taken. ``smoothed`` is ``smooth()``'s
    envelope follower stepped by the real time between frames, since a live frame rate varies."""

    names = AUDIO_NAMES
    series_names = AUDIO_SERIES

    def __init__(self):
        self.frames: dict[int, tuple[float, dict[str, float]]] = {}  # t -> (when, values)
        self.levels: dict[tuple, tuple[int, float, float]] = {}  # (name, attack, release) -> (t, when, level)

    def record(self, t: int, values: dict[str, float], when: float) -> None:
        self.frames[t] = (when, values)
        self.frames.pop(t - KEPT_FRAMES, None)

    def value(self, name: str, t: int) -> float:
        """Frame t's value (0 before any music came: silence)."""
        return float(self.frames.get(t, (0.0, {}))[1].get(name, 0.0))

    def smoothed(self, name: str, t: int, attack: float, release: float) -> float:
        key, x = (name, attack, release), self.value(name, t)
        when = self.frames.get(t, (time.monotonic(), {}))[0]
        last = self.levels.get(key)
        if last is not None and last[0] == t:
            return last[2]
        if last is None:
            level = x
        else:
            seconds = attack if x > last[2] else release
            rate = 1.0 if seconds <= 0 else 1.0 - math.exp(-max(0.0, when - last[1]) / seconds)
            level = last[2] + rate * (x - last[2])
        self.levels[key] = (t, when, level)
        return level


@dataclass(frozen=True)
class Look:
    """One frame's settings, as the controls held them when it was taken."""

    dream: DreamSettings
    layers: str | None  # None: the model's default layers
    blend: float
    smooth: float
    motion: dict[str, float]  # a --noise zoom's motion at this frame (empty for a source)
    version: int  # changes whenever a setting does


class Controls:
    """The live settings, changed by ``set``/``update``/``load_preset`` from any thread and read by ``look`` on
    the dream's. ``audio`` (set by whoever starts the music's analysis) has ``snapshot()``: the features of
    the audio heard so far. ``say`` gets one line when a schedule cannot be evaluated (the last look is kept)."""

    def __init__(self, job: Job, *, zoom_size: tuple[int, int] | None = None, say: Callable[[str], None] = print):
        self.job, self.say = job, say
        self.zoom_size = zoom_size  # a --noise zoom's frame size (its motion is checked against it); None: a source
        self.noise = zoom_size is not None
        self.variables = LiveVariables()
        self.audio = None
        self.lock = threading.Lock()
        self.version = 0
        self.given: dict[str, Any] = {name: getattr(job, name) for name in self.names()}  # as given: text, numbers
        self.values: dict[str, Any] = self._checked(self.given)
        self.last: Look | None = None

    def names(self) -> tuple[str, ...]:
        """The settings this session takes (motion: a --noise zoom's only)."""
        return NAMES if self.noise else tuple(name for name in NAMES if name not in MOTION)

    def set(self, name: str, value: Any) -> None:
        """One setting, e.g. ``set("step_size", 0.03)`` or ``set("layers", "block10:1")``."""
        self.update({name: value})

    def update(self, changes: dict[str, Any]) -> None:
        """Several settings at once: all of them land, or (one is bad) none."""
        checked = self._checked(changes)
        with self.lock:
            self.values.update(checked)
            self.given.update(changes)
            self.version += 1

    def shown(self, name: str) -> Any:
        """Setting ``name`` as a control shows it: a schedule's value at frame 0 in silence, else as given."""
        value = self.given[name]
        return at_first_frame(name, value, self.job.easing) if name in SCHEDULES else value

    def load_preset(self, path: str) -> list[str]:
        """The live settings a job file holds (a look saved from the studio, or any job), applied at once;
        returns their names. The job's other settings (its input, output, size) do not apply to a running
        session and are left alone."""
        data = {str(key).replace("-", "_"): value for key, value in load_job_file(path).items()}
        changes = {name: data[name] for name in self.names() if name in data}
        if not changes:
            raise ZoomdreamError(f"preset '{path}' sets none of the live settings (give a job file with any of "
                                 f"{', '.join(NAMES)})")
        self.update(changes)
        return list(changes)

    def look(self, t: int, when: float | None = None) -> Look:
        """Frame t's settings, with the music as heard now (``when``: when its source frame was taken)."""
        self.variables.record(t, self.audio.snapshot() if self.audio is not None else {},
                              time.monotonic() if when is None else when)
        with self.lock:
            values, version = dict(self.values), self.version
        try:
            dream = DreamSettings(octaves=values["octaves"], octave_scale=values["octave_scale"],
                                  steps=round(number(values["steps"].at(t), "steps", **LIMITS["steps"], frame=t)),
                                  step_size=number(values["step_size"].at(t), "step_size", **LIMITS["step_size"],
                                                   frame=t),
                                  max_loss=self.job.max_loss)
            motion = {name: values[name].at(t) for name in MOTION} if self.noise else {}
            if motion:
                check_motion(motion, t, self.zoom_size)
        except ZoomdreamError as error:
            if self.last is None:
                raise
            self.say(f"zoomdream: {one_line(str(error))} (keeping the last settings)")
            return self.last
        self.last = Look(dream, values["layers"], values["blend"], values["smooth"], motion, version)
        return self.last

    def _checked(self, changes: dict[str, Any]) -> dict[str, Any]:
        checked = {}
        for name, value in changes.items():
            if name not in NAMES:
                raise ZoomdreamError(f"unknown live setting '{name}' (valid: {', '.join(NAMES)})")
            if name in MOTION and not self.noise:
                raise ZoomdreamError(f"{name} moves a --noise zoom (this session dreams a source)")
            if isinstance(value, str) and len(value) > MAX_TEXT:
                raise ZoomdreamError(f"{name}: {len(value):,} characters is too long (at most {MAX_TEXT:,})")
            checked[name] = self._value(name, value)
        return checked

    def _value(self, name: str, value: Any) -> Any:
        if name in SCHEDULES:
            first = at_first_frame(name, value, self.job.easing)
            if name in LIMITS:
                number(first, name, **LIMITS[name])
            elif self.noise:
                check_motion({name: first}, 0, self.zoom_size)
            return live_schedule(name, value, self.job.easing, self.variables)
        if name in NUMBERS:
            return number(value, name, **NUMBERS[name])
        if value is None or (isinstance(value, str) and not value.strip()):
            return None  # the model's default layers
        if not isinstance(value, str):
            raise ZoomdreamError(f"--layers: expected text such as 'block10:1,block12:0.5', got {value!r}")
        if re.match(r"\s*-?[0-9]+\s*:", value):
            raise ZoomdreamError(f"--layers '{value[:80]}': live takes one layer spec, not keyframes (give e.g. "
                                 f"block10:1, and change it while it runs over OSC)")
        check_terms(parse_layers(value), value, self.job)
        return value
