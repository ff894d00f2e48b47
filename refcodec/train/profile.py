"""Profile one training step: ``python -m refcodec.train.profile``.

Times the trainer's iteration (forward, backward, Adam) on random crops of
the trainer's size, whole and split by network, under the variants that
decide the pixels trained per CPU-hour.  ``--init FLOAT.npz`` profiles the
architecture (and weights) of an exported model, post-filter included, and
``--rdoq-ste`` the trainer's option of that name; the variants:

- ``fp32``        float32, contiguous (NCHW) tensors;
- ``fp32-cl``     float32, channels-last tensors (what the trainer uses on CPUs);
- ``bf16-cl``     the trainer's ``--bf16``: the wide inner layers of g_a and g_s
                  in bfloat16, y, the hyper and context networks, the rates and
                  the output in float32 (pays only where the CPU has bf16 units:
                  AVX512-BF16 or AMX; elsewhere bf16 is emulated and slower);
- ``compile-cl``  channels-last under ``torch.compile`` (default inductor
                  backend; the first steps compile and are not timed).

Each line gives the median seconds per iteration over ``--steps`` timed
iterations, the megapixels trained per CPU-hour (crop pixels x batch x
iterations per hour / threads) and the ratio to ``fp32``.  With ``--split``
the forward + backward time of each network alone, on inputs of the shapes
it sees in training, follows.  One process with 2 threads against two
processes with 1 thread each (DDP, gloo) is measured by running the trainer
itself under torchrun (its log's s/it): see docs/training.md.
"""

import argparse
import statistics
import time

import torch

from .. import arch as A
from .__main__ import draw_beta, parse_arch, rdoq_weights, training_loss
from .nets import HyperpriorTorch, load_float


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def make_step(model, opt, batch, crop, channels_last, lam, rdoq=False):
    def step(x, beta):
        x_hat, bits_y, bits_z = model(x, beta, rdoq=rdoq_weights(beta) if rdoq else None)
        bpp = (bits_y + bits_z) / (crop * crop)
        mse = ((x_hat - x) ** 2).mean(dim=(1, 2, 3))
        loss = training_loss(bpp + lam(beta) * 255 ** 2 * mse)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(loss.detach())
    return step


def new_model(arch, init=None):
    torch.manual_seed(0)
    model = HyperpriorTorch(arch)
    if init:
        load_float(model, init)
    return model


def time_variant(arch, variant, batch, crop, steps, warmup, init=None, rdoq=False):
    model = new_model(arch, init)
    cl = variant.endswith("-cl")
    if cl:
        model = model.to(memory_format=torch.channels_last)
    model.set_bf16(variant.startswith("bf16"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    fwd = model
    if variant.startswith("compile"):
        fwd = torch.compile(model)
    step = make_step(fwd, opt, batch, crop, cl, model.lam, rdoq)
    times = []
    for i in range(warmup + steps):
        x = torch.rand(batch, 3, crop, crop)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        beta = draw_beta(batch)
        t = time.perf_counter()
        step(x, beta)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def split(arch, batch, crop, steps, init=None):
    """Median forward + backward seconds of each network alone (channels-last, float32)."""
    model = new_model(arch, init).to(memory_format=torch.channels_last)
    M, Z, C = arch["M"], arch["Z"], arch.get("C", 0)
    s = crop // 16
    shapes = {"g_a": (3, crop), "h_a": (M, s), "h_s": (Z, s // 4), "g_s": (M, s)}
    if A.has_context(arch):
        shapes.update(g_cm=(M, s), g_ep=(2 * M + C, s))
    if A.has_postfilter(arch):
        shapes.update(g_pf=(4, crop))
    out = {}
    for net, (ch, size) in shapes.items():
        mod = getattr(model, net)
        times = []
        for i in range(steps + 1):
            x = torch.randn(batch, ch, size, size).contiguous(memory_format=torch.channels_last)
            x.requires_grad_(net != "g_a")
            t = time.perf_counter()
            mod(x).square().mean().backward()
            if i:
                times.append(time.perf_counter() - t)
        out[net] = statistics.median(times)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m refcodec.train.profile", description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="64,128,64,64,128,320", help="N,M,Z,NH[,C[,NE[,RA]]] (the trainer's --arch)")
    p.add_argument("--init", default=None, metavar="FLOAT.npz",
                   help="the architecture and weights of these exported float weights instead of --arch")
    p.add_argument("--rdoq-ste", action="store_true", help="the trainer's --rdoq-ste (the encoder's rounding)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed iterations per variant")
    p.add_argument("--variants", default="fp32,fp32-cl,bf16-cl,compile-cl")
    p.add_argument("--split", action="store_true", help="also time each network alone")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.init:
        from ..nn import load_float as read_float
        arch = read_float(args.init)[0]
        what = (f"{args.init} (N={arch['N']} M={arch['M']} Z={arch['Z']} NH={arch['NH']} C={arch.get('C', 0)} "
                f"PF={arch.get('PF', 0)})")
    else:
        arch = parse_arch(args.arch)
        what = args.arch
    flags = cpu_flags()
    bf16_hw = bool(flags & {"avx512_bf16", "amx_bf16"})
    print(f"arch {what}{', --rdoq-ste' if args.rdoq_ste else ''}, batch {args.batch} x {args.crop}^2, "
          f"{args.threads} threads, torch {torch.__version__}, CPU bf16 units: {'yes' if bf16_hw else 'no (bf16 emulated)'}")
    base = None
    for v in args.variants.split(","):
        try:
            t = time_variant(arch, v, args.batch, args.crop, args.steps, 3 if v.startswith("compile") else 1,
                             args.init, args.rdoq_ste)
        except Exception as e:          # torch.compile needs a C compiler; report, go on
            print(f"{v:12s} failed: {type(e).__name__}: {str(e).splitlines()[0][:100]}")
            continue
        mpx = args.batch * args.crop ** 2 * 3600 / t / args.threads / 1e6
        base = base or t
        print(f"{v:12s} {t:7.3f} s/it  {mpx:8.1f} Mpx per CPU-hour  x{base / t:.2f}")
    if args.split:
        for net, t in split(arch, args.batch, args.crop, args.steps, args.init).items():
            print(f"  {net:5s} forward + backward {t * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
