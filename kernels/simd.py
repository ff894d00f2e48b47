"""Register-blocked int16 multiply-accumulate micro-kernels, written in LLVM IR.

numba's loop vectorizer turns a single int16 dot product into AVX2
``vpmaddwd``, but not a register-blocked one (several pixels times several
output channels), which is what a convolution needs to stop being bound by
loads.  :func:`make_madd` states that block directly in LLVM IR, with
portable instructions only (``sext``, ``mul``, even/odd ``shufflevector``,
``add`` on i32 vectors).  Its meaning is plain integer arithmetic -- the x86
back end happens to select ``vpbroadcastd`` + ``vpmaddwd`` + ``vpaddd`` (or
AVX-512 VNNI's ``vpdpwssd``) for it, another back end selects its own
instructions for the same result.

Semantics of a PIXELS x LANES block (all i32, wrapping; exact when the layer
satisfies the no-overflow bound of SPEC.md clause 7.1, because every partial
sum is then below 2^31), see :func:`make_madd`::

    acc[p, c] += sum_{kp < nkp, j < 2} X[off + p * pstride + 2 kp + j]
                                       * Wi[cb, kp0 + kp, c, j]
                 for p < PIXELS, c < LANES

X is a flat int16 array; Wi an int16 (blocks, K/2, LANES, 2) C-contiguous
array (weights of LANES output channels, interleaved in pairs of input
taps); acc an int32 C-contiguous array with rows of at least LANES.

Four blockings, all exact on every CPU; which is fastest depends on the
vector registers (:data:`WIDE`) and on the layer's output channels:

* variant 0, 6 pixels x 16 channels on 8-lane i32 vectors (AVX2: 12 ymm
  accumulators, two weight vectors and a broadcast: 15 of 16 registers;
  1.2x the rate of 4 x 16 on a Zen 5 core compiled for Zen 3);
* variant 1, 8 pixels x 16 channels on 16-lane vectors (AVX-512: 8 zmm),
  for layers of at most 16 outputs;
* variant 2, 8 pixels x 32 channels on 16-lane vectors (AVX-512: 16 zmm
  accumulators, two weight vectors and a broadcast per pixel, in 32
  registers).  About 2x the multiply-accumulates per second of variant 0
  on a Zen 5 core; without AVX-512 its vectors split and it spills;
* variant 3, 12 pixels x 8 channels on 8-lane vectors (AVX2: 12 ymm
  accumulators, one weight vector and a broadcast), for layers of at most
  8 outputs on any host: the post-filter's last layer (16 -> 3 at full
  resolution) leaves 13 of variant 0's 16 lanes idle, 5 of these 8.
"""

import llvmlite.binding as _llvm
from llvmlite import ir
from numba import config, types
from numba.core import cgutils
from numba.extending import intrinsic

#: variant -> (pixels, lanes, i32 lanes per vector register)
BLOCKS = {0: (6, 16, 8), 1: (8, 16, 16), 2: (8, 32, 16), 3: (12, 8, 8)}
#: The most pixels any variant computes at once (variant 3).
MAX_PIXELS = max(b[0] for b in BLOCKS.values())


def _host_has_avx512():
    if config.CPU_NAME not in (None, "host"):
        return False        # a portable target was asked for (NUMBA_CPU_NAME)
    try:
        return "+avx512bw" in _llvm.get_host_cpu_features().flatten().split(",")
    except RuntimeError:
        return False


#: Whether the host's vector registers hold 16 i32 lanes (x86 AVX-512).
WIDE = _host_has_avx512()


def variant_for(cout, wide=None):
    """The blocking :mod:`kernels.conv` uses for a layer of ``cout`` outputs."""
    if cout <= 8:
        return 3
    if not (WIDE if wide is None else wide):
        return 0
    return 2 if cout > 16 else 1


def make_madd(PIXELS, LANES, VW):
    """The intrinsic ``madd(X, off, pstride, kp0, nkp, Wi, cb, acc)`` of one
    PIXELS x LANES block on VW-lane i32 vectors (LANES a multiple of VW)::

        acc[p, c] += sum_{kp < nkp, j < 2} X[off + p * pstride + 2 kp + j]
                                           * Wi[cb, kp0 + kp, c, j]

    X is a flat (1-D, contiguous) int16 array: an im2col matrix (off the
    first pixel's row, pstride its row length) or the activations themselves
    (pstride = Cin: consecutive pixels of one picture row), which spares the
    copy wherever the taps of one kernel row are contiguous there."""
    H = LANES // VW

    @intrinsic
    def madd(typingctx, X, off, pstride, kp0, nkp, Wi, cb, acc):
        sig = types.void(X, off, pstride, kp0, nkp, Wi, cb, acc)

        def codegen(context, builder, signature, args):
            X_, off_, pstride_, kp0_, nkp_, Wi_, cb_, acc_ = args
            xa = cgutils.create_struct_proxy(signature.args[0])(context, builder, value=X_)
            wa = cgutils.create_struct_proxy(signature.args[5])(context, builder, value=Wi_)
            aa = cgutils.create_struct_proxy(signature.args[7])(context, builder, value=acc_)
            i64, i32, i16 = ir.IntType(64), ir.IntType(32), ir.IntType(16)
            vx16, vx32, vacc = ir.VectorType(i16, 2 * VW), ir.VectorType(i32, 2 * VW), ir.VectorType(i32, VW)
            c64 = lambda v: ir.Constant(i64, v)  # noqa: E731

            nkp = builder.sext(nkp_, i64)
            w_base = builder.add(builder.ptrtoint(wa.data, i64),
                                 builder.mul(builder.sext(cb_, i64), builder.extract_value(wa.strides, 0)))
            w_base = builder.add(w_base, builder.mul(builder.sext(kp0_, i64), c64(LANES * 2 * 2)))
            x_base = builder.add(builder.ptrtoint(xa.data, i64), builder.mul(builder.sext(off_, i64), c64(2)))
            pstride = builder.mul(builder.sext(pstride_, i64), c64(2))
            rows = [builder.add(x_base, builder.mul(c64(p), pstride)) for p in range(PIXELS)]
            even = ir.Constant(vacc, [2 * i for i in range(VW)])
            odd = ir.Constant(vacc, [2 * i + 1 for i in range(VW)])
            a_base = builder.ptrtoint(aa.data, i64)
            a_stride = builder.extract_value(aa.strides, 0)
            a_ptr = [[builder.inttoptr(builder.add(builder.add(a_base, builder.mul(c64(p), a_stride)),
                                                   c64(4 * VW * h)), vacc.as_pointer())
                      for h in range(H)] for p in range(PIXELS)]
            init = [builder.load(a_ptr[p][h], align=4) for p in range(PIXELS) for h in range(H)]

            entry = builder.block
            loop = builder.append_basic_block("madd.loop")
            done = builder.append_basic_block("madd.done")
            builder.cbranch(builder.icmp_signed(">", nkp, c64(0)), loop, done)
            builder.position_at_end(loop)
            kp = builder.phi(i64)
            kp.add_incoming(c64(0), entry)
            accs = []
            for v in init:
                phi = builder.phi(vacc)
                phi.add_incoming(v, entry)
                accs.append(phi)
            # weights of tap pair kp: LANES channels x 2 taps, VW channels per vector
            w_off = builder.add(w_base, builder.mul(kp, c64(LANES * 2 * 2)))
            wv = [builder.sext(builder.load(builder.inttoptr(builder.add(w_off, c64(4 * VW * h)), vx16.as_pointer()),
                                            align=2), vx32) for h in range(H)]
            new = []
            for p in range(PIXELS):
                # the pixel's tap pair (two int16 as one i32), broadcast, as 2 VW int16
                xptr = builder.inttoptr(builder.add(rows[p], builder.mul(kp, c64(4))), i32.as_pointer())
                xv = builder.insert_element(ir.Constant(vacc, None), builder.load(xptr, align=2), ir.Constant(i32, 0))
                xv = builder.shuffle_vector(xv, xv, ir.Constant(vacc, [0] * VW))
                xb = builder.sext(builder.bitcast(xv, vx16), vx32)
                for h in range(H):
                    m = builder.mul(xb, wv[h])
                    pair = builder.add(builder.shuffle_vector(m, m, even), builder.shuffle_vector(m, m, odd))
                    new.append(builder.add(accs[H * p + h], pair))
            kn = builder.add(kp, c64(1))
            kp.add_incoming(kn, loop)
            for a, n in zip(accs, new):
                a.add_incoming(n, loop)
            builder.cbranch(builder.icmp_signed("<", kn, nkp), loop, done)

            builder.position_at_end(done)
            finals = []
            for j in range(H * PIXELS):
                phi = builder.phi(vacc)
                phi.add_incoming(init[j], entry)
                phi.add_incoming(new[j], loop)
                finals.append(phi)
            for j, v in enumerate(finals):
                builder.store(v, a_ptr[j // H][j % H], align=4)
            return context.get_dummy_value()

        return sig, codegen

    return madd


madd_6x16 = make_madd(*BLOCKS[0])
madd_8x16 = make_madd(*BLOCKS[1])
madd_8x32 = make_madd(*BLOCKS[2])
madd_12x8 = make_madd(*BLOCKS[3])
