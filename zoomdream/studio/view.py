"""What the parts of the studio's page share: the progress box, Stop and the result outputs, how a render's
updates show in them, and error lines also shown as a notice. ``gr`` is the Gradio module, handed over by
``build_app``, so that importing the studio never loads Gradio."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from zoomdream.errors import error_line
from zoomdream.studio.session import Studio, Update

DREAM = dict(concurrency_id="dream", concurrency_limit=1)  # one dream at a time; the rest wait in line


@dataclass(frozen=True)
class View:
    """The page's shared outputs over ``studio``: ``outputs`` are the progress box, the latest frame, the result
    video, the result image and the downloads; ``stop`` is the Stop button."""

    gr: Any
    studio: Studio
    outputs: list
    stop: Any

    @property
    def status(self):
        """The progress box, where every action says how it went."""
        return self.outputs[0]

    def noticed(self, line: str) -> str:
        """An error line for the progress box, also shown as a notice over the page: the box is out of sight
        while a long form is scrolled down to its buttons."""
        self.gr.Warning(line)
        return line

    def shown(self, updates: Iterator[Update]):
        """Updates as the page's outputs: progress, latest frame, result video, result image, downloads."""
        gr, skip = self.gr, self.gr.skip()
        yield "starting", None, None, None, None  # clear the last render's results
        for u in updates:
            frame = self.studio.preview(u.frame) if u.frame is not None else skip
            if u.state == "running":
                yield u.message, frame, skip, skip, skip
                continue
            if u.output is None:
                yield self.noticed(u.message) if u.state == "error" else u.message, frame, skip, skip, skip
                continue
            playable = u.output.suffix == ".mp4"  # a GIF or a still shows as an image
            yield (u.message, frame, gr.update(value=str(u.output) if playable else None, visible=playable),
                   gr.update(value=None if playable else str(u.output), visible=not playable),
                   [str(u.output), str(u.job_file)])

    def failed(self, error: Exception):
        """A render that could not start, as the page's outputs: its one line, the rest left as they were."""
        skip = self.gr.skip()
        yield self.noticed(error_line(error)), skip, skip, skip, skip

    def armed(self, trigger, *args, **kwargs) -> None:
        """Wire a dreaming event: Stop turns red and clickable as it starts and plain and disabled when it ends,
        so it never looks armed with nothing to stop."""
        gr, stop = self.gr, self.stop
        trigger(lambda: gr.update(variant="stop", interactive=True), None, stop, queue=False,
                api_visibility="private")
        trigger(*args, **kwargs).then(lambda: gr.update(variant="secondary", interactive=False), None, stop,
                                      queue=False, api_visibility="private")
