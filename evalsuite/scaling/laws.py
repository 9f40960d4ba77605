"""Functional forms of scaling laws, as plain functions of ``u = log10(x)``.

``x`` is whatever the fit puts on the horizontal axis (training compute in FLOPs, parameters,
tokens seen, model bits); every form works in ``u = log10(x)`` and takes ``u_ref`` (the smallest
fitted ``u``) so that amplitudes stay of order one. Each form is a ``Law``: the function, its
parameter names, data-driven starting values and bounds. Math letters live only in this module.

Forms
-----
``power``  -- power law with an irreducible term (Kaplan et al. 2020, "Scaling Laws for Neural
    Language Models", eq. 1.1-1.3 add the irreducible term of Henighan et al. 2020):
    for a loss or error  L(x) = E + A (x / x_ref)^(-alpha);
    for a bounded score (higher is better) the same law on the error,
    y(x) = E - A (x / x_ref)^(-alpha), where E is the ceiling the score saturates to.
``sigmoid`` -- logistic in log-compute for bounded scores (Ruan et al. 2024, "Observational
    Scaling Laws"; Wei et al. 2022 plot emergence the same way):
    y(u) = floor + (ceiling - floor) / (1 + exp(-k (u - u0))).
    Floor and ceiling are *estimated within bounds*: the floor may sit below the task's chance
    level (small Pythia models score below chance on arc_challenge) and the ceiling below 1
    (lambada, piqa and sciq saturate far below 1); the slope k is bounded so the curve cannot
    become a step function. The data bound what lies past them: unless the last point beats
    the first by ``RISING_SIGMAS`` x noise, the midpoint stays within the measured range and the
    ceiling within one noise of the best point (a flat MMLU subject cannot jump); with such a
    rise, the midpoint may lie up to half the measured span beyond it and the ceiling up to
    ``CEILING_RISES`` measured rises above the best point. The slope is at most
    ``MAX_SIGMOID_SLOPE`` = 10 per decade and at most 2 ln 9 / (smallest gap between measured x,
    in decades): the 10%..90% rise is never narrower than the data's spacing.
``linear`` -- y(u) = a + b (u - u_ref), a straight line in log-compute.
``flat``   -- y = c: no trend (the null model of emergence and of near-chance tasks).

Bounds come from the data and the task's chance level; see ``Law.bounds``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.special import expit

__all__ = ["Law", "LAWS", "power_law", "sigmoid_law", "linear_law", "flat_law", "get_law"]

#: steepest sigmoid allowed: 10 / decade means 10%..90% of the rise within ~0.44 decades.
MAX_SIGMOID_SLOPE = 10.0
#: 10%..90% of a logistic rise takes 2 ln 9 / k decades; k is also capped so that this is at
#: least the smallest gap between the measured x (a rise narrower than the data's spacing
#: cannot be seen)
LOGISTIC_10_90 = 2 * np.log(9.0)
#: a rise counts as evidence of a trend when the last point exceeds the first by this many
#: times the noise (then, and only then, may the sigmoid's midpoint and ceiling lie past the data)
RISING_SIGMAS = 3.0
#: a rising sigmoid's ceiling lies at most this many measured ranges (max - min score) above
#: the best point
CEILING_RISES = 2.0
#: largest power-law exponent per decade of x (alpha <= 3 means the reducible part can shrink
#: at most 1000x per decade).
MAX_POWER_EXPONENT = 3.0


def power_law(u: np.ndarray, theta: Sequence[float], u_ref: float, sign: float) -> np.ndarray:
    """E + sign * A * 10^(-alpha (u - u_ref)); sign = +1 for a loss, -1 for a score."""
    E, A, alpha = theta
    return E + sign * A * np.power(10.0, -alpha * (np.asarray(u, float) - u_ref))


def power_law_jacobian(u: np.ndarray, theta: Sequence[float], u_ref: float,
                       sign: float) -> np.ndarray:
    """d power_law / d(E, A, alpha), one row per point (speeds up the bootstrap refits)."""
    E, A, alpha = theta
    d = np.asarray(u, float) - u_ref
    g = np.power(10.0, -alpha * d)
    return np.stack([np.ones_like(d), sign * g, sign * A * g * (-np.log(10.0) * d)], axis=1)


def sigmoid_law(u: np.ndarray, theta: Sequence[float], u_ref: float, sign: float) -> np.ndarray:
    """floor + (ceiling - floor) * logistic(k (u - u0)); k > 0 rises (sign is ignored)."""
    floor, ceiling, k, u0 = theta
    return floor + (ceiling - floor) * expit(k * (np.asarray(u, float) - u0))


def linear_law(u: np.ndarray, theta: Sequence[float], u_ref: float, sign: float) -> np.ndarray:
    """a + b (u - u_ref)."""
    a, b = theta
    return a + b * (np.asarray(u, float) - u_ref)


def flat_law(u: np.ndarray, theta: Sequence[float], u_ref: float, sign: float) -> np.ndarray:
    """c, everywhere."""
    return np.full(np.shape(np.asarray(u, float)), float(theta[0]))


@dataclass(frozen=True)
class Law:
    """A functional form: function, parameter names, starting values and bounds from the data."""

    name: str
    params: tuple[str, ...]
    func: Callable[..., np.ndarray]
    formula: str
    jacobian: Callable[..., np.ndarray] | None = None

    @property
    def n_params(self) -> int:
        return len(self.params)

    def __call__(self, u, theta, u_ref: float, sign: float = -1.0) -> np.ndarray:
        return self.func(u, theta, u_ref, sign)

    def bounds(self, u: np.ndarray, y: np.ndarray, sign: float, chance: float | None,
               bounded: bool, noise: float | None = None) -> tuple[list[float], list[float]]:
        """Parameter bounds from the data; ``bounded``: the metric lives in [0, 1]; ``noise``:
        the typical standard error of a point (the sigmoid's evidence rule)."""
        lo_y, hi_y = float(np.min(y)), float(np.max(y))
        spread = max(hi_y - lo_y, 1e-3)
        span = max(float(np.ptp(u)), 0.5)
        if self.name == "power":
            if sign < 0:  # score rising to a ceiling E
                e_lo, e_hi = hi_y, (1.0 if bounded else hi_y + 10 * spread)
            else:         # loss falling to an irreducible E >= 0
                e_lo, e_hi = (0.0 if lo_y >= 0 else lo_y - 10 * spread), lo_y
            e_hi = max(e_hi, e_lo + 1e-9)
            return [e_lo, 0.0, 1e-3], [e_hi, 100.0 * (spread + abs(hi_y)), MAX_POWER_EXPONENT]
        if self.name == "sigmoid":
            c = lo_y if chance is None else float(chance)
            # floor near chance, allowed below it (and below the lowest score) by a margin
            f_lo = min(c, lo_y) - 0.1 * max(spread, 0.1)
            f_hi = max(min(c, lo_y) + 0.25 * spread, f_lo + 1e-6)
            order = np.argsort(u)
            noise_ = noise if noise is not None and np.isfinite(noise) else 0.01
            rising = float(y[order][-1] - y[order][0]) > RISING_SIGMAS * noise_
            if rising:
                # a trend still rising at the end may go on past the data: the midpoint up to
                # half the measured span beyond it, the ceiling up to two measured rises above
                # the best point
                c_hi = hi_y + CEILING_RISES * spread
                u0_hi = float(np.max(u)) + 0.5 * span
            else:
                # no evidence of a rise: no jump past the data either
                c_hi = hi_y + noise_
                u0_hi = float(np.max(u))
            if bounded:
                c_hi = min(c_hi, 1.0)
            c_lo = min(hi_y, c_hi - 1e-6)
            gaps = np.diff(np.unique(np.round(u, 9)))
            k_hi = min(MAX_SIGMOID_SLOPE, LOGISTIC_10_90 / max(float(gaps.min()), 1e-3)) \
                if len(gaps) else MAX_SIGMOID_SLOPE
            return ([f_lo, c_lo, 1e-3, float(np.min(u)) - span],
                    [f_hi, c_hi, max(k_hi, 2e-3), u0_hi])
        if self.name == "linear":
            big = 100.0 * (abs(hi_y) + spread)
            return [-big, -big], [big, big]
        return [lo_y - 1.0, ], [hi_y + 1.0]  # flat

    def starts(self, u: np.ndarray, y: np.ndarray, sign: float, chance: float | None,
               bounded: bool, noise: float | None = None) -> list[list[float]]:
        """A few starting points from the data (the fit keeps the best)."""
        lo, hi = self.bounds(u, y, sign, chance, bounded, noise)
        u_ref = float(np.min(u))
        lo_y, hi_y = float(np.min(y)), float(np.max(y))
        out: list[list[float]] = []
        if self.name == "power":
            for alpha in (0.2, 0.6, 1.5):
                for frac in (0.1, 0.5):
                    if sign < 0:
                        E = hi_y + frac * (hi[0] - hi_y)
                        A = max(E - y[np.argmin(u)], 1e-3)
                    else:
                        E = lo_y * (1 - frac)
                        A = max(y[np.argmin(u)] - E, 1e-3)
                    out.append([E, A, alpha])
        elif self.name == "sigmoid":
            floor = min(lo_y, chance if chance is not None else lo_y)
            for k in (1.0, 3.0):
                for ceil_frac in (0.2, 0.8):
                    ceiling = hi_y + ceil_frac * (hi[1] - hi_y)
                    # u0 where the curve crosses the midpoint of the data
                    mid = floor + 0.5 * (ceiling - floor)
                    order = np.argsort(u)
                    above = np.nonzero(y[order] >= mid)[0]
                    u0 = float(u[order][above[0]]) if len(above) else float(np.max(u))
                    out.append([floor, ceiling, k, u0])
        elif self.name == "linear":
            b = np.polyfit(u - u_ref, y, 1)[0] if len(u) > 1 else 0.0
            out.append([float(np.mean(y) - b * np.mean(u - u_ref)), float(b)])
        else:
            out.append([float(np.mean(y))])
        return [list(np.clip(p, np.array(lo) + 1e-9, np.array(hi) - 1e-9)) for p in out]


LAWS: dict[str, Law] = {
    "power": Law("power", ("E", "A", "alpha"), power_law,
                 "y = E -/+ A * (x/x_ref)^(-alpha)  (score: E is the ceiling; loss: E is irreducible)",
                 power_law_jacobian),
    "sigmoid": Law("sigmoid", ("floor", "ceiling", "k", "u0"), sigmoid_law,
                   "y = floor + (ceiling - floor) / (1 + exp(-k (log10 x - u0)))"),
    "linear": Law("linear", ("a", "b"), linear_law, "y = a + b * log10(x / x_ref)"),
    "flat": Law("flat", ("c",), flat_law, "y = c"),
}


def get_law(name: str) -> Law:
    try:
        return LAWS[name]
    except KeyError:
        raise ValueError(f"unknown scaling-law form {name!r}; choose one of {sorted(LAWS)} "
                         "or 'auto'") from None
