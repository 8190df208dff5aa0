"""Jobs: a Job resolved through its command's loop module (``config.COMMANDS``), checked up front (outputs,
work folders, resume), its model loaded once, and rendered into the sinks its output settings ask for.
"""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from zoomdream import precision
from zoomdream.config import (
    FIELDS,
    LOOPS,
    Job,
    applies,
    job_inputs,
    load_job_file,
    make_job,
    save_job,
)
from zoomdream.engine import machine_tile
from zoomdream.errors import ZoomdreamError
from zoomdream.loops import loop_module
from zoomdream.media.files import (
    FRAME_PATTERN,
    WriteFailed,
    check_output_target,
    make_output_folder,
    remove_dead_temps,
    same_file,
)
from zoomdream.models import LoadedModel, get_backbone, load_model
from zoomdream.runner.frames import FrameSource, _check_stop, run
from zoomdream.settings import MAX_FRAMES, MAX_SIDE, OutputSettings, number
from zoomdream.sinks import (
    EncoderSink,
    FramesDirSink,
    ImageSink,
    MemorySink,
    PreviewSink,
    Sink,
)
from zoomdream.store import FrameStore, SegmentStore, busy, read_state


def pin_machine(job: Job) -> Job:
    """Pin ``precision=auto`` and the default tile to what this machine picks, so the saved job reproduces the
    same frames elsewhere."""
    return replace(job, precision=precision.resolve(job.precision, job.model, job.weights),
                   tile=machine_tile() if job.tile is None else job.tile)


def work_folder(output: Path) -> Path:
    return output.with_name(output.name + ".zoomdream")


def interrupted(output: Path) -> bool:
    """Whether an interrupted render of ``output`` left frames to resume (a whole render's or a chunk's)."""
    work = work_folder(output)
    return (work / "state.json").is_file() or any(work.glob("*/state.json"))


def check_work(job: Job) -> None:
    """The up-front checks of a loop's work folder, before any model loads: a live render holding it (or the
    frames folder) is named; an interrupted one needs --resume, and a resume whose settings differ names them;
    --resume of a finished render is refused (it would render it again over itself)."""
    out = Path(job.output)
    work = work_folder(out)
    for folder in [work, *([Path(job.frames_dir)] if job.frames_dir else [])]:  # a cluster's driver holds work too
        if busy(folder):
            raise ZoomdreamError(f"another render is using '{folder}' (wait for it to finish, or give this one "
                                 f"another output or --frames-dir)")
    if not interrupted(out):
        if job.resume and out.is_file():
            raise ZoomdreamError(f"'{out}' is finished: there is nothing to resume (leave out --resume to render it "
                                 f"again, or give another output)")
        return
    if not job.resume:
        raise ZoomdreamError(f"an interrupted render exists in {work} (add --resume to continue it, or delete that "
                             f"folder to start over)")
    differ = changed_settings(job, work)
    if differ:
        raise ZoomdreamError(f"cannot resume {work}: {differ} (use the settings in {work / 'job.toml'}, or delete "
                             f"the folder to start over)")


def changed_settings(job: Job, work: Path) -> str:
    """What differs between ``job`` and the interrupted render in ``work`` (its ``job.toml`` and the input's
    fingerprint in its state), in words; "" when nothing that can be compared before the model loads does
    (``precision = "auto"`` and the default tile are pinned only then)."""
    try:
        state, before = read_state(work), make_job(load_job_file(work / "job.toml"))
    except ZoomdreamError:  # no record to compare (a cluster's pieces, an older render): the store decides
        return ""
    unpinned = {"precision": job.precision == "auto", "tile": job.tile is None}
    pinned = replace(job, **{name: getattr(before, name) for name, free in unpinned.items() if free})
    if state["settings"] == pinned.settings_hash() + input_digest(job.input):
        return ""  # the same render (the store compares again once the machine has pinned the settings)
    differ = []
    for name, field in FIELDS.items():
        here, there = getattr(job, name), getattr(before, name)
        if name in job.paths() and name in before.paths():
            here, there = os.path.abspath(here), os.path.abspath(there)
        if field.metadata["affects_frames"] and here != there and not unpinned.get(name):
            differ.append(f"{name} ({_short(there)} there, {_short(here)} here)")
    if not differ and job.input and not state["settings"].endswith(input_digest(job.input)):
        differ.append(f"the input file '{_short(job.input)}' (its content changed since)")
    if not differ:
        return ""
    more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
    return f"{'this setting differs' if len(differ) == 1 else 'these settings differ'}: {', '.join(differ[:3])}{more}"


def _short(value, most: int = 40) -> str:
    text = str(value)
    return text if len(text) <= most else text[:most - 3] + "..."


def _checked_output(job: Job, protected: tuple[str, ...]) -> OutputSettings:
    """The output settings, checked, and refused where writing would destroy an input: compared by resolved
    path and by inode, so links and ./ spellings are caught. ``protected``: the job file the job came from
    (re-rendering ``OUT.job.toml`` leaves that record as it is)."""
    out = Path(job.output)
    check_output_target(out)
    written = [out, preview_path(out), record_path(out)]
    written += [Path(job.export_schedules)] if job.export_schedules else []
    inputs = job_inputs(job)
    frames_dir = Path(job.frames_dir) if job.frames_dir else work_folder(out) / "frames"
    for source in [*inputs, *map(Path, protected)]:
        for target in written[:2] if source in map(Path, protected) else written:
            if same_file(source, target):
                raise ZoomdreamError(f"output '{target}' would overwrite the input '{source}' (choose another "
                                     f"output name)")
        if same_file(source.parent, frames_dir) and FRAME_PATTERN.match(source.name):
            raise ZoomdreamError(f"input '{source}' lies in the frames folder '{frames_dir}' that this render "
                                 f"writes (move it, or give another --frames-dir)")
    gif_fps = None if job.gif_fps is None else number(job.gif_fps, "gif_fps", low=0.01, high=1000)
    gif_width = None if job.gif_width is None else number(job.gif_width, "gif_width", low=2, high=MAX_SIDE,
                                                           integer=True)
    return OutputSettings(out, crf=number(job.crf, "crf", low=0, high=51, integer=True), gif_fps=gif_fps,
                          gif_width=gif_width, frames_dir=Path(job.frames_dir) if job.frames_dir else None,
                          preview=number(job.preview, "preview", low=0, high=MAX_FRAMES, integer=True),
                          resume=job.resume)


def input_digest(path: str | None) -> str:
    """A short fingerprint of an input file's size and its first and last MiB: a resume from another file
    under the same name is refused, at the cost of reading 2 MiB, not the whole clip."""
    if not path or not os.path.isfile(path):
        return ""
    digest = hashlib.sha256(str(os.path.getsize(path)).encode())
    with open(path, "rb") as f:
        digest.update(f.read(1 << 20))
        f.seek(max(0, os.path.getsize(path) - (1 << 20)))
        digest.update(f.read(1 << 20))
    return "-" + digest.hexdigest()[:12]


def encoder(output: OutputSettings, source: FrameSource) -> EncoderSink:
    """The output file's encoder, at the source's rate and with its audio."""
    return EncoderSink(output.path, source.fps, crf=output.crf, gif_fps=output.gif_fps,
                       gif_width=output.gif_width, **source.audio)


def preview_path(output: Path) -> Path:
    """Where ``--preview`` keeps the latest frame: ``OUT.preview.png``."""
    return output.with_name(output.stem + ".preview.png")


def record_path(output: Path) -> Path:
    """Where a render's resolved settings are saved: ``OUT.job.toml``."""
    return output.with_name(output.stem + ".job.toml")


def check_job(job: Job, protected: tuple[str, ...] = ()):
    """Resolve and check a job before any work (and before its model loads). Returns (its loop module, the
    loop's typed settings, the job with what its inputs decided pinned, the output settings or None)."""
    module = loop_module(job.command)
    settings = module.resolve(job)  # every user value checked here, before the model loads
    job = replace(job, **getattr(settings, "pins", {}))  # what the inputs decided: a track's length and hash
    if job.layers is None and applies(job, "layers"):  # the saved job names the layers it dreams
        job = replace(job, layers=get_backbone(job.model).default_layers)
    output = _checked_output(job, protected) if job.output else None
    if output and output.path.suffix.lower() not in module.OUTPUTS:
        raise ZoomdreamError(f"cannot write '{output.path}': use one of {', '.join(module.OUTPUTS)}")
    return module, settings, job, output


def prepare(job: Job, model: LoadedModel | None = None, protected: tuple[str, ...] = (),
            store: FrameStore | None = None):
    """Resolve and check everything before any work (``check_job``); then lock the store's folders (a busy one
    fails at once), load the model and build the source. Returns (job with precision pinned, source, output
    settings)."""
    module, settings, job, output = check_job(job, protected)
    if output is not None:  # every command makes its output's folder, before the model loads
        make_output_folder(output.path)
    if job.export_schedules:
        from zoomdream.curves import export_schedules

        export_schedules(settings, job.export_schedules, job)
    if store is not None:
        store.lock()
    if not getattr(module, "NEEDS_MODEL", True):  # a loop that dreams nothing (interpolate)
        return job, module.Source(settings, None), output
    job = pin_machine(job)
    engine = settings.engine
    model = model or load_model(engine.model, engine.weights, job.precision)
    return job, module.Source(settings, model), output


def render(job: Job, progress: bool = True, model: LoadedModel | None = None, sinks: tuple[Sink, ...] = (),
           protected: tuple[str, ...] = (), stop: Callable[[], bool] | None = None) -> None:
    """Render a job to its output (and to any extra ``sinks``). ``protected``: more files the output must not
    overwrite (the job file it came from). ``stop``: asked before each frame (a still: each ascent step); when
    it answers True the render ends with ``Stopped``, resumable like an interrupted one."""
    if job.command not in LOOPS:  # a still: no frames folder, no resume; progress in ascent steps
        job, source, output = prepare(job, model, protected)
        outs = [ImageSink(output.path)] if output else []
        with tqdm(total=source.steps, desc="dreaming", unit="step", disable=not progress,
                  dynamic_ncols=True) as bar:
            source.on_step = lambda: (bar.update(), _check_stop(stop))
            run(source, [*outs, *sinks], seed=job.seed, progress=False, stop=stop)
        return
    if not job.output:
        raise ZoomdreamError("no output file given (add -o OUT)")
    work = work_folder(Path(job.output))
    frames_dir = Path(job.frames_dir) if job.frames_dir else None
    store = SegmentStore(work, frames_dir)
    try:  # the store's folders stay locked from before the model loads until the work folder is gone
        job, source, output = prepare(job, model, protected, store)
        if output.resume and not store.state_path.exists():  # said once the folder is this render's own
            print(f"zoomdream: nothing to resume for {job.output}: starting afresh", file=sys.stderr)
        store.fps, store.crf = source.fps, output.crf  # the segments are encoded as the output will be
        outs = [FramesDirSink(frames_dir)] if frames_dir else []
        if output.preview:
            outs.append(PreviewSink(preview_path(output.path), output.preview))
        run(source, [*outs, *sinks, _JobRecord(job, work)], seed=job.seed, store=store,
            settings=job.settings_hash() + input_digest(job.input), span=range(0, source.total or 2 ** 62),
            resume=output.resume, progress=progress, stop=stop)
        store.write_output(encoder(output, source).writer)  # the segments copied into the output, the audio added
        _save_record(job, output, protected)
        remove_dead_temps(output.path)  # of a render of this output killed while it wrote it (a kill at the join)
        store.remove()
    except (WriteFailed, OSError) as error:  # a full disk, a read-only or vanished folder: its own line
        raise store.fault(error) from None
    finally:
        store.release_unused()  # after a failure: unlock, and take away only what this render made


def _save_record(job: Job, output: OutputSettings, protected: tuple[str, ...]) -> None:
    """``OUT.job.toml``, unless it is the job file this render came from (kept as it is)."""
    if not any(same_file(Path(p), record_path(output.path)) for p in protected):
        save_job(job, record_path(output.path))


class _JobRecord(Sink):
    """Writes ``job.toml`` into the work folder with the first frame, so an interrupted render says how to
    resume it."""

    def __init__(self, job: Job, work: Path):
        self.job, self.work, self.saved = job, work, False

    def write(self, index: int, frame: np.ndarray) -> None:
        if not self.saved:
            save_job(self.job, self.work / "job.toml")
            self.saved = True


def render_image(job: Job, progress: bool = True, model: LoadedModel | None = None) -> np.ndarray:
    """Dream one still; writes ``job.output`` when set and returns the uint8 result."""
    memory = MemorySink()
    render(job, progress, model, (memory,))
    return memory.frames[0]


render_zoom = render_video = render  # the loops need no more than render()
