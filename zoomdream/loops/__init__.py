"""Loop kinds: each module is one frame source (``Source``) built from its typed settings (``resolve(job)``),
with the output types it writes (``OUTPUTS``). A new kind is one module here and one entry in
``config.COMMANDS``; the runner drives them all the same way."""
from importlib import import_module

from zoomdream.config import COMMANDS


def loop_module(command: str):
    """The frame-source module of a command (``COMMANDS[command].module``), imported on first use, so --help
    never starts TensorFlow."""
    return import_module(COMMANDS[command].module)
