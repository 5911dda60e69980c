"""The federation's privacy account: epsilon at delta after each round's noisy release, with Google's dp-accounting.

Each round releases one noisy aggregate: the sampled Gaussian mechanism, with the clients of the
round drawn uniformly *without replacement*, ``clients_per_round`` of ``num_clients`` -- what the
round loop's sampler does. dp-accounting's RDP accountant has that event
(``SampledWithoutReplacementDpEvent``, Wang, Balle and Kasiviswanathan 2019), under its
neighbouring relation, one client's data *replaced* by another's. Replacing one client moves the
sum of clipped updates by up to twice the clipping norm, so the mechanism's noise multiplier
against that sensitivity is half the wrappers' ``noise_multiplier`` (whose noise is
``noise_multiplier * clipping_norm`` on the sum). Opacus's accountants know Poisson sampling
only, which the sampler does not do. The account is the RDP of one round, computed once, times the
rounds, turned into epsilon at ``delta``.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Any

from federated.rules import COUNT, DELTA, POSITIVE

__all__ = ["PrivacyAccount"]


class PrivacyAccount:
    """Epsilon at ``delta`` after a number of rounds of the uniformly sampled Gaussian mechanism.

    Args:
        noise_multiplier: The wrapper's noise multiplier: the noise's standard deviation on the sum
            of the clipped updates over the clipping norm, above 0.
        num_clients: The clients of the federation (the population the rounds sample).
        clients_per_round: The clients each round samples, without replacement.
        delta: The delta of the guarantee, in (0, 1).

    Raises:
        ArgumentError: A value out of its range.
        ImportError: dp-accounting is not installed (the ``privacy`` extra).

    Example:
        >>> account = PrivacyAccount(noise_multiplier=2.0, num_clients=100, clients_per_round=10, delta=1e-5)
        >>> account.epsilon(0), 0 < account.epsilon(1) < account.epsilon(2)
        (0.0, True)
    """

    def __init__(self, noise_multiplier: float, num_clients: int, clients_per_round: int, delta: float) -> None:
        noise = POSITIVE.check("noise_multiplier", noise_multiplier, hint="an account needs noise")
        self.noise_multiplier = float(noise)
        self.num_clients = int(COUNT.check("num_clients", num_clients))
        self.clients_per_round = int(COUNT.up_to(self.num_clients).check("clients_per_round", clients_per_round))
        self.delta = float(DELTA.check("delta", delta))
        self.rounds = 0
        self._orders, self._rdp = _round_rdp(self.noise_multiplier, self.num_clients, self.clients_per_round)

    @property
    def sampling_rate(self) -> float:
        """The share of the clients a round samples, ``clients_per_round / num_clients``."""
        return self.clients_per_round / self.num_clients

    def epsilon(self, rounds: int | None = None) -> float:
        """Epsilon at :attr:`delta` after ``rounds`` released rounds (those accounted so far by default)."""
        count = self.rounds if rounds is None else rounds
        if count == 0:
            return 0.0
        from dp_accounting.rdp import compute_epsilon

        return float(compute_epsilon(self._orders, [count * r for r in self._rdp], self.delta)[0])

    def spend(self) -> None:
        """Account one more released round."""
        self.rounds += 1

    def state_dict(self) -> dict[str, Any]:
        """The rounds accounted, with what they were accounted for (a resume checks them)."""
        return {"rounds": self.rounds, "noise_multiplier": self.noise_multiplier, "sampling_rate": self.sampling_rate}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s rounds; a different noise or sampling rate is refused (the account would lie).

        Raises:
            ValueError: The state was accounted for another noise multiplier or sampling rate.
        """
        for key in ("noise_multiplier", "sampling_rate"):
            if not math.isclose(float(state[key]), getattr(self, key), rel_tol=1e-12):
                raise ValueError(
                    f"the checkpoint's privacy account is for {key}={state[key]}, this run has "
                    f"{getattr(self, key)}: resume with the same privacy settings and clients per round"
                )
        self.rounds = int(state["rounds"])


@functools.lru_cache(maxsize=32)
def _round_rdp(noise_multiplier: float, num_clients: int, per_round: int) -> tuple[tuple[float, ...], ...]:
    """The RDP orders and the RDP of one round (its sampled Gaussian release), computed once per setting."""
    from dp_accounting import dp_event, privacy_accountant, rdp

    gaussian = dp_event.GaussianDpEvent(noise_multiplier / 2)  # replace-one moves the clipped sum by 2C
    event = dp_event.SampledWithoutReplacementDpEvent(num_clients, per_round, gaussian)
    accountant = rdp.RdpAccountant(neighboring_relation=privacy_accountant.NeighboringRelation.REPLACE_ONE)
    absl = logging.getLogger("absl")  # orders where its series does not converge are left out, with a warning each
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        accountant.compose(event)
    finally:
        absl.setLevel(level)
    return tuple(float(o) for o in accountant.orders), tuple(float(r) for r in accountant.rdp)
