"""Reading and writing images, videos and numbered frame folders.

Everything here hands the rest of zoomdream plain uint8 HxWx3 RGB arrays, so the dreaming code never
cares where pixels came from or where they go.

Decisions that callers can rely on:

* Video goes only through the ffmpeg binary shipped with imageio-ffmpeg (``imageio_ffmpeg.get_ffmpeg_exe()``),
  so results do not depend on whatever ffmpeg a machine happens to have. Every ffmpeg exit status is checked;
  a failure becomes a one-line ``ZoomdreamError`` quoting the end of ffmpeg's own message.
* Frames stream one at a time through pipes; no function holds a whole video in memory.
* No final file is ever half-written: output goes to a hidden sibling ``.NAME.part.EXT`` (the real extension
  stays last so ffmpeg and OpenCV pick the right format) and is ``os.replace``-d onto the real name only after
  everything succeeded. Errors and aborts delete the temporary file.
* Transparent images are composited over white (hidden colour under transparent pixels is often garbage);
  16-bit images are scaled to 8 bit; JPEG EXIF orientation is applied.
* Video frames are decoded at a constant rate equal to the source's average rate, so variable-rate phone
  clips give evenly spaced frames and ``duration * fps`` frames in total.
* H.264 needs even sizes: an odd frame width or height loses its last column or row (cropping, not padding).
"""

from __future__ import annotations

import collections
import math
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Union

import cv2
import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np

from zoomdream.errors import ZoomdreamError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".gif")
PathArg = Union[str, "os.PathLike[str]"]  # what every path argument accepts
FRAME_PATTERN = re.compile(r"^frame_(\d{8,})\.png$")

# Audio codecs that may be stream-copied into each container; anything else is re-encoded to AAC.
# Matroska takes nearly everything; a failed copy there falls back to AAC as well.
_COPYABLE_AUDIO = {".mp4": {"aac", "mp3", "alac"}, ".mov": {"aac", "mp3", "alac"}, ".mkv": None}
_PROBE_TIMEOUT_S = 120


# ----------------------------------------------------------------------------------------------------------
# small helpers


def _show(path) -> str:
    """A path as it goes inside a one-line message."""
    return str(path).replace("\n", "\\n").replace("\r", "\\r")


def _temp_sibling(path: Path, tag: str = "part") -> Path:
    """Hidden temporary name next to `path`, real extension last: out.mp4 -> .out.part.mp4."""
    return path.with_name(f".{path.stem}.{tag}{path.suffix}")


def _remove_quietly(path: Path | None) -> None:
    if path is not None:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except OSError:
            pass


def _existing_file(path, what: str = "read") -> Path:
    """Turn the usual ways a user-given input path can be wrong into one-line errors."""
    p = Path(path)
    if not p.exists():
        raise ZoomdreamError(f"cannot {what} '{_show(p)}': file not found (check the path)")
    if p.is_dir():
        raise ZoomdreamError(f"cannot {what} '{_show(p)}': it is a folder, not a file (give a file path)")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise ZoomdreamError(f"cannot {what} '{_show(p)}': {e.strerror} (check file permissions)") from None
    if size == 0:
        raise ZoomdreamError(f"cannot {what} '{_show(p)}': the file is empty (re-export or re-download it)")
    return p


def _check_output_target(p: Path) -> None:
    """Fail before any work when the output can obviously not be written."""
    if p.is_dir():
        raise ZoomdreamError(f"cannot write '{_show(p)}': it is a folder (give a file name)")
    parent = p.parent
    if not parent.is_dir():
        raise ZoomdreamError(
            f"cannot write '{_show(p)}': folder '{_show(parent)}' does not exist (create it first)"
        )


def _check_frame(img, what: str = "image") -> np.ndarray:
    """Programming errors (wrong dtype/shape) are TypeError/ValueError, not user errors."""
    if not isinstance(img, np.ndarray):
        raise TypeError(f"{what} must be a numpy array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise TypeError(
            f"{what} must be uint8, got {img.dtype} (convert with np.clip(x, 0, 255).astype(np.uint8))"
        )
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"{what} must be HxWx3 RGB, got shape {img.shape}")
    return img


def _atomic_write_bytes(p: Path, data) -> None:
    """Write to a temp sibling then rename, so a kill never leaves a truncated file under the real name."""
    tmp = _temp_sibling(p)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
    except OSError as e:
        _remove_quietly(tmp)
        raise ZoomdreamError(
            f"cannot write '{_show(p)}': {e.strerror or e} (check free disk space and folder permissions)"
        ) from None
    except BaseException:
        _remove_quietly(tmp)
        raise


def _fps_fraction(fps: float) -> Fraction:
    """Exact rate for ffmpeg: integers stay integers, 29.97 and friends become 30000/1001."""
    f = float(fps)
    if not math.isfinite(f) or f <= 0:
        raise ZoomdreamError(f"frame rate {fps!r} is not a positive number (give e.g. 24 or 29.97)")
    if abs(f - round(f)) < 1e-4:
        return Fraction(round(f))
    ntsc = round(f * 1.001)
    if ntsc >= 1 and abs(f - ntsc * 1000 / 1001) < 0.005:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(f).limit_denominator(1000)


def _rate_arg(rate: Fraction) -> str:
    return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"


# ----------------------------------------------------------------------------------------------------------
# ffmpeg plumbing


def _ffmpeg_exe() -> str:
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        raise ZoomdreamError(
            "ffmpeg not found: imageio-ffmpeg has no binary for this platform "
            "(reinstall it: pip install --force-reinstall imageio-ffmpeg)"
        ) from None


def _ff(path: Path) -> str:
    """Path argument for ffmpeg; the file: prefix stops names like 'a:b.mp4' being read as protocols."""
    return "file:" + os.fspath(path)


def _popen_kwargs() -> dict:
    """Own process group, so Ctrl-C reaches only Python, which then stops ffmpeg in an orderly way."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def _clean(line: str) -> str:
    """ffmpeg log line without its '[component @ 0x...]' prefixes or our file: prefix."""
    line = re.sub(r"\[[^\]]*@ 0x[0-9a-fA-F]+\]\s*", "", line.strip())
    return line.replace("file:", "")


def _tail(lines, n: int = 2) -> str:
    """The last n message lines, as one short line."""
    text = [_clean(ln) for ln in lines if ln.strip()]
    msg = " / ".join(text[-n:]) or "no message"
    return msg if len(msg) <= 300 else msg[:297] + "..."


def _cause(first: list[str], last) -> str:
    """First error line (the root cause; later lines are consequences) and the last one, as one short line."""
    text = [_clean(ln) for ln in first if ln.strip()]
    end = [_clean(ln) for ln in last if ln.strip()]
    picked = text[:1] + [ln for ln in end[-1:] if ln not in text[:1]]
    msg = " / ".join(picked) or "no message"
    return msg if len(msg) <= 300 else msg[:297] + "..."


class _Ffmpeg:
    """An ffmpeg child whose stderr is drained on a thread, so a chatty ffmpeg never blocks on a full pipe."""

    def __init__(self, args: list[str], *, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL):
        cmd = [_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", *args]
        try:
            self.proc = subprocess.Popen(
                cmd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, **_popen_kwargs()
            )
        except OSError as e:
            raise ZoomdreamError(f"cannot start ffmpeg: {e.strerror or e} (reinstall imageio-ffmpeg)") from None
        self._first: list[str] = []
        self._lines: collections.deque[str] = collections.deque(maxlen=50)
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace")
            if len(self._first) < 5 and line.strip():
                self._first.append(line)
            self._lines.append(line)
        self.proc.stderr.close()

    def wait(self) -> int:
        rc = self.proc.wait()
        self._thread.join(timeout=5)
        return rc

    def tail(self) -> str:
        """ffmpeg's complaint as one line: its first error (the cause) and its last (the outcome)."""
        self._thread.join(timeout=5)
        return _cause(self._first, self._lines)

    def kill(self) -> None:
        """Stop ffmpeg now and release its pipes; safe to call more than once."""
        if self.proc.poll() is None:
            self.proc.kill()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        self.wait()


def _run_ffmpeg(args: list[str], failure: str, fix: str) -> None:
    """Run ffmpeg to completion; a non-zero exit becomes a ZoomdreamError."""
    ff = _Ffmpeg(args)
    try:
        rc = ff.wait()
    except BaseException:
        ff.kill()
        raise
    if rc != 0:
        raise ZoomdreamError(f"{failure}: ffmpeg said: {ff.tail()} ({fix})")


# ----------------------------------------------------------------------------------------------------------
# images


def read_image(path: PathArg) -> np.ndarray:
    """Load any common still image as uint8 HxWx3 RGB (alpha over white, 16 bit scaled, first GIF frame)."""
    p = _existing_file(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ZoomdreamError(f"cannot read '{_show(p)}': {e.strerror or e} (check file permissions)") from None
    data = np.frombuffer(raw, np.uint8)
    img = None
    try:
        # JPEG cannot carry alpha, and IMREAD_COLOR is the mode that applies EXIF orientation.
        flags = cv2.IMREAD_COLOR if raw[:3] == b"\xff\xd8\xff" else cv2.IMREAD_UNCHANGED
        img = cv2.imdecode(data, flags)
    except cv2.error:
        img = None
    if img is not None:
        if img.ndim == 3 and img.shape[2] == 3:
            img = img[:, :, ::-1]
        elif img.ndim == 3 and img.shape[2] == 4:
            img = img[:, :, [2, 1, 0, 3]]
    else:
        # OpenCV builds without GIF (or other) support: let imageio/Pillow try; it returns RGB(A) already.
        try:
            img = np.asarray(iio.imread(raw, index=0, plugin="pillow"))
        except Exception:
            raise ZoomdreamError(
                f"cannot read '{_show(p)}': not a readable image (use PNG, JPEG, WEBP, BMP, TIFF or GIF)"
            ) from None
    return _to_rgb8(img, p)


def _to_rgb8(img: np.ndarray, p: Path) -> np.ndarray:
    """Gray/gray+alpha/RGB/RGBA of any depth -> uint8 RGB, alpha composited over white."""
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4) or img.size == 0:
        raise ZoomdreamError(
            f"cannot read '{_show(p)}': unsupported image layout {img.shape} (save it as RGB PNG)"
        )
    if img.dtype == np.uint8:
        top = 255.0
    elif img.dtype == np.uint16:
        top = 65535.0
    elif img.dtype == np.bool_:
        img, top = img.astype(np.uint8), 1.0
    elif np.issubdtype(img.dtype, np.floating):
        img, top = np.clip(np.nan_to_num(img), 0.0, 1.0), 1.0
    else:
        raise ZoomdreamError(
            f"cannot read '{_show(p)}': unsupported pixel type {img.dtype} (save it as 8-bit PNG)"
        )

    channels = img.shape[2]
    color = img[:, :, :3] if channels >= 3 else np.repeat(img[:, :, :1], 3, axis=2)
    if channels in (2, 4):
        alpha = img[:, :, -1:].astype(np.float32) / top
        out = color.astype(np.float32) * alpha + top * (1.0 - alpha)
    elif img.dtype == np.uint8:
        return np.ascontiguousarray(color)
    else:
        out = color.astype(np.float32)
    return np.clip(np.rint(out * (255.0 / top)), 0, 255).astype(np.uint8)


def write_image(path: PathArg, img: np.ndarray) -> None:
    """Save uint8 HxWx3 RGB; the format follows the extension and the file appears only when complete."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise ZoomdreamError(
            f"cannot write '{_show(p)}': unsupported image type '{ext or '(none)'}' "
            f"(use one of {' '.join(IMAGE_EXTENSIONS)})"
        )
    _check_frame(img)
    _check_output_target(p)
    params = {
        ".jpg": [cv2.IMWRITE_JPEG_QUALITY, 95],
        ".jpeg": [cv2.IMWRITE_JPEG_QUALITY, 95],
        ".webp": [cv2.IMWRITE_WEBP_QUALITY, 95],
    }.get(ext, [])
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(img[:, :, ::-1]), params)
    if not ok:
        raise ZoomdreamError(f"cannot write '{_show(p)}': OpenCV could not encode {ext} (try .png)")
    _atomic_write_bytes(p, buf.tobytes())


# ----------------------------------------------------------------------------------------------------------
# probing


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds. width/height are as displayed (rotation applied); n_frames is what read_video
    yields for the whole clip (duration x fps, an estimate for variable-rate sources), None without a duration."""

    width: int
    height: int
    fps: float
    n_frames: int | None
    duration: float | None
    has_audio: bool
    audio_codec: str | None
    video_codec: str | None = None
    pix_fmt: str | None = None


@dataclass(frozen=True)
class _Header:
    """The parts of ffmpeg's input dump we use; video fields are None for audio-only files."""

    duration: float | None
    width: int | None
    height: int | None
    fps: float | None
    video_codec: str | None
    pix_fmt: str | None
    audio_codec: str | None


def _rate_value(rest: str, unit: str) -> float | None:
    m = re.search(r"(\d+(?:\.\d+)?)(k?) " + unit + r"\b", rest)
    if not m:
        return None
    value = float(m.group(1)) * (1000.0 if m.group(2) else 1.0)
    return value if value > 0 else None


def _parse_header(text: str) -> _Header:
    """Parse `ffmpeg -i` stderr; only the Input #0 section counts (the output section repeats streams)."""
    section = re.split(r"^(?:Output #0|Stream mapping:)", text, maxsplit=1, flags=re.M)[0]
    lines = section.splitlines()
    duration = None
    m = re.search(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)", section)
    if m:
        duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
        duration = duration if duration > 0 else None

    width = height = None
    fps = None
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
            fps = _rate_value(rest, "fps") or _rate_value(rest, "tbr")
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
    return _Header(duration, width, height, fps, video_codec, pix_fmt, audio_codec)


def _probe(path, what: str = "read") -> tuple[Path, _Header]:
    p = _existing_file(path, what)
    args = ["-hide_banner", "-nostdin", "-i", _ff(p), "-map", "0:V:0?", "-map", "0:a:0?", "-c", "copy", "-t", "0",
            "-f", "null", "-"]
    try:
        res = subprocess.run([_ffmpeg_exe(), *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, timeout=_PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ZoomdreamError(
            f"cannot {what} '{_show(p)}': ffmpeg took too long to open it (check the file)"
        ) from None
    text = res.stderr.decode("utf-8", "replace")
    header = _parse_header(text)
    if res.returncode != 0:
        if "Input #0" in text and header.video_codec is None and header.audio_codec is None:
            raise ZoomdreamError(
                f"cannot {what} '{_show(p)}': it has no video or audio stream (give a video file)"
            )
        raise ZoomdreamError(
            f"cannot {what} '{_show(p)}': ffmpeg could not open it: {_tail(text.splitlines())} "
            "(check that it is a video file)"
        )
    return p, header


def probe_video(path: PathArg) -> VideoInfo:
    """Size, average frame rate, length and audio of a video, from ffmpeg's header dump (fast: no decoding)."""
    p, h = _probe(path)
    if h.video_codec is None:
        raise ZoomdreamError(f"cannot read '{_show(p)}': it has no video stream (give a video file)")
    if not h.width or not h.height:
        raise ZoomdreamError(f"cannot read '{_show(p)}': ffmpeg reports no frame size (re-encode the video)")
    if not h.fps:
        raise ZoomdreamError(f"cannot read '{_show(p)}': ffmpeg reports no frame rate (re-encode the video)")
    fps = float(_fps_fraction(h.fps))
    n_frames = max(1, round(h.duration * fps)) if h.duration else None
    return VideoInfo(
        width=h.width, height=h.height, fps=fps, n_frames=n_frames, duration=h.duration,
        has_audio=h.audio_codec is not None, audio_codec=h.audio_codec,
        video_codec=h.video_codec, pix_fmt=h.pix_fmt,
    )


# ----------------------------------------------------------------------------------------------------------
# reading video


def _fit_size(width: int, height: int, max_size: int | None) -> tuple[int, int] | None:
    """Target (w, h) with the longest side <= max_size, aspect kept, even dims; None when no resize is needed."""
    if max_size is None or max(width, height) <= max_size:
        return None
    scale = max_size / max(width, height)
    w = max(2, int(width * scale) // 2 * 2) if width >= height else max(2, round(width * scale / 2) * 2)
    h = max(2, int(height * scale) // 2 * 2) if height > width else max(2, round(height * scale / 2) * 2)
    return w, h


def read_video(
    path: PathArg,
    *,
    start: float = 0.0,
    duration: float | None = None,
    every: int = 1,
    max_size: int | None = None,
) -> Iterator[np.ndarray]:
    """Stream uint8 HxWx3 RGB frames at the source's average rate (constant, so variable-rate clips behave).

    The file is checked now; ffmpeg starts on the first next() and stops when the iterator is exhausted or
    closed (use ``contextlib.closing`` or ``.close()`` when stopping early). With ``every=N`` the effective
    rate is ``probe_video(path).fps / N``.
    """
    if not (isinstance(start, (int, float)) and math.isfinite(start) and start >= 0):
        raise ZoomdreamError(f"start {start!r} must be a number of seconds >= 0 (e.g. 0 or 1.5)")
    if duration is not None and not (
        isinstance(duration, (int, float)) and math.isfinite(duration) and duration > 0
    ):
        raise ZoomdreamError(f"duration {duration!r} must be a number of seconds > 0 (or leave it out)")
    if not isinstance(every, int) or every < 1:
        raise ZoomdreamError(f"every {every!r} must be a whole number >= 1 (1 keeps every frame)")
    if max_size is not None and (not isinstance(max_size, int) or max_size < 2):
        raise ZoomdreamError(f"max_size {max_size!r} must be a whole number of pixels >= 2 (or leave it out)")
    info = probe_video(path)
    p = Path(path)
    if info.duration is not None and start >= info.duration:
        raise ZoomdreamError(
            f"cannot read '{_show(p)}' from {start:g} s: it is only {info.duration:.2f} s long "
            "(use a smaller start)"
        )
    rate = _rate_arg(_fps_fraction(info.fps))
    args = ["-nostdin"]
    if start > 0:
        args += ["-ss", f"{start:.6f}"]  # before -i: fast keyframe seek, then exact decode to the time
    args += ["-i", _ff(p), "-map", "0:V:0", "-an", "-sn", "-dn"]
    if duration is not None:
        args += ["-t", f"{duration:.6f}"]
    # start_time=0 keeps a frame for the first slot after a seek; the final scale pins the pipe's frame size
    # to what we slice by, whatever rotation or sample-aspect handling ffmpeg applies.
    args += ["-vf", f"fps={rate}:start_time=0,scale={info.width}:{info.height}",
             "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    return _stream_frames(args, info.width, info.height, every, _fit_size(info.width, info.height, max_size), p)


def _read_exact(stream, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = stream.readinto(view[got:])
        if not k:
            break
        got += k
    del view
    return buf[:got] if got < n else buf


def _stream_frames(args, width, height, every, size, p: Path) -> Iterator[np.ndarray]:
    ff = _Ffmpeg(args, stdout=subprocess.PIPE)
    frame_bytes = width * height * 3
    done = False
    try:
        index = 0
        while True:
            buf = _read_exact(ff.proc.stdout, frame_bytes)
            if len(buf) == 0:
                break
            if len(buf) < frame_bytes:
                ff.wait()
                raise ZoomdreamError(
                    f"cannot read '{_show(p)}': the video ended inside a frame: {ff.tail()} (re-encode the video)"
                )
            if index % every == 0:
                frame = np.frombuffer(buf, np.uint8).reshape(height, width, 3)
                if size is not None:
                    frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
                yield frame
            index += 1
        rc = ff.wait()
        done = True
        if rc != 0:
            raise ZoomdreamError(
                f"cannot read '{_show(p)}': ffmpeg said: {ff.tail()} (check that the video is intact)"
            )
    finally:
        if not done:
            ff.kill()  # closed early or failed: ffmpeg must not linger


# ----------------------------------------------------------------------------------------------------------
# writing video


class VideoWriter:
    """Encode frames to MP4/MOV/MKV (H.264, yuv420p) or a looping palette GIF, one frame at a time.

    The first frame fixes the size. For H.264, odd widths/heights are cropped by one column/row. Audio from
    ``audio_from`` (if it has any) is muxed in a second, stream-copy pass at close(), cut to the video's
    length, so the video is never shortened and slow frame producers never stall ffmpeg's muxer. Audio is
    copied when the container allows the codec, otherwise re-encoded to AAC 192k. GIF ignores audio, crf and
    preset; ``gif_fps``/``gif_width`` are ignored for other formats.
    """

    def __init__(
        self,
        path: PathArg,
        fps: float,
        *,
        crf: int = 18,
        audio_from: PathArg | None = None,
        audio_start: float = 0.0,
        audio_duration: float | None = None,
        preset: str = "medium",
        gif_fps: float | None = None,
        gif_width: int | None = None,
    ):
        self.path = Path(path)
        self.ext = self.path.suffix.lower()
        if self.ext not in VIDEO_EXTENSIONS:
            raise ZoomdreamError(
                f"cannot write '{_show(self.path)}': unsupported video type '{self.ext or '(none)'}' "
                f"(use one of {' '.join(VIDEO_EXTENSIONS)})"
            )
        _check_output_target(self.path)
        self.rate = _fps_fraction(fps)
        if not isinstance(crf, int) or not 0 <= crf <= 51:
            raise ZoomdreamError(f"crf {crf!r} must be a whole number from 0 to 51 (18 is visually lossless)")
        self.crf = crf
        self.preset = preset
        self.gif_rate = _fps_fraction(gif_fps) if gif_fps is not None else self.rate
        if gif_width is not None and (not isinstance(gif_width, int) or gif_width < 2):
            raise ZoomdreamError(
                f"gif_width {gif_width!r} must be a whole number of pixels >= 2 (or leave it out)"
            )
        self.gif_width = gif_width

        self._audio: tuple[Path, str] | None = None
        if audio_from is not None and self.ext != ".gif":
            if not (math.isfinite(audio_start) and audio_start >= 0):
                raise ZoomdreamError(f"audio_start {audio_start!r} must be a number of seconds >= 0")
            if audio_duration is not None and not (math.isfinite(audio_duration) and audio_duration > 0):
                raise ZoomdreamError(
                    f"audio_duration {audio_duration!r} must be a number of seconds > 0 (or leave it out)"
                )
            src, header = _probe(audio_from, "read audio from")
            if header.audio_codec is not None:
                if header.duration is not None and audio_start >= header.duration:
                    raise ZoomdreamError(
                        f"cannot read audio from '{_show(src)}' at {audio_start:g} s: it is only "
                        f"{header.duration:.2f} s long (use a smaller audio start)"
                    )
                self._audio = (src, header.audio_codec)
        self.audio_start = float(audio_start)
        self.audio_duration = audio_duration

        self._temp = _temp_sibling(self.path)
        self._video_temp = _temp_sibling(self.path, "video.part") if self._audio else None
        self._ff: _Ffmpeg | None = None
        self.size: tuple[int, int] | None = None  # (width, height) of the frames given
        self.frames_written = 0
        self._closed = False

    # -- context manager

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        # A writer dropped without close() must not leave ffmpeg running or a temp file behind.
        if not getattr(self, "_closed", True):
            try:
                self.abort()
            except Exception:
                pass  # interpreter shutdown: modules may already be gone

    # -- public

    def write(self, frame: np.ndarray) -> None:
        """Send one uint8 HxWx3 RGB frame to ffmpeg."""
        if self._closed:
            raise ValueError("write() on a closed VideoWriter")
        _check_frame(frame, "frame")
        h, w = frame.shape[:2]
        if self._ff is None:
            self._start(w, h)
        elif (w, h) != self.size:
            raise ValueError(f"frame size {w}x{h} differs from the first frame's {self.size[0]}x{self.size[1]}")
        try:
            self._ff.proc.stdin.write(memoryview(np.ascontiguousarray(frame)).cast("B"))
        except (BrokenPipeError, OSError):
            self._ff.wait()
            tail = self._ff.tail()
            self.abort()
            raise ZoomdreamError(
                f"cannot write '{_show(self.path)}': ffmpeg stopped: {tail} "
                "(check free disk space and the options)"
            ) from None
        self.frames_written += 1

    def close(self) -> None:
        """Finish encoding, add audio, then move the result onto the real name. A second call does nothing."""
        if self._closed:
            return
        self._closed = True
        if self._ff is None:
            raise ZoomdreamError(
                f"cannot write '{_show(self.path)}': no frames were given (check the input range)"
            )
        try:
            try:
                self._ff.proc.stdin.close()
            except OSError:
                pass
            rc = self._ff.wait()
            if rc != 0:
                raise ZoomdreamError(
                    f"cannot write '{_show(self.path)}': ffmpeg said: {self._ff.tail()} "
                    "(check free disk space and the options)"
                )
            if self._audio is not None:
                self._mux_audio()
            os.replace(self._temp, self.path)
        except OSError as e:
            self._cleanup()
            raise ZoomdreamError(
                f"cannot write '{_show(self.path)}': {e.strerror or e} (check folder permissions)"
            ) from None
        except BaseException:
            self._cleanup()
            raise
        finally:
            _remove_quietly(self._video_temp)

    def abort(self) -> None:
        """Stop ffmpeg and delete everything written so far; the final path is left untouched."""
        self._closed = True
        self._cleanup()

    # -- internals

    def _cleanup(self) -> None:
        if self._ff is not None:
            self._ff.kill()
        _remove_quietly(self._temp)
        _remove_quietly(self._video_temp)

    def _start(self, w: int, h: int) -> None:
        self.size = (w, h)
        target = self._video_temp or self._temp
        args = ["-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", _rate_arg(self.rate),
                "-i", "pipe:0", "-map", "0:v:0"]
        if self.ext == ".gif":
            chain = [f"fps={_rate_arg(self.gif_rate)}"]
            if self.gif_width is not None:
                chain.append(f"scale={self.gif_width}:-1:flags=lanczos")
            graph = ",".join(chain) + (
                ",split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse=dither=sierra2_4a"
            )
            args += ["-vf", graph, "-loop", "0"]
        else:
            ew, eh = w - w % 2, h - h % 2
            if ew < 2 or eh < 2:
                raise ValueError(f"frame size {w}x{h} is too small for H.264 (needs at least 2x2)")
            chain = [f"crop={ew}:{eh}:0:0"] if (ew, eh) != (w, h) else []
            # Explicit BT.709 conversion and tags, so players show the colours we were given.
            chain += ["scale=out_color_matrix=bt709:out_range=tv", "format=yuv420p"]
            args += ["-vf", ",".join(chain), "-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf),
                     "-pix_fmt", "yuv420p", "-colorspace", "bt709", "-color_primaries", "bt709",
                     "-color_trc", "bt709", "-color_range", "tv", "-an"]
            if self.ext in (".mp4", ".mov") and self._audio is None:
                args += ["-movflags", "+faststart"]
        args.append(_ff(target))
        self._ff = _Ffmpeg(args, stdin=subprocess.PIPE)

    def _mux_audio(self) -> None:
        """Second pass: copy the video, add the audio cut to the video's length."""
        src, codec = self._audio
        video_len = float(self.frames_written / self.rate)
        audio_len = min(video_len, self.audio_duration) if self.audio_duration is not None else video_len
        copyable = _COPYABLE_AUDIO[self.ext]
        # A copy cannot start mid-stream: from a later start ffmpeg copies from an earlier packet and delays
        # the video to match (seen: a 0.25 s cut from 0.5 s into a WebM became 0.75 s, the video starting at
        # 0.5 s). So a cut that starts later is re-encoded.
        can_copy = (copyable is None or codec in copyable) and self.audio_start == 0
        attempts = [["-c:a", "copy"]] if can_copy else []
        attempts.append(["-c:a", "aac", "-b:a", "192k"])
        for i, audio_args in enumerate(attempts):
            args = ["-y", "-nostdin", "-i", _ff(self._video_temp)]
            if self.audio_start > 0:
                args += ["-ss", f"{self.audio_start:.6f}"]
            args += ["-t", f"{audio_len:.6f}", "-i", _ff(src), "-map", "0:v:0", "-map", "1:a:0?", "-c:v", "copy",
                     *audio_args]
            if self.ext in (".mp4", ".mov"):
                args += ["-movflags", "+faststart"]
            args.append(_ff(self._temp))
            try:
                _run_ffmpeg(args, f"cannot add audio from '{_show(src)}' to '{_show(self.path)}'",
                            "try without audio or convert the audio to AAC")
                return
            except ZoomdreamError:
                _remove_quietly(self._temp)
                if i == len(attempts) - 1:
                    raise


# ----------------------------------------------------------------------------------------------------------
# numbered frame folders


def frame_path(directory: PathArg, index: int) -> Path:
    """The one place the frame naming lives: frame_00000000.png, 8 digits so names sort far past 9,999."""
    if index < 0:
        raise ValueError(f"frame index must be >= 0, got {index}")
    return Path(directory) / f"frame_{index:08d}.png"


def list_frames(directory: PathArg) -> list[Path]:
    """Complete frames in index order (temporary files are skipped); [] when the folder does not exist."""
    d = Path(directory)
    if not d.exists():
        return []
    if not d.is_dir():
        raise ZoomdreamError(f"cannot list frames in '{_show(d)}': it is a file, not a folder (give a folder)")
    found = []
    for entry in os.scandir(d):
        m = FRAME_PATTERN.match(entry.name)
        if m and entry.is_file():
            found.append((int(m.group(1)), Path(entry.path)))
    return [p for _, p in sorted(found)]


def make_folder(directory: PathArg) -> Path:
    """Create a folder (and its parents) for frames or render state; a one-line error names the fix."""
    p = Path(directory)
    if p.exists() and not p.is_dir():
        raise ZoomdreamError(f"cannot keep frames in '{_show(p)}': it is a file (give a folder)")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ZoomdreamError(
            f"cannot create folder '{_show(p)}': {e.strerror or e} (check the path and permissions)"
        ) from None
    return p
