"""Resume stores: a render's kept frames and ``state.json`` in its work folder, under an OS lock.

- ``lock``: the folder locks (one render per folder).
- ``frames``: ``FrameStore``, numbered PNG frames and the resume state (a zoom's dreamed frames on a cluster).
- ``segments``: ``SegmentStore``, a whole render's H.264 segments, which become the output by a stream copy.
- ``pieces``: ``PieceStore``, a piece of a render (a cluster's chunk).
"""
from zoomdream.store.frames import STATE_VERSION, FrameStore, Resume, read_state
from zoomdream.store.lock import LOCK_NAME, busy
from zoomdream.store.pieces import PieceStore
from zoomdream.store.segments import (
           MIN_STREAM,
           SEGMENT_FRAMES,
           SegmentStore,
           closes,
           segment_path,
           segment_spans,
)

__all__ = ["LOCK_NAME", "MIN_STREAM", "SEGMENT_FRAMES", "STATE_VERSION", "FrameStore", "PieceStore", "Resume",
           "SegmentStore", "busy", "closes", "read_state", "segment_path", "segment_spans"]
