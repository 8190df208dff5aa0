"""Images, videos and numbered frame folders in and out, as plain uint8 HxWx3 RGB arrays.

Decisions that callers can rely on:

* Video goes only through the ffmpeg binary shipped with imageio-ffmpeg (``imageio_ffmpeg.get_ffmpeg_exe()``),
  so results do not depend on whatever ffmpeg a machine happens to have. Every ffmpeg exit status is checked;
  a failure becomes a one-line ``ZoomdreamError`` quoting the end of ffmpeg's own message.
* Frames stream one at a time through pipes; no function holds a whole video in memory.
* No final file is ever half-written: output goes to a hidden sibling ``.NAME.part-PID-THREAD.EXT`` of this
  writer's own (the real extension stays last so ffmpeg and OpenCV pick the right format; beside the target, so
  the rename never crosses file systems) and is ``os.replace``-d onto the real name only after everything
  succeeded. Errors and aborts delete the temporary file.
* Transparent images are composited over white (hidden colour under transparent pixels is often garbage);
  16-bit images are scaled to 8 bit; JPEG EXIF orientation is applied.
* Video frames are decoded at a constant rate equal to the source's average rate, so variable-rate phone
  clips give evenly spaced frames and ``duration * fps`` frames in total.
* H.264 needs even sizes: an odd frame width or height loses its last column or row (cropping, not padding).
"""

from zoomdream.media.files import frame_path, list_frames, make_folder
from zoomdream.media.images import IMAGE_EXTENSIONS, fit_max_size, fitted_size, read_image, write_image
from zoomdream.media.probe import VideoInfo, frame_times, probe_video
from zoomdream.media.reader import VideoReader, read_video
from zoomdream.media.writer import VIDEO_EXTENSIONS, VideoWriter

__all__ = [
    "IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "VideoInfo", "VideoReader", "VideoWriter", "frame_path",
    "fit_max_size", "frame_times", "fitted_size", "list_frames", "make_folder", "probe_video", "read_image", "read_video",
    "write_image",
]
