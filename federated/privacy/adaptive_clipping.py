"""DP-FedAvg with adaptive clipping (Andrew et al., 2021): the norm follows a quantile of the update norms."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from callbacks import ArgumentError, register
from federated.privacy.dp_wrapper import DifferentialPrivacyWrapper
from federated.rules import NON_NEGATIVE, POSITIVE, QUANTILE

if TYPE_CHECKING:
    from federated.strategies.strategy import Strategy

__all__ = ["DifferentialPrivacyClientSideAdaptiveClipping", "DifferentialPrivacyServerSideAdaptiveClipping"]


class _AdaptiveClipping(DifferentialPrivacyWrapper):
    """After each round the clipping norm ``C`` takes a geometric step toward the target quantile.

    With ``b`` the share of the round's updates that were clipped, counted with Gaussian noise of
    standard deviation ``clipped_count_stddev`` (``num_sampled_clients / 20`` by default when
    there is noise), the next round's norm is ``C * exp(clip_norm_lr * (b - target_clipped_quantile))``:
    more updates clipped than the target share raises the norm, fewer lowers it, so ``C`` settles
    where that share of the updates lies above it (the paper's update, with its unclipped share
    ``1 - b``). Flower 1.41's wrappers step the other way, which drives the norm to 0 when most
    updates are clipped. The noisy count costs privacy: as in the paper (and Flower), the weights'
    noise multiplier is ``(noise_multiplier**-2 - (2 * clipped_count_stddev)**-2) ** -0.5``, so
    that the two releases together are worth one Gaussian release of ``noise_multiplier``, which is
    what the account composes. A round's noise is calibrated to the norm its updates were clipped
    to (Flower 1.41 calibrates it to the norm already stepped for the next round).
    """

    clipping_norm_argument = "initial_clipping_norm"

    def __init__(
        self,
        inner: Strategy,
        noise_multiplier: float,
        num_sampled_clients: int | None = None,
        initial_clipping_norm: float = 0.1,
        target_clipped_quantile: float = 0.5,
        clip_norm_lr: float = 0.2,
        clipped_count_stddev: float | None = None,
        *,
        delta: float | None = None,
    ) -> None:
        super().__init__(inner, noise_multiplier, initial_clipping_norm, num_sampled_clients, delta=delta)
        self.target_clipped_quantile = float(QUANTILE.check("target_clipped_quantile", target_clipped_quantile))
        self.clip_norm_lr = float(POSITIVE.check("clip_norm_lr", clip_norm_lr))
        self.clipped_count_stddev: float | None = None
        if clipped_count_stddev is not None:
            self.clipped_count_stddev = float(NON_NEGATIVE.check("clipped_count_stddev", clipped_count_stddev))
        self._update_noise = self.noise_multiplier

    @property
    def update_noise_multiplier(self) -> float:
        return self._update_noise

    def begin_federation(self, num_clients: int, clients_per_round: int) -> None:
        super().begin_federation(num_clients, clients_per_round)
        sampled = self.num_sampled_clients or clients_per_round
        if self.noise_multiplier == 0:
            self.clipped_count_stddev = self.clipped_count_stddev or 0.0
            self._update_noise = 0.0
            return
        if self.clipped_count_stddev is None:
            self.clipped_count_stddev = sampled / 20
        if self.noise_multiplier >= 2 * self.clipped_count_stddev:
            raise ArgumentError(
                "clipped_count_stddev",
                f"is {self.clipped_count_stddev:g} (num_sampled_clients / 20 when not given), too little for "
                f"noise_multiplier {self.noise_multiplier:g}: it must be above noise_multiplier / 2 = "
                f"{self.noise_multiplier / 2:g}",
            )
        self._update_noise = (self.noise_multiplier**-2 - (2 * self.clipped_count_stddev) ** -2) ** -0.5

    def adapt_clipping_norm(self, clipped: int, count: int) -> None:
        if count == 0:
            return
        noisy = float(clipped) + float(torch.randn(()) * (self.clipped_count_stddev or 0.0))
        self.clipping_norm *= math.exp(self.clip_norm_lr * (noisy / count - self.target_clipped_quantile))


@register("privacy.server_adaptive_clipping")
class DifferentialPrivacyServerSideAdaptiveClipping(_AdaptiveClipping):
    """Central DP with adaptive clipping on the server (Flower's wrapper of the same name and arguments).

    Updates are clipped on the server as they arrive; the norm adapts after each round as
    :class:`_AdaptiveClipping` says, from ``initial_clipping_norm`` (0.1), toward the share
    ``target_clipped_quantile`` (0.5) of clipped updates, at rate ``clip_norm_lr`` (0.2). Noise,
    account and metrics as :class:`~federated.privacy.DifferentialPrivacyWrapper` says.

    Example:
        >>> import torch
        >>> from federated.messages import ClientUpdate
        >>> from federated.strategies import FedAvg
        >>> dp = DifferentialPrivacyServerSideAdaptiveClipping(FedAvg(), noise_multiplier=0.0)
        >>> dp.begin_federation(num_clients=4, clients_per_round=1)
        >>> dp.begin_round(1, {"w": torch.zeros(1)})
        >>> dp.accumulate(ClientUpdate(client_id=0, num_samples=1, weights={"w": torch.tensor([5.0])}))
        >>> dp.finish_round(), round(dp.clipping_norm, 4)  # clipped to 0.1; all clipped: the norm grows
        ({'w': tensor([0.1000])}, 0.1105)
    """


@register("privacy.client_adaptive_clipping")
class DifferentialPrivacyClientSideAdaptiveClipping(_AdaptiveClipping):
    """Central DP with adaptive clipping on each client (Flower's wrapper, with its ``adaptiveclipping_mod``).

    Every client fit runs :class:`~federated.privacy.UpdateClipping` with the round's norm and
    replies whether it clipped; the server counts those bits for the norm's step. Otherwise as
    :class:`DifferentialPrivacyServerSideAdaptiveClipping`.

    Example:
        >>> from federated.strategies import FedAvg
        >>> dp = DifferentialPrivacyClientSideAdaptiveClipping(FedAvg(), 0.0, initial_clipping_norm=1.0)
        >>> dp.configure_fit(0, 1)
        {'dp_clipping': {'clipping_norm': 1.0, 'local_keys': []}}
    """

    client_side = True
