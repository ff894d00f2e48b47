"""Bit-rate matching."""

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from refcodec import decoder, encoder, model as model_mod
from refcodec.ratecontrol import BETA_CODE_MAX, RateCounter, RateError, estimate_bpp, match

KODIM23 = os.path.join(os.path.dirname(__file__), "data", "kodim23.png")


@pytest.fixture(scope="module")
def crop():
    return np.asarray(Image.open(KODIM23).convert("RGB"))[100:292, 200:456].copy()   # 192 x 256


@pytest.fixture(scope="module")
def m():
    return model_mod.load()


@pytest.fixture(scope="module")
def reach(crop, m):
    an = encoder.Analysis(crop, m)
    c = RateCounter(m)
    S = an.default_substreams()
    return estimate_bpp(an, c, 0, S), estimate_bpp(an, c, BETA_CODE_MAX, S)


def test_counted_bits_match_the_real_stream(crop, m):
    an = encoder.Analysis(crop, m)
    c = RateCounter(m)
    npx = crop.shape[0] * crop.shape[1]
    for code in (0, 9000, 30000, 65535):
        for S in ((2, 6) if an.context else (1, 3)):          # the context codes two halves
            est = estimate_bpp(an, c, code, S) * npx / 8
            real = len(an.stream(code, S))
            # the estimate is the information content plus the container; the coder's
            # excess over it varies by a few bytes per substream and 0.1 %
            assert abs(real - est) <= 0.001 * est + 4 * S + 4, (code, S, est, real)


@pytest.mark.parametrize("side", ["both", "below"])
@pytest.mark.parametrize("where", [0.15, 0.5, 0.85])
def test_tolerance_is_met(crop, m, reach, side, where):
    lo, hi = reach
    target = lo * (hi / lo) ** where
    res = match(crop, target, m, side=side)
    assert res.bpp == pytest.approx(8 * len(res.data) / (crop.shape[0] * crop.shape[1]))
    if side == "below":
        assert target * 0.99 <= res.bpp <= target
    else:
        assert abs(res.bpp - target) <= 0.01 * target
    assert res.trials <= 8


def test_out_of_range_targets(crop, m, reach):
    lo, hi = reach
    # beyond even the uniform quality map's reach (Q = -8 at beta 0, +8 at beta 1)
    with pytest.raises(RateError, match="outside the reachable range .* with the quality map"):
        match(crop, lo / 5, m)
    with pytest.raises(RateError, match="outside the reachable range .* with the quality map"):
        match(crop, hi * 3, m)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = match(crop, hi * 3, m, nearest=True)
    assert res.beta_code == BETA_CODE_MAX and res.warnings and w
    with pytest.raises(RateError):
        match(crop, -1, m)


@pytest.mark.parametrize("method", ["fast", "bisect"])
def test_a_missed_tolerance_is_said(crop, m, method):
    """Inside the reachable range a window narrower than one byte cannot be
    met (a 16 x 16 picture, a target half a byte between two sizes, a 0.1 %
    tolerance): the closest stream comes back with a warning that gives its
    rate, not silently."""
    tiny = crop[:16, :16].copy()
    n0, n1 = (len(encoder.encode(tiny, beta=b, model=m)) for b in (0.0, 1.0))
    assert n1 > n0 + 2
    target = 8 * ((n0 + n1) // 2 + 0.5) / 256
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = match(tiny, target, m, method=method, tolerance=0.001)
    assert abs(res.bpp / target - 1) > 0.001
    said = [n for n in res.warnings if n.startswith("tolerance not met")]
    assert len(said) == 1 and f"{res.bpp:.4f} bpp" in said[0], res.warnings
    assert any("tolerance not met" in str(x.message) for x in w)
    assert decoder.decode(res.data).shape == tiny.shape


def test_bisect_baseline_meets_the_tolerance(crop, m, reach):
    lo, hi = reach
    target = (lo * hi) ** 0.5
    res = match(crop, target, m, method="bisect")
    assert abs(res.bpp - target) <= 0.01 * target and res.method == "bisect"


@pytest.mark.parametrize("factor", [1 / 1.1, 1.6])
def test_bisection_reaches_what_the_fast_method_reaches(crop, m, reach, factor):
    """The bisection baseline goes beyond the gain unit's range too (a
    uniform map, |Q| by bisection at the end beta, then beta), so --method
    bisect reaches every rate --method fast does; beyond even Q = +-8 it
    names the range it measured."""
    from refcodec.syntax import picture
    lo, hi = reach
    target = (lo if factor < 1 else hi) * factor
    res = match(crop, target, m, method="bisect")
    assert abs(res.bpp - target) <= 0.01 * target and not res.warnings
    assert (res.extension_q < 0) == (factor < 1) and res.extension_q != 0
    assert picture(res.data).header.qmap_block_log2 == 4
    assert decoder.decode(res.data, models=[m]).shape == crop.shape
    with pytest.raises(RateError, match=r"outside the reachable range for this image: \d+\.\d+ bpp at most .*Q = 8"):
        match(crop, hi * 50, m, method="bisect")


@pytest.mark.parametrize("factor", [1 / 1.1, 1.3, 1.6])
def test_a_uniform_quality_map_extends_the_range(crop, m, reach, factor):
    """Beyond the gain unit's range the fast method goes on with a uniform
    quality map (Q < 0 below beta = 0, Q > 0 above beta = 1) and still meets
    the tolerance; extend=False keeps the old out-of-range error.  (Below:
    beta = 0 already spends only ~190 bytes on this 192 x 256 crop, of which
    ~160 are the container and z, so 10 % below is what a map can reach.)"""
    from refcodec.syntax import picture
    lo, hi = reach
    target = (lo if factor < 1 else hi) * factor
    res = match(crop, target, m)
    assert abs(res.bpp - target) <= 0.01 * target and res.trials <= 10
    pic = picture(res.data)
    assert pic.header.qmap_block_log2 == 4 and pic.sizes.q_size > 0
    assert (res.extension_q < 0) == (factor < 1) and res.extension_q != 0 and not res.warnings
    with pytest.raises(RateError, match="outside the reachable range"):
        match(crop, target, m, extend=False)
    assert decoder.decode(res.data).shape == crop.shape




def test_bench_matches_with_the_rdo_map(tmp_path, capsys):
    """ratecontrol.bench --qmap rdo --pick: the picked picture matched with
    the rdo map at a target inside its range, the trials and the time ratio
    printed."""
    from refcodec.ratecontrol import bench
    im = np.asarray(Image.open(os.path.join(os.path.dirname(__file__), "data", "kodim23.png")).convert("RGB"))
    (tmp_path / "k").mkdir()
    Image.fromarray(im[:128, :192]).save(tmp_path / "k" / "a.png")
    Image.fromarray(im[128:256, 192:384]).save(tmp_path / "k" / "b.png")
    bench.main(["--kodak", str(tmp_path / "k"), "--pick", "2", "--targets", "0.4", "--no-bisect", "--qmap", "rdo"])
    out = capsys.readouterr().out
    assert "# b.png done" in out and "a.png" not in out
    assert "fast: 1/1 pairs inside ±1%" in out and "ratio" in out
