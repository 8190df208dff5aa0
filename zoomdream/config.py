"""Every setting of a render in one schema, and the table of commands.

``Job`` is the flat, user-facing schema: the CLI builds its flags from these fields, a TOML job file sets the
same names (``step_size`` or ``step-size``), and the resolved job is written beside each output so a render can
be reproduced with ``zoomdream render OUT.job.toml``. Its defaults come from the typed settings in
``zoomdream.settings`` (or a command's entry in ``COMMANDS``); each loop resolves a Job into its own typed
settings once, before any work.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from zoomdream.errors import ZoomdreamError
from zoomdream.settings import CPU_TILE, GPU_TILE, DreamSettings, EngineSettings, OutputSettings

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

SCHEMA_VERSION = 2
RENAMED = {"interpolation": "easing"}  # old key -> new key: old job files load with a one-line warning
MAX_TEXT = 100_000  # characters of a text setting (an expression, keyframes, layers): each is parsed up front
MAX_PATH = 4096  # characters of a path (Linux's PATH_MAX)
MAX_JOB_FILE = 1 << 20  # bytes of a job file

# The kinds of value a setting holds. "schedule": a number or keyframe/expression text ("5" and 5 are the same).
KINDS = ("str", "int", "float", "bool", "schedule", "path")


@dataclass(frozen=True)
class Command:
    """One command: its help, examples, the defaults that differ from the still image's, and the module that
    holds its frame source (imported only when it runs, so --help never starts TensorFlow)."""

    name: str
    help: str
    examples: str
    module: str
    input_help: str
    input_required: bool = True
    defaults: dict = field(default_factory=dict)
    dreams: bool = True  # False: the model and dream settings are not this command's (interpolate)


# A zoom or video frame starts from a picture that already carries the dream, so it needs far fewer steps than
# a fresh still. A new loop kind is one module under zoomdream/loops/ and one entry here.
COMMANDS = {
    "image": Command("image", "dream one still image", """examples:
  zoomdream image samples/chelsea.png -o dream.png
  zoomdream image photo.jpg -o out.jpg --layers block8:1,block12:0.5 --octaves 5 --steps 30
  zoomdream image photo.jpg -o out.png --layers 'block10[17]'          # one channel of block10
  zoomdream image photo.jpg -o out.png --model inception_v3 --layers mixed3:1,mixed5:1
  zoomdream image photo.jpg -o out.png --guide flowers.jpg             # dream toward another image""",
                     "zoomdream.loops.still", "input image"),
    "zoom": Command("zoom", "infinite zoom: dream each frame, zoom into it, repeat (from an image or noise)",
                    """examples:
  zoomdream zoom samples/chelsea.png -o zoom.mp4 --frames 240
  zoomdream zoom --noise --size 640x360 -o noise.mp4 --frames 480 --zoom '0:(1.02), 240:(1.05)'
  zoomdream zoom in.jpg -o spin.gif --angle '0.5*sin(t/30)' --gif-width 320
  zoomdream zoom in.jpg -o long.mp4 --frames 2000 --resume            # continue after Ctrl-C
  zoomdream zoom in.jpg -o fast.mp4 --interpolate 4 --cluster         # frames between dreamed ones on workers""",
                    "zoomdream.loops.zoom", "input image", input_required=False,
                    defaults=dict(octaves=2, steps=5)),
    "video": Command("video", "dream an existing clip frame by frame with optical-flow coherence, keeping its audio",
                     """examples:
  zoomdream video clip.mp4 -o dreamy.mp4
  zoomdream video clip.webm -o out.mp4 --start 2 --duration 5 --max-size 640 --blend 0.6""",
                     "zoomdream.loops.video", "input video", defaults=dict(octaves=2, steps=8)),
    "interpolate": Command("interpolate", "make any clip smoother: F-1 frames between each pair along the optical "
                                          "flow, frame rate times F, audio kept", """examples:
  zoomdream interpolate dreamy.mp4 -o smooth.mp4 --factor 2        # 12 fps -> 24 fps
  zoomdream video clip.mp4 -o dreamy.mp4 --every 2 && zoomdream interpolate dreamy.mp4 -o out.mp4""",
                           "zoomdream.loops.interpolate", "input video", dreams=False),
    "live": Command("live", "dream a camera, stream or file as it plays, to files, stream URLs or a virtual camera",
                    """examples:
  zoomdream live udp://127.0.0.1:5000 -o udp://127.0.0.1:5001 -o show.mp4 --size 256x144
  zoomdream live /dev/video0 -o virtualcam --fps 12 --seconds 60
  zoomdream live clip.mp4 --loop-source -o srt://127.0.0.1:9000 --max-size 426
  zoomdream live --noise --size 256x144 -o zoom.mkv --zoom 1.03 --seconds 30""",
                    "zoomdream.loops.live", "camera (/dev/video0 or an index), stream URL, video file or image",
                    input_required=False, defaults=dict(octaves=1, steps=3)),
}
ALL = tuple(COMMANDS)
DREAMS = tuple(name for name, command in COMMANDS.items() if command.dreams)
LOOPS = tuple(name for name in COMMANDS if name not in ("image", "live"))  # live keeps no frames to resume
LIVE = ("live",)


def opt(default: Any, help: str, kind: str, *, commands: tuple[str, ...] = DREAMS, group: str = "dream",
        metavar: str | None = None, choices: tuple | None = None, affects_frames: bool = True,
        only_with: str | None = None):
    """A job field with the metadata the CLI and the TOML reader need; ``kind`` is one of KINDS. ``commands``:
    those that read it; ``only_with``: a bool setting without which it is not read (a noise start's size)."""
    assert kind in KINDS, kind
    return field(default=default, metadata=dict(help=help, kind=kind, commands=commands, group=group,
                                                 metavar=metavar, choices=choices, affects_frames=affects_frames,
                                                 only_with=only_with))


_DREAM, _ENGINE = DreamSettings(), EngineSettings()
_OUT = OutputSettings(Path("."))


@dataclass(frozen=True)
class Job:
    command: str = opt("image", "what to render", "str", choices=ALL, commands=ALL, group="job")
    input: str | None = opt(None, "input image or video", "path", commands=ALL, group="job", affects_frames=False)
    output: str | None = opt(None, "output file: .png/.jpg for image; .mp4/.mov/.mkv/.gif/.webp for zoom and "
                                   "video", "path", commands=ALL, group="job", affects_frames=False)
    # model
    model: str = opt(_ENGINE.model, "backbone (see `zoomdream models`)", "str", group="model")
    weights: str | None = opt(_ENGINE.weights, "weights file for keras.applications backbones (default: the Keras "
                                               "cache; 'random' for untrained weights)", "path", group="model",
                              metavar="PATH")
    precision: str = opt(_ENGINE.precision, "compute precision: auto times float32 against bfloat16 for this model "
                         "on this machine once (where the CPU has bfloat16) and keeps the faster", "str",
                         choices=("auto", "float32", "bfloat16"), group="model")
    # objective
    layers: str | None = opt(_ENGINE.layers, "layers to excite, e.g. 'block10:1,block12:0.5' or 'mixed4[37]' "
                                             "(zoom: keyframes like '0:(block8), 200:(block12)'; default: the "
                                             "model's)", "str", metavar="SPEC")
    loss: str = opt(_ENGINE.loss, "per-layer statistic: square (mean of squared activations) or mean", "str",
                    choices=("square", "mean"))
    guide: str | None = opt(_ENGINE.guide, "guide image: dream toward its features instead of amplifying", "path",
                            metavar="IMG")
    tv: float = opt(_ENGINE.tv, "total-variation penalty weight; 0.5-2 smooths pixel noise", "float")
    # ascent
    octaves: int | None = opt(None, f"number of scales, smallest first (default: image {_DREAM.octaves}; zoom "
                                    f"and video 2 per frame, the first zoom frame gets the still-image dream)",
                              "int")
    octave_scale: float = opt(_DREAM.octave_scale, "size ratio between octaves (above 1)", "float")
    steps: int | str | None = opt(None, f"ascent steps per octave (default: image {_DREAM.steps}, zoom 5, video "
                                        f"8; zoom and video: may be keyframed and read --audio features)", "schedule")
    step_size: float | str = opt(_DREAM.step_size, "ascent step on the [-1, 1] image (zoom and video: may be "
                                                   "keyframed and read --audio features, as in 0.015+0.02*bass)",
                                 "schedule")
    tile: int | None = opt(None, f"tile size in pixels: memory is bounded by it, not by the frame (default: "
                                 f"{CPU_TILE} on a CPU, {GPU_TILE} on a GPU)", "int")
    max_loss: float | None = opt(_DREAM.max_loss, "stop an octave's ascent once the loss passes this", "float")
    seed: int = opt(0, "random seed: same inputs and seed give the same output", "int")
    max_size: int | None = opt(None, "downscale the input so its longest side is at most this", "int",
                               group="job")
    # loops: frames, motion, output
    frames: int | None = opt(None, "number of frames (default: 120, or as long as --audio)", "int",
                             commands=("zoom", "live"), group="loop")
    fps: float = opt(24.0, "frames per second of the video", "float", commands=("zoom", "live"), group="loop")
    noise: bool = opt(False, "start from seeded random noise instead of an image", "bool", commands=("zoom", "live"),
                      group="loop")
    size: str = opt("640x360", "frame size WxH for --noise starts (live: every output's size)", "str",
                    commands=("zoom", "live"), group="loop", only_with="noise")
    noise_scale: float = opt(0.25, "amplitude of the starting noise (0-1)", "float", commands=("zoom", "live"),
                             group="loop", only_with="noise")
    zoom: str = opt("1.02", "zoom per frame, keyframed: '0:(1.02), 120:(1.05)' or '1.02+0.01*sin(t/20)'",
                    "schedule", commands=("zoom", "live"), group="motion")
    angle: str = opt("0", "rotation per frame in degrees (counter-clockwise), keyframed", "schedule",
                     commands=("zoom", "live"), group="motion")
    tx: str = opt("0", "x shift per frame in pixels, keyframed", "schedule", commands=("zoom", "live"), group="motion")
    ty: str = opt("0", "y shift per frame in pixels, keyframed", "schedule", commands=("zoom", "live"), group="motion")
    center: str | None = opt(None, "zoom centre 'X,Y' in pixels (default: the frame centre)", "str",
                             commands=("zoom", "live"), group="motion")
    easing: str = opt("linear", "curve between keyframes", "str", choices=("linear", "cubic"),
                      commands=("zoom", "live"), group="motion")
    loop: bool = opt(False, "make the video loop seamlessly: the motion wraps and the last frames flow into the "
                            "first", "bool", commands=("zoom",), group="loop")
    interpolate: int = opt(1, "dream every Nth frame and make the frames between by interpolation (zoom: along "
                              "the camera path; video: along the source's optical flow); 2-4 is 2-4x faster",
                           "int", commands=("zoom", "video"), group="loop")
    factor: int = opt(2, "frames per input frame: F-1 new frames between each pair, frame rate times F",
                      "int", commands=("interpolate",), group="loop")
    color_match: float = opt(1.0, "pull each frame's colour statistics toward the first frame's (0 = off); "
                                  "keeps long zooms from drifting to grey or flat colour", "float",
                             commands=("zoom", "live"), group="loop")
    start: float = opt(0.0, "start time in the source clip (seconds)", "float", commands=("video",), group="loop")
    duration: float | None = opt(None, "seconds of the clip to render (default: to the end)", "float",
                                 commands=("video",), group="loop")
    every: int = opt(1, "keep every Nth source frame", "int", commands=("video",), group="loop")
    blend: float = opt(0.5, "weight of the warped previous dream in each new frame's start (0-1)", "float",
                       commands=("video", "live"), group="loop")
    smooth: float = opt(0.85, "after dreaming, pull each frame toward the previous output carried along the flow "
                             "(0 = off; higher is steadier, lower more alive)", "float", commands=("video", "live"),
                        group="loop")
    flow: str = opt("dis", "optical flow for coherence and interpolation: dis, farneback, or none (plain "
                           "blending)", "str", choices=("dis", "farneback", "none"),
                    commands=("video", "interpolate", "live"), group="loop")
    flow_size: int = opt(0, "longest side, in pixels, the optical flow is estimated at and then scaled up (0: the "
                            "frames' own size; live: 320); smaller is faster on big frames", "int",
                         commands=("video", "interpolate", "live"), group="loop")
    flow_workers: int | None = opt(None, "threads doing the work that needs only the source (optical flow; "
                                         "interpolate: whole frames) ahead of it being used (default: the free "
                                         "cores, at most 8; 0: in line)", "int",
                                   commands=("video", "interpolate"), group="loop", affects_frames=False)
    audio: str | None = opt(None, "music: its features (loudness, onset, bass, mid, treble, beat, bpm) become "
                                  "variables of every schedule, and it plays in the output; any audio ffmpeg "
                                  "reads (video: default the clip's own soundtrack; live: also 'mic' or "
                                  "'source', the source's own sound, a FILE playing from the first frame)", "path",
                            commands=("zoom", "video", "live"), group="audio", metavar="FILE",
                            affects_frames=False)
    audio_start: float = opt(0.0, "seconds into --audio where the music starts", "float", commands=("zoom", "video"),
                             group="audio")
    audio_duration: float | None = opt(None, "seconds of --audio to use (default: to its end; a zoom without "
                                             "--frames lasts as long)", "float", commands=("zoom", "video"),
                                       group="audio")
    audio_sha256: str | None = opt(None, "SHA-256 of --audio, recorded in saved jobs: another track is refused",
                                   "str", commands=("zoom", "video"), group="audio", metavar="HEX")
    crf: int = opt(_OUT.crf, "H.264 quality (lower is better, 18 is visually lossless)", "int", commands=LOOPS,
                   group="output", affects_frames=False)
    gif_fps: float | None = opt(_OUT.gif_fps, "GIF and WebP frame rate (default: the video's; 12 halves the file)",
                                "float", commands=LOOPS, group="output", affects_frames=False)
    gif_width: int | None = opt(_OUT.gif_width, "GIF and WebP width in pixels (default: the frame's)", "int",
                                commands=LOOPS, group="output", affects_frames=False)
    frames_dir: str | None = opt(None, "also keep numbered PNG frames here", "path", commands=LOOPS,
                                 group="output", metavar="DIR", affects_frames=False)
    preview: int = opt(_OUT.preview, "every N frames, rewrite OUT.preview.png with the latest frame (0 = off)",
                       "int", commands=LOOPS, group="output", affects_frames=False)
    resume: bool = opt(_OUT.resume, "continue an interrupted render from its last completed frame", "bool",
                       commands=LOOPS, group="output", affects_frames=False)
    seconds: float | None = opt(None, "live: stop this many seconds after the first source frame (default: until "
                                      "Ctrl-C)", "float", commands=LIVE, group="loop")
    loop_source: bool = opt(False, "live: play a source file again from its start when it ends", "bool",
                            commands=LIVE, group="loop")
    osc: str | None = opt(None, "live: take OSC control on this UDP port or HOST:PORT (/zoomdream/step_size 0.03)",
                          "str", commands=LIVE, group="loop", metavar="PORT", affects_frames=False)
    export_schedules: str | None = opt(None, "before rendering, write every schedule and audio feature per frame "
                                             "to this CSV", "path", commands=("zoom", "video"), group="output",
                                       metavar="FILE.csv", affects_frames=False)

    def __post_init__(self):
        if self.command not in COMMANDS:
            raise ZoomdreamError(f"unknown command '{self.command}' (choose one of: {', '.join(COMMANDS)})")
        for name, value in {"octaves": _DREAM.octaves, "steps": _DREAM.steps,
                            **COMMANDS[self.command].defaults}.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        for f in fields(self):  # "5" from the command line and 5 from TOML are the same setting
            value = getattr(self, f.name)
            if f.metadata["kind"] == "schedule" and isinstance(value, str):
                object.__setattr__(self, f.name, _number_or_text(value))

    def settings_hash(self) -> str:
        """Hash of everything that changes the frames: resuming under a different hash is refused. Paths count
        as absolute paths: the same file named from another folder (a job file's) is the same setting."""
        kept = {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["affects_frames"]}
        kept.update({name: os.path.abspath(value) for name, value in self.paths().items() if name in kept})
        return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


    def paths(self) -> dict[str, str]:
        """The job's file and folder settings that are set (``weights = "random"`` names no file)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.metadata["kind"] == "path" and getattr(self, f.name) not in (None, "", "random")}


FIELDS = {f.name: f for f in fields(Job)}
PATHS = tuple(name for name, f in FIELDS.items() if f.metadata["kind"] == "path")


def _number_or_text(value: str) -> int | float | str:
    try:
        number = float(value)
    except ValueError:
        return value.strip()
    return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number


_ACCEPTS = {"str": (str,), "path": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
            "schedule": (str, int, float)}


def _check_type(name: str, value: Any) -> Any:
    """TOML values arrive typed; accept ints for floats, and numbers or text for schedules."""
    f = FIELDS[name]
    kind = f.metadata["kind"]
    if value is None:
        return value
    most = MAX_PATH if kind == "path" else MAX_TEXT
    if isinstance(value, str) and len(value) > most:
        raise ZoomdreamError(f"setting '{name}' is {len(value):,} characters long (at most {most:,}: shorten it)")
    if isinstance(value, _ACCEPTS[kind]) and (kind == "bool" or not isinstance(value, bool)):
        return float(value) if kind == "float" else value
    raise ZoomdreamError(f"setting '{name}' = {value!r} has the wrong type (expected {kind}, default {f.default!r})")


def make_job(values: dict[str, Any]) -> Job:
    """A Job from a mapping of settings; unknown names get an error listing the valid ones, renamed ones a
    warning, and a job file from a newer zoomdream an error."""
    clean = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name == "schema":
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= SCHEMA_VERSION:
                raise ZoomdreamError(f"job schema {value!r} is not one this zoomdream reads (1 to {SCHEMA_VERSION}; "
                                     f"upgrade zoomdream for newer job files)")
            continue
        if name in RENAMED:
            print(f"zoomdream: warning: setting '{key}' is now '{RENAMED[name]}' (rename it in the job file)",
                  file=sys.stderr)
            name = RENAMED[name]
        if name not in FIELDS:
            raise ZoomdreamError(f"unknown setting '{key}' (valid: {', '.join(FIELDS)})")
        clean[name] = _check_type(name, value)
    job = Job(**clean)
    choices = {f.name: f.metadata["choices"] for f in fields(Job) if f.metadata["choices"]}
    for name, allowed in choices.items():
        if getattr(job, name) not in allowed:
            raise ZoomdreamError(f"{name} = '{getattr(job, name)}' is not one of: {', '.join(allowed)}")
    # Another command's settings (a job file for `render` may hold any) are not this job's: back to their
    # defaults, so the saved job, which leaves them out, loads back with the same settings hash.
    return replace(job, **{f.name: f.default for f in fields(job) if not applies(job, f.name)})


def applies(job: Job, name: str) -> bool:
    """Whether setting ``name`` is one of ``job``'s own: its command reads it (a noise start's size: with --noise)."""
    meta = FIELDS[name].metadata
    only = meta["only_with"] is None or job.command in LIVE or bool(getattr(job, meta["only_with"]))  # live: --size too
    return job.command in meta["commands"] and only


def load_toml(path: str | Path) -> dict[str, Any]:
    if os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path):
        raise ZoomdreamError(f"job file '{path}' is not a regular file (a pipe, socket or device; save it to a "
                             f"file first)")
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_JOB_FILE + 1)
        if len(text) > MAX_JOB_FILE:
            raise ZoomdreamError(f"job file '{path}' is larger than {MAX_JOB_FILE >> 20} MB (a job file holds "
                                 f"settings only: check the file)")
        data = tomllib.loads(text.decode())
    except RecursionError:
        raise ZoomdreamError(f"job file '{path}' nests values too deeply (check its syntax)") from None
    except FileNotFoundError:
        raise ZoomdreamError(f"job file '{path}' not found (check the path)") from None
    except IsADirectoryError:
        raise ZoomdreamError(f"job file '{path}' is a folder (give a .toml file)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ZoomdreamError(f"job file '{path}' is not valid TOML: {first} (check its syntax)") from None
    except OSError as e:
        raise ZoomdreamError(f"cannot read job file '{path}': {e.strerror or e} (check permissions)") from None
    return data


def load_job_file(path: str | Path) -> dict[str, Any]:
    """A job file's settings, its relative paths (input, output, ...) taken from the job file's folder, as tools
    with config files do: ``zoomdream render ../renders/zoom.job.toml`` finds what the job names."""
    data = load_toml(path)
    folder = Path(path).parent
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if RENAMED.get(name, name) in PATHS and isinstance(value, str) and value not in ("", "random"):
            data[key] = str(folder / os.path.expanduser(value))  # an absolute value stays as it is
    return data


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def job_to_toml(job: Job, folder: str | Path | None = None) -> str:
    """The resolved job as TOML: its command's own settings (unset options are left out: TOML has no null).
    With ``folder`` (where the file goes), paths are written to load from there (``load_job_file``): relative
    to it for files under it, absolute for others, so the file reloads from any current folder."""
    lines = ["# zoomdream job: re-run with `zoomdream render THIS_FILE`", f"schema = {SCHEMA_VERSION}"]
    paths = {} if folder is None else {name: _path_from(value, Path(folder)) for name, value in job.paths().items()}
    for f in fields(job):
        value = paths.get(f.name, getattr(job, f.name))
        if value is not None and f.name != "resume" and applies(job, f.name):
            lines.append(f"{f.name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _path_from(value: str, folder: Path) -> str:
    """``value`` as a job file in ``folder`` names it: relative under that folder, else absolute."""
    path, here = os.path.abspath(value), os.path.abspath(folder)
    return os.path.relpath(path, here) if path.startswith(os.path.join(here, "")) else path


def save_job(job: Job, path: str | Path) -> None:
    """Write ``job`` as TOML in one step. Its writer is imported here, not at the top: ``zoomdream.media`` loads
    numpy and imageio, which the CLI's answers (a usage error, --help) never need."""
    from zoomdream.media.files import atomic_write_bytes

    path = Path(path)
    atomic_write_bytes(path, job_to_toml(job, path.parent).encode())


def job_inputs(job: Job) -> list[Path]:
    """The files a job reads, which nothing it writes may be."""
    return [Path(p) for p in (job.input, job.guide, job.weights, job.audio) if p and p != "random"]
