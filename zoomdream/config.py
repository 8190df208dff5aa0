"""Every setting of a render in one schema: defaults, help text, TOML job files and the saved record.

``Job`` is the single source of defaults. The CLI builds its flags from these fields, a TOML job file sets
the same names (``step_size`` or ``step-size``), and the resolved job is written beside each output so a
render can be reproduced with ``zoomdream render OUT.job.toml``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from zoomdream.errors import ZoomdreamError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

COMMANDS = ("image", "zoom", "video")
ALL = COMMANDS
LOOPS = ("zoom", "video")


def opt(default: Any, help: str, *, commands: tuple[str, ...] = ALL, group: str = "dream", metavar: str | None = None,
        choices: tuple | None = None, affects_frames: bool = True):
    """A job field with the metadata the CLI and the TOML reader need."""
    return field(default=default, metadata=dict(help=help, commands=commands, group=group, metavar=metavar,
                                                 choices=choices, affects_frames=affects_frames))


# Per-command defaults for the settings whose best value depends on the command. A zoom or video frame starts
# from a picture that already carries the dream, so it needs far fewer steps than a fresh still.
COMMAND_DEFAULTS = {
    "image": dict(octaves=4, steps=20),
    "zoom": dict(octaves=2, steps=5),
    "video": dict(octaves=2, steps=8),
}


@dataclass(frozen=True)
class Job:
    command: str = opt("image", "what to render", choices=COMMANDS, group="job")
    input: str | None = opt(None, "input image or video", group="job", affects_frames=False)
    output: str | None = opt(None, "output file: .png/.jpg for image; .mp4/.mov/.mkv/.gif for zoom and video",
                             group="job", affects_frames=False)
    # model
    model: str = opt("efficientnet-lite0", "backbone (see `zoomdream models`)", group="model")
    weights: str | None = opt(None, "weights file for keras.applications backbones (default: the Keras cache; "
                                    "'random' for untrained weights)", group="model", metavar="PATH")
    precision: str = opt("auto", "compute precision: auto times float32 against bfloat16 for this model "
                         "on this machine once (where the CPU has bfloat16) and keeps the faster",
                         choices=("auto", "float32", "bfloat16"), group="model")
    # objective
    layers: str | None = opt(None, "layers to excite, e.g. 'block10:1,block12:0.5' or 'mixed4[37]' "
                                   "(zoom: keyframes like '0:(block8), 200:(block12)'; default: the model's)",
                             metavar="SPEC")
    loss: str = opt("square", "per-layer statistic: square (mean of squared activations) or mean",
                    choices=("square", "mean"))
    guide: str | None = opt(None, "guide image: dream toward its features instead of amplifying", metavar="IMG")
    tv: float = opt(0.0, "total-variation penalty weight; 0.5-2 smooths pixel noise")
    # ascent
    octaves: int | None = opt(None, "number of scales, smallest first (default: image 4; zoom and video 2 per "
                                    "frame, the first zoom frame gets the still-image dream)")
    octave_scale: float = opt(1.4, "size ratio between octaves")
    steps: int | str | None = opt(None, "ascent steps per octave (default: image 20, zoom 5, video 8; "
                                        "zoom: may be keyframed)")
    step_size: float | str = opt(0.02, "ascent step on the [-1, 1] image (zoom: may be keyframed)")
    tile: int = opt(512, "tile size in pixels: memory is bounded by it, not by the frame")
    max_loss: float | None = opt(None, "stop an octave's ascent once the loss passes this")
    seed: int = opt(0, "random seed: same inputs and seed give the same output")
    max_size: int | None = opt(None, "downscale the input so its longest side is at most this", group="job")
    # loops: frames, motion, output
    frames: int = opt(120, "number of frames", commands=("zoom",), group="loop")
    fps: float = opt(24.0, "frames per second of the video", commands=("zoom",), group="loop")
    noise: bool = opt(False, "start from seeded random noise instead of an image", commands=("zoom",), group="loop")
    size: str = opt("640x360", "frame size WxH for --noise starts", commands=("zoom",), group="loop")
    noise_scale: float = opt(0.25, "amplitude of the starting noise (0-1)", commands=("zoom",), group="loop")
    zoom: str = opt("1.02", "zoom per frame, keyframed: '0:(1.02), 120:(1.05)' or '1.02+0.01*sin(t/20)'",
                    commands=("zoom",), group="motion")
    angle: str = opt("0", "rotation per frame in degrees (counter-clockwise), keyframed",
                     commands=("zoom",), group="motion")
    tx: str = opt("0", "x shift per frame in pixels, keyframed", commands=("zoom",), group="motion")
    ty: str = opt("0", "y shift per frame in pixels, keyframed", commands=("zoom",), group="motion")
    center: str | None = opt(None, "zoom centre 'X,Y' in pixels (default: the frame centre)",
                             commands=("zoom",), group="motion")
    interpolation: str = opt("linear", "between keyframes", choices=("linear", "cubic"),
                             commands=("zoom",), group="motion")
    color_match: float = opt(1.0, "pull each frame's colour statistics toward the first frame's (0 = off); "
                                  "keeps long zooms from drifting to grey or flat colour",
                             commands=("zoom",), group="loop")
    start: float = opt(0.0, "start time in the source clip (seconds)", commands=("video",), group="loop")
    duration: float | None = opt(None, "seconds of the clip to render (default: to the end)",
                                 commands=("video",), group="loop")
    every: int = opt(1, "keep every Nth source frame", commands=("video",), group="loop")
    blend: float = opt(0.5, "weight of the warped previous dream in each new frame's start (0-1)",
                       commands=("video",), group="loop")
    smooth: float = opt(0.5, "after dreaming, pull each frame toward the previous output carried along the flow "
                             "(0 = off; higher is steadier, lower more alive)", commands=("video",), group="loop")
    flow: str = opt("dis", "optical flow for coherence: dis, farneback, or none (plain blending)",
                    choices=("dis", "farneback", "none"), commands=("video",), group="loop")
    crf: int = opt(18, "H.264 quality (lower is better, 18 is visually lossless)", commands=LOOPS, group="output",
                   affects_frames=False)
    gif_fps: float | None = opt(None, "GIF frame rate (default: the video's; 12 halves the file)", commands=LOOPS,
                                group="output", affects_frames=False)
    gif_width: int | None = opt(None, "GIF width in pixels (default: the frame's)", commands=LOOPS,
                                group="output", affects_frames=False)
    frames_dir: str | None = opt(None, "also keep numbered PNG frames here", commands=LOOPS, group="output",
                                 metavar="DIR", affects_frames=False)
    preview: int = opt(0, "every N frames, rewrite OUT.preview.png with the latest frame (0 = off)",
                       commands=LOOPS, group="output", affects_frames=False)
    resume: bool = opt(False, "continue an interrupted render from its last completed frame", commands=LOOPS,
                       group="output", affects_frames=False)

    def __post_init__(self):
        if self.command not in COMMANDS:
            raise ZoomdreamError(f"unknown command '{self.command}' (choose one of: {', '.join(COMMANDS)})")
        for name, value in COMMAND_DEFAULTS[self.command].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        for f in fields(self):  # "5" from the command line and 5 from TOML are the same setting
            value = getattr(self, f.name)
            if isinstance(value, str) and "str" in str(f.type) and ("int" in str(f.type) or "float" in str(f.type)):
                object.__setattr__(self, f.name, _number_or_text(value))

    def settings_hash(self) -> str:
        """Hash of everything that changes the frames: resuming under a different hash is refused."""
        kept = {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["affects_frames"]}
        return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


FIELDS = {f.name: f for f in fields(Job)}


def _number_or_text(value: str) -> int | float | str:
    try:
        number = float(value)
    except ValueError:
        return value.strip()
    return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number


def _check_type(name: str, value: Any) -> Any:
    """TOML values arrive typed; accept ints for floats and numbers for keyframable strings."""
    f = FIELDS[name]
    default = f.default
    kinds = str(f.type)
    if value is None or (isinstance(value, bool) and "bool" in kinds):
        return value
    if "str" in kinds and isinstance(value, str):
        return value
    if "int" in kinds and isinstance(value, int) and not isinstance(value, bool):
        return value
    if "float" in kinds and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if "int" not in kinds else value
    if "str" in kinds and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ZoomdreamError(f"setting '{name}' = {value!r} has the wrong type (expected {kinds}, default {default!r})")


def make_job(values: dict[str, Any]) -> Job:
    """A Job from a mapping of settings; unknown names get an error listing the valid ones."""
    clean = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in FIELDS:
            raise ZoomdreamError(f"unknown setting '{key}' (valid: {', '.join(FIELDS)})")
        clean[name] = _check_type(name, value)
    job = Job(**clean)
    choices = {f.name: f.metadata["choices"] for f in fields(Job) if f.metadata["choices"]}
    for name, allowed in choices.items():
        if getattr(job, name) not in allowed:
            raise ZoomdreamError(f"{name} = '{getattr(job, name)}' is not one of: {', '.join(allowed)}")
    return job


def load_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ZoomdreamError(f"job file '{path}' not found (check the path)") from None
    except tomllib.TOMLDecodeError as e:
        raise ZoomdreamError(f"job file '{path}' is not valid TOML: {e}") from None
    return data


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def job_to_toml(job: Job) -> str:
    """The resolved job as TOML (unset options are left out: TOML has no null)."""
    lines = ["# zoomdream job: re-run with `zoomdream render THIS_FILE`"]
    for f in fields(job):
        value = getattr(job, f.name)
        if value is not None and f.name != "resume":
            lines.append(f"{f.name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def save_job(job: Job, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(job_to_toml(job))
    tmp.replace(path)
