"""A federation member: its data and its own copies of the client callbacks."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from callbacks import OnError

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from lightning_bridge import LightningCallbackAdapter

__all__ = ["Client"]


class Client:
    """One client of the federation; it is the ``learner`` that the server's learner hooks receive.

    The client's callbacks are its own deep copies of the federation's ``client_callbacks``, made
    the first time the client trains; they keep their state from one round to the next (a
    client-local schedule, a client-local early stop) and are saved in the federation checkpoint.
    They run inside the client's ``lightning.Trainer.fit`` through a
    :class:`~lightning_bridge.LightningCallbackAdapter`.

    Args:
        client_id: The client's id, its index in ``client_data``.
        data: The client's training ``DataLoader``.
        callbacks: The native callbacks to copy for this client. Defaults to none.
        on_error: The policy for errors in the client's callbacks. Defaults to ``"warn"``.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> client = Client(0, DataLoader(TensorDataset(torch.zeros(5, 2)), batch_size=2))
        >>> client.client_id, client.num_samples
        (0, 5)
    """

    def __init__(
        self, client_id: int, data: DataLoader, callbacks: Sequence[Any] = (), on_error: OnError = "warn"
    ) -> None:
        self.client_id = client_id
        self.data = data
        self.num_samples = len(data.dataset)  # type: ignore[arg-type]
        self.on_error: OnError = on_error
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

    def fresh(self) -> Client:
        """A new client with this one's id, data and callback template, and no callback copies yet.

        What a remote worker rebuilds the client from: it then loads the driver's callback states
        with :meth:`load_state_dict`, so a fit does not depend on which worker ran the client before.
        """
        return Client(self.client_id, self.data, self._template, on_error=self.on_error)

    def state_dict(self) -> dict[str, Any]:
        """The states of this client's callbacks (empty until the client first trains)."""
        return self._adapter.state_dict() if self._adapter is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the states of this client's callbacks."""
        if state_dict and self.adapter is not None:
            self.adapter.load_state_dict(state_dict)
