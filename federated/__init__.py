"""Federated learning on Lightning: the round loop, strategies, client data, config, backends."""

__all__: list[str] = []
