"""A frame's per-frame arithmetic, each CPU function beside its device twin: ``warp`` (the camera transform
and the warps that apply it), ``colour`` (the colour match) and ``levels`` (8-bit conversion).

The CPU functions are OpenCV passes on numpy arrays. The device twins are the same maps in Keras ops, compiled
into one program each, for a backend with an accelerator: there a zoom frame goes to the device once as uint8
and comes back once as uint8, to be kept, instead of crossing for each step (see the GPU page of the docs for
what that saves). Twins agree to float rounding, so a frame differs between the paths by at most a level here
and there. Keras is imported only when a device twin first runs, never to check a job.
"""
