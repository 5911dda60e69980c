"""A federation member: its data, its own copies of the client callbacks, and the state it keeps between fits."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from callbacks import OnError

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

    from lightning_bridge import LightningCallbackAdapter

__all__ = ["Client"]


class Client:
    """One client of the federation; it is the ``learner`` that the server's learner hooks receive.

    The client's callbacks are its own deep copies of the federation's ``client_callbacks``, made
    the first time the client trains; they keep their state from one round to the next (a
    client-local schedule, a client-local early stop). They run inside the client's
    ``lightning.Trainer.fit`` through a :class:`~lightning_bridge.LightningCallbackAdapter`. What
    else the client keeps between its fits, when the federation asks for it, is its optimizers'
    and LR schedulers' states (``optimizer_state``) and its own values of the strategy's
    ``local_keys`` (``local_weights``). :meth:`state_dict` holds all of it, for the federation
    checkpoint and for a backend that trains the client elsewhere.

    A client whose data lives on its own machine (a federation built from the number of clients,
    on a backend with ``remote_data``) has no ``data`` here; its ``num_samples`` and
    ``num_val_samples`` are what its machine reported, ``0`` until it has.

    Args:
        client_id: The client's id, its index in ``client_data``.
        data: The client's training ``DataLoader``, or ``None`` when its data is on its own machine.
        callbacks: The native callbacks to copy for this client. Defaults to none.
        on_error: The policy for errors in the client's callbacks. Defaults to ``"warn"``.
        val_data: The client's own validation ``DataLoader``: its fits validate on it, and it
            evaluates the global model on it. Defaults to ``None``.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> client = Client(0, DataLoader(TensorDataset(torch.zeros(5, 2)), batch_size=2))
        >>> client.client_id, client.num_samples, client.num_val_samples
        (0, 5, 0)
    """

    def __init__(
        self,
        client_id: int,
        data: DataLoader | None,
        callbacks: Sequence[Any] = (),
        on_error: OnError = "warn",
        val_data: DataLoader | None = None,
    ) -> None:
        self.client_id = client_id
        self.data = data
        self.val_data = val_data
        self.num_samples = 0 if data is None else len(data.dataset)  # type: ignore[arg-type]
        self.num_val_samples = 0 if val_data is None else len(val_data.dataset)  # type: ignore[arg-type]
        self.on_error: OnError = on_error
        self.optimizer_state: dict[str, Any] | None = None
        self.local_weights: dict[str, torch.Tensor] = {}
        self._template = list(callbacks)
        self._adapter: LightningCallbackAdapter | None = None

    def __repr__(self) -> str:
        return f"Client(client_id={self.client_id}, num_samples={self.num_samples})"

    @property
    def has_callbacks(self) -> bool:
        """Whether the client has client callbacks at all."""
        return bool(self._template)

    @property
    def adapter(self) -> LightningCallbackAdapter | None:
        """The Lightning callback running this client's callbacks (built on first use), or ``None``."""
        if self._adapter is None and self._template:
            from lightning_bridge import LightningCallbackAdapter

            self._adapter = LightningCallbackAdapter(copy.deepcopy(self._template), on_error=self.on_error)
        return self._adapter

    @property
    def callbacks(self) -> list[Any]:
        """This client's own native callbacks."""
        adapter = self.adapter
        return adapter.callbacks if adapter is not None else []

    def fresh(self, state: dict[str, Any] | None = None) -> Client:
        """A new client with this one's id, data and callback template, holding ``state`` (none of this one's).

        What a remote worker rebuilds the client from, with the driver's :meth:`state_dict` as
        ``state``, so a fit does not depend on which worker ran the client before.
        """
        client = Client(self.client_id, self.data, self._template, on_error=self.on_error, val_data=self.val_data)
        if state is not None:
            client.load_state_dict(state)
        return client

    def state_dict(self) -> dict[str, Any]:
        """What the client keeps between fits: ``callbacks``, ``optimizer``, ``local_weights`` (those it has)."""
        state: dict[str, Any] = {}
        if self._adapter is not None and (callbacks := self._adapter.state_dict()):
            state["callbacks"] = callbacks
        if self.optimizer_state is not None:
            state["optimizer"] = self.optimizer_state
        if self.local_weights:
            state["local_weights"] = dict(self.local_weights)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Make the client's state what :meth:`state_dict` returned (what it lacks, the client has not either)."""
        if state_dict.get("callbacks"):
            if self.adapter is not None:
                self.adapter.load_state_dict(state_dict["callbacks"])
        else:
            self._adapter = None  # new copies of the callbacks at the next use
        self.optimizer_state = state_dict.get("optimizer")
        self.local_weights = dict(state_dict.get("local_weights", {}))
