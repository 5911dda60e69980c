"""A federation member: its data, its own copies of the client callbacks, and the state it keeps between fits."""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from callbacks import OnError

if TYPE_CHECKING:
    import torch
    from lightning.pytorch.callbacks import Callback as LightningCallback
    from lightning.pytorch.loggers import Logger
    from torch.utils.data import DataLoader

    from lightning_bridge import LightningCallbackAdapter

__all__ = ["Client", "client_logger", "split_callbacks"]

CLIENT_DIR = "client_{}"
"""The folder (or metric prefix) of a client's logs, formatted with its id."""


class Client:
    """One client of the federation; it is the ``learner`` that the server's learner hooks receive.

    The client's callbacks are its own deep copies of the federation's ``client_callbacks``, made
    the first time the client trains; they keep their state from one round to the next (a
    client-local schedule, a client-local early stop). They run inside the client's
    ``lightning.Trainer.fit``, the native ones through a
    :class:`~lightning_bridge.LightningCallbackAdapter`; so do its copies of the loggers. What else
    the client keeps between its fits, when the federation asks for it, is its optimizers' and LR
    schedulers' states (``optimizer_state``), its own values of the strategy's ``local_keys``
    (``local_weights``), and what the strategy's client algorithms keep for it
    (``algorithm_states``, by algorithm name: SCAFFOLD's control variate). :meth:`state_dict` holds
    all of it, for the federation checkpoint and for a backend that trains the client elsewhere.

    A client whose data lives on its own machine (a federation built from the number of clients,
    on a backend with ``remote_data``) has no ``data`` here; its ``num_samples`` and
    ``num_val_samples`` are what its machine reported, ``0`` until it has.

    Args:
        client_id: The client's id, its index in ``client_data``.
        data: The client's training ``DataLoader``, or ``None`` when its data is on its own machine.
        callbacks: The client callbacks to copy for this client: native ones, run through a
            :class:`~lightning_bridge.LightningCallbackAdapter`, and Lightning ones, which join the
            fit as they are. Defaults to none.
        on_error: The policy for errors in the client's callbacks. Defaults to ``"warn"``.
        val_data: The client's own validation ``DataLoader``: its fits validate on it, and it
            evaluates the global model on it. Defaults to ``None``.
        loggers: The Lightning loggers to copy for this client (see :func:`client_logger`). Defaults to none.

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
        loggers: Sequence[Logger] = (),
    ) -> None:
        self.client_id = client_id
        self.data = data
        self.val_data = val_data
        self.num_samples = 0 if data is None else len(data.dataset)  # type: ignore[arg-type]
        self.num_val_samples = 0 if val_data is None else len(val_data.dataset)  # type: ignore[arg-type]
        self.on_error: OnError = on_error
        self.optimizer_state: dict[str, Any] | None = None
        self.local_weights: dict[str, torch.Tensor] = {}
        self.algorithm_states: dict[str, dict[str, Any]] = {}
        self.logged_steps = 0
        self._callbacks = list(callbacks)
        self._template, self._lightning_template = split_callbacks(self._callbacks)
        self._adapter: LightningCallbackAdapter | None = None
        self._lightning: list[LightningCallback] | None = None
        self._logger_template = list(loggers)
        self._loggers: list[Logger] | None = None

    def __repr__(self) -> str:
        return f"Client(client_id={self.client_id}, num_samples={self.num_samples})"

    @property
    def has_callbacks(self) -> bool:
        """Whether the client has client callbacks at all."""
        return bool(self._callbacks)

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

    @property
    def lightning_callbacks(self) -> list[LightningCallback]:
        """This client's own copies of the Lightning callbacks among the client callbacks (made on first use)."""
        if self._lightning is None:
            self._lightning = copy.deepcopy(self._lightning_template)
        return self._lightning

    @property
    def loggers(self) -> list[Logger]:
        """This client's own copies of the client loggers, logging apart (see :func:`client_logger`)."""
        if self._loggers is None:
            self._loggers = [client_logger(logger, self.client_id) for logger in self._logger_template]
        return self._loggers

    def fresh(self, state: dict[str, Any] | None = None) -> Client:
        """A new client with this one's id, data and callback template, holding ``state`` (none of this one's).

        What a remote worker rebuilds the client from, with the driver's :meth:`state_dict` as
        ``state``, so a fit does not depend on which worker ran the client before.
        """
        client = Client(
            self.client_id,
            self.data,
            self._callbacks,
            on_error=self.on_error,
            val_data=self.val_data,
            loggers=self._logger_template,
        )
        if state is not None:
            client.load_state_dict(state)
        return client

    def state_dict(self) -> dict[str, Any]:
        """What the client keeps between fits (those it has).

        ``callbacks`` (its native callbacks' states), ``lightning_callbacks`` (its Lightning
        callbacks' ``state_dict()``, by ``state_key``, those not empty), ``logged_steps`` (the
        steps its loggers have logged, so its next fit logs on from there), ``optimizer``,
        ``local_weights`` and ``algorithms`` (its client algorithms' kept states, by name).
        """
        state: dict[str, Any] = {}
        if self._adapter is not None and (callbacks := self._adapter.state_dict()):
            state["callbacks"] = callbacks
        if self._lightning is not None:
            lightning = {cb.state_key: s for cb in self._lightning if (s := cb.state_dict())}
            if lightning:
                state["lightning_callbacks"] = lightning
        if self.logged_steps:
            state["logged_steps"] = self.logged_steps
        if self.optimizer_state is not None:
            state["optimizer"] = self.optimizer_state
        if self.local_weights:
            state["local_weights"] = dict(self.local_weights)
        if self.algorithm_states:
            state["algorithms"] = dict(self.algorithm_states)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Make the client's state what :meth:`state_dict` returned (what it lacks, the client has not either)."""
        if state_dict.get("callbacks"):
            if self.adapter is not None:
                self.adapter.load_state_dict(state_dict["callbacks"])
        else:
            self._adapter = None  # new copies of the callbacks at the next use
        self._lightning = None
        for callback in self.lightning_callbacks:
            saved = state_dict.get("lightning_callbacks", {}).get(callback.state_key)
            if saved is not None:
                callback.load_state_dict(copy.deepcopy(saved))
        self.logged_steps = int(state_dict.get("logged_steps", 0))
        self.optimizer_state = state_dict.get("optimizer")
        self.local_weights = dict(state_dict.get("local_weights", {}))
        self.algorithm_states = dict(state_dict.get("algorithms", {}))


def split_callbacks(callbacks: Sequence[Any]) -> tuple[list[Any], list[LightningCallback]]:
    """``callbacks`` as ``(native, lightning)``: the Lightning callbacks join a client's fit as they are."""
    from lightning.pytorch.callbacks import Callback as LightningCallback

    native = [cb for cb in callbacks if not isinstance(cb, LightningCallback)]
    return native, [cb for cb in callbacks if isinstance(cb, LightningCallback)]


def client_logger(template: Logger, client_id: int) -> Logger:
    """A copy of ``template`` for client ``client_id``, whose logs stay apart from the other clients'.

    A logger that writes under a folder (``CSVLogger``, ``TensorBoardLogger``: its ``name``) writes
    under ``<name>/client_<id>`` of it; one that has no folder (``MLFlowLogger``, ``WandbLogger``)
    prefixes its metric names with ``client_<id>``.

    Raises:
        TypeError: ``template`` has neither a folder name nor a metric prefix to put the id in.
    """
    logger = copy.deepcopy(template)
    own = CLIENT_DIR.format(client_id)
    if isinstance(getattr(logger, "_name", None), str) and hasattr(logger, "save_dir"):
        logger._name = os.path.join(logger._name, own)  # type: ignore[attr-defined]
    elif isinstance(getattr(logger, "_prefix", None), str):
        prefix = logger._prefix  # type: ignore[attr-defined]
        logger._prefix = f"{own}-{prefix}" if prefix else own  # type: ignore[attr-defined]
    else:
        raise TypeError(
            f"client logger {type(template).__name__} has no folder name or metric prefix to keep each client's "
            "logs apart; use a Lightning logger such as CSVLogger or TensorBoardLogger"
        )
    return logger
