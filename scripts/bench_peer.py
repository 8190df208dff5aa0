"""zoomdream against PyTorch on the same CPU: the same DeepDream step, and a whole still against the peer tool.

Step (one 512x512 image, one tile, float32, random weights, 2 threads): roll by a random shift, forward to
the layer, mean-of-squares loss, input gradient, unroll, divide by the gradient's std, step, clip. Nets:
VGG16 to block4_conv3 (torchvision relu4_3) and InceptionV3 to mixed5 (torchvision Mixed_6c). PyTorch runs
in NCHW and channels_last, and for InceptionV3 also with its batch norms folded into the convolutions, as
zoomdream folds them. Every measurement is a fresh process; the processes alternate (round 1: every
variant, round 2: every variant, ...), so load from other work hits both sides alike. A process compiles
and warms up, then times ``--steps`` steps; its median is one sample. Reported: the median over rounds and
the range, the fastest single step, and per step the CPU seconds, minor page faults and system seconds, and
the process's peak RSS. PyTorch flushes denormals as TensorFlow's threads do, and its InceptionV3 gets He
initialisation: with PyTorch's default one, random activations shrink toward denormals and slow it down.
On a machine shared with other work, PyTorch's OpenMP threads suffer more from it than TensorFlow's (a step
may take several times its unloaded time): the medians then favour zoomdream, the fastest steps less so.

End to end: ``zoomdream image`` on a 512x512 picture (VGG16, block4_conv3, 4 octaves of 1.8, 10 steps,
float32, random weights) against gordicaleksa/pytorch-deepdream's ``deepdream.py`` with the same settings
(``--model_name VGG16 --layers_to_use relu4_3 --pyramid_size 4 --pyramid_ratio 1.8
--num_gradient_ascent_iterations 10 --img_width 512``). With ``--peer-repo PATH`` (a checkout of that
repository; it needs opencv, scipy and matplotlib beside torch) its own ``deep_dream_static_image`` runs,
with torchvision's VGG16 made random (its pretrained download patched away in the child process); without
it, a line-for-line reimplementation of that function's loop below (``peer_static_image``: roll, forward,
MSE loss, backward, cascade Gaussian smoothing of the gradient, normalise, step, clamp; unroll) runs
instead. Each side is timed as a whole process: wall, user and system seconds, minor page faults, peak RSS.

PyTorch is a benchmark-only dependency: ``pip install torch torchvision`` in any environment, then point
``--torch-python`` at its interpreter (default: this one, if torch imports here).

    python scripts/bench_peer.py [--torch-python /path/to/venv/bin/python] [--rounds 3] [--steps 5]
        [--nets vgg16,inception_v3] [--no-e2e] [--peer-repo PATH]
        [--zd-variant NAME:VAR=VALUE[,VAR=VALUE]]...

``--zd-variant`` adds a zoomdream process run under extra environment variables (e.g.
``onednn-off:TF_ENABLE_ONEDNN_OPTS=0``), reported beside the default but not used for the ratio.
The last line is ``ratio=<geometric mean over the nets of zoomdream's step / the fastest PyTorch variant's>``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZE = 512
STEP_SIZE = 0.01
NETS = {  # zoomdream model and layer, torchvision layer
    "vgg16": ("vgg16", "block4_conv3", "relu4_3"),
    "inception_v3": ("inception_v3", "mixed5", "Mixed_6c"),
}
TORCH_VARIANTS = {"vgg16": ("nchw", "channels_last"),  # no batch norm to fold
                  "inception_v3": ("nchw", "channels_last", "folded", "folded+channels_last")}
E2E = dict(octaves=4, ratio=1.8, steps=10, width=512)


# ---------------------------------------------------------------- children: one measurement per process

def _usage() -> dict:
    import resource

    u = resource.getrusage(resource.RUSAGE_SELF)
    return {"minflt": u.ru_minflt, "stime": u.ru_stime, "utime": u.ru_utime, "maxrss_mb": u.ru_maxrss / 1024}


def _time_steps(step, steps: int, warmup: int = 2) -> dict:
    for _ in range(warmup):  # compile, first-touch allocations
        step()
    before, times = _usage(), []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    after = _usage()
    return {"times": times, "minflt_per_step": (after["minflt"] - before["minflt"]) / steps,
            "stime_per_step": (after["stime"] - before["stime"]) / steps,
            "cpu_per_step": (after["stime"] + after["utime"] - before["stime"] - before["utime"]) / steps,
            "maxrss_mb": after["maxrss_mb"]}


def child_zoomdream(net: str, steps: int) -> dict:
    import numpy as np

    from zoomdream import backend
    from zoomdream.ascent import Dreamer
    from zoomdream.models import load_model
    from zoomdream.objective import make_objective

    model, layer, _ = NETS[net]
    dreamer = Dreamer(load_model(model, "random", "float32"), make_objective(layer, "square"), tile=SIZE)
    rng = np.random.default_rng(0)
    state = {"image": rng.uniform(-0.5, 0.5, (SIZE, SIZE, 3)).astype(np.float32)}

    def step():
        state["image"], loss = dreamer.step(state["image"], rng.integers(0, (SIZE, SIZE)), STEP_SIZE)
        float(loss)

    result = _time_steps(step, steps)
    import tensorflow as tf

    result["version"] = (f"tensorflow {tf.__version__}, keras {__import__('keras').__version__}, "
                         f"{'oneDNN' if backend.onednn_enabled() else 'Eigen'} kernels")
    return result


def torch_features(net: str, variant: str, threads: int):
    import torch
    import torchvision

    torch.set_flush_denormal(True)  # as TensorFlow's threads do (set before the thread pool starts)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if net == "vgg16":
        model = torchvision.models.vgg16(weights=None).features[:23]  # ... conv4_3, relu4_3
    else:
        inc = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
        model = torch.nn.Sequential(inc.Conv2d_1a_3x3, inc.Conv2d_2a_3x3, inc.Conv2d_2b_3x3, inc.maxpool1,
                                    inc.Conv2d_3b_1x1, inc.Conv2d_4a_3x3, inc.maxpool2, inc.Mixed_5b,
                                    inc.Mixed_5c, inc.Mixed_5d, inc.Mixed_6a, inc.Mixed_6b, inc.Mixed_6c)
        for module in model.modules():  # He init: PyTorch's default shrinks activations toward denormals
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    model.eval().requires_grad_(False)
    if "folded" in variant:
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        for module in model.modules():
            if hasattr(module, "conv") and isinstance(getattr(module, "bn", None), torch.nn.BatchNorm2d):
                module.conv, module.bn = fuse_conv_bn_eval(module.conv, module.bn), torch.nn.Identity()
    if "channels_last" in variant:
        model = model.to(memory_format=torch.channels_last)
    return model


def child_torch(net: str, variant: str, steps: int, threads: int) -> dict:
    import numpy as np
    import torch
    import torchvision

    model = torch_features(net, variant, threads)
    layout = torch.channels_last if "channels_last" in variant else torch.contiguous_format
    rng = np.random.default_rng(0)
    state = {"image": torch.from_numpy(rng.uniform(-0.5, 0.5, (1, 3, SIZE, SIZE)).astype(np.float32))}

    def step():
        dy, dx = (int(s) for s in rng.integers(0, (SIZE, SIZE)))
        rolled = torch.roll(state["image"], (dy, dx), (2, 3)).contiguous(memory_format=layout).requires_grad_(True)
        loss = model(rolled).square().mean()
        (grad,) = torch.autograd.grad(loss, rolled)
        with torch.no_grad():
            grad = torch.roll(grad, (-dy, -dx), (2, 3))
            state["image"] = (state["image"] + STEP_SIZE * grad / (grad.std() + 1e-8)).clamp_(-1.0, 1.0)
        float(loss)

    result = _time_steps(step, steps)
    result["version"] = f"torch {torch.__version__}, torchvision {torchvision.__version__}, {torch.get_num_threads()} threads"
    return result


def peer_static_image(img, model, steps: int, octaves: int, ratio: float, lr: float = 0.09, shift: int = 32,
                      smoothing: float = 0.5):
    """gordicaleksa/pytorch-deepdream's ``deep_dream_static_image`` + ``gradient_ascent`` (VGG16, relu4_3),
    rewritten with torch and numpy only (cv2.resize -> the same bilinear resize in torch): img is HxWx3 in
    [0, 1]; returns the same."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    lower = torch.tensor((-mean / std).reshape(1, -1, 1, 1))
    upper = torch.tensor(((1 - mean) / std).reshape(1, -1, 1, 1))
    img = (img - mean) / std
    base = np.array(img.shape[:2], np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(np.moveaxis(img, 2, 0)))[None]
    for level in range(octaves):
        shape = np.round(base * ratio ** (level - octaves + 1)).astype(np.int32)
        tensor = F.interpolate(tensor.detach(), size=tuple(int(s) for s in shape), mode="bilinear",
                               align_corners=False).requires_grad_(True)
        for iteration in range(steps):
            h, w = (int(s) for s in np.random.randint(-shift, shift + 1, 2))
            with torch.no_grad():
                tensor = torch.roll(tensor, (h, w), (2, 3)).requires_grad_(True)
            loss = torch.nn.MSELoss(reduction="mean")(out := model(tensor), torch.zeros_like(out))
            loss = torch.mean(torch.stack([loss]))
            loss.backward()
            sigma = ((iteration + 1) / steps) * 2.0 + smoothing
            grad = _cascade_gaussian(tensor.grad.data, 9, sigma)
            grad = (grad - torch.mean(grad)) / torch.std(grad)
            tensor.data += lr * grad
            tensor.grad.data.zero_()
            tensor.data = torch.max(torch.min(tensor, upper), lower)
            with torch.no_grad():
                tensor = torch.roll(tensor, (-h, -w), (2, 3)).requires_grad_(True)
    out = np.moveaxis(tensor.detach().numpy()[0], 0, 2)
    return np.clip(out * std + mean, 0.0, 1.0)


def _cascade_gaussian(grad, size: int, sigma: float):
    """The peer's CascadeGaussianSmoothing: three depthwise Gaussian blurs (0.5, 1 and 2 sigma), averaged."""
    import torch
    import torch.nn.functional as F

    grid = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    padded = F.pad(grad, [size // 2] * 4, mode="reflect")
    out = 0
    for s in (0.5 * sigma, sigma, 2.0 * sigma):
        g = torch.exp(-(grid / s) ** 2 / 2)
        kernel = (g[:, None] * g[None, :])
        kernel = (kernel / kernel.sum()).view(1, 1, size, size).repeat(3, 1, 1, 1)
        out = out + F.conv2d(padded, kernel, groups=3)
    return out / 3


def child_peer_e2e(image: str, output: str, peer_repo: str | None) -> dict:
    """One whole still with the peer's algorithm (its own code where ``peer_repo`` is given)."""
    import numpy as np
    import torch
    import torchvision
    from PIL import Image

    real = torchvision.models.vgg16
    torchvision.models.vgg16 = lambda pretrained=False, progress=True, **_: real(weights=None)  # random weights
    pixels = np.asarray(Image.open(image).convert("RGB"), np.float32) / 255.0
    config = dict(model_name="VGG16", pretrained_weights="IMAGENET", layers_to_use=["relu4_3"],
                  pyramid_size=E2E["octaves"], pyramid_ratio=E2E["ratio"],
                  num_gradient_ascent_iterations=E2E["steps"], lr=0.09, spatial_shift_size=32,
                  smoothing_coefficient=0.5, img_width=E2E["width"], use_noise=False, input=image)
    if peer_repo:
        sys.path.insert(0, peer_repo)
        import deepdream

        out = deepdream.deep_dream_static_image(config, pixels)
        kind = f"its deepdream.deep_dream_static_image ({peer_repo})"
    else:
        from torchvision.models import vgg16

        model = vgg16(weights=None).features[:23].eval().requires_grad_(False)
        out = peer_static_image(pixels, model, E2E["steps"], E2E["octaves"], E2E["ratio"])
        kind = "bench_peer.peer_static_image, a reimplementation of its loop"
    Image.fromarray((out * 255).astype(np.uint8)).save(output)
    return {"kind": kind, "version": f"torch {torch.__version__}, {torch.get_num_threads()} threads"}


# ---------------------------------------------------------------- parent: alternate processes, summarise

def run_child(python: str, args: list[str], env: dict | None = None) -> dict:
    """Run one child to completion; its JSON result plus the whole process's resource usage."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([python, *args], stdout=out, stderr=err, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        text, errors = out.read(), err.read()
    print(f"  [{time.strftime('%H:%M:%S')}] {' '.join(args[args.index('--child') + 1:] if '--child' in args else args[3:5])}"
          f" {wall:.1f} s, load {load_average()}", file=sys.stderr, flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed ({proc.returncode}):\n{errors[-3000:]}")
    lines = [line for line in text.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    result["process"] = {"wall": wall, "utime": usage.ru_utime, "stime": usage.ru_stime,
                         "minflt": usage.ru_minflt, "maxrss_mb": usage.ru_maxrss / 1024}
    return result


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def spread(values: list[float], fmt: str = "{:.3f}") -> str:
    """median (min-max)"""
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def torch_python(requested: str | None) -> str:
    if requested:
        return requested
    try:
        import torch  # noqa: F401
    except ImportError:
        raise SystemExit("torch does not import here: pip install torch torchvision (anywhere) and pass "
                         "--torch-python /path/to/that/python") from None
    return sys.executable


def make_input(path: Path) -> None:
    """samples/chelsea.png cut to a square and resized to 512x512 (the peer resizes to --img_width)."""
    import cv2

    img = cv2.imread(str(ROOT / "samples" / "chelsea.png"))
    side = min(img.shape[:2])
    cv2.imwrite(str(path), cv2.resize(img[:side, :side], (E2E["width"], E2E["width"]), interpolation=cv2.INTER_AREA))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--torch-python", help="an interpreter where torch and torchvision import")
    parser.add_argument("--rounds", type=int, default=3, help="processes per variant, alternating (default 3)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per process (default 5)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch threads (default: cores)")
    parser.add_argument("--nets", default=",".join(NETS))
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end pair")
    parser.add_argument("--e2e-rounds", type=int, default=None, help="end-to-end pairs (default --rounds)")
    parser.add_argument("--peer-repo", help="a gordicaleksa/pytorch-deepdream checkout to run its own code")
    parser.add_argument("--zd-variant", action="append", default=[], metavar="NAME:VAR=VALUE[,VAR=VALUE]")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, *rest = args.child
        if kind == "zoomdream":
            result = child_zoomdream(rest[0], args.steps)
        elif kind == "torch":
            result = child_torch(rest[0], rest[1], args.steps, args.threads)
        else:
            result = child_peer_e2e(rest[0], rest[1], args.peer_repo)
        print(json.dumps(result))
        return

    python = torch_python(args.torch_python)
    nets = [n for n in args.nets.split(",") if n]
    zd_env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
              "TF_CPP_MIN_LOG_LEVEL": "3"}
    zd_variants = {"zoomdream": {}}
    for spec in args.zd_variant:
        name, _, assignments = spec.partition(":")
        zd_variants[name] = dict(a.split("=", 1) for a in assignments.split(",") if a)
    me = [str(Path(__file__).resolve()), "--steps", str(args.steps), "--threads", str(args.threads)]
    from bench_engine import cpu_summary  # the scripts folder is this script's own path entry

    print(f"cpu: {cpu_summary()}")
    print(f"python {platform.python_version()}; torch python: {python}")

    loads = [load_average()]
    samples = {}  # (net, side) -> list of child results
    for round_ in range(args.rounds):
        for net in nets:
            for name, env in zd_variants.items():
                samples.setdefault((net, name), []).append(
                    run_child(sys.executable, me + ["--child", "zoomdream", net], {**zd_env, **env}))
            for variant in TORCH_VARIANTS[net]:
                samples.setdefault((net, f"torch {variant}"), []).append(
                    run_child(python, me + ["--child", "torch", net, variant]))
        loads.append(load_average())
    versions = sorted({r["version"] for results in samples.values() for r in results})
    print("versions: " + "; ".join(versions))

    print(f"\nstep, 512x512, float32, s/step: median over {args.rounds} processes of each one's median (range), "
          f"the fastest single step, CPU s (user + system); per step: minor page faults, system s; peak RSS")
    ratios, fastest_ratios = [], []
    for net in nets:
        medians, fastest = {}, {}
        for (n, side), results in samples.items():
            if n != net:
                continue
            per_process = [statistics.median(r["times"]) for r in results]
            medians[side] = statistics.median(per_process)
            faults = statistics.median(r["minflt_per_step"] for r in results)
            sys_s = statistics.median(r["stime_per_step"] for r in results)
            rss = statistics.median(r["maxrss_mb"] for r in results)
            cpu = statistics.median(r["cpu_per_step"] for r in results)
            best_step = fastest[side] = min(min(r["times"]) for r in results)
            print(f"  {net:13s} {side:28s} {spread(per_process)}  best {best_step:.3f}  cpu {cpu:.3f}  "
                  f"{faults:7.0f} faults  {sys_s:.3f} s sys  {rss:5.0f} MB")
        best = min((s for s in medians if s.startswith("torch")), key=medians.get)
        ratios.append(medians["zoomdream"] / medians[best])
        extra = "".join(f", {s} {medians[s] / medians[best]:.2f}" for s in zd_variants if s != "zoomdream")
        print(f"  {net}: zoomdream / {best} = {ratios[-1]:.3f}{extra}")
        quickest = min((s for s in fastest if s.startswith("torch")), key=fastest.get)
        fastest_ratios.append(fastest["zoomdream"] / fastest[quickest])
        print(f"  {net}, fastest single steps (least disturbed by other load): zoomdream / {quickest} = "
              f"{fastest_ratios[-1]:.3f}")

    if not args.no_e2e:
        with tempfile.TemporaryDirectory() as work:
            image = Path(work) / "in.png"
            make_input(image)
            zd_cmd = ["-c", "import sys; from zoomdream.cli import main; sys.exit(main(sys.argv[1:]))", "image",
                      str(image), "-o", str(Path(work) / "zd.png"), "--model", "vgg16", "--weights", "random",
                      "--layers", "block4_conv3", "--octaves", str(E2E["octaves"]), "--octave-scale",
                      str(E2E["ratio"]), "--steps", str(E2E["steps"]), "--precision", "float32"]
            peer_cmd = me + (["--peer-repo", args.peer_repo] if args.peer_repo else []) + [
                "--child", "peer", str(image), str(Path(work) / "peer.png")]
            runs = {"zoomdream image": [], "pytorch-deepdream": []}
            kind = ""
            for _ in range(args.e2e_rounds or args.rounds):
                runs["zoomdream image"].append(run_child(sys.executable, zd_cmd, zd_env)["process"])
                peer = run_child(python, peer_cmd)
                kind = peer.get("kind", "")
                runs["pytorch-deepdream"].append(peer["process"])
                loads.append(load_average())
        print(f"\nend to end, 512x512 still, VGG16 relu4_3, {E2E['octaves']} octaves x {E2E['ratio']}, "
              f"{E2E['steps']} steps, whole process: median (range) over {len(runs['zoomdream image'])}")
        print(f"  peer: {kind}")
        for side, procs in runs.items():
            print(f"  {side:18s} wall {spread([p['wall'] for p in procs], '{:.1f}')} s, "
                  f"user {spread([p['utime'] for p in procs], '{:.1f}')} s, "
                  f"sys {spread([p['stime'] for p in procs], '{:.1f}')} s, "
                  f"minor faults {statistics.median(p['minflt'] for p in procs) / 1e6:.2f} M, "
                  f"peak RSS {statistics.median(p['maxrss_mb'] for p in procs):.0f} MB")
    print(f"\nload average (1, 5, 15 min) at the start and after each round: {' | '.join(loads)}")
    print(f"ratio of the fastest single steps: {geomean(fastest_ratios):.3f}")
    print(f"ratio={geomean(ratios):.3f}")


def geomean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


if __name__ == "__main__":
    main()
