"""`zoomdream live`: the runner against a clock. The live frame source (``loops.live``) dreams the newest
source frame; each output takes frames on a thread of its own holding only the newest, so a slow receiver
drops frames instead of holding the dream back; a governor trades octaves, steps and size for ``--fps``; the
terminal shows effective fps, dropped frames and latency on one refreshing line.

The loop is the runner's (a source's frames handed to sinks) with three differences: frames are dreamed from
whatever the source holds now, not by index; when no new source frame comes, the outputs hold the last frame;
and it stops on the clock (``--seconds`` from the first source frame), a frame count or Ctrl-C, closing every
output so recordings stay playable.
"""
from __future__ import annotations

import os
from contextlib import ExitStack

from zoomdream.audio.inputs import SOURCE, open_live_audio
from zoomdream.audio.live import LiveAnalyser
from zoomdream.config import Job
from zoomdream.errors import ZoomdreamError
from zoomdream.live.clock import Ahead, Governor, Overlap, Status, run
from zoomdream.live.outputs import FILE_QUEUE_S, REPEAT_S, LiveOutput, resend_after
from zoomdream.media import stream
from zoomdream.models import LoadedModel

__all__ = ["Ahead", "FILE_QUEUE_S", "Governor", "LiveOutput", "Overlap", "REPEAT_S", "Status", "check", "main",
           "resend_after", "run"]

START_WAIT_S = 4.0  # how long a source may take to show its first frame before the model loads anyway


def check(job: Job, targets: list[str], say=print):
    """Everything checkable before the model loads, without opening the source or any output (so --check
    works without a camera or a network): the settings and the live controls over them, the source's kind,
    each output's kind. Returns the settings and the controls."""
    from zoomdream.live.controls import Controls
    from zoomdream.loops.live import resolve

    if not targets:
        raise ZoomdreamError("no output given (add -o OUT.mp4, -o udp://127.0.0.1:5000 or -o virtualcam)")
    for target in targets:
        stream.check_output(target)
    if len(set(targets)) < len(targets):
        raise ZoomdreamError("an output is given twice (give each -o once)")
    for read, what in ((job.input, "the source"), (job.audio, "--audio")):
        if read and any(os.path.realpath(t) == os.path.realpath(read) for t in targets):
            raise ZoomdreamError(f"output '{read}' would overwrite {what} (choose another output name)")
    if job.osc is not None:
        from zoomdream.live.osc import parse_listen

        parse_listen(job.osc)
    settings = resolve(job)
    return settings, Controls(job, zoom_size=settings.size if settings.kind == "noise" else None, say=say)


def main(job: Job, targets: list[str], *, check_only: bool = False, model: LoadedModel | None = None,
         status: Status | None = None, stop=None, report: dict | None = None) -> int:
    """The live command: check, open the source (a source that cannot be opened fails here, in seconds),
    load the model, then dream until stopped. Ctrl-C closes every output and ends with 0. ``report``, where
    given, gets ``run``'s figures (a benchmark's)."""
    status = status or Status()
    settings, controls = check(job, targets, status.say)
    if check_only:
        status.say(f"checked {', '.join(targets)}")
        return 0
    device = stream.camera_device(settings.source or "")
    if device and not os.path.exists(device):
        raise ZoomdreamError(f"no camera at {device} (check the device, or give a stream URL or a file)")
    analyser = LiveAnalyser(settings.fps) if settings.audio else None
    outputs: list[LiveOutput] = []
    with ExitStack() as opened:  # whatever stops it (Ctrl-C while the model loads too) closes what was opened
        try:
            reader = None
            if settings.kind in ("camera", "url", "file"):
                reader = stream.NewestFrames(settings.source, settings.size, loop=settings.loop_source,
                                             reconnect=settings.kind != "file",
                                             audio=analyser if settings.audio == SOURCE else None)
                opened.callback(reader.close)
            controls.audio = open_live_audio(settings.audio, analyser, reader)  # a missing microphone fails here
            if controls.audio is not None:
                opened.callback(controls.audio.close)
            if job.osc is not None:  # a port in use fails now, before the model loads
                from zoomdream.live.osc import OscControl

                osc = OscControl(job.osc, controls, status.say)
                opened.callback(osc.close)
                status.say(f"live: listening for OSC on port {osc.port}")
            if settings.kind in ("camera", "url"):  # one that cannot be opened fails now, before the model loads
                reader.start().wait_started(START_WAIT_S)
            for target in targets:
                outputs.append(LiveOutput(target, settings.size, settings.fps, status.say))
                opened.callback(outputs[-1].close)
            from zoomdream.loops.live import Source

            source = Source(settings, model or _model(job, settings), controls, reader)
            figures = run(source, outputs, status, seconds=settings.seconds, frames=settings.frames,
                          seed=settings.seed, stop=stop)
        except KeyboardInterrupt:
            figures = None
    written = ", ".join(o.target for o in outputs if not o.failed) or "nothing"
    if figures is None:
        status.say(f"zoomdream: stopped; every output closed (wrote {written})")
        return 0
    if report is not None:
        report.update(figures)
    status.say(f"live: {figures['frames']} frames in {figures['seconds']:.1f} s, dropped {figures['dropped']}, "
               f"held {figures['held']}, wrote {written}")
    return 0


def _model(job: Job, settings) -> LoadedModel:
    """The job's network, at the precision ``--precision`` resolves to on this machine."""
    from zoomdream.models import load_model
    from zoomdream.precision import resolve as resolve_precision

    engine = settings.engine
    return load_model(engine.model, engine.weights, resolve_precision(job.precision, engine.model, engine.weights))
