"""How tests/data/tiny-float.npz was made: a tiny model (N=8, M=16, Z=8,
NH=8) trained for 3,000 iterations on 64 x 64 crops (about two minutes on
one CPU thread), so that tests and conformance vectors run a real, if
weak, codec on every backend -- the numba CUDA simulator included.

    python -m refcodec.train --run runs/tiny --arch 8,16,8,8 --batch 8 --crop 64 \\
        --iters 3000 --lr 1e-3 --threads 1 --eval-every 1000000
    cp runs/tiny/last.npz tests/data/tiny-float.npz
    python -m refcodec.export tests/data/tiny-float.npz vectors/models/conf-w16.npz --calib tests/data --images 2
    python -m refcodec.export tests/data/tiny-float.npz vectors/models/conf-w8.npz --calib tests/data --images 2 \\
        --weight-bits 8

The context variant (tests/data/tiny-ctx-float.npz, conformance models
conf-ctx-w16/w8): the same network plus the checkerboard context networks
(C=8, NE=16), trained alone on the rate for 1,500 iterations (seconds):

    python -m refcodec.train --run runs/tinyctx --arch 8,16,8,8,8,16 --init tests/data/tiny-float.npz \
        --train g_cm,g_ep --batch 8 --crop 128 --iters 4500 --lr 1e-3 --threads 1 --eval-every 1000000
    cp runs/tinyctx/last.npz tests/data/tiny-ctx-float.npz
    python -m refcodec.export tests/data/tiny-ctx-float.npz vectors/models/conf-ctx-w16.npz --calib tests/data --images 2
    python -m refcodec.export tests/data/tiny-ctx-float.npz vectors/models/conf-ctx-w8.npz --calib tests/data \
        --images 2 --weight-bits 8

The post-filter variant (tests/data/tiny-pf-float.npz): tiny-ctx-float plus a
post-filter g_pf of 4 channels (SPEC.md clause 6.5.1), trained alone for 1,500
iterations (a minute):

    python -m refcodec.train --run runs/tinypf --init tests/data/tiny-ctx-float.npz --postfilter 4 \
        --train g_pf --batch 8 --crop 64 --iters 6000 --lr 3e-3 --threads 1 --eval-every 1000000
    python -c "import numpy as np; d = dict(np.load('runs/tinypf/last.npz')); d['g_pf.0.weight'][:, 3] *= 10; \
        np.savez_compressed('tests/data/tiny-pf-float.npz', **d)"
    python -m refcodec.export tests/data/tiny-pf-float.npz vectors/models/conf-pf-w16.npz --calib tests/data --images 2
    python -m refcodec.export tests/data/tiny-pf-float.npz vectors/models/conf-pf-w8.npz --calib tests/data \
        --images 2 --weight-bits 8

(the weights of g_pf's rate input scaled by 10 after training: the tiny filter
barely used it, and the post-filter vectors must pin the rate plane of every
block).

Training is not bit-reproducible across machines; the committed files are
the reference.  Running this script prints the commands.
"""

print(__doc__)
