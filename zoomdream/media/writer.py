"""Encoding frames to a video file, one writer class per format, picked by extension from WRITERS.

A new format is a new FfmpegWriter subclass and a row in WRITERS, never a branch in shared code.
"""

from __future__ import annotations

import errno
import math
import os
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np

from zoomdream.errors import ZoomdreamError
from zoomdream.media.ffmpeg import Ffmpeg, file_arg, fps_fraction, rate_arg, run_ffmpeg
from zoomdream.media.files import (
    ClosesOrAborts, PathArg, WriteFailed, make_output_folder, output_extension, own_temp, remove_quietly, show,
)
from zoomdream.media.images import check_frame
from zoomdream.media.probe import read_header

# Audio codecs that may be stream-copied into each container; anything else is re-encoded to AAC.
# Matroska takes nearly everything; a failed copy there falls back to AAC as well.
_COPYABLE_AUDIO = {".mp4": {"aac", "mp3", "alac"}, ".mov": {"aac", "mp3", "alac"}, ".mkv": None}
_FASTSTART = (".mp4", ".mov")  # containers whose index can move to the front, for playback while downloading
# x264's preset: veryfast takes a third of medium's CPU at crf 18, visually lossless either way, for files of
# about the same size; medium made the encoder, not the dream, the limit of a GPU render (figures: the
# Benchmarks page).
PRESET = "veryfast"
# Explicit BT.709 conversion and tags for H.264 from RGB, so players show the colours we were given (without
# them ffmpeg converts with BT.601 and players guess).
BT709_FILTERS = ["scale=out_color_matrix=bt709:out_range=tv", "format=yuv420p"]
BT709_TAGS = ["-pix_fmt", "yuv420p", "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
              "-color_range", "tv"]


def _errno(tail: str) -> int | None:
    """The errno behind an ffmpeg failure where its words name one (a full disk)."""
    return errno.ENOSPC if "No space left on device" in tail else None


class FfmpegWriter(ClosesOrAborts):
    """Streams raw RGB frames into one ffmpeg that writes a hidden temp sibling, renamed onto the real name
    only when close() succeeded; an error or abort() deletes every temp file. The first frame fixes the size.

    Subclasses give the encoder options (`_encode_args`) and may add a later pass (`_finish`) that turns
    `_first_pass` into `_temp`.
    """

    def __init__(self, path: Path, rate: Fraction):
        self.path = path
        self.rate = rate
        self._temp = own_temp(path)
        self._first_pass = self._temp  # where the encoder writes
        self._ff: Ffmpeg | None = None
        self.size: tuple[int, int] | None = None  # (width, height) of the frames given
        self.frames_written = 0
        self._closed = False
        self._aborted = False

    def __del__(self) -> None:
        # A writer dropped without close() must not leave ffmpeg running or a temp file behind.
        if not getattr(self, "_closed", True):
            try:
                self.abort()
            except Exception:
                pass  # interpreter shutdown: modules may already be gone

    def write(self, frame: np.ndarray) -> None:
        """Send one uint8 HxWx3 RGB frame to ffmpeg."""
        if self._closed:
            raise ValueError("write() on a closed VideoWriter")
        check_frame(frame, "frame")
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
            raise WriteFailed(f"cannot write '{show(self.path)}': ffmpeg stopped: {tail} (check free disk space "
                              f"and the options)", _errno(tail), self.path) from None
        self.frames_written += 1

    def close(self) -> None:
        """Finish encoding and any later pass, then move the result onto the real name. A second call does
        nothing."""
        if self._closed:
            return
        self._closed = True
        if self._ff is None:
            raise ZoomdreamError(
                f"cannot write '{show(self.path)}': no frames were given (check the input range)"
            )
        try:
            try:
                if self._ff.proc.stdin is not None:  # None: the input was files (write_segments)
                    self._ff.proc.stdin.close()
            except OSError:
                pass
            rc = self._ff.wait()
            if rc != 0:
                tail = self._ff.tail()
                raise WriteFailed(f"cannot write '{show(self.path)}': ffmpeg said: {tail} (check free disk space and "
                                  f"the options)", _errno(tail), self.path)
            self._finish()
            os.replace(self._temp, self.path)
        except OSError as e:
            self._cleanup()
            raise WriteFailed(f"cannot write '{show(self.path)}': {e.strerror or e} (check folder permissions)",
                              e.errno, self.path) from None
        except BaseException:  # Ctrl-C too: no half-written file is left; re-raised
            self._cleanup()
            raise
        finally:
            if self._first_pass != self._temp:
                remove_quietly(self._first_pass)

    @property
    def aborted(self) -> bool:
        """Whether the file was dropped (by ``abort`` or after an error): then ``close`` writes nothing."""
        return self._aborted

    def abort(self) -> None:
        """Stop ffmpeg and delete everything written so far; the final path is left untouched."""
        self._closed = self._aborted = True
        self._cleanup()

    def _cleanup(self) -> None:
        if self._ff is None:  # nothing started: the temp name may be another writer's, never this one's
            return
        self._ff.kill()
        remove_quietly(self._temp)
        remove_quietly(self._first_pass)

    def _start(self, w: int, h: int) -> None:
        self.size = (w, h)
        args = ["-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", rate_arg(self.rate),
                "-i", "pipe:0", "-map", "0:v:0", *self._encode_args(w, h), file_arg(self._first_pass)]
        self._ff = Ffmpeg(args, stdin=subprocess.PIPE)

    def write_segments(self, segments: list[tuple[Path, int]]) -> None:
        """Make the file from H.264 files encoded with this file's settings (``H264Segment``), given as (path,
        frames it holds), instead of from frames, then close it: joined by ffmpeg's concat demuxer, the video
        stream copied where the format is H.264 (nothing is encoded twice), decoded for other formats. Each
        file's duration is given as its frames over the rate, so no container's rounding moves the next one."""
        if self._closed or self._ff is not None:
            raise ValueError("write_segments() on a writer that already has frames")
        listing = own_temp(self.path, "segments.txt")
        try:
            lines = ["ffconcat version 1.0"]
            for path, frames in segments:
                quoted = os.path.abspath(path).replace("\\", "/").replace("'", "'\\''")
                lines += [f"file '{quoted}'", f"duration {float(frames / self.rate):.9f}"]
            listing.write_text("\n".join(lines) + "\n")
            args = ["-y", "-nostdin", "-f", "concat", "-safe", "0", "-i", file_arg(listing), "-map", "0:v:0",
                    *self._copy_args(), file_arg(self._first_pass)]
            self._ff = Ffmpeg(args)
            self.frames_written = sum(frames for _, frames in segments)
            self.close()
        finally:
            remove_quietly(listing)

    def _encode_args(self, w: int, h: int) -> list[str]:
        """ffmpeg output options for frames of w x h."""
        raise NotImplementedError

    def _copy_args(self) -> list[str]:
        """ffmpeg output options for an input that is already H.264 (``write_segments``)."""
        return self._encode_args(0, 0)

    def _finish(self) -> None:
        """Runs after the encoder succeeded, before the rename."""


class H264Writer(FfmpegWriter):
    """H.264 yuv420p in MP4, MOV or MKV. Odd widths/heights are cropped by one column/row (H.264 needs even
    sizes). Audio from ``audio_from`` (if it has any) is muxed in a second, stream-copy pass at close(), cut
    to the video's length, so the video is never shortened and slow frame producers never stall ffmpeg's
    muxer. Audio is copied when the container allows the codec, otherwise re-encoded to AAC 192k."""

    def __init__(self, path: Path, rate: Fraction, *, crf: int, preset: str, audio_from: PathArg | None,
                 audio_start: float, audio_duration: float | None, **gif_options):
        audio = None
        if audio_from is not None:
            if not (math.isfinite(audio_start) and audio_start >= 0):
                raise ZoomdreamError(f"audio_start {audio_start!r} must be a number of seconds >= 0")
            if audio_duration is not None and not (math.isfinite(audio_duration) and audio_duration > 0):
                raise ZoomdreamError(
                    f"audio_duration {audio_duration!r} must be a number of seconds > 0 (or leave it out)"
                )
            src, header = read_header(audio_from, "read audio from")
            if header.audio_codec is not None:
                if header.duration is not None and audio_start >= header.duration:
                    raise ZoomdreamError(
                        f"cannot read audio from '{show(src)}' at {audio_start:g} s: it is only "
                        f"{header.duration:.2f} s long (use a smaller audio start)"
                    )
                audio = (src, header.audio_codec)
        super().__init__(path, rate)
        self.crf = crf
        self.preset = preset
        self.audio_start = float(audio_start)
        self.audio_duration = audio_duration
        self._audio: tuple[Path, str] | None = audio
        self._ext = path.suffix.lower()
        if audio is not None:
            self._first_pass = own_temp(path, "video.part")  # the audio pass then writes _temp

    def _encode_args(self, w: int, h: int) -> list[str]:
        ew, eh = w - w % 2, h - h % 2
        if ew < 2 or eh < 2:
            raise ValueError(f"frame size {w}x{h} is too small for H.264 (needs at least 2x2)")
        chain = [f"crop={ew}:{eh}:0:0"] if (ew, eh) != (w, h) else []
        args = ["-vf", ",".join([*chain, *BT709_FILTERS]), "-c:v", "libx264", "-preset", self.preset, "-crf",
                str(self.crf), *BT709_TAGS, "-an"]
        return args + (self._faststart() if self._audio is None else [])

    def _faststart(self) -> list[str]:
        return ["-movflags", "+faststart"] if self._ext in _FASTSTART else []

    def _copy_args(self) -> list[str]:
        return ["-c:v", "copy", "-an", *([] if self._audio else self._faststart())]

    def _finish(self) -> None:
        if self._audio is not None:
            self._mux_audio()

    def _mux_audio(self) -> None:
        """Second pass: copy the video, add the audio cut to the video's length."""
        src, codec = self._audio
        video_len = float(self.frames_written / self.rate)
        audio_len = min(video_len, self.audio_duration) if self.audio_duration is not None else video_len
        copyable = _COPYABLE_AUDIO[self._ext]
        # A copy cannot start mid-stream: from a later start ffmpeg copies from an earlier packet and delays
        # the video to match (seen: a 0.25 s cut from 0.5 s into a WebM became 0.75 s, the video starting at
        # 0.5 s). So a cut that starts later is re-encoded.
        can_copy = (copyable is None or codec in copyable) and self.audio_start == 0
        attempts = [["-c:a", "copy"]] if can_copy else []
        attempts.append(["-c:a", "aac", "-b:a", "192k"])
        for i, audio_args in enumerate(attempts):
            args = ["-y", "-nostdin", "-i", file_arg(self._first_pass)]
            if self.audio_start > 0:
                args += ["-ss", f"{self.audio_start:.6f}"]
            args += ["-t", f"{audio_len:.6f}", "-i", file_arg(src), "-map", "0:v:0", "-map", "1:a:0?",
                     "-c:v", "copy", *audio_args]
            args += [*self._faststart(), file_arg(self._temp)]
            try:
                run_ffmpeg(args, f"cannot add audio from '{show(src)}' to '{show(self.path)}'",
                           "try without audio or convert the audio to AAC")
                return
            except ZoomdreamError as error:
                remove_quietly(self._temp)
                if _errno(str(error)):  # the disk, not the audio: said as a full disk is, whatever the codec
                    raise WriteFailed(f"cannot write '{show(self.path)}': no space left on device (free some, then "
                                      f"try again)", errno.ENOSPC, self.path) from None
                if i == len(attempts) - 1:
                    raise


class GifWriter(FfmpegWriter):
    """Looping GIF, a palette of its own for every frame, not dithered: a dream's texture is noise already, and
    on it dithering made files larger and further from the frames (scripts/bench_gif.py). A GIF costs about a
    byte a pixel whatever the graph (LZW finds little to repeat in a dream): WebP is the small format."""

    def __init__(self, path: Path, rate: Fraction, *, gif_rate: Fraction, gif_width: int | None,
                 **h264_options):
        super().__init__(path, rate)
        self.gif_rate = gif_rate
        self.gif_width = gif_width

    def _chain(self) -> list[str]:
        """The frame rate and width filters (``--gif-fps``, ``--gif-width``)."""
        chain = [f"fps={rate_arg(self.gif_rate)}"]
        if self.gif_width is not None:
            chain.append(f"scale={self.gif_width}:-1:flags=lanczos")
        return chain

    def _encode_args(self, w: int, h: int) -> list[str]:
        graph = ",".join(self._chain()) + (
            ",split[a][b];[a]palettegen=stats_mode=single[p];[b][p]paletteuse=new=1:dither=none"
        )
        return ["-vf", graph, "-loop", "0"]


class WebpWriter(GifWriter):
    """Looping animated WebP (libwebp, lossy, 4:2:0): a fraction of a GIF's size, closer to the frames
    (scripts/bench_gif.py); ``--gif-fps`` and ``--gif-width`` apply as to a GIF."""

    QUALITY = 90  # closer to the frames and steadier than the GIF, at a fraction of its size (bench_gif.py)

    def _encode_args(self, w: int, h: int) -> list[str]:
        return ["-vf", ",".join(self._chain()), "-c:v", "libwebp_anim", "-quality", str(self.QUALITY),
                "-compression_level", "6", "-loop", "0"]


class H264Segment(H264Writer):
    """A piece of a longer H.264 stream (MP4, no audio): its own closed group of pictures, encoded with the
    final file's settings, so that ``write_segments`` joins pieces into the file without encoding again."""

    def __init__(self, path: Path, rate: Fraction, *, crf: int, preset: str = PRESET):
        super().__init__(path, rate, crf=crf, preset=preset, audio_from=None, audio_start=0.0, audio_duration=None)


WRITERS: dict[str, type[FfmpegWriter]] = {".mp4": H264Writer, ".mov": H264Writer, ".mkv": H264Writer,
                                          ".gif": GifWriter, ".webp": WebpWriter}
VIDEO_EXTENSIONS = tuple(WRITERS)


def VideoWriter(
    path: PathArg,
    fps: float,
    *,
    crf: int = 18,
    audio_from: PathArg | None = None,
    audio_start: float = 0.0,
    audio_duration: float | None = None,
    preset: str = PRESET,
    gif_fps: float | None = None,
    gif_width: int | None = None,
) -> FfmpegWriter:
    """The writer for `path`'s extension (see WRITERS), a context manager with write/close/abort.

    Every option is checked whatever the format, then each writer takes the ones it uses: GIF ignores audio,
    crf and preset; ``gif_fps``/``gif_width`` are ignored for the other formats.
    """
    p = Path(path)
    ext = output_extension(p, VIDEO_EXTENSIONS, "video")
    make_output_folder(p)
    rate = fps_fraction(fps)
    if not isinstance(crf, int) or not 0 <= crf <= 51:
        raise ZoomdreamError(f"crf {crf!r} must be a whole number from 0 to 51 (18 is visually lossless)")
    gif_rate = fps_fraction(gif_fps) if gif_fps is not None else rate
    if gif_width is not None and (not isinstance(gif_width, int) or gif_width < 2):
        raise ZoomdreamError(f"gif_width {gif_width!r} must be a whole number of pixels >= 2 (or leave it out)")
    return WRITERS[ext](p, rate, crf=crf, preset=preset, audio_from=audio_from, audio_start=audio_start,
                        audio_duration=audio_duration, gif_rate=gif_rate, gif_width=gif_width)
