"""The one exception type users see: its message is a single line naming the problem and the fix."""


class ZoomdreamError(Exception):
    """A problem with the user's input or environment; the CLI prints it as one line and exits 2."""
