"""Music as schedule variables: a track decoded through the bundled ffmpeg, reduced to one value per video frame.

Features, each one value per output frame and normalised over the analysed range of the track:

* ``loudness``: RMS level in dB, mapped linearly so the loudest frame is 1 and the quietest is 0 (a quietest
  frame more than 60 dB down counts as 60 dB down, so silence does not squash the music into the top).
* ``onset``: spectral flux on a log-mel spectrogram (40 mel bands, 30 Hz to 11 kHz): how much new sound
  starts in the frame (the largest flux inside it), divided by the track's largest.
* ``bass``, ``mid``, ``treble``: RMS amplitude of the bands 20-250 Hz, 250-4000 Hz and 4000-11025 Hz, each
  divided by its loudest frame's (0 is a silent band).
* ``beat``: 1 on the frame of each detected beat, decaying exponentially to 2% by the next beat; 0 before the
  first one.
* ``bpm``: the track's tempo, a constant (0 where no beat was found).

Inside schedule expressions, ``smooth(name, release)`` follows a feature up at once and lets it fall back with
a time constant of ``release`` seconds; ``smooth(name, attack, release)`` also slows the rise.

Decoding streams mono float32 PCM at 22,050 Hz from ffmpeg in chunks; the analysis keeps a few floats per 11.6
ms hop, so a one-hour track needs about 30 MB besides its features, never the samples themselves.
"""
from zoomdream.audio.decode import RATE, check_audio, decode, file_sha256, write_wav
from zoomdream.audio.features import (MAX_SMOOTH_S, NAMES, SERIES, Features, analyse, beat_curve, follow,
                                      tempo, track_beats)
from zoomdream.audio.track import Track, frame_count, pins, resolve_track

__all__ = ["MAX_SMOOTH_S", "NAMES", "RATE", "SERIES", "Features", "Track", "analyse", "beat_curve", "check_audio",
           "decode", "file_sha256", "follow", "frame_count", "pins", "resolve_track", "tempo", "track_beats",
           "write_wav"]
