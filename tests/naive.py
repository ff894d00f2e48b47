"""Deliberately naive reference implementations (scalar Python loops) used to
check the numpy oracles themselves on tiny inputs."""


def conv2d_naive(x, w, b, shift, lo, hi):
    h, wd, cin = x.shape
    cout, k, _, _ = w.shape
    p = k // 2
    out = [[[0] * cout for _ in range(wd)] for _ in range(h)]
    for y in range(h):
        for xo in range(wd):
            for co in range(cout):
                acc = int(b[co])
                for ky in range(k):
                    for kx in range(k):
                        yy, xx = y + ky - p, xo + kx - p
                        if 0 <= yy < h and 0 <= xx < wd:
                            for ci in range(cin):
                                acc += int(w[co, ky, kx, ci]) * int(x[yy, xx, ci])
                r = int(shift[co])
                if r > 0:
                    acc = (acc + (1 << (r - 1))) >> r
                out[y][xo][co] = min(max(acc, lo), hi)
    return out
