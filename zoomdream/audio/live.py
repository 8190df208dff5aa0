"""The features of ``--audio`` (loudness, onset, bass, mid, treble, beat, bpm) computed causally, as live music
arrives: ``LiveAnalyser.feed`` takes samples from any thread (a microphone's callback, the source's audio
track, a file played in real time) and ``snapshot`` gives every feature from the audio fed so far, never later
audio. The hop analysis, mel filters and tempo estimate are ``features``'; what differs from the offline
analysis is only what needs the future there:

* Normalisation: a feature is divided by its largest value so far, not the whole track's; that largest value
  halves every ``NORM_HALF_LIFE_S`` seconds (a loud minute does not mute the quiet set after it). Loudness maps
  the range from the quietest level so far (at most 60 dB under the loudest) to the loudest.
* A feature is the mean (``onset``: the largest) over the last frame's time, ``1 / fps`` seconds; ``onset`` also
  over the time since the last snapshot, so a frame rate under ``fps`` misses no onset.
* ``bpm``: the tempo of the last ``TEMPO_WINDOW_S`` seconds of onsets (``features.tempo``), re-estimated every
  ``TEMPO_EVERY_S``; 0 until something repeats, and while no beat is followed.
* ``beat``: a beat on each strong onset (a peak of the flux above the recent mean plus a standard deviation,
  and at least ``STRONG`` of the largest so far) at least half a period after the last beat; without one, the
  next beat is predicted a period after the last; an onset up to a quarter period after a predicted beat moves
  the beat onto it. Prediction stops after four periods without a strong onset.

The delay the analysis adds: new sound enters the 46 ms window at its newest end, so an onset shows in the hop
that completes next (at most ``HOP`` samples, 11.6 ms, later), weighted by the window's edge; measured with
``scripts/bench_live.py`` (``audio_delay_ms=``).
"""
from __future__ import annotations

import bisect
import math
import threading
from collections import deque

import numpy as np

from zoomdream.audio.decode import RATE
from zoomdream.audio.features import BEAT_DECAY, HOP, LOUDNESS_RANGE_DB, NAMES, WINDOW, _Hops, tempo

NORM_HALF_LIFE_S = 30.0  # the largest value so far halves this often
TEMPO_WINDOW_S = 8.0  # the onsets the tempo is estimated from
TEMPO_EVERY_S = 0.5
HISTORY_S = 2.0  # how far back snapshot(until=...) reaches: a source's video may lag its audio this much
BEAT_GIVE_UP = 4  # periods without a strong onset before beats are no longer predicted
STRONG = 0.3  # a beat's onset is at least this share of the largest so far (a steady tone's ripple is not one)


class LiveAnalyser:
    """Features of live audio (mono float32 at ``rate``), one state per analysis hop. ``fps`` sets how far back
    a feature looks (one frame's time, as ``--audio`` reduces hops to frames)."""

    def __init__(self, fps: float = 24.0, *, rate: int = RATE):
        self.rate = rate
        self.hop_s = HOP / rate
        self.span = max(1, round(1.0 / (fps * self.hop_s)))
        self.decay = 0.5 ** (self.hop_s / NORM_HALF_LIFE_S)  # per hop, of a largest value so far
        self.lock = threading.Lock()  # history, clock: read by snapshot
        self.feeding = threading.Lock()  # the hop analysis: one feeder at a time
        self.peaks = np.zeros(4)  # largest so far of onset, bass, mid, treble
        self.loud_range = (-math.inf, math.inf)  # (loudest, quietest) level so far, dB
        self.restart(0.0)

    def restart(self, origin: float) -> None:
        """A new stream from stream time ``origin`` (a source reconnected): the hops, beats and history start
        afresh; what was learnt about the level (the largest values so far) is kept."""
        with self.feeding, self.lock:
            self.hops = _Hops(self.rate)
            self.origin, self.fed, self.done = origin, 0, 0  # done: hops analysed
            self.recent: deque = deque(maxlen=self.span)  # rows: power, bass, mid, treble, flux
            self.envelope: deque = deque(maxlen=round(TEMPO_WINDOW_S / self.hop_s))  # flux, for tempo and beats
            self.bpm, self.since_tempo = 0.0, 0
            self.last_beat: float | None = None  # stream time of the last beat
            self.predicted = False  # whether it was predicted rather than heard
            self.last_strong: float | None = None  # of the last strong onset
            self.times: deque = deque(maxlen=round(HISTORY_S / self.hop_s))  # hop completion times
            self.states: deque = deque(maxlen=self.times.maxlen)  # (values, last beat, bpm) at each
            self.read = -math.inf  # the stream time the last snapshot read up to

    @property
    def now(self) -> float:
        """Stream time of the newest sample fed."""
        return self.origin + self.fed / self.rate

    def feed(self, samples: np.ndarray, at: float | None = None) -> None:
        """Analyse the next samples; ``at``: the stream time of the first of them, where the caller knows it (the
        first call's sets the clock; after that the clock counts samples)."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        with self.feeding:
            if at is not None and self.fed == 0:
                with self.lock:
                    self.origin = at
            self.hops.feed(samples)
            rows = np.concatenate(self.hops.parts) if self.hops.parts else np.zeros((0, 5), np.float32)
            self.hops.parts.clear()  # live: only the state, never the whole stream, is kept
            states = [self._hop(row) for row in rows.astype(np.float64)]
            with self.lock:
                self.fed += len(samples)
                for when, state in states:
                    self.times.append(when)
                    self.states.append(state)

    def _hop(self, row: np.ndarray) -> tuple[float, tuple]:
        """One hop's features, at the time its window's newest sample arrived."""
        when = self.origin + (self.done * HOP + WINDOW // 2) / self.rate
        self.done += 1
        self.recent.append(row)
        recent = np.array(self.recent)
        power = recent[:, 0].mean()
        current = np.concatenate([[recent[:, 4].max()], np.sqrt(recent[:, 1:4].mean(axis=0))])
        self.peaks = np.maximum(current, self.peaks * self.decay)
        scaled = np.divide(current, self.peaks, out=np.zeros(4), where=self.peaks > 0)
        values = dict(loudness=self._loudness(power), onset=scaled[0], bass=scaled[1], mid=scaled[2],
                      treble=scaled[3])
        self._beats(row[4], when)
        return when, (values, self.last_beat, self.bpm if self.last_beat is not None else 0.0)

    def _loudness(self, power: float) -> float:
        db = 10.0 * math.log10(max(power, 1e-12))
        fall = 10.0 * math.log10(self.decay)  # the loudest so far falls, the quietest rises, as the peaks do
        top, low = self.loud_range
        top, low = max(db, top + fall), min(db, low - fall)
        self.loud_range = (top, low)
        bottom = max(low, top - LOUDNESS_RANGE_DB)
        return float(np.clip((db - bottom) / (top - bottom), 0.0, 1.0)) if top > bottom else 0.0

    def _beats(self, flux: float, when: float) -> None:
        self.envelope.append(flux)
        self.since_tempo += 1
        if self.since_tempo * self.hop_s >= TEMPO_EVERY_S:
            self.since_tempo = 0
            self.bpm = tempo(np.array(self.envelope), 1.0 / self.hop_s)
        if self.bpm <= 0:
            self.last_beat = None
            return
        period = 60.0 / self.bpm
        env = self.envelope
        if len(env) >= 3 and env[-3] < env[-2] >= env[-1]:  # a peak one hop back: dated to its hop
            recent = np.array(env)
            if env[-2] > max(recent.mean() + recent.std(), STRONG * self.peaks[0]):
                onset = when - self.hop_s
                self.last_strong = onset
                if self.last_beat is None or onset - self.last_beat >= period / 2:
                    self.last_beat, self.predicted = onset, False
                elif self.predicted and onset - self.last_beat <= period / 4:
                    self.last_beat, self.predicted = onset, False  # the predicted beat was early
        if self.last_beat is not None and when - self.last_beat >= period:
            if self.last_strong is not None and when - self.last_strong < BEAT_GIVE_UP * period:
                self.last_beat, self.predicted = self.last_beat + period, True
            else:
                self.last_beat = None

    def snapshot(self, until: float | None = None) -> dict[str, float]:
        """Every feature (``NAMES``) from the audio fed up to stream time ``until`` (default: the newest
        sample); silence (zeros) before the first hop. ``onset`` is the largest since the last snapshot too, so
        frames slower than ``fps`` miss no hit: it is read once a frame (the live controls do)."""
        with self.lock:
            at = self.now if until is None else min(until, self.now)
            index = bisect.bisect_right(self.times, at) - 1
            if index < 0:
                return dict.fromkeys(NAMES, 0.0)
            since = bisect.bisect_right(self.times, self.read) if self.read < at else index
            values, last_beat, bpm = self.states[index]
            values = {**values, "onset": max(self.states[i][0]["onset"] for i in range(min(since, index), index + 1))}
            self.read = at
        beat = 0.0
        if last_beat is not None and bpm > 0 and last_beat <= at:
            beat = math.exp(-BEAT_DECAY * (at - last_beat) * bpm / 60.0)
        return {**{name: float(v) for name, v in values.items()}, "beat": beat, "bpm": float(bpm)}
