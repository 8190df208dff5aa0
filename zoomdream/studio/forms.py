"""The studio's forms without the web: which Job settings each command's form shows and how, what a fresh form
holds, and the Job a filled-in form describes (uploads kept under a name made from their content)."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from zoomdream.config import FIELDS, Job, make_job
from zoomdream.errors import ZoomdreamError
from zoomdream.media.files import atomic_copy, file_digest

TABS = ("image", "zoom", "video")
FORMATS = {"image": (".png", ".jpg"), "zoom": (".mp4", ".gif"), "video": (".mp4", ".gif")}
# Shown open in each form; every other setting of the command sits under "More settings".
MAIN = ("input", "noise", "size", "frames", "fps", "start", "duration", "max_size", "model", "layers", "octaves",
        "steps", "step_size", "zoom", "angle", "tx", "ty", "loop", "interpolate", "audio")
FILES = ("input", "guide", "audio")  # uploaded, each a whole row
# Set by the studio itself, not by the form.
NOT_IN_FORM = ("command", "output", "resume", "frames_dir", "preview", "export_schedules", "audio_sha256")
# What each field does, for a person at the page (the CLI's help speaks of flags and the engine's numbers).
HELP = {
    "max_size": "shrink a big input so its longest side is at most this many pixels (faster, softer)",
    "model": "the trained network that dreams: each sees different shapes (see the layers tab)",
    "layers": "which of the network's layers to strengthen, e.g. block10:1,block12:0.5; empty: the model's "
              "favourites. Pick them by eye in the layers tab. A zoom may change them over time: "
              "0:(block8), 200:(block12)",
    "octaves": "how many sizes the dream works at, smallest first: more gives larger shapes (empty: 4 for a "
               "picture, 2 per frame for zoom and video)",
    "steps": "how long each size is dreamed: more is stronger and slower (empty: 20 for a picture, 5 per zoom "
             "frame, 8 per video frame; may follow the music, e.g. 4+6*bass)",
    "step_size": "how hard each step pushes: larger is bolder, too large turns to noise (may follow the music, "
                 "e.g. 0.015+0.02*bass)",
    "weights": "a weights file of your own for the network, or 'random' for an untrained one; empty: its usual "
               "weights",
    "precision": "auto picks the faster number format for this computer (it checks once); float32 is exact",
    "loss": "square rewards strong responses of either sign (the clearest shapes); mean is the classic look",
    "guide": "dream toward the shapes of this picture instead of whatever the network sees",
    "tv": "smooths pixel-size grain: 0.5 to 2 calms it, 0 leaves it",
    "octave_scale": "how much bigger each dream size is than the one before (above 1)",
    "tile": "the dream works on squares of this many pixels: smaller uses less memory, any size gives the same "
            "picture",
    "max_loss": "stop dreaming a size once its strength passes this (empty: never)",
    "seed": "the same picture, settings and seed always give the same result; change it for another variation",
    "size": "the frame size, width x height, when starting from noise",
    "frames": "how many frames to make (empty: 120, or as long as the music)",
    "audio": "music: its loudness, beats, bass, mid and treble can drive any setting that changes over time, and "
             "it plays in the result (a video keeps its own sound when this is empty)",
    "audio_start": "where in the music to start, in seconds",
    "audio_duration": "how many seconds of the music to use (empty: to its end; a zoom with no frame count "
                      "lasts as long)",
    "crf": "video quality: lower is better and bigger; 18 looks lossless",
    "frames_dir": "also keep every frame as a numbered picture in this folder",
}


def form_fields(command: str) -> list[str]:
    """The Job settings a command's form shows, main ones first, each in the Job's order."""
    names = [f.name for f in fields(Job) if command in f.metadata["commands"] and f.name not in NOT_IN_FORM]
    return [n for n in MAIN if n in names] + [n for n in names if n not in MAIN]


def form_defaults(command: str) -> dict[str, Any]:
    """What a fresh form holds: the command's Job defaults (unset settings left empty)."""
    job = Job(command=command)
    return {name: getattr(job, name) for name in form_fields(command)}


def job_from_form(command: str, values: dict[str, Any], output: Path | None, uploads: Path) -> Job:
    """The Job a form describes; empty fields keep their defaults, uploaded files are copied into ``uploads``
    under a name made from their content, so the saved job file names a file that stays."""
    settings: dict[str, Any] = {"command": command, "output": str(output) if output else None}
    for name, value in values.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        kind = FIELDS[name].metadata["kind"]
        if kind == "path" and name != "weights":
            value = keep_upload(value, uploads)
        elif isinstance(value, str):
            value = value.strip()
        if kind in ("int", "float"):
            value = _number(name, value, kind)
        settings[name] = value
    return make_job(settings)


def _number(name: str, value: Any, kind: str) -> int | float:
    """A number field's value (text where the setting has no default number), as its kind."""
    try:
        number = float(value)
    except ValueError:
        raise ZoomdreamError(f"{name.replace('_', ' ')} '{value}' is not a number (give a number, or leave it "
                             f"empty for the default)") from None
    if kind == "float":
        return number
    if not number.is_integer():
        raise ZoomdreamError(f"{name.replace('_', ' ')} '{value}' is not a whole number (give one, or leave it "
                             f"empty for the default)")
    return int(number)


def keep_upload(path: str, uploads: Path) -> str:
    """A copy of an uploaded file in ``uploads``, named by its content (the upload cache is temporary)."""
    source = Path(path)
    if not source.is_file():
        raise ZoomdreamError(f"file '{path}' not found (upload it again)")
    if source.parent == uploads:
        return str(source)
    kept = uploads / f"{file_digest(source)[:12]}-{source.name}"
    if not kept.exists():
        uploads.mkdir(parents=True, exist_ok=True)
        atomic_copy(source, kept)
    return str(kept)


def form_value(name: str, value: Any) -> Any:
    """A Job value as its form field holds it (text fields hold text)."""
    if FIELDS[name].metadata["kind"] in ("str", "schedule") and not FIELDS[name].metadata["choices"]:
        return "" if value is None else str(value)
    return value

