"""A register-blocked int16 multiply-accumulate micro-kernel, written in LLVM IR.

numba's loop vectorizer turns a single int16 dot product into AVX2
``vpmaddwd``, but not a register-blocked one (several pixels times several
output channels), which is what a convolution needs to stop being bound by
loads.  :func:`madd_4x16` states that block directly in LLVM IR, with
portable instructions only (``sext``, ``mul``, even/odd ``shufflevector``,
``add`` on i32 vectors).  Its meaning is plain integer arithmetic -- the x86
back end happens to select ``vpbroadcastd`` + ``vpmaddwd`` + ``vpaddd`` for
it, another back end selects its own instructions for the same result.

Semantics (all i32, wrapping; exact when the layer satisfies the no-overflow
bound of SPEC.md clause 7.1, because every partial sum is then below 2^31)::

    acc[p, c] = sum_{k < K} P[p0 + p, k] * Wi[cb, k // 2, c, k % 2]
                for p < 4, c < 16

P is an int16 (rows, K) C-contiguous array with K even; Wi an int16
(blocks, K/2, 16, 2) C-contiguous array (weights of 16 output channels,
interleaved in pairs of input taps); acc an int32 (4, 16) C-contiguous array.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

PIXELS = 4
LANES = 16


@intrinsic
def madd_4x16(typingctx, P, p0, Wi, cb, acc):
    sig = types.void(P, p0, Wi, cb, acc)

    def codegen(context, builder, signature, args):
        P_, p0_, Wi_, cb_, acc_ = args
        pa = cgutils.create_struct_proxy(signature.args[0])(context, builder, value=P_)
        wa = cgutils.create_struct_proxy(signature.args[2])(context, builder, value=Wi_)
        aa = cgutils.create_struct_proxy(signature.args[4])(context, builder, value=acc_)
        i64, i32, i16 = ir.IntType(64), ir.IntType(32), ir.IntType(16)
        v16i16, v16i32, v8i32 = ir.VectorType(i16, 16), ir.VectorType(i32, 16), ir.VectorType(i32, 8)
        c64 = lambda v: ir.Constant(i64, v)  # noqa: E731

        k_half = builder.ashr(builder.extract_value(pa.shape, 1), c64(1))
        p_stride = builder.extract_value(pa.strides, 0)
        w_base = builder.add(builder.ptrtoint(wa.data, i64),
                             builder.mul(builder.sext(cb_, i64), builder.extract_value(wa.strides, 0)))
        p_base = builder.ptrtoint(pa.data, i64)
        p0 = builder.sext(p0_, i64)
        rows = [builder.add(p_base, builder.mul(builder.add(p0, c64(p)), p_stride)) for p in range(PIXELS)]
        even = ir.Constant(v8i32, [2 * i for i in range(8)])
        odd = ir.Constant(v8i32, [2 * i + 1 for i in range(8)])
        zero = ir.Constant(v8i32, None)

        entry = builder.block
        loop = builder.append_basic_block("madd.loop")
        done = builder.append_basic_block("madd.done")
        builder.cbranch(builder.icmp_signed(">", k_half, c64(0)), loop, done)
        builder.position_at_end(loop)
        kp = builder.phi(i64)
        kp.add_incoming(c64(0), entry)
        accs = []
        for _ in range(2 * PIXELS):
            phi = builder.phi(v8i32)
            phi.add_incoming(zero, entry)
            accs.append(phi)
        w_off = builder.add(w_base, builder.mul(kp, c64(2 * LANES * 2)))
        wv = [builder.sext(builder.load(builder.inttoptr(builder.add(w_off, c64(32 * h)), v16i16.as_pointer()),
                                        align=2), v16i32) for h in range(2)]
        new = []
        for p in range(PIXELS):
            xptr = builder.inttoptr(builder.add(rows[p], builder.mul(kp, c64(4))), i32.as_pointer())
            x8 = builder.insert_element(ir.Constant(v8i32, None), builder.load(xptr, align=2), ir.Constant(i32, 0))
            x8 = builder.shuffle_vector(x8, x8, ir.Constant(v8i32, [0] * 8))
            xb = builder.sext(builder.bitcast(x8, v16i16), v16i32)
            for h in range(2):
                m = builder.mul(xb, wv[h])
                pair = builder.add(builder.shuffle_vector(m, m, even), builder.shuffle_vector(m, m, odd))
                new.append(builder.add(accs[2 * p + h], pair))
        kn = builder.add(kp, c64(1))
        kp.add_incoming(kn, loop)
        for a, n in zip(accs, new):
            a.add_incoming(n, loop)
        builder.cbranch(builder.icmp_signed("<", kn, k_half), loop, done)

        builder.position_at_end(done)
        finals = []
        for j in range(2 * PIXELS):
            phi = builder.phi(v8i32)
            phi.add_incoming(zero, entry)
            phi.add_incoming(new[j], loop)
            finals.append(phi)
        a_base = builder.ptrtoint(aa.data, i64)
        a_stride = builder.extract_value(aa.strides, 0)
        for p in range(PIXELS):
            for h in range(2):
                ptr = builder.add(builder.add(a_base, builder.mul(c64(p), a_stride)), c64(32 * h))
                builder.store(finals[2 * p + h], builder.inttoptr(ptr, v8i32.as_pointer()), align=4)
        return context.get_dummy_value()

    return sig, codegen
