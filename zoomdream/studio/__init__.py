"""`zoomdream studio`: a local web page for image, zoom and video renders that shows each frame as it is made.

Two halves. ``Studio`` (``session``) is the state behind the page and knows nothing of the web: models loaded
once, one render at a time, the latest frame and the progress, Stop (the runner ends before its next frame and
keeps what it made) and Resume, the motion preview and the layer browser's small dreams. ``build_app``
(``page``) lays a Gradio page over it: one form per command (``tabs``), generated from ``config.Job`` as the
CLI's flags are (``forms``), so each field is a Job setting and each render saves the ``job.toml`` that
``zoomdream render`` reproduces; the layers tab (``layer_browser``); the shared outputs (``view``). ``serve``
(``server``) checks the address and runs the page. Gradio is the optional extra
``pip install 'zoomdream[studio]'``, imported only when the page is built; nothing outside the CLI imports
this package.
"""
from zoomdream.studio.forms import FORMATS, TABS, form_defaults, form_fields, job_from_form, keep_upload
from zoomdream.studio.page import build_app
from zoomdream.studio.server import check_address, serve
from zoomdream.studio.session import PREVIEW_SECONDS, PREVIEWS_KEPT, Progress, Studio, Update

__all__ = ["FORMATS", "PREVIEWS_KEPT", "PREVIEW_SECONDS", "TABS", "Progress", "Studio", "Update", "build_app",
           "check_address", "form_defaults", "form_fields", "job_from_form", "keep_upload", "serve"]
