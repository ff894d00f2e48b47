"""Train the refcodec model: ``python -m refcodec.train``.

Variable-rate training of the mean-scale hyperprior of :mod:`refcodec.arch`:
every crop in a batch draws its own rate parameter beta ~ U[0, 1] (or, for a
fraction of the crops, U[--beta-floor, 1]: :func:`draw_beta`), which picks
both its gain vector (interpolated in the log domain between the K trained
rate points) and its distortion weight lambda(beta), log-interpolated between
LAMBDA_MIN and LAMBDA_MAX.

The run is resumable: ``RUN/last.pt`` is written every ``--ckpt-every``
iterations and read back at start.  ``RUN/train.log`` holds one line per
``--log-every`` iterations and one per Kodak evaluation; whenever the Kodak
score improves, the float weights are exported to ``RUN/best.npz`` (the file
``--init`` accepts, and the file committed as ``refcodec/models/*-float.npz``).

Example (background, 2 CPU threads)::

    nohup python -m refcodec.train --run runs/hp1 > runs/hp1.out 2>&1 &

Under ``torchrun`` the trainer runs data-parallel (DistributedDataParallel:
gloo on CPUs, nccl on GPUs): every process draws its own ``--batch`` crops,
so the batch of one iteration is ``--batch`` times the number of processes,
and the gradients are averaged over the processes.  Process 0 alone logs,
evaluates and writes the checkpoint and exports; all of them read the same
checkpoint back.  For example, 4 GPUs of one machine::

    torchrun --standalone --nproc_per_node 4 -m refcodec.train --run runs/big --device cuda
"""

import argparse
import contextlib
import glob
import gc
import json
import math
import os
import sys
import time

import numpy as np
import torch
from PIL import Image

from .. import arch as A
from ..nn import read_arch
from .nets import HyperpriorTorch, load_float  # noqa: F401 (load_float: float weights into a model)

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data")


def load_images(root, max_images=None, min_side=128):
    files = sorted(glob.glob(os.path.join(root, "**", "*.png"), recursive=True)
                   + glob.glob(os.path.join(root, "**", "*.jpg"), recursive=True)
                   + glob.glob(os.path.join(root, "**", "*.npy"), recursive=True))
    if max_images:
        files = files[:max_images]
    images = []
    for f in files:
        if f.endswith(".npy"):
            im = np.load(f)
        else:
            im = np.asarray(Image.open(f).convert("RGB"))
        if min(im.shape[:2]) >= min_side:
            images.append(np.ascontiguousarray(im))
    return images


def draw_beta(batch, floor=0.0, frac=0.0, device="cpu"):
    """Rate parameters of one batch: beta ~ U[0, 1], except that a fraction
    ``frac`` of the crops (each independently) draws from U[floor, 1] instead.

    ``floor > 0`` moves training effort from the lowest rates (beta < floor,
    below ~0.1 bpp on Kodak, under every BD-rate range) to the rates that are
    measured; ``frac = 0`` is the plain uniform draw.
    """
    beta = torch.rand(batch, device=device)
    if frac > 0 and floor > 0:
        high = torch.rand(batch, device=device) < frac
        beta = torch.where(high, floor + (1 - floor) * beta, beta)
    return beta


def random_batch(images, rng, batch, crop):
    out = np.empty((batch, crop, crop, 3), np.uint8)
    for i in range(batch):
        im = images[rng.integers(len(images))]
        h, w = im.shape[:2]
        y0 = rng.integers(h - crop + 1)
        x0 = rng.integers(w - crop + 1)
        c = im[y0:y0 + crop, x0:x0 + crop]
        if rng.random() < 0.5:
            c = c[:, ::-1]
        if rng.random() < 0.5:
            c = c[::-1]
        out[i] = c
    x = torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)
    return x


@torch.no_grad()
def rdoq_weights(beta):
    """The encoder's rate weight C of its rounding of y at each beta (B,):
    ``encoder.RDOQ_KNOTS``, linear between the knots, constant outside."""
    from ..encoder import RDOQ_KNOTS
    b = beta.detach().cpu().double().numpy()
    c = np.interp(b, [k for k, _ in RDOQ_KNOTS], [v for _, v in RDOQ_KNOTS])
    return torch.from_numpy(c).to(beta.device, torch.float32)


@torch.no_grad()
def evaluate(model, images, betas, device, rdoq=False):
    """Kodak-style RD at each beta: mean bpp (estimated from the likelihoods,
    hard rounding: to nearest, or ``rdoq`` as the encoder rounds) and mean
    PSNR on 8-bit RGB.  Without autograd: the trainer calls it between
    steps, where recording the graph would cost time and memory."""
    model.eval()
    rows = []
    for beta in betas:
        bpps, psnrs, losses = [], [], []
        for im in images:
            x = torch.from_numpy(im.copy()).permute(2, 0, 1)[None].float().div(255.0).to(device)
            b = torch.tensor([beta], device=device)
            x_hat, by, bz = model(x, b, noise=False, rdoq=rdoq_weights(b) if rdoq else None)
            npx = im.shape[0] * im.shape[1]
            bpp = float((by + bz).sum()) / npx
            x8 = torch.round(x_hat.clamp(0, 1) * 255)
            mse = float(((x8 - x * 255) ** 2).mean())
            bpps.append(bpp)
            psnrs.append(10 * math.log10(255 ** 2 / max(mse, 1e-10)))
            losses.append(bpp + model.lam(beta) * mse)
        rows.append((beta, float(np.mean(bpps)), float(np.mean(psnrs)), float(np.mean(losses))))
    model.train()
    return rows


def curve_of(weights, images, betas, rdoq, device="cpu"):
    """The rows of :func:`evaluate` for the float weights file ``weights`` (its own architecture;
    a W16 model file's weights dequantized)."""
    model = HyperpriorTorch(read_arch(weights)).to(device)
    load_float(model, weights)
    with torch.no_grad():
        return evaluate(model, images, betas, device, rdoq)


def reference_curve(weights, cache, images, betas, rdoq, device):
    """The rows of :func:`evaluate` for the float weights ``weights`` (their
    own architecture), kept in ``cache`` (JSON) for the same weights file,
    pictures, betas and rounding."""
    key = {"weights": os.path.abspath(weights), "size": os.path.getsize(weights),
           "images": [list(im.shape) + [int(im.astype(np.int64).sum())] for im in images],
           "betas": list(betas), "rdoq": bool(rdoq)}
    if os.path.exists(cache):
        with open(cache) as f:
            kept = json.load(f)
        if kept.get("key") == key:
            return [tuple(r) for r in kept["rows"]]
    rows = curve_of(weights, images, betas, rdoq, device)
    with open(cache, "w") as f:
        json.dump({"key": key, "rows": rows}, f)
    return rows


def curve_bd_rate(ref, rows):
    """BD-rate (%, PSNR-RGB, pchip) of the rows of :func:`evaluate` against the reference rows."""
    from ..eval.bdrate import bd_rate
    return bd_rate([r[1] for r in ref], [r[2] for r in ref], [r[1] for r in rows], [r[2] for r in rows])


def export_float(model, path, step, score):
    """Write every parameter as float32 into an .npz with the architecture."""
    arrays = {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()
              if not k.startswith(("rgb_to", "ycbcr_to"))}
    meta = {"arch": model.arch, "step": step, "kodak_score": score}
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    os.replace(tmp, path)


class WeightAverage:
    """An exponential moving average of the weights (Polyak averaging):
    ``avg <- decay * avg + (1 - decay) * w`` after every step.  The average
    has the low-noise weights a learning-rate decay would give, while the
    training goes on at the full rate; the Kodak evaluations and the exports
    use it.  Every floating-point entry of the state dict is averaged."""

    def __init__(self, model, decay, state=None):
        self.decay = decay
        sd = model.state_dict()
        self.names = [k for k, v in sd.items() if v.is_floating_point()]
        self.avg = {k: sd[k].detach().clone() for k in self.names}
        for k, v in (state or {}).items():
            if k in self.avg and v.shape == self.avg[k].shape:
                self.avg[k].copy_(v)

    @torch.no_grad()
    def update(self, model):
        sd = model.state_dict()
        for k in self.names:
            self.avg[k].lerp_(sd[k], 1.0 - self.decay)

    @contextlib.contextmanager
    def swapped_in(self, model):
        """The model holds the average inside the block, its own weights after."""
        sd = model.state_dict()
        own = {k: sd[k].detach().clone() for k in self.names}
        with torch.no_grad():
            for k in self.names:
                sd[k].copy_(self.avg[k])
        try:
            yield model
        finally:
            with torch.no_grad():
                for k in self.names:
                    sd[k].copy_(own[k])


class Distributed:
    """The processes of a ``torchrun`` launch (one process: rank 0 of 1, no
    process group).  ``torchrun`` sets RANK, WORLD_SIZE and LOCAL_RANK."""

    def __init__(self, device_kind):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.on = self.world > 1
        if self.on:
            import torch.distributed as dist
            self.dist = dist
            self.backend = "nccl" if device_kind == "cuda" else "gloo"
            dist.init_process_group(self.backend)

    def device(self, name):
        """Each process of a multi-GPU launch takes the GPU of its LOCAL_RANK."""
        if self.on and name == "cuda":
            return torch.device("cuda", self.local_rank)
        return torch.device(name)

    def any(self, flag, device):
        """True on every process if ``flag`` is true on any (a stop agreed by all)."""
        if not self.on:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def spread(self, model, device):
        """max - min over the processes of a checksum of the weights (0: in step)."""
        with torch.no_grad():
            c = sum(float(p.double().abs().sum()) for p in model.parameters())
        if not self.on:
            return 0.0
        hi = torch.tensor([c], dtype=torch.float64, device=device)
        lo = -hi.clone()
        self.dist.all_reduce(hi, op=self.dist.ReduceOp.MAX)
        self.dist.all_reduce(lo, op=self.dist.ReduceOp.MAX)
        return float(hi.item() + lo.item())

    def close(self):
        """Leave the process group together: a barrier first, so no process
        tears down its gloo connections while a peer still uses them (without
        it, about one 2-process run in ten aborted at exit: "terminate called
        without an active exception")."""
        if self.on:
            self.dist.barrier()
            self.dist.destroy_process_group()
            self.on = False


#: The --arch of a fresh run without --init (the shipped model's widths).
DEFAULT_ARCH = "64,128,64,64,128,320"


def training_loss(cost, kind="rd"):
    """The loss of a batch from each crop's rate-distortion cost (bpp + lambda
    * 255^2 * MSE, shape (B,)): their mean ("rd"), or the mean of their
    logarithms ("log-rd": each crop's gradient divided by its own cost, so
    that a relative gain weighs the same at every rate, as in BD-rate)."""
    if kind == "log-rd":
        return torch.log(cost).mean()
    if kind != "rd":
        raise ValueError(f"loss {kind!r}: rd or log-rd")
    return cost.mean()


def parse_arch(text):
    """make_arch() of an --arch string N,M,Z,NH[,C[,NE[,RA]]]."""
    v = [int(t) for t in text.split(",")]
    if not 4 <= len(v) <= 7:
        raise ValueError(f"--arch {text!r}: 4 to 7 numbers expected")
    v += [0, 320, 0][len(v) - 4:]
    return A.make_arch(N=v[0], M=v[1], Z=v[2], NH=v[3], C=v[4], NE=v[5], RA=v[6])


def arch_of_run(args):
    """The architecture of a run: --arch, else the checkpoint's, else the --init file's, else DEFAULT_ARCH;
    with ``--postfilter PF[,L]`` a post-filter added where it has none."""
    arch = _arch_of_run(args)
    if getattr(args, "postfilter", None) and not A.has_postfilter(arch):
        v = [int(t) for t in args.postfilter.split(",")]
        arch = A.with_postfilter(arch, PF=v[0], PFL=v[1] if len(v) > 1 else 3)
    return arch


def _arch_of_run(args):
    if args.arch:
        return parse_arch(args.arch)
    ckpt = os.path.join(args.run, "last.pt")
    if os.path.exists(ckpt):
        arch = torch.load(ckpt, map_location="cpu").get("arch")
        if arch:
            return arch
    if args.init:
        # float weights or a W16 model file (whose weights load_float dequantizes)
        return read_arch(args.init)
    return parse_arch(DEFAULT_ARCH)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.train", description=__doc__.split("\n")[0])
    p.add_argument("--run", default="runs/hp1", help="run folder (checkpoints, log, exports)")
    p.add_argument("--data", default=os.path.join(SHARED, "train"))
    p.add_argument("--kodak", default=os.path.join(SHARED, "kodak"))
    p.add_argument("--arch", default=None,
                   help="N,M,Z,NH[,C[,NE[,RA]]] (C = 0 or left out: no context networks; RA: residual blocks "
                        f"of g_a at each scale); default: the checkpoint's, the --init file's, or {DEFAULT_ARCH}")
    p.add_argument("--postfilter", default=None, metavar="PF[,L]",
                   help="add a post-filter g_pf of PF channels and L layers (default 3) to the architecture "
                        "(SPEC.md clause 6.5.1); it starts as the identity")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--lr-drops", default="", metavar="STEP:LR,...",
                   help="piecewise-constant schedule: from iteration STEP on, the learning rate is LR "
                        "(for example 22600:1e-4,26500:3e-5); before the first STEP it is --lr")
    p.add_argument("--iters", type=int, default=10 ** 9, help="stop after this many iterations")
    p.add_argument("--hours", type=float, default=1e9, help="stop after this wall time")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--eval-every", type=int, default=2000)
    p.add_argument("--eval-images", type=int, default=8, help="Kodak images used by the periodic evaluation")
    p.add_argument("--init", default=None, help="start from exported float weights (.npz), or from a W16 model "
                   "file (refcodec/models/refcodec-vK-w16.npz), its weights dequantized")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--export", default=None, metavar="OUT.npz",
                   help="write the float weights of RUN/last.pt to OUT.npz and exit")
    p.add_argument("--train", default="all", metavar="NET,...",
                   help="train only these networks (for example g_a,h_a: the encoder alone, every "
                        "normative part frozen, so the integer decoder of an exported model is unchanged)")
    p.add_argument("--bf16", action="store_true",
                   help="run the wide inner layers of g_a and g_s in bfloat16 while training (about 2x "
                        "faster on CPUs with AVX512-BF16, gradients within ~8 %% of float32's); the "
                        "Kodak evaluations and the exports stay float32")
    p.add_argument("--memory-format", choices=("channels-last", "contiguous"), default="channels-last",
                   help="the layout of the model and the crops on CPUs (python -m refcodec.train.profile "
                        "times both; docs/training.md: neither was faster in the two-process trainer)")
    p.add_argument("--beta-floor", type=float, default=0.0, metavar="LO",
                   help="with --beta-floor-frac F: a fraction F of the crops draws beta from U[LO, 1] "
                        "instead of U[0, 1] (more training at the measured rates)")
    p.add_argument("--beta-floor-frac", type=float, default=0.0, metavar="F")
    p.add_argument("--compile", action="store_true",
                   help="run the training step's forward and backward under torch.compile (the first "
                        "iterations compile; needs a C compiler on CPUs)")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="keep an exponential moving average of the weights (for example 0.999); the "
                        "Kodak evaluations, best.npz, last.npz and --export use the average")
    p.add_argument("--eval-raw", action="store_true",
                   help="with --ema: also evaluate (and log) the weights themselves")
    p.add_argument("--rdoq-ste", action="store_true",
                   help="the reconstruction sees y rounded as the encoder rounds it (rate-aware, encoder.RDOQ_KNOTS; "
                        "straight-through) instead of to nearest; the Kodak score is measured so too")
    p.add_argument("--loss", choices=("rd", "log-rd"), default="rd",
                   help="rd: the mean of each crop's bpp + lambda * MSE (a crop at beta 0.8 weighs about 10x "
                        "one at 0.1); log-rd: the mean of its logarithm, so that a 1 %% gain counts the same "
                        "at every rate, as BD-rate counts it")
    p.add_argument("--eval-betas", default="0,0.25,0.5,0.75,1", metavar="B,...",
                   help="the rates of the Kodak evaluation (its score is the mean over them); for --bd-ref, betas "
                        "whose rates span the range measured against the anchors (0.35,0.5,0.65,0.8,1: about "
                        "0.06 ... 1.15 bpp on the 8 pictures) rather than the default's (0.014 bpp at beta 0)")
    p.add_argument("--bd-ref", default=None, metavar="FLOAT.npz",
                   help="log each Kodak evaluation's BD-rate (PSNR-RGB, pchip) against these weights' curve on "
                        "the same pictures, betas and rounding (measured once, kept in the run folder as "
                        "bd_ref.json), and keep as best.npz the lowest BD-rate instead of the lowest score")
    p.add_argument("--reset-best", action="store_true",
                   help="forget the best Kodak score (after a change of the lambda range)")
    args = p.parse_args(argv)
    if not (0 <= args.beta_floor < 1 and 0 <= args.beta_floor_frac <= 1):
        p.error("--beta-floor must be in [0, 1) and --beta-floor-frac in [0, 1]")
    if not 0 <= args.ema < 1:
        p.error("--ema must be in [0, 1)")
    try:
        betas = [float(b) for b in args.eval_betas.split(",")]
    except ValueError:
        betas = []
    if len(betas) < 2 or not all(0 <= b <= 1 for b in betas) or sorted(set(betas)) != betas:
        p.error("--eval-betas: at least two increasing betas in [0, 1]")

    torch.set_num_threads(args.threads)
    dd = Distributed(torch.device(args.device).type)
    lead = dd.rank == 0                     # process 0 logs, evaluates and writes files
    os.makedirs(args.run, exist_ok=True)
    log = open(os.path.join(args.run, "train.log"), "a", buffering=1) if lead else None

    def say(msg):
        if lead:
            line = time.strftime("%Y-%m-%d %H:%M:%S ") + msg
            print(line, flush=True)
            log.write(line + "\n")

    try:
        arch = arch_of_run(args)
    except ValueError as e:
        p.error(str(e))
    for net in A.nets_of(arch):
        arch[net] = [tuple(layer) for layer in arch[net]]
    N, M, Z, NH = (arch[k] for k in ("N", "M", "Z", "NH"))
    device = dd.device(args.device)
    model = HyperpriorTorch(arch).to(device)
    channels_last = device.type == "cpu" and args.memory_format == "channels-last"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.set_bf16(args.bf16)
    if args.train != "all":
        nets = tuple(n.strip() + "." for n in args.train.split(",") if n.strip())
        unknown = [n for n in nets if not any(k.startswith(n) for k, _ in model.named_parameters())]
        if unknown:
            raise SystemExit(f"--train: no parameters named {unknown}")
        for k, v in model.named_parameters():
            v.requires_grad_(k.startswith(nets))
    # the entropy networks alone: the loss is the rate (the reconstruction does not depend on them)
    rate_only = args.train != "all" and all(n in ("g_cm", "g_ep") for n in args.train.split(","))
    opt = torch.optim.Adam([v for v in model.parameters() if v.requires_grad], lr=args.lr)
    step, best = 0, float("inf")
    # what "best" minimizes: the score, or the BD-rate against --bd-ref with this rounding
    best_metric = ("score" if args.bd_ref is None else
                   f"bd-rate vs {os.path.basename(args.bd_ref)}{' (rdoq)' if args.rdoq_ste else ''}")
    ckpt = os.path.join(args.run, "last.pt")
    state = {}
    if os.path.exists(ckpt):
        state = torch.load(ckpt, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, best = state["step"], state["best"]
        if args.reset_best or state.get("best_metric", "score") != best_metric:
            best = float("inf")
        say(f"resumed {ckpt} at step {step} (best {best:.4f}); lambdas {arch['lambdas'][0]:.5f} ... "
            f"{arch['lambdas'][-1]:.4f}")
    elif args.init:
        meta = load_float(model, args.init)
        step = meta.get("step", 0)
        say(f"initialised from {args.init} (step {step})")
    # the weight average (process 0 alone: every process holds the same weights)
    ema = None
    if lead and (args.ema or (args.export and "ema" in state)):
        ema = WeightAverage(model, args.ema, state.get("ema"))
        if args.ema:
            say(f"weight average: decay {args.ema} ({'resumed' if 'ema' in state else 'from the weights'})")

    def averaged():
        """The model with the weight average swapped in (or as it is)."""
        return ema.swapped_in(model) if ema else contextlib.nullcontext(model)
    drops = sorted((int(a), float(b)) for a, b in (d.split(":") for d in args.lr_drops.split(",") if d))

    def lr_at(it):
        lr = args.lr
        for at, v in drops:
            if it >= at:
                lr = v
        return lr

    def set_lr(it):
        for g in opt.param_groups:
            g["lr"] = lr_at(it)

    set_lr(step)
    net = model                             # what the training step calls: the model, or its DDP wrapper
    if dd.on:
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if args.compile:
        net = torch.compile(net)

    if args.export:
        if not os.path.exists(ckpt):
            raise SystemExit(f"no checkpoint {ckpt}")
        with averaged():
            export_float(model, args.export, step, best)
        say(f"exported {ckpt} (step {step}{', weight average' if ema else ''}) to {args.export}")
        return 0

    # each process draws its own crops, rates and noise (process 0 as a single process would)
    rng = np.random.default_rng(args.seed + step + 1_000_003 * dd.rank)
    torch.manual_seed(args.seed + step + 1_000_003 * dd.rank)
    t0 = time.time()
    images = load_images(args.data, min_side=args.crop)
    draw = (f", beta from U[{args.beta_floor}, 1] for {args.beta_floor_frac:.0%} of crops"
            if args.beta_floor and args.beta_floor_frac else "")
    say(f"{len(images)} training images loaded in {time.time() - t0:.1f}s; arch N={N} M={M} Z={Z} NH={NH} "
        f"C={arch.get('C', 0)} RA={sum(1 for layer in arch['g_a'] if layer[0] == 'res') // 3}; "
        f"{sum(p.numel() for p in model.parameters())} parameters "
        f"({sum(p.numel() for p in model.parameters() if p.requires_grad)} trained: {args.train}); batch {args.batch}x{args.crop}^2, lr {args.lr}, "
        f"device {device}{', channels-last' if channels_last else ''}"
        f"{', bfloat16 inner layers' if args.bf16 else ''}{draw}"
        + ("; the reconstruction sees y rounded as the encoder rounds it (--rdoq-ste)" if args.rdoq_ste else "")
        + ("; loss: the log of each crop's rate-distortion cost (--loss log-rd)" if args.loss == "log-rd" else "")
        + (f"; {dd.world} processes ({dd.backend}), {dd.world * args.batch} crops per iteration" if dd.on else ""))
    kodak = []
    if os.path.isdir(args.kodak):
        files = sorted(glob.glob(os.path.join(args.kodak, "*.png")))
        kodak = [np.asarray(Image.open(f).convert("RGB")) for f in files[::max(1, len(files) // args.eval_images)]]
        kodak = kodak[:args.eval_images]
    eval_betas = [float(b) for b in args.eval_betas.split(",")]
    bd_ref = None
    if lead and kodak and args.bd_ref:
        bd_ref = reference_curve(args.bd_ref, os.path.join(args.run, "bd_ref.json"), kodak, eval_betas,
                                 args.rdoq_ste, device)
        say(f"BD-rate reference: {args.bd_ref} ({len(kodak)} Kodak pictures"
            f"{', rounded as the encoder rounds' if args.rdoq_ste else ''}): "
            + " ".join(f"[beta {b:.2f}: {bpp:.3f} bpp {ps:.2f} dB]" for b, bpp, ps, _ in bd_ref))

    def save():
        if not lead:
            return
        tmp = ckpt + ".tmp"
        extra = {"ema": ema.avg} if ema else {}
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "best": best,
                    "best_metric": best_metric, "arch": arch, **extra}, tmp)
        os.replace(tmp, ckpt)

    stop = {"flag": False}

    def on_signal(signum, frame):          # SIGTERM / SIGINT: finish the step, save, exit
        stop["flag"] = True
        say(f"signal {signum}: saving and stopping")

    import signal
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    start = time.time()
    acc = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, "n": 0}
    t_last = time.time()
    while step < args.iters and not dd.any(stop["flag"] or (time.time() - start) >= args.hours * 3600, device):
        x = random_batch(images, rng, args.batch, args.crop).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        beta = draw_beta(args.batch, args.beta_floor, args.beta_floor_frac, device)
        npx = x.shape[2] * x.shape[3]
        if rate_only:
            bits_y, bits_z = net(x, beta, rates_only=True)
            bpp = (bits_y + bits_z) / npx
            mse = torch.full_like(bpp, float("nan"))      # not measured: logged as nan
            loss = cost = bpp.mean()
        else:
            x_hat, bits_y, bits_z = net(x, beta, rdoq=rdoq_weights(beta) if args.rdoq_ste else None)
            bpp = (bits_y + bits_z) / npx
            mse = ((x_hat - x) ** 2).mean(dim=(1, 2, 3))
            cost = bpp + model.lam(beta) * 255 ** 2 * mse
            loss = training_loss(cost, args.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([v for v in model.parameters() if v.requires_grad], 1.0)
        opt.step()
        if ema:
            ema.update(model)
        step += 1
        if drops:
            set_lr(step)
        acc["loss"] += float(cost.detach().mean())          # the rd cost, whichever --loss
        acc["bpp"] += float(bpp.detach().mean())
        acc["psnr"] += float((10 * torch.log10(1 / mse.detach().clamp_min(1e-10))).mean())
        acc["n"] += 1
        if step % args.log_every == 0:
            n = acc["n"]
            dt = (time.time() - t_last) / n
            say(f"step {step} loss {acc['loss'] / n:.4f} bpp {acc['bpp'] / n:.4f} psnr {acc['psnr'] / n:.2f} "
                f"lr {lr_at(step):.1e} ({dt:.3f} s/it, cpu {time.process_time() / 3600:.3f} h)")
            acc = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, "n": 0}
            t_last = time.time()
        if step % args.ckpt_every == 0:
            save()
        if lead and kodak and step % args.eval_every == 0:
            if ema and args.eval_raw:
                rows = evaluate(model, kodak, eval_betas, device, args.rdoq_ste)
                say(f"kodak step {step} weights themselves: score {np.mean([r[3] for r in rows]):.4f} "
                    + ("" if bd_ref is None else f"bd-rate {curve_bd_rate(bd_ref, rows):+.3f} % ")
                    + " ".join(f"[beta {b:.2f}: {bpp:.3f} bpp {ps:.2f} dB]" for b, bpp, ps, _ in rows))
            with averaged():
                rows = evaluate(model, kodak, eval_betas, device, args.rdoq_ste)
                score = float(np.mean([r[3] for r in rows]))
                bd = None if bd_ref is None else curve_bd_rate(bd_ref, rows)
                say(f"kodak step {step} score {score:.4f} "
                    + ("" if bd is None else f"bd-rate {bd:+.3f} % ")
                    + f"cpu {time.process_time() / 3600:.3f} h "
                    + ("(weight average) " if ema else "") + " ".join(
                        f"[beta {b:.2f}: {bpp:.3f} bpp {ps:.2f} dB]" for b, bpp, ps, _ in rows))
                metric = score if bd is None else bd
                if metric < best:
                    best = metric
                    export_float(model, os.path.join(args.run, "best.npz"), step, score)
                    say(f"exported best.npz at step {step}")
            save()
            t_last = time.time()
    save()
    if lead:
        with averaged():
            export_float(model, os.path.join(args.run, "last.npz"), step, best)
    if dd.on:
        spread = dd.spread(model, device)   # every process must hold the same weights
        say(f"{dd.world} processes agree on the weights (checksum spread {spread:.3g})" if spread == 0 else
            f"error: the {dd.world} processes' weights differ (checksum spread {spread:.3g})")
        del net                            # the DDP wrapper's reducer goes before its process group
        gc.collect()
        dd.close()
        if spread != 0:
            return 1
    say(f"stopped at step {step}")


if __name__ == "__main__":
    sys.exit(main())
