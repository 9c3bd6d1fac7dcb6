"""Glicko-2 ratings (Glickman, "Example of the Glicko-2 system"), tuned as lichess does:
new players start at 1500 with RD 500 and volatility 0.09, tau 0.75, RD never below 45,
and a rating is provisional while its RD is 110 or more. Each rated game is a rating period.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCALE = 173.7178
DEFAULT_RATING, DEFAULT_RD, DEFAULT_VOL = 1500.0, 500.0, 0.09
TAU = 0.75
RD_MIN, RD_MAX = 45.0, 500.0
PROVISIONAL_RD = 110.0
EPSILON = 1e-6


@dataclass(frozen=True)
class Rating:
    rating: float = DEFAULT_RATING
    rd: float = DEFAULT_RD
    vol: float = DEFAULT_VOL

    @property
    def provisional(self) -> bool:
        return self.rd >= PROVISIONAL_RD


def _g(phi: float) -> float:
    return 1 / math.sqrt(1 + 3 * phi * phi / (math.pi * math.pi))


def _e(mu: float, mu_j: float, phi_j: float) -> float:
    return 1 / (1 + math.exp(-_g(phi_j) * (mu - mu_j)))


def rate(player: Rating, results: list[tuple[Rating, float]], tau: float = TAU) -> Rating:
    """The player's rating after ``results`` ((opponent, score 1/0.5/0) of one period)."""
    mu, phi = (player.rating - 1500) / SCALE, player.rd / SCALE
    if not results:
        phi_star = math.sqrt(phi * phi + player.vol * player.vol)
        return Rating(player.rating, min(RD_MAX, phi_star * SCALE), player.vol)
    terms = []
    for opponent, score in results:
        mu_j, phi_j = (opponent.rating - 1500) / SCALE, opponent.rd / SCALE
        terms.append((_g(phi_j), _e(mu, mu_j, phi_j), score))
    v = 1 / sum(g * g * e * (1 - e) for g, e, _ in terms)
    delta = v * sum(g * (s - e) for g, e, s in terms)
    vol = _new_volatility(phi, player.vol, v, delta, tau)
    phi_star = math.sqrt(phi * phi + vol * vol)
    phi_new = 1 / math.sqrt(1 / (phi_star * phi_star) + 1 / v)
    mu_new = mu + phi_new * phi_new * sum(g * (s - e) for g, e, s in terms)
    rd = min(RD_MAX, max(RD_MIN, phi_new * SCALE))
    return Rating(mu_new * SCALE + 1500, rd, vol)


def _new_volatility(phi: float, sigma: float, v: float, delta: float, tau: float) -> float:
    """Step 5 of the paper: the Illinois algorithm on f(x) = 0."""
    a = math.log(sigma * sigma)

    def f(x: float) -> float:
        ex = math.exp(x)
        return ex * (delta * delta - phi * phi - v - ex) / (2 * (phi * phi + v + ex) ** 2) - (
            x - a
        ) / (tau * tau)

    upper = a
    if delta * delta > phi * phi + v:
        lower = math.log(delta * delta - phi * phi - v)
    else:
        k = 1
        while f(a - k * tau) < 0:
            k += 1
        lower = a - k * tau
    f_upper, f_lower = f(upper), f(lower)
    while abs(lower - upper) > EPSILON:
        c = upper + (upper - lower) * f_upper / (f_lower - f_upper)
        f_c = f(c)
        if f_c * f_lower <= 0:
            upper, f_upper = lower, f_lower
        else:
            f_upper /= 2
        lower, f_lower = c, f_c
    return math.exp(upper / 2)
