"""A track decoded through the bundled ffmpeg as mono float32 PCM, in chunks (never the whole track in memory),
and its content hash (which a saved job records, so a resume refuses a changed track).
"""
from __future__ import annotations

import os
import subprocess
import wave
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

from zoomdream.errors import ZoomdreamError
from zoomdream.media.ffmpeg import Ffmpeg, file_arg
from zoomdream.media.files import PathArg, existing_file, file_digest, show
from zoomdream.media.probe import read_header
from zoomdream.media.reader import _read_exact


RATE = 22050  # analysis sample rate: treble reaches 11 kHz


CHUNK = 1 << 16  # samples per read from ffmpeg


def check_audio(path: PathArg) -> Path:
    """The path of a file ffmpeg reads that holds an audio stream, or a one-line error."""
    src, header = read_header(path, "read audio from")
    if header.audio_codec is None:
        raise ZoomdreamError(f"'{show(src)}' has no audio stream (give a file with sound: WAV, MP3, FLAC, OGG, "
                             f"M4A, or a video with a soundtrack)")
    return src


def decode(path: PathArg, *, start: float = 0.0, duration: float | None = None, rate: int = RATE,
           chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """Mono float32 samples of ``path``'s first audio stream from ``start`` for ``duration`` seconds, resampled
    to ``rate`` by the bundled ffmpeg, yielded ``chunk`` samples at a time (the last chunk may be shorter)."""
    src = check_audio(path)
    args = ["-nostdin"]
    if start > 0:
        args += ["-ss", f"{start:.6f}"]
    if duration is not None:
        args += ["-t", f"{duration:.6f}"]
    args += ["-i", file_arg(src), "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(rate),
             "-f", "f32le", "pipe:1"]
    ff = Ffmpeg(args, stdout=subprocess.PIPE)
    try:
        while True:
            data = _read_exact(ff.proc.stdout, 4 * chunk)
            if len(data) >= 4:
                yield np.frombuffer(data[: len(data) // 4 * 4], np.float32)
            if len(data) < 4 * chunk:
                break
        if ff.wait() != 0:
            raise ZoomdreamError(f"cannot decode audio from '{show(src)}': ffmpeg said: {ff.tail()} (check that "
                                 f"the file is intact, or convert it to WAV)")
    finally:
        ff.kill()


def file_sha256(path: PathArg) -> str:
    """SHA-256 of a file's bytes, read 1 MB at a time (cached by path, size and modification time)."""
    p = existing_file(path, "read audio from")
    stat = p.stat()
    return _sha256(str(p.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    try:
        return file_digest(path)
    except OSError as e:
        raise ZoomdreamError(f"cannot read audio from '{show(path)}': {e.strerror or e} (check permissions)") from None


def write_wav(path: PathArg, samples: np.ndarray, rate: int) -> None:
    """Samples in [-1, 1] (mono, or frames x channels) as a 16-bit PCM WAV file (tests, benchmarks, demos)."""
    pcm = np.clip(np.asarray(samples, np.float64), -1, 1)
    pcm = (pcm * 32767).round().astype("<i2")
    with wave.open(os.fspath(path), "wb") as w:
        w.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
