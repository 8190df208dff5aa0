"""A job's track: its features as the variables schedules read by name, the audio the output carries, and the
frame count a track sets.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import ClassVar


from zoomdream.errors import ZoomdreamError
from zoomdream.media.files import show
from zoomdream.settings import number
from zoomdream.audio.decode import check_audio, file_sha256
from zoomdream.audio.features import NAMES, SERIES, Features, analyse


@dataclass(frozen=True)
class Track:
    """The audio of a render: a range of a file, the frame rate its features are read at, and the file's
    SHA-256 where the job records it. Analysed on first use, so a video whose schedules never read the music
    never decodes it. Schedules read it by name (``names``, ``value``, ``smoothed``)."""

    path: Path
    start: float
    duration: float | None
    fps: float
    sha256: str | None = None
    names: ClassVar[tuple] = NAMES  # what schedules may read
    series_names: ClassVar[tuple] = SERIES  # what smooth() may take

    @cached_property
    def features(self) -> Features:
        return analyse(self.path, self.fps, start=self.start, duration=self.duration)

    def value(self, name: str, t: int) -> float:
        return self.features.value(name, t)

    def smoothed(self, name: str, t: int, attack: float, release: float) -> float:
        return self.features.smoothed(name, t, attack, release)

    def writer_options(self) -> dict:
        """What the encoder needs to mux this range into the output (cut there to the video's length)."""
        return dict(audio_from=self.path, audio_start=self.start, audio_duration=self.duration)


def resolve_track(job, fps: float, clip: tuple[Path, float, float | None] | None = None) -> Track | None:
    """A zoom or video job's track: ``--audio FILE`` from ``--audio-start`` for ``--audio-duration`` (its
    SHA-256 taken, and checked against one a saved job recorded), else ``clip`` (a video's own soundtrack:
    path, start, duration), else None."""
    start = number(job.audio_start, "audio_start", low=0)
    duration = None if job.audio_duration is None else number(job.audio_duration, "audio_duration", above=0)
    if not job.audio:
        if start or duration is not None or job.audio_sha256:
            raise ZoomdreamError("--audio-start, --audio-duration and --audio-sha256 describe an --audio FILE "
                                 "(give one, or leave them out)")
        return None if clip is None else Track(Path(clip[0]), clip[1], clip[2], fps)
    path = check_audio(job.audio)
    if job.output and Path(job.output).suffix.lower() == ".gif":
        print("zoomdream: note: a GIF has no sound: --audio drives the schedules only", file=sys.stderr)
    sha = file_sha256(path)
    if job.audio_sha256 and job.audio_sha256 != sha:
        raise ZoomdreamError(f"--audio '{show(path)}' is not the track this job was made with (its SHA-256 is "
                             f"{sha[:12]}..., the job's {str(job.audio_sha256)[:12]}...; give the original file, "
                             f"or drop audio_sha256 from the job to accept this one)")
    return Track(path, start, duration, fps, sha)


def frame_count(frames: int | None, track: Track | None, default: int) -> int:
    """A zoom's frame count: ``--frames``, else as long as the track (round(duration x fps)), else ``default``."""
    if frames is not None:
        return frames
    if track is None:
        return default
    if track.features.frames < 1:
        raise ZoomdreamError(f"--audio '{show(track.path)}' lasts {track.features.duration:.3f} s, under one frame "
                             f"(give a longer track, or --frames)")
    return track.features.frames


def pins(track: Track | None) -> dict:
    """The job values a track decides, for the saved job: its SHA-256 (an --audio file's)."""
    return {"audio_sha256": track.sha256} if track is not None and track.sha256 else {}
