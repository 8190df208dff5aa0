"""The one exception type users see: its message is a single line naming the problem and the fix."""


class ZoomdreamError(Exception):
    """A problem with the user's input or environment; the CLI prints it as one line and exits 2."""


class Stopped(Exception):
    """A render stopped on request (the studio's Stop): like Ctrl-C, its kept frames stay and it resumes."""
