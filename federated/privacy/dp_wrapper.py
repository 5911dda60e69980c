"""Central differential privacy around any strategy: clipped updates, Gaussian noise on the aggregate, an account."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from callbacks import ArgumentError
from federated.privacy.account import PrivacyAccount
from federated.privacy.client_clipping import UpdateClipping
from federated.privacy.clipping import add_gaussian_noise, clip_update
from federated.rules import COUNT, DELTA, NON_NEGATIVE, POSITIVE
from federated.strategies.fedavg import FedAvg
from federated.strategies.wrapper import StrategyWrapper

if TYPE_CHECKING:
    import torch

    from federated.client.algorithm import ClientAlgorithm
    from federated.messages import ClientUpdate, StateDict
    from federated.strategies.strategy import Strategy

__all__ = ["DifferentialPrivacyWrapper", "privacy_account"]

log = logging.getLogger("federated.privacy")


class DifferentialPrivacyWrapper(StrategyWrapper):
    """Base of the DP-FedAvg wrappers (McMahan et al., 2018): each update clipped, the aggregate noised, accounted.

    Each round, every client's update (its weights minus the global weights it started from; local
    keys excluded) is clipped to L2 norm ``clipping_norm`` -- on the server as it arrives, or on the
    client (:class:`~federated.privacy.UpdateClipping`, for ``client_side`` wrappers) -- the inner
    strategy aggregates the clipped weights, and Gaussian noise of standard deviation
    ``noise_multiplier * clipping_norm / num_sampled_clients`` is added once to every floating
    coordinate of the result (Flower's ``compute_stdv``). The noise comes from torch's default
    generator, which the round loop seeds from the run's seed and the round before aggregating:
    a resumed run is bit-exact.

    With ``delta``, the wrapper keeps a :class:`~federated.privacy.PrivacyAccount` and the round's
    metrics carry ``privacy/epsilon`` (spent after the round) and ``privacy/epsilon_next`` (after
    one more), at ``delta``. The account is true when each client can move the released aggregate
    by at most ``clipping_norm / num_sampled_clients``: the inner strategy must be the unweighted
    mean (``FedAvg(weighted=False)``), which is checked; a round that fewer than
    ``num_sampled_clients`` updates reach keeps the global weights (nothing is released, nothing
    spent), as Flower's accounted wrappers skip it. What clients report besides their weights
    (training and evaluation metrics) is not covered. ``privacy/clipping_norm`` is the norm the
    round's updates were clipped to.

    Args:
        inner: The strategy wrapped.
        noise_multiplier: The noise's standard deviation over the clipping norm, on the sum of the
            updates; ``0`` adds none. At least 0.
        clipping_norm: The L2 norm updates are clipped to, above 0.
        num_sampled_clients: The clients sampled per round; defaults to the federation's clients
            per round, and must equal it when given.
        delta: The delta to account epsilon at, in (0, 1); ``None`` keeps no account.

    Raises:
        ArgumentError: A value out of range; ``delta`` with no noise or with an inner strategy that
            is not the unweighted mean.
    """

    client_side: ClassVar[bool] = False
    """Whether the clients clip their own updates (the ``ClientSide`` wrappers) rather than the server."""

    clipping_norm_argument: ClassVar[str] = "clipping_norm"
    """The name the norm has in the constructor's arguments and messages (adaptive clipping's is its initial one)."""

    def __init__(
        self,
        inner: Strategy,
        noise_multiplier: float,
        clipping_norm: float,
        num_sampled_clients: int | None = None,
        *,
        delta: float | None = None,
    ) -> None:
        super().__init__(inner)
        self.noise_multiplier = float(NON_NEGATIVE.check("noise_multiplier", noise_multiplier))
        self.clipping_norm = float(POSITIVE.check(self.clipping_norm_argument, clipping_norm))
        self.num_sampled_clients = None if num_sampled_clients is None else int(
            COUNT.check("num_sampled_clients", num_sampled_clients)
        )
        self.delta = None if delta is None else float(DELTA.check("delta", delta))
        if self.delta is not None:
            POSITIVE.check("noise_multiplier", noise_multiplier, hint="a privacy account at `delta` needs noise")
            if not _unweighted_mean(inner):
                raise ArgumentError(
                    "delta",
                    f"the privacy account needs the unweighted mean of the clipped updates, and {type(inner).__name__} "
                    "is not it: wrap FedAvg(weighted=False) (YAML: strategy fedavg with `weighted: false`), or drop "
                    "`delta` for noise without an account",
                )
        self.account: PrivacyAccount | None = None
        self._start: StateDict = {}
        self._count = 0
        self._clipped = 0
        self._round = 0
        self._metrics: dict[str, float] = {}

    @property
    def update_noise_multiplier(self) -> float:
        """The weights' noise multiplier: :attr:`noise_multiplier` (adaptive clipping spends some on its count)."""
        return self.noise_multiplier

    def begin_federation(self, num_clients: int, clients_per_round: int) -> None:
        super().begin_federation(num_clients, clients_per_round)
        if self.num_sampled_clients is None:
            self.num_sampled_clients = clients_per_round
        elif self.num_sampled_clients != clients_per_round:
            raise ArgumentError(
                "num_sampled_clients",
                f"is {self.num_sampled_clients}, but the federation samples {clients_per_round} clients per round: "
                "leave it out (it is the clients per round) or make the two equal",
            )
        if self.delta is not None:
            self.account = PrivacyAccount(self.noise_multiplier, num_clients, clients_per_round, self.delta)

    def client_algorithms(self) -> list[ClientAlgorithm]:
        return [*super().client_algorithms(), *([UpdateClipping()] if self.client_side else [])]

    def configure_fit(self, client_id: int, round_num: int) -> dict[str, Any]:
        payload = super().configure_fit(client_id, round_num)
        if not self.client_side:
            return payload
        clipping = {"clipping_norm": self.clipping_norm, "local_keys": list(self.local_keys)}
        return {**payload, UpdateClipping.name: clipping}

    def begin_round(self, round_num: int, weights: StateDict) -> None:
        super().begin_round(round_num, weights)
        self._start, self._count, self._clipped, self._round = weights, 0, 0, round_num

    def accumulate(self, update: ClientUpdate) -> None:
        self._count += 1
        if self.client_side:
            reply = update.payload.get(UpdateClipping.name)
            if not isinstance(reply, dict) or "clipped" not in reply:
                raise ValueError(
                    f"client {update.client_id}'s update has no `{UpdateClipping.name}` reply: its fit did not run "
                    "the client-side clipping (build the client from the same strategy)"
                )
            self._clipped += bool(reply["clipped"])
        elif update.weights is not None:
            update.weights, clipped = clip_update(update.weights, self._start, self.clipping_norm)
            self._clipped += clipped
        super().accumulate(update)

    def finish_round(self) -> dict[str, torch.Tensor]:
        weights = super().finish_round()
        norm, expected = self.clipping_norm, self.num_sampled_clients or self._count
        if self.account is not None and self._count != expected:
            log.warning(
                "round %d: %d of the %d sampled clients' updates arrived; the round keeps the global weights, since "
                "the privacy account assumes every sampled client's clipped update",
                self._round, self._count, expected,
            )
            weights = dict(self._start)
        else:
            weights = add_gaussian_noise(weights, self.update_noise_multiplier * norm / expected)
            if self.account is not None:
                self.account.spend()
        self.adapt_clipping_norm(self._clipped, self._count)
        self._metrics = {"privacy/clipping_norm": norm}
        if self.account is not None:
            self._metrics["privacy/epsilon"] = self.account.epsilon()
            self._metrics["privacy/epsilon_next"] = self.account.epsilon(self.account.rounds + 1)
        self._start = {}
        return weights

    def adapt_clipping_norm(self, clipped: int, count: int) -> None:
        """After a round whose ``count`` updates had ``clipped`` of them scaled down: the next round's norm.

        Fixed clipping keeps it; adaptive clipping moves it toward its target quantile.
        """

    def round_metrics(self) -> dict[str, float]:
        return {**super().round_metrics(), **self._metrics}

    def wrapper_state_dict(self) -> dict[str, Any]:
        account = {} if self.account is None else self.account.state_dict()
        return {"clipping_norm": self.clipping_norm, "account": account}

    def load_wrapper_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.clipping_norm = float(state_dict["clipping_norm"])
        if self.account is not None and state_dict.get("account"):
            self.account.load_state_dict(state_dict["account"])


def _unweighted_mean(strategy: Strategy) -> bool:
    """Whether ``strategy`` aggregates as the unweighted mean of the updates (FedAvg's maths, ``weighted=False``)."""
    kind = type(strategy)
    return (
        isinstance(strategy, FedAvg)
        and not strategy.weighted
        and kind.accumulate is FedAvg.accumulate
        and kind.finish_round is FedAvg.finish_round
    )


def privacy_account(strategy: Strategy) -> PrivacyAccount | None:
    """The account of the first DP wrapper in ``strategy``'s chain of wrappers, ``None`` if none keeps one."""
    while isinstance(strategy, StrategyWrapper):
        if isinstance(strategy, DifferentialPrivacyWrapper) and strategy.account is not None:
            return strategy.account
        strategy = strategy.inner
    return None
