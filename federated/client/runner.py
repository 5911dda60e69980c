"""Local training of one client at a time with ``lightning.Trainer.fit``, cheaply and reproducibly.

The runner turns a :class:`~federated.messages.FitTask` into one Lightning fit of the client (with
the strategy's client algorithms) and its :class:`~federated.ClientUpdate`, and an
:class:`~federated.messages.EvaluateTask` into one ``Trainer.validate``. Every backend runs clients
through it, in this process or in its workers.
"""

from __future__ import annotations

import copy
import fnmatch
import traceback
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback as LightningCallback

from federated.client.algorithm import ClientAlgorithm
from federated.client.probe import ClientProbe
from federated.client.trainer_args import (
    CLIENT_TRAINER_DEFAULTS,
    check_trainer_kwargs,
    fresh_fit_loop,
    validation_trainer,
)
from federated.messages import ClientEvaluation, ClientFailure, ClientUpdate
from federated.seeding import seed_everything
from lightning_bridge.metrics import floats

if TYPE_CHECKING:
    from federated.client.client import Client
    from federated.messages import EvaluateTask, FitTask, StateDict

__all__ = ["ClientRunner", "client_failure", "non_finite"]


class ClientRunner:
    """Trains clients one after the other in this process, each with ``lightning.Trainer.fit``.

    What can be reused is: one working copy of the LightningModule receives each client's
    starting weights with ``load_state_dict``, and one ``lightning.Trainer`` serves every fit
    (NVFlare's Lightning client keeps one trainer too): building a ``Trainer`` scans the installed
    packages' entry points, which costs more than a small client's whole epoch. Before each fit
    the trainer gets fresh fit loops and this client's callbacks (native ones through its adapter,
    Lightning ones as they are) and loggers; the loggers' step counts on across the client's fits.
    A trainer that launches processes (DDP) is built anew for each fit instead, and so is the
    trainer after a failed fit.

    Before each fit, Python's, NumPy's and torch's random generators (and the generator of the
    client loader's sampler, if it has one) are seeded with ``seed``, so a client's training does
    not depend on what ran before it: a resumed run trains exactly as an uninterrupted one.

    Args:
        model: The global model's template; the runner trains a deep copy of it.
        local_epochs: Epochs per client fit.
        trainer_kwargs: ``lightning.Trainer`` arguments, merged over
            :data:`CLIENT_TRAINER_DEFAULTS`; ``callbacks`` are added to every client fit.
            Defaults to none.
        reuse_trainer: Keep one ``Trainer`` for all fits. Defaults to ``True``.
        keep_optimizer_state: Start each client's optimizers and LR schedulers from the states
            its previous fit left (``Client.optimizer_state``), and store the new ones there.
            Defaults to ``False``.
        local_keys: Patterns of the state-dict names each client keeps (``Client.local_weights``):
            its fit starts from its own values of them, and its update leaves them out.
            Defaults to none.
        algorithms: The strategy's client algorithms, run in every fit in this order (see
            :class:`~federated.client.ClientAlgorithm`). Defaults to none.

    Raises:
        ValueError: An unknown ``lightning.Trainer`` argument, or ``max_epochs``/``min_epochs``
            (use ``local_epochs``).

    Example:
        >>> from federated.models import MLP
        >>> runner = ClientRunner(MLP(hidden=8), local_epochs=1)
        >>> runner.trainer_kwargs["max_epochs"], runner.trainer_kwargs["logger"]
        (1, False)
    """

    def __init__(
        self,
        model: LightningModule,
        *,
        local_epochs: int,
        trainer_kwargs: Mapping[str, Any] | None = None,
        reuse_trainer: bool = True,
        keep_optimizer_state: bool = False,
        local_keys: Sequence[str] = (),
        algorithms: Sequence[ClientAlgorithm] = (),
    ) -> None:
        user = dict(trainer_kwargs or {})
        check_trainer_kwargs(user)
        self.module = copy.deepcopy(model)
        self.reuse_trainer = reuse_trainer
        self.keep_optimizer_state = keep_optimizer_state
        self.local_keys = tuple(local_keys)
        self.algorithms = tuple(algorithms)
        self._validator: Trainer | None = None
        self.extra_callbacks: list[Any] = _as_list(user.pop("callbacks", None))
        self.trainer_kwargs: dict[str, Any] = {**CLIENT_TRAINER_DEFAULTS, **user, "max_epochs": local_epochs}
        self._probe = ClientProbe()
        self._trainer: Trainer | None = None
        self._base_callbacks: list[Any] = []

    def fit(self, client: Client, task: FitTask) -> ClientUpdate | ClientFailure:
        """Run ``task`` on ``client``; return its update, or the failure if it raised or diverged.

        The client's kept state (optimizer, local weights, its algorithms' states) changes only
        when the fit succeeds.
        """
        probe = self._probe
        try:
            self._load(task.weights, client)
            seed_everything(task.seed, client.data)
            probe.start(task.lr_scale, keep=self.keep_optimizer_state, restore=client.optimizer_state)
            for algorithm in self.algorithms:
                kept = client.algorithm_states.get(algorithm.name, {})
                algorithm.begin(task.weights, task.payload.get(algorithm.name, {}), kept)
            trainer = self._trainer_for(client)
            trainer.fit(self.module, train_dataloaders=client.data, val_dataloaders=client.val_data)
            if client.loggers:
                client.logged_steps = trainer.fit_loop.epoch_loop._batches_that_stepped
            ends = [(algorithm.name, algorithm.end(self.module)) for algorithm in self.algorithms]
            state = {name: t.detach().to("cpu", copy=True) for name, t in self.module.state_dict().items()}
        except (Exception, SystemExit) as exc:
            self._trainer = None  # do not reuse a trainer left in an unknown state
            return client_failure(client.client_id, exc)
        payload = {name: reply for name, (reply, _) in ends if reply}
        for what, bad in (("weights", non_finite(state)), ("payload", non_finite(_tensors(payload)))):
            if bad:
                names = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
                error = f"non-finite {what} in round {task.round_num}: {names}"
                return ClientFailure(client_id=client.client_id, error=error)
        if self.keep_optimizer_state:
            client.optimizer_state = probe.optimizer_state
        if self.local_keys:
            local = [name for name in state if any(fnmatch.fnmatchcase(name, p) for p in self.local_keys)]
            client.local_weights = {name: state.pop(name) for name in local}
        for name, (_, kept) in ends:
            if kept:
                client.algorithm_states[name] = kept
        epochs = probe.epoch_metrics
        return ClientUpdate(
            client_id=client.client_id,
            num_samples=client.num_samples,
            weights=state,
            metrics=dict(epochs[-1]) if epochs else {},
            epoch_metrics=epochs,
            payload=payload,
        )

    def evaluate(self, client: Client, task: EvaluateTask) -> ClientEvaluation | ClientFailure:
        """Evaluate ``task.weights`` (and the client's ``local_weights``) on its ``val_data`` (``Trainer.validate``)."""
        try:
            self._load(task.weights, client)
            seed_everything(task.seed)
            if self._validator is None:
                self._validator = validation_trainer(self.trainer_kwargs)
            out = self._validator.validate(self.module, dataloaders=client.val_data, verbose=False)
        except (Exception, SystemExit) as exc:
            self._validator = None
            return client_failure(client.client_id, exc)
        return ClientEvaluation(client.client_id, client.num_val_samples, floats(out[0]) if out else {})

    def _load(self, weights: StateDict, client: Client) -> None:
        self.module.load_state_dict(weights)
        if client.local_weights:
            self.module.load_state_dict(client.local_weights, strict=False)

    def _trainer_for(self, client: Client) -> Trainer:
        adapter = client.adapter
        trainer = self._trainer
        if trainer is None:
            trainer = Trainer(**self.trainer_kwargs, callbacks=[*self.extra_callbacks, self._probe])
            self._base_callbacks = list(trainer.callbacks)  # type: ignore[attr-defined]
            if self.reuse_trainer and trainer.strategy.launcher is None and trainer.world_size == 1:
                self._trainer = trainer
        else:
            fresh_fit_loop(trainer, self.trainer_kwargs)
        trainer.callbacks = [  # type: ignore[attr-defined]  # Lightning's callback connector sets it
            *self._base_callbacks,
            *self.algorithms,
            *client.lightning_callbacks,
            *([adapter] if adapter is not None else []),
        ]
        # the client's own loggers, stepping on from where its previous fit left them
        trainer.loggers = client.loggers
        trainer.fit_loop.epoch_loop._batches_that_stepped = client.logged_steps
        return trainer


def client_failure(client_id: int, exc: BaseException) -> ClientFailure:
    """The failure of a client whose fit or evaluation raised ``exc``, with its traceback.

    A ``sys.exit`` in the client's code (its dataset, its ``training_step``) is the client's failure
    like any exception, not the end of the federation. A Ctrl-C is not: Lightning turns it into
    ``SystemExit(1)`` raised while handling the ``KeyboardInterrupt``, which is raised again, to
    stop the run.

    Raises:
        SystemExit: ``exc``, when it stands for a Ctrl-C.
    """
    error = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SystemExit):
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise exc
        error += " (the client's code called sys.exit)"
    return ClientFailure(client_id=client_id, error=error, traceback=traceback.format_exc())


def non_finite(state: StateDict) -> list[str]:
    """The names of floating tensors of ``state`` that hold a NaN or an infinity."""
    names = [n for n, t in state.items() if t.is_floating_point() or t.is_complex()]
    if not names:
        return []
    finite = torch.stack([torch.isfinite(state[n]).all() for n in names]).tolist()
    return [n for n, ok in zip(names, finite, strict=True) if not ok]


def _as_list(callbacks: Any) -> list[Any]:
    if callbacks is None:
        return []
    if isinstance(callbacks, LightningCallback):
        return [callbacks]
    return list(callbacks)


def _tensors(tree: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a payload (dicts and lists of tensors and primitives), by dotted path."""
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    items = tree.items() if isinstance(tree, Mapping) else enumerate(tree) if isinstance(tree, (list, tuple)) else ()
    out: dict[str, torch.Tensor] = {}
    for key, value in items:
        out.update(_tensors(value, f"{prefix}.{key}" if prefix else str(key)))
    return out
