"""Live video through the bundled ffmpeg: a reader that always holds only the newest decoded frame, and a
writer that encodes frames as they come (to a file playable at any moment, or a stream URL).

Both run ffmpeg as a child in its own process group (Ctrl-C reaches only Python, which then closes them in
order). Frames are uint8 HxWx3 RGB of one fixed size: the reader scales and crops whatever arrives to it.
"""
from __future__ import annotations

import functools
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from zoomdream.errors import ZoomdreamError
from zoomdream.media.ffmpeg import Ffmpeg, ffmpeg_exe, file_arg
from zoomdream.media.writer import BT709_FILTERS, BT709_TAGS
from zoomdream.media.files import check_output_target, show
from zoomdream.media.reader import _read_exact

DEMUXER_SCHEMES = ("rtsp", "rtsps")  # read by a demuxer, not listed among ffmpeg's protocols
STREAM_FORMATS = {"udp": "mpegts", "srt": "mpegts", "tcp": "mpegts", "rtp": "rtp_mpegts", "rist": "mpegts",
                  "rtmp": "flv", "rtmps": "flv", "rtsp": "rtsp"}  # an output URL's scheme -> the container sent
FILE_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".ts": "mpegts", ".flv": "flv"}
VIRTUAL_CAMERA = "virtualcam"
STALL_S = 1.0  # no source frame for this long: the source is stalled (the outputs hold the last frame)
RECONNECT_S = 3.0  # stalled this long, or ended: ffmpeg is started again


def scheme(target: str) -> str | None:
    """A URL's scheme ('udp' for udp://...), or None for a path."""
    match = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*)://", target)
    return match.group(1).lower() if match else None


@functools.lru_cache(maxsize=1)
def protocols() -> tuple[frozenset, frozenset]:
    """The protocols the bundled ffmpeg reads and writes (``ffmpeg -protocols``)."""
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-protocols"], capture_output=True, text=True).stdout
    words = out.split("Output:")
    read = set(words[0].split()) - {"Supported", "file", "protocols:", "Input:"}
    written = set(words[1].split() if len(words) > 1 else ())
    return frozenset(read | set(DEMUXER_SCHEMES)), frozenset(written | {"rtsp"})  # rtsp: a muxer too


def check_url(url: str, *, output: bool) -> None:
    """A URL whose scheme the bundled ffmpeg cannot handle fails in one line, naming what it can."""
    name = scheme(url)
    readable, writable = protocols()
    allowed = sorted(STREAM_FORMATS) if output else sorted({"udp", "srt", "rtsp", "rtmp", "http", "https", "tcp"})
    if name not in (writable if output else readable) or (output and name not in STREAM_FORMATS):
        missing = " (this ffmpeg build lacks it)" if name in ("srt", "rist") else ""
        raise ZoomdreamError(f"cannot {'send to' if output else 'read'} '{url}': unsupported protocol "
                             f"'{name}'{missing} (use one of {', '.join(s + '://' for s in allowed)})")


def camera_device(source: str) -> str | None:
    """The V4L2 device a camera source names ('/dev/video0', or an index: '0'), else None."""
    if source.isdigit():
        return f"/dev/video{int(source)}"
    return source if source.startswith("/dev/video") else None


def source_args(source: str, size: tuple[int, int], *, loop: bool = False,
                audio: tuple[int, int, int] | None = None) -> list[str]:
    """ffmpeg's arguments to decode ``source`` (a camera, URL or file) into raw RGB frames of ``size``,
    scaled to cover it and cropped, with as little buffering as ffmpeg allows. ``audio``: (samples fd, stamps
    fd, rate): the same ffmpeg also writes the first audio track, mono float32 at ``rate``, starting at stream
    time 0 (gaps filled), to one pipe, and each video frame's stream time (``N T`` lines) to the other, so the
    audio read once with the video is matched to the frames it came with."""
    w, h = size
    device = camera_device(source)
    if device:
        args = ["-f", "v4l2", "-i", device]
    elif scheme(source):
        form = ["-f", "mpegts"] if scheme(source) in ("udp", "srt") else []  # what they carry: no format probe
        # No probing, no frame threads (each holds a frame back); not -fflags nobuffer: it lost whole streams
        args = ["-flags", "low_delay", "-thread_type", "slice", "-probesize", "32", "-analyzeduration", "0", *form,
                "-i", source]
    else:  # a file plays at its own rate, as a stream would
        args = ["-re", *(["-stream_loop", "-1"] if loop else []), "-i", file_arg(Path(source))]
    stamps, sound = [], []
    if audio is not None:
        samples, frames, rate = audio
        stamps = ["-stats_enc_pre", f"pipe:{frames}", "-stats_enc_pre_fmt", "{n} {t}"]
        sound = ["-map", "0:a:0", "-vn", "-sn", "-dn", "-af", "aresample=async=1:first_pts=0", "-ac", "1", "-ar",
                 str(rate), "-f", "f32le", "-flush_packets", "1", f"pipe:{samples}"]
    return ["-nostdin", *args, "-map", "0:v:0", "-an", "-sn", "-dn",
            "-vf", f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},setsar=1",
            "-fps_mode", "passthrough", *stamps, "-f", "rawvideo", "-pix_fmt", "rgb24", "-flush_packets", "1",
            "pipe:1", *sound]


class NewestFrames:
    """Decodes a live source on a thread of its own and keeps only the newest frame: a frame not taken before
    the next arrives is dropped (counted), so a slow dream never builds a queue. When ffmpeg ends or the
    source stalls for ``RECONNECT_S``, ffmpeg is started again (a file without ``loop`` just ends)."""

    def __init__(self, source: str, size: tuple[int, int], *, loop: bool = False, reconnect: bool = True,
                 audio=None):
        self.source, self.size, self.loop, self.reconnect = source, size, loop, reconnect
        self.audio = audio  # where the source's audio track goes (``feed``, ``restart``, ``rate``), or None
        self.args = source_args(source, size, loop=loop)
        self.changed = threading.Condition()
        self.frame: np.ndarray | None = None
        self.arrived = 0.0  # time.monotonic() of the newest frame
        self.stamp: float | None = None  # with audio: the newest frame's stream time
        self.taken_stamp: float | None = None  # and the last taken one's
        self.received = self.dropped = self.taken = 0
        self.unread = False
        self.ended = False  # the source is over for good (a file played to its end)
        self.error: ZoomdreamError | None = None  # ffmpeg failed before any frame came
        self.reconnects = 0
        self._ff: Ffmpeg | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="zoomdream-source", daemon=True)

    def start(self) -> NewestFrames:
        """Start reading (a second call does nothing)."""
        if self._thread.ident is None:
            self._thread.start()
        return self

    def _work(self) -> None:
        frame_bytes = self.size[0] * self.size[1] * 3
        while not self._closed:
            track = None if self.audio is None else _Track(self.audio)
            args = self.args if track is None else source_args(self.source, self.size, loop=self.loop,
                                                               audio=track.fds)
            try:
                ff = self._ff = Ffmpeg(args, stdout=subprocess.PIPE, pass_fds=track.fds[:2] if track else ())
            finally:
                if track is not None:
                    track.start()
            started, index = time.monotonic(), 0
            while not self._closed:
                try:
                    buf = _read_exact(ff.proc.stdout, frame_bytes)
                except (OSError, ValueError):  # closed under it: close() stopped ffmpeg
                    break
                if len(buf) < frame_bytes:
                    break
                frame = np.frombuffer(buf, np.uint8).reshape(self.size[1], self.size[0], 3)
                stamp = None if track is None else track.stamp(index)
                index += 1
                with self.changed:
                    self.dropped += self.unread
                    self.frame, self.arrived, self.unread, self.stamp = frame, time.monotonic(), True, stamp
                    self.received += 1
                    self.changed.notify_all()
            rc = ff.wait()
            if track is not None:
                track.close()
            if self._closed:
                return
            with self.changed:
                if rc != 0 and self.received == 0:  # never worked: a bad URL, a missing camera
                    self.error = ZoomdreamError(
                        f"'{show(self.source)}' has no audio track (drop --audio source, or give --audio mic or "
                        f"--audio FILE)" if track is not None and ff.said("matches no streams") else
                        f"cannot read '{show(self.source)}': ffmpeg said: {ff.tail()} "
                        f"(check the address, that the sender runs, or the device)")
                if self.error or not (self.reconnect or self.loop):
                    self.ended = True
                    self.changed.notify_all()
                    return
                self.reconnects += 1
            time.sleep(max(0.0, 0.5 - (time.monotonic() - started)))  # a source that fails at once: not a spin

    def take(self, timeout: float) -> np.ndarray | None:
        """The newest frame not taken yet, waiting up to ``timeout`` s for it (None: none came)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not self.unread and not self.ended and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(left)
            if not self.unread:
                return None
            self.unread = False
            self.taken += 1
            self.taken_stamp = self.stamp
            return self.frame

    def forget(self) -> None:
        """Drop the frame waiting and the count of dropped ones: the dream starts from the next frame."""
        with self.changed:
            self.unread, self.dropped = False, 0

    def stalled_for(self) -> float:
        """Seconds since the newest frame arrived (0 before the first: waiting is not stalling)."""
        if not self.received:
            return 0.0
        stalled = time.monotonic() - self.arrived
        if stalled > RECONNECT_S * (self.reconnects + 1) and self._ff is not None and not self.ended:
            self.reconnects += 1
            self._ff.kill()  # a source gone quiet: start ffmpeg again (the reader thread does)
        return stalled

    def wait_started(self, seconds: float) -> None:
        """Wait up to ``seconds`` for the first frame; raise the error of a source ffmpeg cannot open at all
        (a listener with no sender yet just keeps waiting, after this)."""
        with self.changed:
            self.changed.wait_for(lambda: self.received or self.ended, timeout=seconds)
        if self.error:
            self.close()
            raise self.error

    def close(self) -> None:
        self._closed = True
        if self._ff is not None:
            self._ff.kill()
        with self.changed:
            self.changed.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)


class _Track:
    """The pipes one ffmpeg run writes the source's audio and its video frames' stream times to, each read on a
    thread of its own: the samples go to ``audio.feed`` as they come (a full pipe would stall the video)."""

    def __init__(self, audio):
        self.audio = audio
        (self.samples, samples_w), (self.stamps, stamps_w) = os.pipe(), os.pipe()
        self.fds = (samples_w, stamps_w, audio.rate)
        self.times: dict[int, float] = {}
        self.changed = threading.Condition()
        self.ended = False
        self.threads = [threading.Thread(target=work, daemon=True, name=f"zoomdream-source-{work.__name__[1:]}")
                        for work in (self._samples, self._stamps)]

    def start(self) -> None:
        """After ffmpeg started (or failed to): the writing ends are its alone; reading begins."""
        for fd in self.fds[:2]:
            os.close(fd)
        self.audio.restart(0.0)  # a new run's stream time starts at 0 again
        for thread in self.threads:
            thread.start()

    def _samples(self) -> None:
        rest = b""
        with os.fdopen(self.samples, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 14):
                data, rest = rest + chunk, b""
                whole = len(data) // 4 * 4
                data, rest = data[:whole], data[whole:]
                if data:
                    self.audio.feed(np.frombuffer(data, np.float32))

    def _stamps(self) -> None:
        with os.fdopen(self.stamps, "rb") as pipe:
            for line in pipe:
                words = line.split()
                if len(words) == 2:
                    with self.changed:
                        self.times[int(words[0])] = float(words[1])
                        self.changed.notify_all()
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    def stamp(self, index: int, timeout: float = 0.1) -> float | None:
        """The stream time of the run's frame ``index`` (ffmpeg says it before it writes the frame)."""
        with self.changed:
            self.changed.wait_for(lambda: index in self.times or self.ended, timeout=timeout)
            for old in [k for k in self.times if k < index]:
                del self.times[old]
            return self.times.pop(index, None)

    def close(self) -> None:
        for thread in self.threads:
            thread.join(timeout=5)


def check_output(target: str) -> str:
    """The kind of an output (``file``, ``stream`` or ``camera``), checked without opening it."""
    if target == VIRTUAL_CAMERA:
        return "camera"
    if scheme(target):
        check_url(target, output=True)
        return "stream"
    path = Path(target)
    if path.suffix.lower() not in FILE_FORMATS:
        raise ZoomdreamError(f"cannot record '{show(path)}': unsupported type '{path.suffix or '(none)'}' (use one "
                             f"of {' '.join(FILE_FORMATS)}, a stream URL such as udp://127.0.0.1:5000, or "
                             f"{VIRTUAL_CAMERA})")
    check_output_target(path)
    return "file"


def output_args(target: str, size: tuple[int, int]) -> list[str]:
    """ffmpeg's arguments to encode raw RGB frames from stdin, stamped with the wall clock as they arrive
    (a live output's frames come when they are dreamed), to ``target``: H.264 with a keyframe every second
    (a receiver that joins late starts within one), tuned for latency. A file is fragmented (MP4) or
    Matroska, so it plays whenever the recording stops, Ctrl-C or kill included."""
    w, h = size
    args = ["-probesize", "32", "-analyzeduration", "0",  # no probing: the first frame is encoded at once
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", "1000000",  # microsecond stamps
            "-use_wallclock_as_timestamps", "1", "-i", "pipe:0",
            "-vf", ",".join(BT709_FILTERS), "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
            *BT709_TAGS,
            "-force_key_frames", "expr:gte(t,n_forced)", "-fps_mode", "vfr"]
    name = scheme(target)
    if name:  # every packet sent as soon as it is muxed, timestamps not held back; a frame's MPEG-TS packet says
        # its length, so a receiver passes it on at once rather than when the next frame starts (a frame less)
        form = STREAM_FORMATS[name]
        sized = ["-omit_video_pes_length", "0"] if form == "mpegts" else []
        return [*args, "-flush_packets", "1", "-muxdelay", "0", "-muxpreload", "0", *sized, "-f", form, target]
    form = FILE_FORMATS[Path(target).suffix.lower()]
    if form in ("mp4", "mov"):
        args += ["-movflags", "+frag_keyframe+empty_moov+default_base_moof"]
    return [*args, "-y", "-f", form, file_arg(Path(target))]


class StreamWriter:
    """One live output through ffmpeg. ``write`` raises ZoomdreamError once ffmpeg has gone (a receiver that
    closed the connection, a full disk): the caller drops this output and goes on with the others."""

    def __init__(self, target: str, size: tuple[int, int]):
        self.target, self.args = target, output_args(target, size)
        self._ff: Ffmpeg | None = None  # started with the first frame: nothing is written before

    def write(self, frame: np.ndarray) -> None:
        if self._ff is None:
            self._ff = Ffmpeg(self.args, stdin=subprocess.PIPE)
        try:
            self._ff.proc.stdin.write(memoryview(np.ascontiguousarray(frame)).cast("B"))
            self._ff.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            self._ff.kill()
            raise ZoomdreamError(f"output '{self.target}' stopped: ffmpeg said: {self._ff.tail()}") from None

    def close(self) -> None:
        """Let ffmpeg finish the file or stream; one that hangs (a receiver that never answers) is killed."""
        if self._ff is None:
            return
        try:
            self._ff.proc.stdin.close()
        except OSError:
            pass
        try:
            self._ff.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._ff.kill()
