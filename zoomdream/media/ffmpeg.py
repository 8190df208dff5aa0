"""The bundled ffmpeg binary as a child process: started, drained, waited for, and its complaint quoted.

Video goes only through imageio-ffmpeg's binary, so results do not depend on whatever ffmpeg a machine has.
"""

from __future__ import annotations

import collections
import math
import os
import re
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg

from zoomdream.errors import ZoomdreamError


def ffmpeg_exe() -> str:
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        raise ZoomdreamError(
            "ffmpeg not found: imageio-ffmpeg has no binary for this platform "
            "(reinstall it: pip install --force-reinstall imageio-ffmpeg)"
        ) from None


def file_arg(path: Path) -> str:
    """Path argument for ffmpeg; the file: prefix stops names like 'a:b.mp4' being read as protocols."""
    return "file:" + os.fspath(path)


def fps_fraction(fps: float) -> Fraction:
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


def rate_arg(rate: Fraction) -> str:
    return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"


def _popen_kwargs() -> dict:
    """Own process group, so Ctrl-C reaches only Python, which then stops ffmpeg in an orderly way."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def _clean(line: str) -> str:
    """ffmpeg log line without its '[component @ 0x...]' prefixes or our file: prefix."""
    line = re.sub(r"\[[^\]]*@ 0x[0-9a-fA-F]+\]\s*", "", line.strip())
    return line.replace("file:", "")


def _one_line(picked: list[str]) -> str:
    msg = " / ".join(picked) or "no message"
    return msg if len(msg) <= 300 else msg[:297] + "..."


def tail(lines, n: int = 2) -> str:
    """The last n message lines, as one short line."""
    text = [_clean(ln) for ln in lines if ln.strip()]
    return _one_line(text[-n:])


def _cause(first: list[str], last) -> str:
    """First error line (the root cause; later lines are consequences) and the last one, as one short line."""
    text = [_clean(ln) for ln in first if ln.strip()]
    end = [_clean(ln) for ln in last if ln.strip()]
    return _one_line(text[:1] + [ln for ln in end[-1:] if ln not in text[:1]])


class Ffmpeg:
    """An ffmpeg child whose stderr is drained on a thread, so a chatty ffmpeg never blocks on a full pipe."""

    def __init__(self, args: list[str], *, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                 pass_fds: tuple[int, ...] = ()):
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", *args]
        try:  # pass_fds: pipes ffmpeg writes more outputs to (``pipe:N``)
            self.proc = subprocess.Popen(
                cmd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, pass_fds=pass_fds, **_popen_kwargs()
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

    def said(self, text: str) -> bool:
        """Whether ffmpeg said ``text`` in any of its first or last lines (a cause among decoder noise)."""
        self._thread.join(timeout=5)
        return any(text in line for line in (*self._first, *self._lines))

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


def run_ffmpeg(args: list[str], failure: str, fix: str) -> None:
    """Run ffmpeg to completion; a non-zero exit becomes a ZoomdreamError."""
    ff = Ffmpeg(args)
    try:
        rc = ff.wait()
    finally:
        ff.kill()  # Ctrl-C while waiting stops ffmpeg too; after it exited, only its pipes close
    if rc != 0:
        raise ZoomdreamError(f"{failure}: ffmpeg said: {ff.tail()} ({fix})")
