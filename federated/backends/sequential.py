"""The default backend: every client fit in this process, one after the other."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from callbacks import register
from federated.backends.backend import Backend, FitSetup
from federated.client.runner import ClientRunner
from federated.client.trainer_args import check_one_device
from federated.messages import late

if TYPE_CHECKING:
    from federated.client.client import Client
    from federated.messages import ClientEvaluation, ClientFailure, ClientUpdate, EvaluateTask, FitTask

__all__ = ["SequentialBackend"]


@register("backend.sequential")
class SequentialBackend(Backend):
    """Trains the clients of a round one after the other in this process, with one :class:`~federated.ClientRunner`.

    The runner (a working copy of the model and one reused ``lightning.Trainer``) is built at the
    first ``fit`` of a federation and kept for the next ``fit`` of the same one. Each outcome is
    yielded as soon as its client returns. Client callbacks run as the driver's own objects.

    Example:
        >>> from federated import MLP, FederatedTrainer, digits_federation
        >>> loaders, _ = digits_federation(num_clients=2, partition="iid", seed=0)
        >>> fed = FederatedTrainer(MLP(hidden=8), loaders, rounds=1, backend=SequentialBackend())
        >>> fed.fit().rounds
        1
    """

    def __init__(self) -> None:
        self._runner: ClientRunner | None = None
        self._setup: FitSetup | None = None
        self._clients: dict[int, Client] = {}

    def check_trainer_kwargs(self, trainer_kwargs: Mapping[str, Any]) -> None:
        """Refuse a client trainer that Lightning rejects or that would use more than one device."""
        check_one_device(trainer_kwargs)

    def start(self, setup: FitSetup) -> None:
        if self._runner is None or self._setup != setup:
            self._runner = ClientRunner(setup.model, **setup.runner_settings(), algorithms=setup.algorithms)
            self._setup = setup
        self._clients = {client.client_id: client for client in setup.clients}

    def fit(self, tasks: Sequence[FitTask], *, timeout: float | None = None) -> Iterator[ClientUpdate | ClientFailure]:
        """Run the tasks one after the other; past the deadline, a fit that ends late and those after it fail.

        A fit in this process cannot be stopped: the client whose fit ends after ``timeout`` is a
        failure (its result dropped), and the clients after it are failures without starting.
        """
        runner = self._started()
        deadline = None if timeout is None else time.monotonic() + timeout
        for task in tasks:
            client = self._clients[task.client_id]
            if deadline is not None and time.monotonic() > deadline:
                yield late(client, timeout, started=False)
                continue
            kept = None if deadline is None else copy.deepcopy(client.state_dict())
            outcome = runner.fit(client, task)
            if kept is not None and deadline is not None and time.monotonic() > deadline:
                client.load_state_dict(kept)  # as if it never returned: its state too
                outcome = late(client, timeout)
            yield outcome

    def evaluate(self, tasks: Sequence[EvaluateTask]) -> Iterator[ClientEvaluation | ClientFailure]:
        runner = self._started()
        for task in tasks:
            yield runner.evaluate(self._clients[task.client_id], task)

    def _started(self) -> ClientRunner:
        if self._runner is None:
            raise RuntimeError("SequentialBackend.fit or evaluate before start(setup)")
        return self._runner
