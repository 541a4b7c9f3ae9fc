"""Accounting of a whole private release: every mechanism that reads the training rows, composed by one accountant.

Every statistic a private model keeps is released by the Gaussian mechanism (noise N(0, (z s)^2) on a vector whose
L2 sensitivity to adding or removing one row is s; z is its noise multiplier). A Gaussian mechanism is the sampled
Gaussian mechanism with sampling rate 1 and one step, so it enters Opacus's accountant history as (z, 1.0, 1) beside
DP-SGD's (z, q, T), and the accountant composes them all (Renyi DP, Mironov 2017; or PRV, Gopi et al. 2021). A
category list kept by a noisy threshold adds a small delta of its own (``selection_delta``): the chance that a
category held by one row alone clears the threshold (Korolova et al. 2009; Wilkins et al. 2024 for the Gaussian
case). The release's guarantee is (composed epsilon at ``accountant_delta``, ``accountant_delta`` +
``selection_delta``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ehrdiff.errors import EhrdiffError

MAX_NOISE_MULTIPLIER = 1000.0      # beyond this the noise drowns every statistic: treat the budget as unreachable
ACCOUNTANTS = ("rdp", "prv")
# Renyi orders of the RDP accountant: Opacus's defaults stop at 63, which cannot certify an epsilon below about
# log(1/delta) / 62 (a small share of the budget); these reach further. Saved in model.json with the mechanisms.
RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 96, 128, 192, 256, 384, 512, 768,
                                                                            1024, 2048, 4096]


def require_opacus():
    """Opacus (the ``dp`` extra), or one line saying how to install it."""
    try:
        import opacus
    except ImportError:
        raise EhrdiffError("differentially private training needs Opacus: pip install ehrdiff[dp]") from None
    return opacus


def composed_epsilon(history: list[tuple[float, float, int]], delta: float, accountant: str = "rdp") -> float:
    """Epsilon at ``delta`` of the mechanisms (noise multiplier, sampling rate, steps) run one after the other."""
    require_opacus()
    from opacus.accountants import create_accountant

    acc = create_accountant(mechanism=accountant)
    acc.history = [(float(z), float(q), int(t)) for z, q, t in history]
    # "optimal order is the largest alpha": the bound is valid, just loose; PRV overflows in the far tails of very
    # large noise, where its result is still the bound
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", UserWarning)
        if accountant == "rdp":
            return float(acc.get_epsilon(delta=delta, alphas=RDP_ORDERS))
        return float(acc.get_epsilon(delta=delta))


def smallest_noise(epsilon: float, delta: float, fixed: list[tuple[float, float, int]], rate: float, steps: int,
                   accountant: str = "rdp", what: str = "the release") -> float:
    """The smallest noise multiplier z (bisection to 0.5 %) for which ``fixed`` followed by ``steps`` Gaussian
    steps at sampling rate ``rate`` spend at most ``epsilon`` at ``delta``; EhrdiffError when even
    ``MAX_NOISE_MULTIPLIER`` spends more."""
    def spent(z: float) -> float:
        return composed_epsilon([*fixed, (z, rate, steps)], delta, accountant)

    at_max = spent(MAX_NOISE_MULTIPLIER)
    if not at_max <= epsilon:
        how = f" in {steps} steps at sampling rate {rate:.4g}" if steps > 1 else ""
        raise EhrdiffError(f"epsilon={epsilon:g}, delta={delta:g} cannot be reached by {what}{how}: even noise "
                           f"multiplier {MAX_NOISE_MULTIPLIER:g} spends {at_max:.3g}; raise --epsilon or --delta"
                           + (", or train fewer steps or with a smaller batch" if how else "")
                           + (", or give the statistics released before it smaller shares (e.g. dp_marginals_share, "
                              "dp_pairs_share)" if fixed else ""))
    low, high = 0.05, MAX_NOISE_MULTIPLIER
    if spent(low) <= epsilon:
        return low
    while high / low > 1.005:
        mid = math.sqrt(low * high)
        low, high = (low, mid) if spent(mid) <= epsilon else (mid, high)
    return high


@dataclass
class Mechanism:
    """One release of noisy statistics (or DP-SGD): enough to recompute its privacy from model.json alone."""

    name: str                  # what it releases, e.g. "one-way marginals"
    noise_multiplier: float    # z: noise standard deviation over the L2 sensitivity
    sensitivity: float         # s: L2 change of the released vector when one row is added or removed
    sample_rate: float = 1.0   # Poisson sampling rate (1: every row, one Gaussian mechanism)
    steps: int = 1
    share: float = 0.0         # planned share of the target epsilon (what it would spend alone)
    epsilon_alone: float = 0.0     # what it spends alone at the accountant's delta
    selection_delta: float = 0.0   # delta of a noisy threshold on categories seen in the data (0: none)

    @property
    def entry(self) -> tuple[float, float, int]:
        return (self.noise_multiplier, self.sample_rate, self.steps)


@dataclass
class Ledger:
    """Every mechanism of a private release, the target budget and how it is split; ``to_dict`` is what
    model.json's ``dp_release`` holds."""

    epsilon: float                 # target epsilon of the whole release
    delta: float                   # target delta of the whole release
    accountant: str = "rdp"
    selection_share: float = 0.1   # share of delta for category thresholds (used only when one is)
    mechanisms: list[Mechanism] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise EhrdiffError(f"DP epsilon must be a positive number, got {self.epsilon!r}")
        if not 0 < self.delta < 1:
            raise EhrdiffError(f"DP delta must be between 0 and 1 (e.g. 1e-5), got {self.delta!r}")
        if self.accountant not in ACCOUNTANTS:
            raise EhrdiffError(f"unknown DP accountant '{self.accountant}' (use rdp or prv)")

    @property
    def selection_budget(self) -> float:
        """Delta set aside for category thresholds."""
        return self.delta * self.selection_share

    @property
    def accountant_delta(self) -> float:
        return self.delta - self.selection_budget

    def history(self) -> list[tuple[float, float, int]]:
        return [m.entry for m in self.mechanisms]

    def gaussian(self, name: str, sensitivity: float, share: float) -> Mechanism:
        """Add a Gaussian mechanism whose noise spends ``share`` of the target epsilon when run alone."""
        z = smallest_noise(self.epsilon * share, self.accountant_delta, [], 1.0, 1, self.accountant, name)
        mechanism = Mechanism(name, z, float(sensitivity), share=share,
                              epsilon_alone=composed_epsilon([(z, 1.0, 1)], self.accountant_delta, self.accountant))
        self.mechanisms.append(mechanism)
        return mechanism

    def fixed(self, name: str, sensitivity: float, noise_multiplier: float, steps: int = 1) -> Mechanism:
        """Add ``steps`` Gaussian mechanisms of a given noise multiplier (a statistic: rate 1), or a mechanism of
        the same Renyi DP: the exponential mechanism of parameter e is e^2 / 8-zCDP (Cesar and Rogers 2021), as a
        Gaussian with z = 2 / e."""
        z = float(noise_multiplier)
        alone = composed_epsilon([(z, 1.0, steps)], self.accountant_delta, self.accountant)
        mechanism = Mechanism(name, z, float(sensitivity), 1.0, int(steps), share=round(alone / self.epsilon, 6),
                              epsilon_alone=alone)
        self.mechanisms.append(mechanism)
        return mechanism

    def withdraw(self, name: str) -> None:
        """Take out the mechanism ``name`` before it runs (nothing it would release has been released)."""
        self.mechanisms = [m for m in self.mechanisms if m.name != name]

    def remaining(self, name: str, sensitivity: float = 1.0, rate: float = 1.0, steps: int = 1) -> Mechanism:
        """Add the last mechanism (DP-SGD: ``steps`` at sampling rate ``rate``; a statistic: one step at rate 1)
        with the least noise that keeps the composed total within the target epsilon."""
        z = smallest_noise(self.epsilon, self.accountant_delta, self.history(), rate, steps, self.accountant, name)
        alone = composed_epsilon([(z, rate, steps)], self.accountant_delta, self.accountant)
        # its share is what it spends alone, as for the others: under Renyi composition shares need not add up to 1
        mechanism = Mechanism(name, z, float(sensitivity), rate, steps, share=round(alone / self.epsilon, 6),
                              epsilon_alone=alone)
        self.mechanisms.append(mechanism)
        return mechanism

    def spent(self) -> tuple[float, float]:
        """(epsilon, delta) of everything released so far: the accountant's composition, plus the thresholds'
        delta when a category list was selected."""
        selection = sum(m.selection_delta for m in self.mechanisms)
        return composed_epsilon(self.history(), self.accountant_delta, self.accountant), \
            self.accountant_delta + selection

    def to_dict(self) -> dict[str, Any]:
        epsilon, delta = self.spent()
        return {"target_epsilon": self.epsilon, "target_delta": self.delta, "accountant": self.accountant,
                "accountant_delta": self.accountant_delta, "epsilon": epsilon,
                **({"rdp_orders": RDP_ORDERS} if self.accountant == "rdp" else {}), "delta": delta,
                "mechanisms": [asdict(m) for m in self.mechanisms]}


__all__ = ["ACCOUNTANTS", "Ledger", "MAX_NOISE_MULTIPLIER", "Mechanism", "RDP_ORDERS", "composed_epsilon",
           "require_opacus", "smallest_noise"]
