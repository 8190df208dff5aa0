"""The outputs of `zoomdream live`: a file, a stream URL or the virtual camera, each fed on a thread of its own
so a slow receiver drops frames instead of holding the dream back."""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from zoomdream.errors import ZoomdreamError, one_line
from zoomdream.media import stream

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
