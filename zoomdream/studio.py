"""`zoomdream studio`: a local web page for image, zoom and video renders that shows each frame as it is made.

Two parts. ``Studio`` is the state behind the page and knows nothing of the web: models loaded once, one render
at a time, the latest frame and the progress, Stop (the runner ends before its next frame and keeps what it
made) and Resume, the motion preview and the layer browser. ``build_app`` lays a Gradio page over it: one form
per command, generated from ``config.Job`` as the CLI's flags are, so each field is a Job setting and each
render saves the ``job.toml`` that ``zoomdream render`` reproduces. Gradio is the optional extra
``pip install 'zoomdream[studio]'``; nothing else imports this module.
"""
from __future__ import annotations

import errno
import hashlib
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from zoomdream.config import FIELDS, Job, load_toml, make_job
from zoomdream.errors import Stopped, ZoomdreamError
from zoomdream.errors import error_line as known_error_line
from zoomdream.media.files import atomic_copy

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
PREVIEW_SECONDS = 4.0
# Gradio names a text or number field after its whole <label>, help text included, and an upload "File upload":
# give each control its field's label as its accessible name (screen readers, get_by_label), and its help as
# its description, also on fields drawn later (other tabs, "More settings").
NAME_CONTROLS = """() => {
    const name = () => document.querySelectorAll('.block').forEach(block => {
        const title = block.querySelector('[data-testid="block-info"], [data-testid="block-label"], .label-text');
        const info = block.querySelector('.info-text');
        const control = block.querySelector('input[type=file], input:not([aria-label]), textarea:not([aria-label])');
        if (!title || !control) return;
        control.setAttribute('aria-label', title.textContent.trim());
        if (info) control.setAttribute('aria-description', info.textContent.trim());
    });
    name();
    new MutationObserver(name).observe(document.body, {subtree: true, childList: true});
}"""
# A page left open after the server stops would keep its last progress line (and Gradio's timer counting): ask the
# server every 2 s, and say so over the page when it does not answer (and when it is back).
WATCH_SERVER = """() => {
    const note = document.createElement('div');
    note.id = 'server-gone';
    note.setAttribute('role', 'alert');
    note.style.cssText = 'display:none; position:fixed; top:0; left:0; right:0; z-index:10000; padding:12px; '
        + 'text-align:center; font-weight:bold; background:#b91c1c; color:white';
    document.body.appendChild(note);
    let gone = false;
    const ask = async () => {
        try {
            await fetch(window.location.pathname, {method: 'HEAD', cache: 'no-store'});
            if (gone) note.textContent = 'The studio server is back: reload this page.';
        } catch (e) {
            gone = true;
            note.textContent = 'The studio server has stopped: nothing on this page updates any more. Start '
                + 'zoomdream studio again and reload the page (Resume continues a render it kept).';
            note.style.display = 'block';
        }
        setTimeout(ask, 2000);
    };
    setTimeout(ask, 2000);
}"""
PAGE_JS = f"() => {{ ({NAME_CONTROLS})(); ({WATCH_SERVER})(); }}"
STOPPING = "stopping after the frame in progress"
PREVIEWS_KEPT = 8  # the page copies each preview into Gradio's cache as it is sent; older ones go
LAYER_PREVIEW = dict(max_size=192, octaves=2, steps=10)  # the layer browser's small dream


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
    with open(source, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()[:12]
    kept = uploads / f"{digest}-{source.name}"
    if not kept.exists():
        uploads.mkdir(parents=True, exist_ok=True)
        atomic_copy(source, kept)
    return str(kept)


def error_line(error: BaseException) -> str:
    """The CLI's one line for an error of input or machine; an unexpected one is named, its traceback logged."""
    if isinstance(error, (ZoomdreamError, OSError, MemoryError)):
        return known_error_line(error)
    traceback.print_exception(error)
    return f"zoomdream: error: unexpected {type(error).__name__}: {error} (please report it, with the job file)"


@dataclass
class Update:
    """What the page shows while a render runs and when it ends."""

    state: str  # "running", "done", "stopped" or "error"
    message: str  # the progress line, or the result, or the one-line error
    frame: np.ndarray | None = None  # the latest frame, when a new one came since the last update
    output: Path | None = None  # the finished file
    job_file: Path | None = None  # its job.toml


class Progress:
    """Frames as the runner hands them over, and the rate and time left they imply (read from another
    thread: only whole values are swapped). ``kept``: frames a resumed render replays at once, left out of the
    rate."""

    def __init__(self, total: int | None, kept: int = 0, clock: Callable[[], float] = time.monotonic):
        self.total, self.kept, self.clock = total, kept, clock
        self.started = clock()
        self.latest: tuple[int, np.ndarray] | None = None
        self.first_new: tuple[int, float] | None = None  # the first frame this run made, and when

    @property
    def made(self) -> int:
        """Frames made or replayed so far."""
        return self.latest[0] + 1 if self.latest else 0

    def frame(self, index: int, frame: np.ndarray) -> None:
        if self.first_new is None and index >= self.kept:
            self.first_new = (index, self.clock())
        self.latest = (index, frame)

    def line(self) -> str:
        elapsed = self.clock() - self.started
        if self.latest is None:
            return f"starting ({elapsed:.0f} s: loading the model, then the first frame)"
        done = self.made
        text = f"frame {done}" + (f" of {self.total}" if self.total else "")
        first, since = self.first_new or (done, 0.0)
        if done - 1 > first:
            per_frame = (self.clock() - since) / (done - 1 - first)
            text += f" · {per_frame:.2f} s a frame"
            if self.total:
                text += f" · about {_duration(per_frame * (self.total - done))} left"
        return text + f" · {_duration(elapsed)} so far"


def _kept(work: Path) -> int:
    """How many frames a stopped render's work folder holds."""
    from zoomdream.store import read_state

    return read_state(work)["done"] if (work / "state.json").is_file() else 0


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


class Studio:
    """The state behind the page: one render at a time, models loaded once, the last stopped render.
    ``private``: only this machine reaches the page; otherwise a loaded job file may name only files in the work
    folder (its files are copied there and shown, so any file this process reads would reach a visitor)."""

    def __init__(self, workdir: str | Path, models: dict | None = None, private: bool = True):
        self.workdir, self.private = Path(workdir).resolve(), private
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.uploads = self.workdir / "inputs"
        self.models = dict(models or {})  # (model, weights, precision) -> LoadedModel
        self.busy = threading.Lock()
        self.stop_requested = threading.Event()
        self.stopped: Job | None = None  # the last stopped loop render, which Resume continues
        self.layer_cache: dict[tuple, np.ndarray] = {}
        self.progress: Progress | None = None  # the latest render's
        self.previews = self.workdir / ".previews"
        self.preview_name = f"{os.getpid()}-{id(self):x}"  # this studio's previews, apart from another's
        self.preview_count = 0
        self.last_preview: tuple[np.ndarray, str] | None = None

    def preview(self, frame: np.ndarray) -> str:
        """The latest frame as a JPEG file of its own, written once and whole (renamed into place), for the page.
        Handed a frame array, Gradio encoded it into a file named by its content and rewrote that file in place
        whenever the same frame came again (a render's last update repeats its last frame, a resume replays
        kept ones), while the page could be reading it: a short read, "h11 LocalProtocolError: Too little data
        for declared Content-Length" and a broken image. A file path it copies atomically into its cache."""
        from zoomdream.media import write_image

        if self.last_preview is not None and self.last_preview[0] is frame:
            return self.last_preview[1]
        self.preview_count += 1
        path = self.previews / f"{self.preview_name}-{self.preview_count:08d}.jpg"
        self.previews.mkdir(parents=True, exist_ok=True)
        write_image(path, frame)
        self.last_preview = (frame, str(path))
        (self.previews / f"{self.preview_name}-{self.preview_count - PREVIEWS_KEPT:08d}.jpg").unlink(missing_ok=True)
        return str(path)

    def model(self, job: Job):
        """The job's model, loaded on first use; ``job`` has its precision pinned."""
        from zoomdream.models import load_model

        key = (job.model, job.weights, job.precision)
        if key not in self.models:
            self.models[key] = load_model(*key)
        return self.models[key]

    def new_output(self, command: str, extension: str) -> Path:
        """A fresh output name in the work folder: COMMAND-YYYYmmdd-HHMMSS[-n].EXT."""
        from zoomdream.runner import work_folder

        if extension not in FORMATS[command]:
            raise ZoomdreamError(f"cannot write {extension} for {command} (choose {', '.join(FORMATS[command])})")
        stem, n = f"{command}-{time.strftime('%Y%m%d-%H%M%S')}", 1
        path = self.workdir / f"{stem}{extension}"
        while path.exists() or work_folder(path).exists():
            n += 1
            path = self.workdir / f"{stem}-{n}{extension}"
        return path

    def job(self, command: str, values: dict[str, Any], extension: str) -> Job:
        return job_from_form(command, values, self.new_output(command, extension), self.uploads)

    def render(self, job: Job, poll: float = 0.25) -> Iterator[Update]:
        """Render ``job`` on a worker thread, yielding an Update for each new frame (at most every ``poll``
        seconds, and each second without one) and a last one with the result. One render at a time; ``stop``
        ends it before its next frame and ``resume`` continues it."""
        from zoomdream import runner
        from zoomdream.sinks import MemorySink

        if not self.busy.acquire(blocking=False):
            if not self.stop_requested.is_set():
                yield Update("error", "zoomdream: error: another render is running (stop it, or wait for it to "
                                      "end)")
                return
            yield Update("running", "waiting for the stopped render to end its frame")
            self.busy.acquire()
        worker = None
        try:
            self.stop_requested.clear()
            try:
                _, settings, _, output = runner.check_job(job)  # bad input fails here, before the model loads
                job = runner.pin_machine(job)
                model = self.model(job)
                kept = _kept(runner.work_folder(output.path)) if job.resume else 0
            except Exception as e:
                yield Update("error", error_line(e))
                return
            progress = self.progress = Progress(1 if job.command == "image" else getattr(settings, "frames", None),
                                                kept)
            outcome: list[BaseException | None] = []

            def work() -> None:
                try:
                    runner.render(job, progress=False, model=model, sinks=(MemorySink(progress.frame),),
                                  stop=self.stop_requested.is_set)
                    outcome.append(None)
                except BaseException as e:  # handed to the page below
                    outcome.append(e)

            worker = threading.Thread(target=work, name="zoomdream-render", daemon=True)
            worker.start()
            shown, last = None, 0.0
            while worker.is_alive():
                worker.join(poll)
                latest = progress.latest
                if latest is not None and latest[0] != shown or time.monotonic() - last > 1:
                    new = latest is not None and latest[0] != shown
                    shown, last = (latest[0] if latest else None), time.monotonic()
                    line = f"{STOPPING} · {progress.line()}" if self.stop_requested.is_set() else progress.line()
                    yield Update("running", line, latest[1] if new else None)
            yield self._outcome(job, outcome[0] if outcome else RuntimeError("the render thread vanished"),
                                output.path, progress)
        finally:
            if worker is not None and worker.is_alive():  # the page went away mid-render (its tab closed)
                self.stop_requested.set()
                threading.Thread(target=self._settle, args=(worker, job, outcome, output.path, progress),
                                 name="zoomdream-settle", daemon=True).start()
            else:
                self.busy.release()

    def _settle(self, worker: threading.Thread, job: Job, outcome: list, output: Path, progress: Progress) -> None:
        """An abandoned render: wait (off the server's event loop) for it to stop before its next frame, keep it
        for Resume, and only then free the studio for the next render."""
        try:
            worker.join()
            self._outcome(job, outcome[0] if outcome else RuntimeError("the render thread vanished"), output,
                          progress)
        finally:
            self.busy.release()

    def _outcome(self, job: Job, error: BaseException | None, output: Path, progress: Progress) -> Update:
        from zoomdream.config import save_job
        from zoomdream.runner import record_path

        frame = progress.latest[1] if progress.latest else None
        if error is None:
            if self.stopped is not None and self.stopped.output == job.output:
                self.stopped = None  # resumed to the end (another render leaves it to Resume)
            if not record_path(output).exists():  # a still from the CLI keeps none; the page offers one
                save_job(job, record_path(output))
            made = progress.made
            return Update("done", f"done: {made} frame{'s' * (made != 1)} in "
                                  f"{_duration(time.monotonic() - progress.started)}: {output.name}",
                          frame, output, record_path(output))
        if isinstance(error, (Stopped, KeyboardInterrupt)):
            if job.command == "image":
                return Update("stopped", "stopped (a still image starts over: press its Render again)", frame)
            self.stopped = job
            return Update("stopped", f"stopped after frame {progress.made}" + (f" of {progress.total}" if progress.total
                                                                       else "") + ": press Resume to continue",
                          frame)
        return Update("error", error_line(error), frame)

    def stop(self) -> str:
        self.stop_requested.set()
        return STOPPING if self.busy.locked() else "nothing is rendering"

    def resume(self) -> Iterator[Update]:
        """Continue the last stopped render from its kept frames: this session's, else the latest one kept in
        the work folder (a studio stopped by Ctrl-C mid-render and started again)."""
        job = self.stopped or self.kept_render()
        if job is None:
            yield Update("error", "zoomdream: error: nothing to resume (a stopped zoom or video render resumes)")
            return
        yield from self.render(replace(job, resume=True))

    def kept_render(self) -> Job | None:
        """The latest interrupted render in the work folder, from the job.toml its work folder keeps."""
        kept = [work for work in self.workdir.glob("*.zoomdream")
                if (work / "job.toml").is_file() and (work / "state.json").is_file()]
        for work in sorted(kept, key=lambda work: (work / "state.json").stat().st_mtime, reverse=True):
            try:
                return make_job(load_toml(work / "job.toml"))
            except ZoomdreamError:  # unreadable: try the one before
                continue
        return None

    def motion_preview(self, job: Job, seconds: float = PREVIEW_SECONDS) -> Path:
        """A few seconds of the zoom's camera path on its start, not dreamed, as an MP4 in the work folder."""
        from zoomdream.loops import zoom
        from zoomdream.sinks import EncoderSink

        settings = zoom.resolve(job)
        path = self.workdir / "motion-preview.mp4"  # each preview replaces the last (written whole, then renamed)
        sink = EncoderSink(path, settings.fps)
        try:
            for t, frame in enumerate(zoom.camera_preview(settings, max(2, round(seconds * settings.fps)))):
                sink.write(t, frame)
            sink.close()
        except BaseException:
            sink.abort()
            raise
        return path

    def curves(self, job: Job):
        """The matplotlib figure of every schedule of a zoom or video job (``zoomdream curves``)."""
        from zoomdream.curves import plot, table
        from zoomdream.runner import loop_module

        settings = loop_module(job.command).resolve(job)
        columns = table(settings)
        return plot(columns, settings.fps, f"{job.command}: {len(columns['frame'])} frames at {settings.fps:g} fps")

    def layers(self, model: str, weights: str | None = None) -> list[str]:
        from zoomdream.runner import pin_machine

        return self.model(pin_machine(make_job({"model": model, "weights": weights or None}))).layers

    def try_layer(self, image: str, model: str, weights: str | None, layer: str) -> np.ndarray:
        """A small dream of one layer on ``image``, cached: layers are picked by looking, not by name."""
        from zoomdream import runner

        job = runner.pin_machine(make_job({"input": keep_upload(image, self.uploads), "model": model,
                                           "weights": weights or None, "layers": layer, **LAYER_PREVIEW}))
        key = (job.input, job.model, job.weights, job.precision, layer)
        if key not in self.layer_cache:
            if not self.busy.acquire(blocking=False):
                raise ZoomdreamError("a render is running (stop it, or wait for it to end)")
            try:
                self.layer_cache[key] = runner.render_image(job, progress=False, model=self.model(job))
            finally:
                self.busy.release()
        return self.layer_cache[key]

    def load_job(self, path: str) -> Job:
        """A job file's settings, checked as `zoomdream render` checks them; its input files are copied into
        the work folder so the page can show them."""
        job = make_job(load_toml(path))
        if job.command not in TABS:
            raise ZoomdreamError(f"the studio has no {job.command} form (render this job with `zoomdream render`)")
        kept = {}
        for name in FILES:
            value = getattr(job, name)
            if value:
                if not Path(value).is_file():
                    raise ZoomdreamError(f"the job's {name} '{value}' is not found (fix the path in the job file)")
                if not self.private and not Path(value).resolve().is_relative_to(self.workdir):
                    raise ZoomdreamError(f"the job's {name} '{value}' is outside the studio's work folder, which is "
                                         f"all a studio open to the network reads (upload the file in the form)")
                kept[name] = keep_upload(value, self.uploads)
        return replace(job, **kept)


# --------------------------------------------------------------------------------------------------------------
# The page


def _component(gr, name: str, command: str, value: Any):
    """The input for one Job setting, by its kind: files upload, choices drop down, numbers are numbers."""
    from zoomdream.models import BACKBONES

    meta = FIELDS[name].metadata
    label, info, key = name.replace("_", " "), HELP.get(name, meta["help"]), f"{command}-{name}"
    if name == "input":
        if command == "video":
            return gr.Video(label="input video", sources=["upload"], include_audio=True, elem_id=key)
        return gr.Image(label="input image" + (" (or tick noise)" if command == "zoom" else ""), type="filepath",
                        sources=["upload", "clipboard"], elem_id=key)
    if name == "guide":
        return gr.Image(label=label, type="filepath", sources=["upload"], elem_id=key)
    if name == "audio":
        return gr.Audio(label="music", type="filepath", sources=["upload"], elem_id=key)
    if name == "model":
        return gr.Dropdown(list(BACKBONES), value=value, label=label, info=info, elem_id=key)
    if meta["choices"]:
        return gr.Dropdown(list(meta["choices"]), value=value, label=label, info=info, elem_id=key)
    kind = meta["kind"]
    if kind == "bool":
        return gr.Checkbox(value=value, label=label, info=info, elem_id=key)
    if kind in ("int", "float") and value is not None:  # one without a default number is text, empty at first
        return gr.Number(value=value, label=label, info=info, precision=0 if kind == "int" else None,
                         elem_id=key)
    return gr.Textbox(value=_form_value(name, value), label=label, info=info, max_lines=1,
                      elem_id=key)


def _form_value(name: str, value: Any) -> Any:
    """A Job value as its form field holds it (text fields hold text)."""
    if FIELDS[name].metadata["kind"] in ("str", "schedule") and not FIELDS[name].metadata["choices"]:
        return "" if value is None else str(value)
    return value


def _noticed(gr, line: str) -> str:
    """An error line for the progress box, also shown as a notice over the page: the box is out of sight while
    a long form is scrolled down to its buttons."""
    gr.Warning(line)
    return line


def _theme(gr):
    """Gradio's default look in the system's fonts: the page loads nothing from the internet."""
    sans, mono = ["ui-sans-serif", "system-ui", "sans-serif"], ["ui-monospace", "monospace"]
    return gr.themes.Default(font=sans, font_mono=mono)


def build_app(studio: Studio):
    """The Gradio page over ``studio``: a form per command, the latest frame, Stop, Resume and downloads."""
    import gradio as gr

    skip = gr.skip()

    def shown(updates: Iterator[Update]):
        """Updates as the page's outputs: progress, latest frame, result video, result image, downloads."""
        yield "starting", None, None, None, None  # clear the last render's results
        for u in updates:
            frame = studio.preview(u.frame) if u.frame is not None else skip
            if u.state == "running":
                yield u.message, frame, skip, skip, skip
                continue
            if u.output is None:
                yield _noticed(gr, u.message) if u.state == "error" else u.message, frame, skip, skip, skip
                continue
            playable = u.output.suffix == ".mp4"  # a GIF or a still shows as an image
            yield (u.message, frame, gr.update(value=str(u.output) if playable else None, visible=playable),
                   gr.update(value=None if playable else str(u.output), visible=not playable),
                   [str(u.output), str(u.job_file)])

    def failed(error: Exception):
        yield _noticed(gr, error_line(error)), skip, skip, skip, skip

    def answer(action, done: str, job_of):
        """A form's values made a Job and given to ``action``: its result and ``done``, or none and the error."""
        def run(*values):
            try:
                return action(job_of(values)), done
            except Exception as e:
                return None, _noticed(gr, error_line(e))
        return run

    forms: dict[str, dict[str, Any]] = {}
    with gr.Blocks(title="zoomdream studio", analytics_enabled=False) as app:
        gr.Markdown("## zoomdream studio\nDream an image, an infinite zoom or a video. Every field is a setting "
                    "of `zoomdream render`; each render also saves its `job.toml`.")
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Tabs(selected="zoom") as tabs:
                    for command in TABS:
                        with gr.Tab(command, id=command, elem_id=f"tab-{command}"):
                            forms[command] = _form(gr, command)
                    with gr.Tab("layers", id="layers"):
                        browser = _layer_browser(gr)
                job_file = gr.UploadButton("Load a job.toml into its form", file_types=[".toml"], type="filepath",
                                           elem_id="job-file")
            with gr.Column(scale=2):
                status = gr.Textbox(label="progress", interactive=False, elem_id="status")
                # each frame a JPEG file of its own (Studio.preview): 1 ms to encode at 640x360, PNG took 30 ms
                preview = gr.Image(label="latest frame", interactive=False, elem_id="preview")
                with gr.Row():
                    stop = gr.Button("Stop", interactive=False, elem_id="stop")  # armed while a dream runs
                    resume = gr.Button("Resume", elem_id="resume")
                result_video = gr.Video(label="result", interactive=False, elem_id="result-video")
                result_image = gr.Image(label="result", interactive=False, visible=False, elem_id="result-image")
                downloads = gr.File(label="downloads: the output and its job.toml", file_count="multiple",
                                    interactive=False, elem_id="downloads")
        outputs = [status, preview, result_video, result_image, downloads]
        dream = dict(concurrency_id="dream", concurrency_limit=1)  # one dream at a time; the rest wait in line

        for command, form in forms.items():
            names = list(form["fields"])

            def render(extension, *values, command=command, names=names):
                try:
                    job = studio.job(command, dict(zip(names, values)), extension)
                except Exception as e:
                    yield from failed(e)
                    return
                yield from shown(studio.render(job))

            _armed(gr, stop, form["render"].click, render, [form["format"], *form["fields"].values()], outputs,
                   api_name=f"render_{command}", **dream)

            def job_of(values, command=command, names=names) -> Job:
                return job_from_form(command, dict(zip(names, values)), None, studio.uploads)

            extras = [("motion", "motion_video", lambda job: str(studio.motion_preview(job)),
                       "motion preview: no dreaming"),
                      ("curves", "plot", studio.curves, "schedules plotted")]
            for button, shown_in, action, done in extras:
                if button in form:
                    form[button].click(answer(action, done, job_of), list(form["fields"].values()),
                                       [form[shown_in], status], api_name=f"{button}_{command}",
                                       concurrency_limit=None)

        def resumed():
            yield from shown(studio.resume())

        def stop_pressed() -> None:  # a notice: the progress box keeps the render's own line, which ends last
            gr.Info(studio.stop(), duration=3)  # gone by the time a stopped render is resumed

        stop.click(stop_pressed, None, None, api_visibility="private", concurrency_limit=None)
        gr.api(studio.stop, api_name="stop", concurrency_limit=None)
        _armed(gr, stop, resume.click, resumed, None, outputs, api_name="resume", **dream)
        _wire_layer_browser(gr, studio, browser, forms, status, dream, stop)
        _wire_job_loading(gr, studio, job_file, tabs, forms, status)
    return app


def _armed(gr, stop, trigger, *args, **kwargs) -> None:
    """Wire a dreaming event: Stop turns red and clickable as it starts and plain and disabled when it ends, so
    it never looks armed with nothing to stop."""
    trigger(lambda: gr.update(variant="stop", interactive=True), None, stop, queue=False, api_visibility="private")
    trigger(*args, **kwargs).then(lambda: gr.update(variant="secondary", interactive=False), None, stop,
                                  queue=False, api_visibility="private")


def _form(gr, command: str) -> dict[str, Any]:
    defaults = form_defaults(command)
    form: dict[str, Any] = {"fields": {}}
    with gr.Row(equal_height=True):  # at the top, beside the progress and the latest frame
        form["format"] = gr.Dropdown(list(FORMATS[command]), value=FORMATS[command][0], label="output format",
                                     elem_id=f"{command}-format")
        form["render"] = gr.Button("Render", variant="primary", elem_id=f"render-{command}")
    main = [n for n in defaults if n in MAIN]
    _lay_out(gr, form["fields"], command, main, defaults)
    with gr.Accordion("More settings", open=False):
        _lay_out(gr, form["fields"], command, [n for n in defaults if n not in main], defaults)
    if command == "zoom":
        with gr.Accordion("Motion preview: the camera path on the start image, no dreaming", open=False):
            form["motion"] = gr.Button("Preview motion", elem_id="motion-preview")
            form["motion_video"] = gr.Video(label=f"the first {PREVIEW_SECONDS:g} s (or fewer) of the motion",
                                            interactive=False, elem_id="motion-video")
    if command in ("zoom", "video"):
        with gr.Accordion("Schedules: every keyframed value and music feature per frame", open=False):
            form["curves"] = gr.Button("Plot the schedules", elem_id=f"curves-{command}")
            form["plot"] = gr.Plot(label="schedules")
    return form


def _lay_out(gr, made: dict[str, Any], command: str, names: list[str], defaults: dict[str, Any]) -> None:
    """Fields three to a row, in order; an upload takes a row of its own."""
    row: list[str] = []
    for name in [*names, None]:
        if name is not None and name not in FILES:
            row.append(name)
            if len(row) < 3:
                continue
        if row:
            with gr.Row(equal_height=True):
                for n in row:
                    made[n] = _component(gr, n, command, defaults[n])
            row = []
        if name is not None and name in FILES:
            made[name] = _component(gr, name, command, defaults[name])


def _layer_browser(gr) -> dict[str, Any]:
    from zoomdream.layers import LAYERS
    from zoomdream.models import BACKBONES, DEFAULT_MODEL

    gr.Markdown("Dream each chosen layer on a small copy of an image, then pick by looking. Results are kept, "
                "so trying a layer again is instant.")
    with gr.Row():
        image = gr.Image(label="image (empty: the image form's input, else the zoom form's)", type="filepath",
                         sources=["upload", "clipboard"], elem_id="layers-image")
        with gr.Column():
            model = gr.Dropdown(list(BACKBONES), value=DEFAULT_MODEL, label="model", elem_id="layers-model")
            weights = gr.Textbox(label="weights", info="a weights file of your own, 'random' for an untrained "
                                 "network, or empty for the model's own", max_lines=1, elem_id="layers-weights")
            listed = gr.Button("List the layers of these weights")
            layers = gr.Dropdown(list(LAYERS[DEFAULT_MODEL]), multiselect=True, label="layers to try",
                                 elem_id="layers-choice")  # filled at once: the table needs no model loaded
    go = gr.Button("Dream each layer", variant="primary", elem_id="layers-go")
    gallery = gr.Gallery(label="one small dream per layer: click one to pick it", columns=4, elem_id="layers-gallery",
                         object_fit="contain")  # whole pictures: a wide frame is not cropped to a square
    with gr.Row():
        picked = gr.Textbox(label="picked layers", info="the --layers spec the forms get", max_lines=1)
        use = gr.Button("Use in the image, zoom and video forms")
    return dict(image=image, model=model, weights=weights, listed=listed, layers=layers, go=go, gallery=gallery,
                picked=picked, use=use, tried=gr.State([]))


def _wire_layer_browser(gr, studio: Studio, b: dict[str, Any], forms: dict, status, dream: dict, stop) -> None:
    from zoomdream.layers import LAYERS

    def list_layers(model, weights):
        try:
            return gr.update(choices=studio.layers(model, weights.strip() or None)), f"{model}: pick layers to try"
        except Exception as e:
            return gr.skip(), _noticed(gr, error_line(e))

    def try_layers(image, model, weights, layers, *form_images):
        image = image or next((i for i in form_images if i), None)  # else the image the forms dream
        if not image or not layers:
            yield gr.skip(), _noticed(gr, "zoomdream: error: give an image and at least one layer to try"), gr.skip()
            return
        made = []
        for k, layer in enumerate(layers):
            yield gr.skip(), f"layer {k + 1} of {len(layers)}: {layer}", gr.skip()
            try:
                made.append((studio.try_layer(image, model, weights.strip() or None, layer), layer))
            except Exception as e:
                # the gallery shows what ``tried`` names, or a click picks by the wrong index
                yield list(made), _noticed(gr, error_line(e)), [name for _, name in made]
                return
            yield list(made), f"layer {k + 1} of {len(layers)}: {layer}", [name for _, name in made]
        yield list(made), f"dreamed {len(made)} layer{'s' * (len(made) != 1)}: click one to pick it", layers

    def pick(tried, current, evt: gr.SelectData):
        chosen = [part for part in current.split(",") if part.strip()] if current else []
        layer = tried[evt.index]
        return ",".join(chosen if layer in chosen else [*chosen, layer])

    pick.__annotations__["evt"] = gr.SelectData  # Gradio finds the event argument by its type

    b["model"].change(lambda model: gr.update(choices=list(LAYERS[model]), value=[]), b["model"], b["layers"],
                      api_visibility="private")
    b["listed"].click(list_layers, [b["model"], b["weights"]], [b["layers"], status], api_name="list_layers",
                      **dream)
    form_images = [forms[c]["fields"]["input"] for c in ("image", "zoom")]
    _armed(gr, stop, b["go"].click, try_layers, [b["image"], b["model"], b["weights"], b["layers"],
                                                          *form_images],
           [b["gallery"], status, b["tried"]], api_name="try_layers", **dream)
    b["gallery"].select(pick, [b["tried"], b["picked"]], b["picked"], api_visibility="private")
    targets = [form["fields"]["layers"] for form in forms.values()]
    b["use"].click(lambda picked: [picked] * len(targets), b["picked"], targets, api_visibility="private")


def _wire_job_loading(gr, studio: Studio, job_file, tabs, forms: dict, status) -> None:
    targets = [tabs, status]
    for form in forms.values():
        targets += [form["format"], *form["fields"].values()]

    def load(path):
        try:
            job = studio.load_job(path)
        except Exception as e:
            return [gr.skip(), _noticed(gr, error_line(e))] + [gr.skip()] * (len(targets) - 2)
        values = [gr.update(selected=job.command), f"loaded {Path(path).name}: {job.command} (press Render)"]
        for command, form in forms.items():
            if command != job.command:
                values += [gr.skip()] * (1 + len(form["fields"]))
                continue
            suffix = Path(job.output).suffix.lower() if job.output else ""
            values.append(suffix if suffix in FORMATS[command] else gr.skip())
            values += [_form_value(name, getattr(job, name)) for name in form["fields"]]
        return values

    job_file.upload(load, job_file, targets, api_name="load_job")


def serve(workdir: str | Path, *, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
          models: dict | None = None, block: bool = True):
    """Start the studio on ``host:port`` (this machine only unless asked). ``block=False`` returns the running
    Gradio app (tests); ``models`` are already-loaded models to use, keyed (model, weights, precision)."""
    check_address(host, port)  # before the work folder is made
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr
    except ImportError:
        raise ZoomdreamError("the studio needs Gradio (pip install 'zoomdream[studio]')") from None
    studio = Studio(workdir, models, private=host in ("127.0.0.1", "localhost", "::1") and not share)
    app = build_app(studio).queue(default_concurrency_limit=1)
    app.studio = studio
    try:
        try:
            # Quiet: Gradio's start-up lines tell the user to set `share=True` in `launch()`; ours name our flag.
            app.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=True, quiet=True,
                       allowed_paths=[str(studio.workdir)], theme=_theme(gr), footer_links=["api"], js=PAGE_JS)
        except OSError as e:
            if "port" not in str(e):
                raise
            raise ZoomdreamError(_port_in_use(host, port)) from None  # another program took it since our check
        public = f"; public link {app.share_url}" if app.share_url else " (--share adds a public link)"
        print(f"zoomdream studio: open {app.local_url} in a browser{public}; renders go to {studio.workdir}; "
              f"Ctrl-C stops it", flush=True)
        if block:
            threading.Event().wait()  # until Ctrl-C (or SIGTERM, which the CLI turns into it)
    except BaseException:
        # Also a Ctrl-C during start-up: `launch` checks its server over HTTP after starting it, and an interrupt
        # there once left the server answering after serve() had raised.
        _close(app, studio)
        raise
    return app


def check_address(host: str, port: int) -> None:
    """Refuse a port or host the studio cannot listen on, in one line naming the flag, before anything is made
    (Gradio answers an out-of-range port with a traceback, and a taken one with advice about its own settings)."""
    if not 1 <= port <= 65535:
        raise ZoomdreamError(f"--port {port} is not a port number (give one from 1 to 65535, e.g. --port 7860)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError):
        raise ZoomdreamError(f"--host '{host}' is not an address of this machine (give 127.0.0.1, or 0.0.0.0 for "
                             f"every network)") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds it
        try:
            probe.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ZoomdreamError(_port_in_use(host, port)) from None
            if e.errno == errno.EACCES:
                raise ZoomdreamError(f"--port {port} needs administrator rights (choose one above 1023, e.g. "
                                     f"--port 7860)") from None
            raise ZoomdreamError(f"--host '{host}' is not an address of this machine ({e.strerror}; give "
                                 f"127.0.0.1, or 0.0.0.0 for every network)") from None


def _port_in_use(host: str, port: int) -> str:
    other = port + 1 if port < 65535 else 7860
    return (f"--port {port} is in use on {host} (another studio or program listens there: stop it, or choose "
            f"another port, e.g. --port {other})")


def _close(app, studio: Studio) -> None:
    """Close the server at once (its port refuses before this returns) and let a running render end at its
    next frame, kept for Resume (a second Ctrl-C leaves that frame)."""
    studio.stop()
    app.close(verbose=False)
    if studio.busy.locked():
        print("zoomdream studio: stopping the render after its frame in progress (kept for Resume)", flush=True)
        with studio.busy:
            pass
