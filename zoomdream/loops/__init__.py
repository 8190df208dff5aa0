"""Loop kinds: each module is one frame source (``Source``) built from its typed settings (``resolve(job)``),
with the output types it writes (``OUTPUTS``). A new kind is one module here and one entry in
``config.COMMANDS``; the runner drives them all the same way."""
