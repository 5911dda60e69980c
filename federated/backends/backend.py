"""Where client fits run: the interface between the round loop and its executors.

``FederatedTrainer`` decides *what* a round trains (one :class:`~federated.messages.FitTask` per
selected client: its weights, seed and payload); a :class:`Backend` decides *where*, carrying the
tasks out and the replies back, and nothing else: one after the other in this process
(:class:`~federated.SequentialBackend`, the default) or in parallel on a pool of Ray actors
(:class:`~federated.RayBackend`), both with the clients' data in the driver, or on the clients' own
machines, which hold their data (:class:`~federated.backends.FlowerBackend`). Backends are registered
under ``backend.<name>``, so YAML selects one with ``backend: {type: ray, args: {...}}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lightning.pytorch import LightningModule

    from federated.client.algorithm import ClientAlgorithm
    from federated.client.client import Client
    from federated.messages import ClientEvaluation, ClientFailure, ClientUpdate, EvaluateTask, FitTask

__all__ = ["Backend", "FitSetup"]


@dataclass(frozen=True)
class FitSetup:
    """What a backend needs to train a federation's clients, as Flower's ``FitIns`` carries a fit's.

    Attributes:
        model: The global model; workers train copies of it.
        clients: Every client, by id.
        local_epochs: Epochs of each client fit.
        trainer_kwargs: ``lightning.Trainer`` arguments of every client fit.
        reuse_trainer: Serve all client fits with one ``lightning.Trainer`` per worker.
        keep_optimizer_state: Each client's optimizers and LR schedulers continue from its
            previous fit (the states travel in the client's :meth:`~federated.Client.state_dict`).
        local_keys: Patterns of the state-dict names each client keeps for itself (the
            strategy's ``local_keys``): its fit starts from its own values of them, and its
            update's weights leave them out.
        evaluate_clients: The rounds run federated evaluation: a backend whose clients hold their
            own data refuses the federation when every client reports no validation data.
        algorithms: The strategy's client algorithms, run in every client fit.
    """

    model: LightningModule
    clients: Sequence[Client]
    local_epochs: int
    trainer_kwargs: Mapping[str, Any]
    reuse_trainer: bool = True
    keep_optimizer_state: bool = False
    local_keys: tuple[str, ...] = ()
    evaluate_clients: bool = False
    algorithms: tuple[ClientAlgorithm, ...] = ()

    def runner_settings(self) -> dict[str, Any]:
        """The keyword arguments of a :class:`~federated.ClientRunner` for this setup's fits (``model`` and
        ``algorithms`` apart: a Flower SuperNode builds its own from the config)."""
        return {
            "local_epochs": self.local_epochs,
            "trainer_kwargs": dict(self.trainer_kwargs),
            "reuse_trainer": self.reuse_trainer,
            "keep_optimizer_state": self.keep_optimizer_state,
            "local_keys": tuple(self.local_keys),
        }


class Backend:
    """Base of the client executors. The round loop calls, for each ``fit``::

        backend.start(setup)                     # once, before the first round
        for outcome in backend.fit(tasks):       # once per round; outcomes in the tasks' order
            ...
        backend.stop()                           # once, also after a failure

    :meth:`fit` yields one outcome per task, in the order of ``tasks`` whatever the order in which
    they finish, so that the round loop folds updates into the strategy and fires the learner
    hooks in a deterministic order, and may do so while later clients still train. A client that
    raises, diverges or takes its worker down is a :class:`~federated.ClientFailure`, never an
    exception of :meth:`fit`.

    Every client fit runs its task through a :class:`~federated.ClientRunner` and starts from the
    client's state held by the driver (``Client.state_dict()``: its callbacks', optimizer's and
    client algorithms' states); a backend hands the new state back to the driver's
    :class:`~federated.Client` before it yields the client's outcome. So where a client ran does
    not change what it computes.

    A backend whose clients hold their own data (``remote_data``) takes a federation built from the
    number of clients alone (``FederatedTrainer(model, 4, ...)``): its clients have no data in the
    driver, and the backend sets each one's ``num_samples`` and ``num_val_samples`` as their
    machines report them, from :meth:`start` on.

    Example:
        >>> from federated.client.runner import ClientRunner
        >>> class InProcess(Backend):
        ...     def start(self, setup):
        ...         self.clients = setup.clients
        ...         self.runner = ClientRunner(setup.model, local_epochs=setup.local_epochs,
        ...                                    algorithms=setup.algorithms)
        ...     def fit(self, tasks, *, timeout=None):
        ...         for task in tasks:
        ...             yield self.runner.fit(self.clients[task.client_id], task)
        >>> InProcess().stop()  # nothing to release
    """

    remote_data = False
    """Whether the clients' data lives on the machines this backend trains them on, never in the driver."""

    def check_trainer_kwargs(self, trainer_kwargs: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` for client ``lightning.Trainer`` arguments this backend cannot honour.

        Called when a ``FederatedTrainer`` is built with this backend; nothing is refused by default.
        """

    def start(self, setup: FitSetup) -> None:
        """Called at the start of ``FederatedTrainer.fit``: build the workers for ``setup``'s model and clients."""

    def fit(self, tasks: Sequence[FitTask], *, timeout: float | None = None) -> Iterator[ClientUpdate | ClientFailure]:
        """Run each task's client fit; yield each one's update or failure, in the order of ``tasks``.

        Args:
            tasks: The round's client fits (ids among ``setup.clients``), in the order their outcomes are wanted.
            timeout: Seconds from the call to the round's deadline: a client not back by then is
                a :class:`~federated.ClientFailure` saying so, and its late result is dropped.
                ``None`` waits for every client. Defaults to ``None``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement `fit(tasks, *, timeout)`")

    def evaluate(self, tasks: Sequence[EvaluateTask]) -> Iterator[ClientEvaluation | ClientFailure]:
        """Run each task's client evaluation; yield the outcomes in the order of ``tasks``.

        A client with ``local_keys`` evaluates its personal model: the task's weights with its own
        values of those keys. Used by federated evaluation (``FederatedTrainer(evaluate_clients=...)``);
        each task's client has validation samples (``num_val_samples > 0``).
        """
        raise NotImplementedError(f"{type(self).__name__} does not evaluate on clients (`evaluate(tasks)`)")

    def stop(self) -> None:
        """Called when ``trainer.fit`` ends, also after an exception: release the workers."""
