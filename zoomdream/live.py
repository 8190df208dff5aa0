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
import sys
import threading
import time
from collections import deque

import numpy as np

from zoomdream.audio.inputs import SOURCE, open_live_audio
from zoomdream.audio.live import LiveAnalyser
from zoomdream.config import Job
from zoomdream.errors import ZoomdreamError, one_line
from zoomdream.media import stream
from zoomdream.models import LoadedModel

START_WAIT_S = 4.0  # how long a source may take to show its first frame before the model loads anyway
FILE_QUEUE_S = 2.0  # a recording keeps this long of frames waiting for a busy encoder (a loaded CPU) before dropping
REPEAT_S = 1 / 60  # a stream sends its last frame again after this long (``resend_after``): an H.264 receiver
# (ffmpeg's, OBS's) passes a frame on only once two more have come (its parser waits for the next frame's start,
# its decoder for one more), so at 12 fps each frame waited 167 ms in the receiver, 33 ms this way


class LiveOutput:
    """One output (a file, a stream URL or the virtual camera) fed on its own thread. A stream or camera takes
    only the newest frame (a slow receiver drops frames, never adds latency); a file keeps up to FILE_QUEUE_S of
    frames waiting, so a recording loses none to the encoder's start or a busy CPU. When an output fails (a
    receiver gone), it says so in one line and stops; the others go on."""

    def __init__(self, target: str, size: tuple[int, int], fps: float, say):
        self.target, self.say = target, say
        self.writer = _virtual_camera(size, fps) if target == stream.VIRTUAL_CAMERA else \
            stream.StreamWriter(target, size)
        self.ready = threading.Condition()
        self.file = stream.check_output(target) == "file"
        self.waiting: deque = deque(maxlen=max(4, round(FILE_QUEUE_S * fps)) if self.file else 1)
        self.written = self.dropped = 0
        self.failed = self.closing = False
        self.thread = threading.Thread(target=self._work, name=f"zoomdream-out-{target}", daemon=True)
        self.thread.start()

    def put(self, frame: np.ndarray) -> None:
        with self.ready:
            self.dropped += len(self.waiting) == self.waiting.maxlen
            self.waiting.append(frame)
            self.ready.notify()

    def _work(self) -> None:
        frame, took = None, 0.0
        while True:
            repeat = not self.file and frame is not None
            with self.ready:
                came = self.ready.wait_for(lambda: self.waiting or self.closing,
                                           timeout=resend_after(took) if repeat else None)
                if self.closing and not self.waiting:
                    return
                if came:
                    frame = self.waiting.popleft()
            try:
                began = time.monotonic()
                self.writer.write(frame)
                took = time.monotonic() - began
                self.written += 1
            except (ZoomdreamError, OSError) as error:
                self.failed = True
                self.say(f"zoomdream: {one_line(str(error))} (the other outputs go on)")
                return

    def close(self) -> None:
        """Write the frames still waiting, then let the writer finish (a recording gets its last fragment)."""
        with self.ready:
            self.closing = True
            self.ready.notify()
        self.thread.join(timeout=10)
        if not self.failed:
            self.writer.close()


def resend_after(took: float) -> float:
    """How long a stream waits for a new frame before it sends its last one again, after a write that took
    ``took`` s: ``REPEAT_S``, or three writes' time where encoding is slow (a 720p frame on a busy CPU), so
    the resends never take more than a quarter of the encoder's time."""
    return max(REPEAT_S, 3 * took)


def _virtual_camera(size: tuple[int, int], fps: float):
    """pyvirtualcam's camera (the optional extra ``live``), imported only when asked for."""
    try:
        import pyvirtualcam
    except ImportError:
        raise ZoomdreamError("the virtual camera needs pyvirtualcam (pip install 'zoomdream[live]')") from None
    try:
        camera = pyvirtualcam.Camera(width=size[0], height=size[1], fps=fps)
    except RuntimeError as error:
        raise ZoomdreamError(f"no virtual camera: {one_line(str(error))} (on Linux load v4l2loopback; elsewhere "
                             f"install OBS and its virtual camera)") from None

    class Camera:
        def write(self, frame: np.ndarray) -> None:
            camera.send(frame)

        def close(self) -> None:
            camera.close()

    return Camera()


class Governor:
    """Holds ``fps``: after a few frames slower than a frame's time, one level cheaper (``loops.live.levels``);
    after a stretch with room to spare, one level richer again, a stretch twice as long each time that level
    proved too slow before (so it does not flap). Only the work of a frame counts, not the wait for the source."""

    def __init__(self, fps: float, count: int, patience: int = 3):
        self.budget, self.count, self.patience = 1.0 / fps, count, patience
        self.level = 0
        self.cost: float | None = None  # seconds a frame takes at this level, smoothed
        self.failed: dict[int, int] = {}  # times each level was left for being too slow
        self.slow = self.fast = 0

    def update(self, seconds: float) -> int:
        """The level for the next frame after one that took ``seconds`` of work."""
        self.cost = seconds if self.cost is None else 0.7 * self.cost + 0.3 * seconds
        self.slow = self.slow + 1 if self.cost > self.budget else 0
        self.fast = self.fast + 1 if self.cost < 0.7 * self.budget else 0
        if self.slow >= self.patience and self.level + 1 < self.count:
            self.failed[self.level] = self.failed.get(self.level, 0) + 1
            self._move(+1)
        elif self.level > 0 and self.fast >= 4 * self.patience * 2 ** min(self.failed.get(self.level - 1, 0), 5):
            self._move(-1)
        return self.level

    def _move(self, by: int) -> None:
        self.level += by
        self.cost, self.slow, self.fast = None, 0, 0


class Status:
    """The terminal's one line: effective fps, dropped frames and latency, refreshed in place on a terminal;
    elsewhere (a log, a test) a line every few seconds and one for every event."""

    def __init__(self, stream_=None):
        self.out = stream_ or sys.stderr
        self.tty = self.out.isatty()
        self.lock = threading.Lock()
        self.shown = 0.0
        self.line = ""

    def say(self, text: str) -> None:
        """An event: a line of its own."""
        with self.lock:
            self.out.write(("\r\x1b[K" if self.tty else "") + text + "\n")
            self.out.flush()
            self.shown = 0.0

    def show(self, line: str) -> None:
        now = time.monotonic()
        with self.lock:
            self.line = line
            if self.tty and now - self.shown > 0.25:
                self.out.write("\r\x1b[K" + line)
            elif not self.tty and now - self.shown > 2.0:
                self.out.write(line + "\n")
            else:
                return
            self.out.flush()
            self.shown = now


class Ahead:
    """The next frame's source-only work (``Source.prepare``: its settings, resize and optical flow) on a
    thread of its own while the frame before it dreams, a pipeline of two. The newest source frame is taken
    just in time: when the next dream is expected to start, less a preparation's time, so the frame is as new
    as the serial loop's would be and the dream waits for nothing. Frames are handed over in the order
    prepared (each one's flow is from the one before)."""

    def __init__(self, source, frames: int | None = None):
        self.source, self.limit = source, frames  # prepare no more frames than these (--frames)
        self.ready = threading.Condition()
        self.slot = None  # (the Prepared frame, seconds its preparation took), or None
        self.error: Exception | None = None
        self.closed = False
        self.start_at = 0.0  # when the next dream is expected to start
        self.prepare_s = 0.0  # a preparation's seconds, smoothed
        self.prepared = 0  # frames prepared: the next one is frame t = prepared (each is dreamed, in order)
        self.thread = threading.Thread(target=self._work, name="zoomdream-prepare", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        reader = self.source.frames
        try:
            while True:
                with self.ready:
                    while not self.closed and (self.slot is not None or
                                               self.start_at - self.prepare_s > time.monotonic()):
                        self.ready.wait(None if self.slot is not None else
                                        self.start_at - self.prepare_s - time.monotonic())
                    if self.closed:
                        return
                if reader is not None and reader.ended or self.prepared == self.limit:
                    return
                frame = self.source.next_source(1.0 / self.source.fps)
                if frame is None:
                    continue
                began = time.monotonic()
                item = self.source.prepare(frame, self.prepared)
                spent = time.monotonic() - began
                self.prepared += 1
                with self.ready:
                    self.prepare_s = 0.7 * self.prepare_s + 0.3 * spent if self.prepare_s else spent
                    self.slot = (item, spent)
                    self.ready.notify_all()
        except Exception as error:  # handed to the dreaming thread, which raises it
            with self.ready:
                self.error = error
                self.ready.notify_all()

    def take(self, timeout: float):
        """(the next prepared frame, its preparation's seconds), waiting up to ``timeout``; (None, 0) if none."""
        with self.ready:
            self.ready.wait_for(lambda: self.slot is not None or self.error is not None, timeout=timeout)
            if self.error is not None:
                raise self.error
            taken, self.slot = self.slot or (None, 0.0), None
            self.ready.notify_all()
            return taken

    def expect(self, start_at: float) -> None:
        """The next dream is expected to start at ``start_at`` (time.monotonic())."""
        with self.ready:
            self.start_at = start_at
            self.ready.notify_all()

    def close(self) -> None:
        with self.ready:
            self.closed = True
            self.ready.notify_all()
        self.thread.join(timeout=5)


def run(source, outputs: list[LiveOutput], status: Status, *, seconds: float | None = None,
        frames: int | None = None, seed: int = 0, stop=None) -> dict:
    """Dream the source's newest frames into ``outputs`` until ``seconds`` after the first source frame,
    ``frames`` frames, the source's end, every output failing, or ``stop()``; returns the figures. A source
    with ``prepare`` (a camera, stream, file or image) is a pipeline: each frame's flow is computed on a
    second thread (``Ahead``) while the frame before it dreams."""
    rng = np.random.default_rng(seed)
    governor = Governor(source.fps, len(source.levels))  # the ladder of the job's own dream: its longest
    reader = source.frames
    play = getattr(source.controls.audio, "start", None)  # the music's, where it has a start (zoomdream.audio.inputs)
    source.warm_up()
    if reader is not None:
        reader.start()  # a file starts playing now: a camera or stream already runs
        reader.forget()  # what arrived while the model loaded is stale, and not the dream's loss
        if not reader.received:
            status.say(f"live: waiting for the first frame of {reader.source}")
    ahead = Ahead(source, frames) if source.zoom is None else None
    previous = None
    made, held, start, stalled = 0, 0, None, False
    latencies: deque = deque(maxlen=200)
    times: deque = deque(maxlen=60)
    work = 0.0  # seconds a frame takes, not counting the wait for the source: what limits the rate
    dream_s = 0.0  # the dreaming thread's seconds a frame, smoothed (when the next frame is wanted)
    try:
        while not (stop and stop()):
            if start is not None and seconds is not None and time.monotonic() - start >= seconds:
                break
            if frames is not None and made >= frames or (outputs and all(o.failed for o in outputs)):
                break
            tick = time.monotonic()
            if ahead is None:
                frame = source.frame(made, previous, rng)
                arrived = source.arrived
                got = taken = source.taken
            else:
                ready, prepared_s = ahead.take(1.0 / source.fps)
                got = time.monotonic()
                ahead.expect(max(got + dream_s, tick + 1.0 / source.fps) if ready is not None else 0.0)
                frame = None if ready is None else source.dreamed(ready)
                if ready is not None:  # the preparation's wait counts where the dream waited for it
                    arrived, taken = ready.arrived, got - min(got - tick, prepared_s)
            if frame is None:
                if reader is not None and reader.ended:
                    if reader.error:
                        raise reader.error
                    break
                if _hold(reader, outputs, status, previous, made, held, stalled):
                    stalled, held = True, held + 1
                continue
            now = time.monotonic()
            if start is None:  # the clock starts with the first source frame, not the model load
                start = arrived if reader is not None else now
                if play is not None:
                    play(start)  # an --audio FILE plays from here
            if stalled:
                status.say("zoomdream: source back")
                stalled = False
            for out in outputs:
                out.put(frame)
            if ahead is not None:
                dream_s = 0.7 * dream_s + 0.3 * (now - got) if dream_s else now - got
                ahead.expect(max(now, tick + 1.0 / source.fps))
            latencies.append(now - arrived)
            times.append(now)
            made += 1
            previous = frame
            work += now - taken
            source.level = governor.update(now - taken)
            fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
            octaves, steps, scale = source.rung()
            dropped = reader.dropped if reader is not None else 0
            status.show(f"live: {made} frames, {fps:.1f} fps, dropped {dropped}, latency "
                        f"{1000 * np.median(latencies):.0f} ms, dream {octaves} octave(s) x {steps} step(s)"
                        f"{f' at {scale:.0%} size' if scale < 1 else ''}")
            time.sleep(max(0.0, tick + 1.0 / source.fps - time.monotonic()))  # --fps at most
    finally:
        if ahead is not None:
            ahead.close()
    elapsed = time.monotonic() - start if start is not None else 0.0
    recent = sorted(latencies) or [0.0]  # the last 200 frames' latencies inside the loop
    return dict(frames=made, held=held, seconds=elapsed, dropped=reader.dropped if reader is not None else 0,
                level=source.rung(), work=work / max(1, made),
                latency=(recent[len(recent) // 2], recent[int(0.95 * (len(recent) - 1))]))


def _hold(reader, outputs: list[LiveOutput], status: Status, previous: np.ndarray | None, made: int, held: int,
          stalled: bool) -> bool:
    """While the source is stalled, the outputs get the last frame again, so receivers keep playing; says so
    once. Returns whether a frame was held."""
    quiet = reader.stalled_for() if reader is not None else 0.0
    if quiet < stream.STALL_S or previous is None:
        return False
    if not stalled:
        status.say("zoomdream: source stalled: holding the last frame, reconnecting")
    status.show(f"live: {made} frames, source stalled for {quiet:.0f} s: holding the last frame ({held + 1})")
    for out in outputs:
        out.put(previous)
    return True


def check(job: Job, targets: list[str], say=print):
    """Everything checkable before the model loads, without opening the source or any output (so --check
    works without a camera or a network): the settings and the live controls over them, the source's kind,
    each output's kind. Returns the settings and the controls."""
    from zoomdream.live_controls import Controls
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
        from zoomdream.osc import parse_listen

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
    reader = audio = None
    device = stream.camera_device(settings.source or "")
    if device and not os.path.exists(device):
        raise ZoomdreamError(f"no camera at {device} (check the device, or give a stream URL or a file)")
    analyser = LiveAnalyser(settings.fps) if settings.audio else None
    if settings.kind in ("camera", "url", "file"):
        reader = stream.NewestFrames(settings.source, settings.size, loop=settings.loop_source,
                                     reconnect=settings.kind != "file",
                                     audio=analyser if settings.audio == SOURCE else None)
    outputs: list[LiveOutput] = []
    osc = None
    try:  # from here on, whatever stops it (Ctrl-C while the model loads too) stops ffmpeg and closes the outputs
        audio = open_live_audio(settings.audio, analyser, reader)  # a missing microphone fails here
        controls.audio = audio
        if job.osc is not None:  # a port in use fails now, before the model loads
            from zoomdream.osc import OscControl

            osc = OscControl(job.osc, controls, status.say)
            status.say(f"live: listening for OSC on port {osc.port}")
        if settings.kind in ("camera", "url"):  # one that cannot be opened fails now, before the model loads
            reader.start().wait_started(START_WAIT_S)
        outputs = [LiveOutput(target, settings.size, settings.fps, status.say) for target in targets]
        if model is None:
            from zoomdream.models import load_model
            from zoomdream.precision import resolve as resolve_precision

            engine = settings.engine
            model = load_model(engine.model, engine.weights,
                               resolve_precision(job.precision, engine.model, engine.weights))
        from zoomdream.loops.live import Source

        source = Source(settings, model, controls, reader)
        figures = run(source, outputs, status, seconds=settings.seconds, frames=settings.frames, seed=settings.seed,
                      stop=stop)
    except KeyboardInterrupt:
        figures = None
    finally:
        if osc is not None:
            osc.close()
        for out in outputs:
            out.close()
        if reader is not None:
            reader.close()
        if audio is not None:
            audio.close()
    written = ", ".join(o.target for o in outputs if not o.failed) or "nothing"
    if report is not None and figures is not None:
        report.update(figures)
    if figures is None:
        status.say(f"zoomdream: stopped; every output closed (wrote {written})")
    else:
        status.say(f"live: {figures['frames']} frames in {figures['seconds']:.1f} s, dropped {figures['dropped']}, "
                   f"held {figures['held']}, wrote {written}")
    return 0
