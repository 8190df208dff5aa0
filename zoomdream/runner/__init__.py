"""The runner: drives a frame source into sinks, and owns progress, interruption, resume and frame ranges.

- ``frames``: the frame loop (``run``) and the ``FrameSource`` protocol every loop kind meets.
- ``jobs``: ``render(job)``: a Job resolved through its command's loop module, checked, its model loaded once,
  rendered into the sinks its output asks for.
- ``pieces``: ``render_piece`` renders frames ``[a, b)`` into a work folder of their own and ``join_pieces``
  joins pieces into one output, audio added once.
- ``keyed``: a zoom with ``--interpolate N`` rendered apart: ``render_keys`` dreams its chain of dreamed frames,
  ``render_between`` makes any segment of the output from them, ``join_segments`` copies the segments in.
"""
from zoomdream.runner.frames import KEEP_QUEUE, FrameSource, restartable, run
from zoomdream.runner.jobs import (
                                   changed_settings,
                                   check_job,
                                   check_work,
                                   encoder,
                                   input_digest,
                                   interrupted,
                                   pin_machine,
                                   prepare,
                                   preview_path,
                                   record_path,
                                   render,
                                   render_image,
                                   render_video,
                                   render_zoom,
                                   work_folder,
)
from zoomdream.runner.keyed import join_segments, key_plan, render_between, render_keys
from zoomdream.runner.pieces import (
                                   encode_seams,
                                   join_parts,
                                   join_pieces,
                                   part_frames,
                                   piece_spans,
                                   render_piece,
                                   stream_path,
)

__all__ = ["KEEP_QUEUE", "FrameSource", "changed_settings", "check_job", "check_work", "encode_seams", "encoder",
           "input_digest", "interrupted", "join_parts", "join_pieces", "join_segments", "key_plan", "part_frames",
           "piece_spans", "pin_machine", "prepare", "preview_path", "record_path", "render", "render_between",
           "render_image", "render_keys", "render_piece", "render_video", "render_zoom", "restartable", "run",
           "stream_path", "work_folder"]
