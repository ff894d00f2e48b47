"""Bit-rate matching (the fast method after Jia et al. 2024, and the
bisection baseline): ``refcodec.ratecontrol.match(rgb, target_bpp)``.
The method and its steps are described in :mod:`refcodec.ratecontrol.matcher`."""

from .matcher import (BETA_CODE_MAX, CODER_EXCESS, FLUSH_BYTES, MatchResult, RateCounter,  # noqa: F401
                      RateError, _fixed_bytes, estimate_bpp, match, match_bisect, match_fast)
