"""DP-FedAvg with a fixed clipping norm, clipped on the server or on each client (Flower's two wrappers)."""

from __future__ import annotations

from callbacks import register
from federated.privacy.dp_wrapper import DifferentialPrivacyWrapper

__all__ = ["DifferentialPrivacyClientSideFixedClipping", "DifferentialPrivacyServerSideFixedClipping"]


@register("privacy.server_fixed_clipping")
class DifferentialPrivacyServerSideFixedClipping(DifferentialPrivacyWrapper):
    """Central DP with fixed clipping on the server: each update clipped as it arrives, the aggregate noised.

    Flower's wrapper of the same name and arguments (``noise_multiplier``, ``clipping_norm``,
    ``num_sampled_clients``), around any strategy; see :class:`~federated.privacy.DifferentialPrivacyWrapper`
    for the noise, the account (``delta``) and the round metrics. The clients send unclipped
    weights: the server sees them (use the client-side wrapper where it must not).

    Example:
        >>> import torch
        >>> from federated.messages import ClientUpdate
        >>> from federated.strategies import FedAvg
        >>> dp = DifferentialPrivacyServerSideFixedClipping(FedAvg(), noise_multiplier=0.0, clipping_norm=1.0)
        >>> dp.begin_federation(num_clients=4, clients_per_round=1)
        >>> dp.begin_round(1, {"w": torch.zeros(2)})
        >>> dp.accumulate(ClientUpdate(client_id=0, num_samples=1, weights={"w": torch.tensor([3.0, 4.0])}))
        >>> dp.finish_round()
        {'w': tensor([0.6000, 0.8000])}
    """


@register("privacy.client_fixed_clipping")
class DifferentialPrivacyClientSideFixedClipping(DifferentialPrivacyWrapper):
    """Central DP with fixed clipping on each client: clients clip their own updates, the server noises the aggregate.

    Flower's wrapper of the same name (with its ``fixedclipping_mod`` on the client): every client
    fit runs :class:`~federated.privacy.UpdateClipping`, sent ``clipping_norm`` in its task, so
    the server never sees an unclipped update. Noise, account and metrics as
    :class:`~federated.privacy.DifferentialPrivacyWrapper` says.

    Example:
        >>> from federated.strategies import FedAvg
        >>> dp = DifferentialPrivacyClientSideFixedClipping(FedAvg(), noise_multiplier=1.0, clipping_norm=0.5)
        >>> [type(a).__name__ for a in dp.client_algorithms()], dp.configure_fit(0, 1)
        (['UpdateClipping'], {'dp_clipping': {'clipping_norm': 0.5, 'local_keys': []}})
    """

    client_side = True
