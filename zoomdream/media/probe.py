"""What a video holds, read from the header ffmpeg prints when it opens a file (fast: nothing is decoded)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from zoomdream.errors import ZoomdreamError
from zoomdream.media.ffmpeg import ffmpeg_exe, file_arg, fps_fraction, tail
from zoomdream.media.files import PathArg, existing_file, show

_PROBE_TIMEOUT_S = 120


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds. width/height are as displayed (rotation applied); fps is the rate read_video
    yields frames at; n_frames is what it yields for the whole clip (the frames themselves for a constant-rate
    file, else duration x fps, an estimate for variable-rate sources), None without a duration."""

    width: int
    height: int
    fps: float
    n_frames: int | None
    duration: float | None
    has_audio: bool
    audio_codec: str | None
    video_codec: str | None = None
    pix_fmt: str | None = None
    still: bool = False  # a picture (JPEG, PNG, ...), not a clip: ffmpeg opens it as one frame


@dataclass(frozen=True)
class Header:
    """The parts of ffmpeg's input dump we use; video fields are None for audio-only files."""

    duration: float | None
    width: int | None
    height: int | None
    fps: float | None
    video_codec: str | None
    pix_fmt: str | None
    audio_codec: str | None
    tbr: float | None = None  # the rate ffmpeg guesses the frames are on (the average rate is ``fps``)
    container: str | None = None  # ffmpeg's name for the file's format: mov,mp4,..., gif, image2, png_pipe


def _rate_value(rest: str, unit: str) -> float | None:
    m = re.search(r"(\d+(?:\.\d+)?)(k?) " + unit + r"\b", rest)
    if not m:
        return None
    value = float(m.group(1)) * (1000.0 if m.group(2) else 1.0)
    return value if value > 0 else None


def _parse_header(text: str) -> Header:
    """Parse `ffmpeg -i` stderr; only the Input #0 section counts (the output section repeats streams)."""
    section = re.split(r"^(?:Output #0|Stream mapping:)", text, maxsplit=1, flags=re.M)[0]
    lines = section.splitlines()
    container = re.search(r"^Input #0, (.*), from ", section, flags=re.M)
    duration = None
    m = re.search(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)", section)
    if m:
        duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
        duration = duration if duration > 0 else None

    width = height = None
    fps = tbr = None
    video_codec = pix_fmt = audio_codec = None
    for i, line in enumerate(lines):
        video = re.search(r"Stream #0:\d+\S*: Video: (.*)", line)
        if video and video_codec is None and "(attached pic)" not in line:
            rest = video.group(1)
            video_codec = rest.split()[0].rstrip(",")
            parts = [s.strip() for s in re.split(r",(?![^(]*\))", rest)]
            if len(parts) > 1:
                pix_fmt = parts[1].split("(")[0].strip() or None
            size = re.search(r",\s*(\d+)x(\d+)", rest)
            if size:
                width, height = int(size.group(1)), int(size.group(2))
            tbr = _rate_value(rest, "tbr")
            fps = _rate_value(rest, "fps") or tbr
            # Side data (rotation) follows on indented lines until the next stream.
            for extra in lines[i + 1 :]:
                if "Stream #" in extra:
                    break
                rot = re.search(r"rotation of (-?\d+(?:\.\d+)?) degrees", extra, re.I)
                if rot and width and height and round(abs(float(rot.group(1)))) % 180 == 90:
                    width, height = height, width
        audio = re.search(r"Stream #0:\d+\S*: Audio: (\S+)", line)
        if audio and audio_codec is None:
            audio_codec = audio.group(1).rstrip(",")
    return Header(duration, width, height, fps, video_codec, pix_fmt, audio_codec, tbr=tbr,
                  container=container.group(1) if container else None)


def read_header(path, what: str = "read") -> tuple[Path, Header]:
    """Open `path` with ffmpeg (no decoding) and parse what it prints; `what` goes into the error messages."""
    p = existing_file(path, what)
    args = ["-hide_banner", "-nostdin", "-i", file_arg(p), "-map", "0:V:0?", "-map", "0:a:0?", "-c", "copy",
            "-t", "0", "-f", "null", "-"]
    try:
        res = subprocess.run([ffmpeg_exe(), *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, timeout=_PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ZoomdreamError(
            f"cannot {what} '{show(p)}': ffmpeg took too long to open it (check the file)"
        ) from None
    text = res.stderr.decode("utf-8", "replace")
    header = _parse_header(text)
    if res.returncode != 0:
        if "Input #0" in text and header.video_codec is None and header.audio_codec is None:
            raise ZoomdreamError(
                f"cannot {what} '{show(p)}': it has no video or audio stream (give a video file)"
            )
        raise ZoomdreamError(
            f"cannot {what} '{show(p)}': ffmpeg could not open it: {tail(text.splitlines())} "
            "(check that it is a video file)"
        )
    return p, header


def probe_video(path: PathArg) -> VideoInfo:
    """Size, average frame rate, length and audio of a video, from ffmpeg's header dump (fast: no decoding)."""
    p, h = read_header(path)
    if h.video_codec is None:
        raise ZoomdreamError(f"cannot read '{show(p)}': it has no video stream (give a video file)")
    if not h.width or not h.height:
        raise ZoomdreamError(f"cannot read '{show(p)}': ffmpeg reports no frame size (re-encode the video)")
    if not h.fps:
        raise ZoomdreamError(f"cannot read '{show(p)}': ffmpeg reports no frame rate (re-encode the video)")
    fps = float(fps_fraction(h.fps))
    n_frames = max(1, round(h.duration * fps)) if h.duration else None
    if h.tbr and abs(h.tbr - h.fps) > 1e-3 * h.tbr:  # the average rate is not the frames' own: look at them
        frames = constant_rate_frames(p, fps_fraction(h.tbr))
        if frames is not None:
            fps, n_frames = float(fps_fraction(h.tbr)), frames
    return VideoInfo(
        width=h.width, height=h.height, fps=fps, n_frames=n_frames, duration=h.duration,
        has_audio=h.audio_codec is not None, audio_codec=h.audio_codec,
        video_codec=h.video_codec, pix_fmt=h.pix_fmt,
        still=h.container is not None and (h.container == "image2" or h.container.endswith("_pipe")),
    )


def frame_times(path: Path, timeout: float = _PROBE_TIMEOUT_S) -> list[Fraction] | None:
    """The presentation times of the video's frames in seconds, in order, from its packets (a stream copy:
    read, not decoded); None where ffmpeg cannot list them."""
    args = ["-hide_banner", "-nostdin", "-i", file_arg(path), "-map", "0:V:0", "-c", "copy", "-f", "framecrc", "-"]
    try:
        res = subprocess.run([ffmpeg_exe(), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    text = res.stdout.decode("ascii", "replace")
    base = re.search(r"^#tb 0: (\d+)/(\d+)", text, re.M)
    if res.returncode != 0 or not base:
        return None
    tick = Fraction(int(base.group(1)), int(base.group(2)))
    return sorted(int(line.split(",")[2]) * tick for line in text.splitlines() if line.startswith("0,"))


def constant_rate_frames(path: Path, rate: Fraction) -> int | None:
    """How many frames the video holds if they are shown at ``rate`` exactly, one after another (None: they are
    not: a variable-rate file).

    Why: a file whose last packets are timed differently (an MP4 joined from H.264 streams of other B-frame
    delays) has an average rate below its frames' own, and reading it at that rate drops frames."""
    times = frame_times(path)
    if not times or any(abs((b - a) * rate - 1) > Fraction(1, 100) for a, b in zip(times, times[1:])):
        return None
    return len(times)
