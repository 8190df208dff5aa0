"""The live loop against the clock: the newest source frame dreamed while the next one is prepared (``Ahead``),
a governor that trades octaves, steps and size for ``--fps``, and the terminal's one refreshing line."""
from __future__ import annotations

import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from zoomdream.media import stream
from zoomdream.live.outputs import LiveOutput

class Governor:
    """Holds ``fps``: after a few frames slower than a frame's time, one level cheaper (``loops.live.levels``);
    after a stretch with room to spare, one level richer again, a stretch twice as long each time that level
    proved too slow before (so it does not flap). A cheaper level that proves no cheaper (an accelerator's
    dream of a smaller frame can take as long) is left at once and not tried again. Only the work of a frame
    counts, not the wait for the source."""

    def __init__(self, fps: float, count: int, patience: int = 3, settle: int = 10):
        self.budget, self.count, self.patience = 1.0 / fps, count, patience
        self.settle = settle  # the first frames pay one-time costs (the encoders' start, the first of each step)
        self.level = 0
        self.cost: float | None = None  # seconds a frame takes at this level, smoothed
        self.failed: dict[int, int] = {}  # times each level was left for being too slow
        self.left: dict[int, float] = {}  # the cost each level was last left at for being too slow
        self.useless: set[int] = set()  # cheaper levels that proved no cheaper
        self.slow = self.fast = self.here = 0

    def update(self, seconds: float) -> int:
        """The level for the next frame after one that took ``seconds`` of work."""
        if self.settle > 0:
            self.settle -= 1
            return self.level
        self.cost = seconds if self.cost is None else 0.7 * self.cost + 0.3 * seconds
        self.slow = self.slow + 1 if self.cost > self.budget else 0
        self.fast = self.fast + 1 if self.cost < 0.7 * self.budget else 0
        self.here += 1
        if self.slow >= self.patience and self.level + 1 < self.count and self.level + 1 not in self.useless:
            self.failed[self.level] = self.failed.get(self.level, 0) + 1
            self.left[self.level] = self.cost
            self._move(+1)
        elif self.level > 0 and self.here >= 4 * self.patience and self.cost > 0.95 * self.left[self.level - 1]:
            self.useless.add(self.level)
            self._move(-1)
        elif self.level > 0 and self.fast >= 4 * self.patience * 2 ** min(self.failed.get(self.level - 1, 0), 5):
            self._move(-1)
        return self.level

    def _move(self, by: int) -> None:
        self.level += by
        self.cost, self.slow, self.fast, self.here = None, 0, 0, 0


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


class Overlap:
    """Where the dream runs on an accelerator, the CPU's work of a frame overlaps the dream of the one before:
    frame t+1 is started (carried from the output of frame t-1 over two frames' motion, since frame t's
    output is not made yet) and queued on the dreaming thread, then frame t is finished (pulled toward the
    output before it) while frame t+1 dreams. The accelerator then never waits for the CPU: at 1280x720 the
    carry, the start and the smoothing (12 ms of a core) would add 40% to a 30 ms dream."""

    def __init__(self, source):
        self.source = source
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="zoomdream-dream")
        self.pending: deque = deque()  # (Started, Future of its dream, [when submitted, its dream began, ended])
        self.ended = 0.0  # when the dream of the frame finished last ended
        self.dream_s = self.finish_s = 0.0  # a dream's seconds and a finish's, smoothed

    def submit(self, ready) -> None:
        """Start ``ready`` and queue its dream after the one running."""
        times = [time.monotonic()]
        between = self.pending[-1][0].ready if self.pending else None
        started = self.source.start(ready, between)
        self.pending.append((started, self.pool.submit(self._dream, started, times), times))

    def _dream(self, started, times: list[float]):
        times.append(time.monotonic())
        dream = self.source.dream(started)
        times.append(time.monotonic())
        return dream

    def next_take(self) -> float:
        """When the next prepared frame will be wanted: once the oldest dream has ended and been finished."""
        if not self.pending:
            return 0.0
        times = self.pending[0][2]
        return (times[1] if len(times) > 1 else time.monotonic()) + self.dream_s + self.finish_s

    def finish(self):
        """The oldest dream finished: (the frame, its Prepared, when its work counts from), or None if none
        is dreaming. Its work is the time from the end of the dream before (the dreams' rate is the loop's),
        or from its submission if later (a wait for the source is not the loop's), to the end of its dream."""
        if not self.pending:
            return None
        started, future, times = self.pending.popleft()
        frame = self.source.finish(started, future.result())
        (submitted, began, ended), now = times, time.monotonic()
        work, self.ended = ended - max(self.ended, submitted), ended
        self.dream_s = _smoothed(self.dream_s, ended - began)
        self.finish_s = _smoothed(self.finish_s, now - ended)
        return frame, started.ready, now - work

    def close(self) -> None:
        for _, future, _ in self.pending:
            future.cancel()
        self.pool.shutdown(wait=True)


def _smoothed(average: float, value: float) -> float:
    return 0.7 * average + 0.3 * value if average else value


class Figures:
    """What the terminal shows and ``run`` returns: frames made and held, the rate, the latency from a source
    frame's arrival to its dream leaving, and the work a frame (not counting the wait for the source)."""

    def __init__(self):
        self.made = self.held = 0
        self.latencies: deque = deque(maxlen=200)
        self.times: deque = deque(maxlen=60)
        self.work = 0.0

    def count(self, now: float, arrived: float, taken: float) -> None:
        self.latencies.append(now - arrived)
        self.times.append(now)
        self.made += 1
        self.work += now - taken

    def fps(self) -> float:
        times = self.times
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0

    def line(self, source, dropped: int) -> str:
        octaves, steps, scale = source.rung()
        return (f"live: {self.made} frames, {self.fps():.1f} fps, dropped {dropped}, latency "
                f"{1000 * np.median(self.latencies):.0f} ms, dream {octaves} octave(s) x {steps} step(s)"
                f"{f' at {scale:.0%} size' if scale < 1 else ''}")

    def result(self, source, dropped: int, seconds: float) -> dict:
        recent = sorted(self.latencies) or [0.0]  # the last 200 frames' latencies inside the loop
        return dict(frames=self.made, held=self.held, seconds=seconds, dropped=dropped, level=source.rung(),
                    work=self.work / max(1, self.made),
                    latency=(recent[len(recent) // 2], recent[int(0.95 * (len(recent) - 1))]))


def _next(source, ahead: Ahead | None, rng, made: int, previous, tick: float, dream_s: float,
          overlap: Overlap | None = None):
    """The next frame made (None: no new source frame in a frame's time), when its source frame arrived, when
    its work began (a pipeline's preparation counts where the dream waited for it) and when its dream began."""
    if ahead is None:
        frame = source.frame(made, previous, rng)
        return frame, source.arrived, source.taken, source.taken
    ready, prepared_s = ahead.take(1.0 / source.fps)
    got = time.monotonic()
    if overlap is not None:
        if ready is not None:
            overlap.submit(ready)
        if ready is None or len(overlap.pending) > 1:  # keep one dream queued behind the running one
            ahead.expect(overlap.next_take())  # the next take follows this finish
            done = overlap.finish()
            if done is not None:
                return done[0], done[1].arrived, done[2], got
        return None, got, got, got
    ahead.expect(max(got + dream_s, tick + 1.0 / source.fps) if ready is not None else 0.0)
    if ready is None:
        return None, got, got, got
    return source.dreamed(ready), ready.arrived, got - min(got - tick, prepared_s), got


def run(source, outputs: list[LiveOutput], status: Status, *, seconds: float | None = None,
        frames: int | None = None, seed: int = 0, stop=None) -> dict:
    """Dream the source's newest frames into ``outputs`` until ``seconds`` after the first source frame,
    ``frames`` frames, the source's end, every output failing, or ``stop()``; returns the figures. A camera,
    stream, file or image is a pipeline: its frames' flow is computed while the frame before dreams
    (``Ahead``), and on an accelerator the rest of a frame's CPU work too (``Overlap``)."""
    rng = np.random.default_rng(seed)
    governor = Governor(source.fps, len(source.levels))  # the ladder of the job's own dream: its longest
    reader = source.frames
    play = getattr(source.controls.audio, "start", None)  # the music's, where it has a start (zoomdream.audio.inputs)
    _begin(source, status)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # the loop's threads are its parallelism: OpenCV's own beside them doubled each pass's time
    ahead = Ahead(source, frames) if source.zoom is None else None
    overlap = Overlap(source) if ahead is not None and source.overlap else None
    figures, previous, start, stalled = Figures(), None, None, False
    dream_s = 0.0  # the dreaming thread's seconds a frame, smoothed (when the next frame is wanted)
    try:
        while not (stop and stop()):
            if start is not None and seconds is not None and time.monotonic() - start >= seconds:
                break
            if frames is not None and figures.made >= frames or (outputs and all(o.failed for o in outputs)):
                break
            tick = time.monotonic()
            frame, arrived, taken, got = _next(source, ahead, rng, figures.made, previous, tick, dream_s, overlap)
            if frame is None:
                if reader is not None and reader.ended:
                    if reader.error:
                        raise reader.error
                    break
                if _hold(reader, outputs, status, previous, figures.made, figures.held, stalled):
                    stalled, figures.held = True, figures.held + 1
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
            if ahead is not None and overlap is None:
                dream_s = _smoothed(dream_s, now - got)
                ahead.expect(max(now, tick + 1.0 / source.fps))
            figures.count(now, arrived, taken)
            previous = frame
            source.level = governor.update(now - taken)
            status.show(figures.line(source, reader.dropped if reader is not None else 0))
            time.sleep(max(0.0, tick + 1.0 / source.fps - time.monotonic()))  # --fps at most
    finally:
        for stage in (overlap, ahead):
            if stage is not None:
                stage.close()
        cv2.setNumThreads(threads)
    return figures.result(source, reader.dropped if reader is not None else 0,
                          time.monotonic() - start if start is not None else 0.0)


def _begin(source, status: Status) -> None:
    """Compile every level's dream, then start the source's clock: what came while the model loaded is stale."""
    source.warm_up()
    reader = source.frames
    if reader is not None:
        reader.start()  # a file starts playing now: a camera or stream already runs
        reader.forget()  # what arrived while the model loaded is stale, and not the dream's loss
        if not reader.received:
            status.say(f"live: waiting for the first frame of {reader.source}")


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
