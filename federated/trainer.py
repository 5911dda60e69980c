"""The federated server: the round loop over clients trained with ``lightning.Trainer.fit``."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer

from callbacks import OnError
from federated import _checks
from federated.backends.backend import Backend, FitSetup
from federated.checkpoint import HistoryLog, lightning_fields, save_checkpoint
from federated.client.algorithm import ClientAlgorithm, check_algorithms
from federated.client.client import Client
from federated.client.trainer_args import check_trainer_kwargs, quiet_lightning, validation_trainer
from federated.evaluation import MetricsAggregation, client_metrics, evaluators, sort_evaluations, weighted_mean
from federated.exceptions import NotEnoughClientsError
from federated.interrupts import ctrl_c, restore_sigint
from federated.messages import ClientEvaluation, ClientFailure, ClientUpdate, EvaluateTask, FitTask
from federated.results import FederationResult, RoundResult
from federated.resume import LAST, ResumePoint, restore_trainer, resume_point, trainer_checkpoint
from federated.seeding import check_seed, derive_seed, seed_everything
from federated.selection import sample_clients
from federated.strategies.strategy import Strategy
from lightning_bridge.metrics import PRIVACY_LOSSES, floats

__all__ = ["FederatedTrainer"]

log = logging.getLogger(__name__)

# streams of the seed tree: seed -> round -> purpose (-> client)
_GLOBAL, _SAMPLING, _CLIENT_FIT, _SERVER, _EVAL_SAMPLING, _CLIENT_EVAL = 0, 1, 2, 3, 4, 5


class FederatedTrainer:
    """Runs federated rounds: each selected client trains with ``lightning.Trainer.fit``, then the server aggregates.

    A round fires ``on_round_start``, samples ``clients_per_round`` clients (seeded; a callback may
    steer it with ``trainer.client_selection_weights`` for that round), trains them on the
    ``backend`` with their copies of ``client_callbacks`` (the server callbacks then receive each
    client's ``on_epoch_start``/``on_epoch_end``), fires ``on_aggregate_start``/``on_aggregate_end``
    around the strategy's aggregation, evaluates the global model on ``test_data`` and fires
    ``on_round_end`` with the :class:`~federated.RoundResult`; the run stops when a callback sets
    ``trainer.should_stop``. ``docs/federated.md`` describes the round, the faults and the
    checkpoint in full.

    Args:
        model: The global model (a LightningModule); after ``fit`` it holds the final weights.
        client_data: One entry per client (client ids are the indices): a ``DataLoader`` or
            ``Dataset`` to train on, a ``(train, val)`` pair of them (the client's fits validate
            on ``val``, and federated evaluation uses it), or a ``LightningDataModule`` (its
            ``train_dataloader`` and, if it defines one, ``val_dataloader``). With a backend whose
            clients hold their own data (``FlowerBackend``): the number of clients, an int.
        test_data: The server's evaluation data (``DataLoader`` or ``Dataset``), run through the
            model's ``validation_step``; ``None`` skips the evaluation. Defaults to ``None``.
        rounds: The number of rounds. Defaults to ``10``.
        clients_per_round: Clients sampled per round, a number or a fraction of all. Defaults to ``1.0``.
        local_epochs: Epochs of each client fit. Defaults to ``1``.
        strategy: A :class:`~federated.Strategy` or a registered name. Defaults to ``"fedavg"``.
        callbacks: Server (federation-level) native callbacks, or ``{type, args}`` entries. Defaults to none.
        client_callbacks: Callbacks copied into every client's Lightning fit: native ones, or
            Lightning's own (``lightning.pytorch.callbacks.EarlyStopping("val_loss")``). Defaults to none.
        client_loggers: Lightning loggers copied for every client, each copy logging apart. Defaults to none.
        trainer_kwargs: ``lightning.Trainer`` arguments for the clients (and the evaluation), over
            logger, checkpointing, progress bar and model summary all off. Defaults to none.
        min_clients: The fewest successful clients a round may end with. Defaults to ``1``.
        seed: Seeds the client sampling, every client fit and evaluation, and the server's
            generators from ``fit`` on, an int in ``[0, 2**32 - 1]``; not the model, built before:
            seed its initial weights with ``lightning.seed_everything`` first. Defaults to ``0``.
        checkpoint_dir: Where ``last.ckpt`` is written after each round; ``None`` writes nothing.
            Defaults to ``None``.
        on_error: ``"warn"`` logs a failing callback hook and goes on, ``"raise"`` fails the run.
            Defaults to ``"warn"``.
        batch_size: Batch size of the loaders made for data given as a ``Dataset``. Defaults to ``32``.
        buffer_updates: Keep the round's updates with their weights until ``on_round_end``, instead
            of folding each into the strategy as it returns; ``None`` keeps them when a server
            callback overrides ``on_aggregate_start`` (which may inspect or edit them). Defaults to ``None``.
        reuse_trainer: Serve all client fits with one ``lightning.Trainer`` (per worker). Defaults to ``True``.
        backend: Where client fits run: ``"sequential"`` (this process), ``"ray"`` (a pool of Ray
            workers with default settings) or a :class:`~federated.Backend` such as
            ``RayBackend(num_workers=4)``. The final weights do not depend on it. Defaults to
            ``"sequential"``.
        evaluate_clients: Federated evaluation: after each aggregation, this many clients (a
            number, or a fraction of those with validation data), sampled seeded among all clients
            with validation data, evaluate the global model with ``lightning.Trainer.validate``;
            ``None`` evaluates on no client. Defaults to ``None``.
        evaluate_every: Evaluate on clients every this many rounds (and at the last). Defaults to ``1``.
        evaluate_metrics_aggregation_fn: Aggregates the clients' evaluation metrics (Flower's
            signature: ``[(num_samples, metrics), ...]`` to a dict); ``None`` is the sample-weighted
            mean. The result lands in ``result.metrics`` under ``clients/``. Defaults to ``None``.
        keep_optimizer_state: Each client's optimizer and LR-scheduler states carry from one of
            its fits to its next (and through checkpoints); the learning rate is still the
            module's, times ``client_lr_scale``, along the client's schedule. Defaults to ``False``.
        round_timeout: Seconds a round waits for its clients; one not back by then is a
            :class:`~federated.ClientFailure` and the round closes with those that returned.
            The Ray backend frees the late client's worker; the sequential backend cannot stop a
            fit that runs in this process, so the client whose fit ends past the deadline fails
            and the clients after it do not start. ``None`` waits. Defaults to ``None``.
        client_algorithms: :class:`~federated.client.ClientAlgorithm` objects run in every client fit
            after the strategy's own, such as ``PrivateTraining`` (DP-SGD, each client with its own
            privacy account). Defaults to none.

    Raises:
        TypeError: An argument of the wrong kind.
        ValueError: An argument out of range; the message names it and what is allowed.

    Example:
        >>> from federated import MLP, digits_federation
        >>> loaders, test = digits_federation(num_clients=3, partition="iid", seed=0)
        >>> fed = FederatedTrainer(MLP(hidden=16), loaders, test, rounds=2, clients_per_round=2, seed=0)
        >>> result = fed.fit()
        >>> [r.round_num for r in result.history], sorted(result.metrics)
        ([1, 2], ['accuracy', 'lr', 'train_loss', 'val_loss'])
    """

    is_global_zero = True
    should_stop: bool
    client_selection_weights: dict[int, float] | None
    client_lr_scale: float
    current_round: int
    history: list[RoundResult]
    _weights: dict[str, torch.Tensor]

    def __init__(
        self,
        model: LightningModule,
        client_data: Sequence[Any] | int,
        test_data: Any = None,
        *,
        rounds: int = 10,
        clients_per_round: int | float = 1.0,
        local_epochs: int = 1,
        strategy: str | Strategy = "fedavg",
        callbacks: Sequence[Any] | None = None,
        client_callbacks: Sequence[Any] | None = None,
        client_loggers: Sequence[Any] | None = None,
        trainer_kwargs: Mapping[str, Any] | None = None,
        min_clients: int = 1,
        seed: int = 0,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        on_error: OnError = "warn",
        batch_size: int = 32,
        buffer_updates: bool | None = None,
        reuse_trainer: bool = True,
        backend: str | Backend = "sequential",
        evaluate_clients: int | float | None = None,
        evaluate_every: int = 1,
        evaluate_metrics_aggregation_fn: MetricsAggregation | None = None,
        keep_optimizer_state: bool = False,
        round_timeout: float | None = None,
        client_algorithms: Sequence[ClientAlgorithm] = (),
    ) -> None:
        self.batch_size = _checks.positive_int(batch_size, "batch_size")
        self.backend = _checks.backend(backend)
        remote = self.backend.remote_data
        loaders = _checks.client_loaders(client_data, self.batch_size, remote=remote)  # (train, val) per client
        local_validation = any(val is not None for _, val in loaders)
        validates = test_data is not None or local_validation or (remote and evaluate_clients is not None)
        self.model = _checks.check_model(model, needs_validation=validates)
        self.test_data = None if test_data is None else _checks.as_loader(test_data, "test_data", 256, shuffle=False)
        self.rounds = _checks.positive_int(rounds, "rounds")
        self.clients_per_round = _checks.clients_per_round(clients_per_round, len(loaders))
        self.local_epochs = _checks.positive_int(local_epochs, "local_epochs")
        self.min_clients = _checks.min_clients(min_clients, self.clients_per_round)
        self.seed = check_seed(seed)
        self.checkpoint_dir = _checks.checkpoint_dir(checkpoint_dir)
        self.strategy = _checks.strategy(strategy, len(loaders), self.clients_per_round)
        _checks.local_keys(self.strategy, self.model)
        algorithms = [*self.strategy.client_algorithms(), *client_algorithms]
        self.algorithms = check_algorithms(algorithms, type(self.strategy).__name__, self.model)
        policy = _checks.on_error(on_error)
        self.manager = _checks.server_callbacks(_checks.native_callbacks(callbacks, "callbacks"), policy)
        _checks.privacy_budgets(self.manager.callbacks, self.strategy)
        self._client_callbacks = _checks.client_callbacks(client_callbacks, policy)
        self.clients = _checks.clients(loaders, self._client_callbacks, client_loggers, policy)
        self.evaluate_clients = _checks.evaluate_clients(evaluate_clients, self.clients, remote=remote)
        self.evaluate_every = _checks.positive_int(evaluate_every, "evaluate_every")
        self.evaluate_metrics_aggregation_fn = _checks.aggregation_fn(evaluate_metrics_aggregation_fn)
        self.keep_optimizer_state = bool(keep_optimizer_state)
        self.round_timeout = _checks.round_timeout(round_timeout)
        self.trainer_kwargs = dict(trainer_kwargs or {})
        check_trainer_kwargs(self.trainer_kwargs)
        self.reuse_trainer = reuse_trainer
        self.backend.check_trainer_kwargs(self.trainer_kwargs)
        self.buffer_updates = (
            buffer_updates if buffer_updates is not None else self.manager.overrides("on_aggregate_start")
        )
        self._lightning_fields = lightning_fields(self.model)
        self._eval_trainer: Trainer | None = None
        self._pending_saves: list[str] | None = None
        self._reset()

    @property
    def callbacks(self) -> list[Any]:
        """The server's native callbacks, in dispatch order."""
        return self.manager.callbacks

    @property
    def client_callbacks(self) -> list[Any]:
        """The native callbacks each client copies into its Lightning fits (the templates, not the copies)."""
        return self._client_callbacks

    @property
    def global_weights(self) -> dict[str, torch.Tensor]:
        """The current global state dict (CPU tensors)."""
        return self._weights

    def fit(self, resume_from: str | os.PathLike[str] | ResumePoint | None = None) -> FederationResult:
        """Run the rounds and return the result; the global ``model`` ends with the final weights.

        Args:
            resume_from: ``None`` starts from the model's weights at round 1; a checkpoint file (or a
                folder holding ``last.ckpt``) continues after its round; ``"auto"`` continues from
                ``checkpoint_dir/last.ckpt`` if it exists and starts afresh otherwise; a
                :class:`~federated.resume.ResumePoint` continues from a checkpoint read already.

        Raises:
            NotEnoughClientsError: A round kept fewer than ``min_clients`` clients.
            CheckpointError: The checkpoint does not fit this federation.
            KeyboardInterrupt: Ctrl-C, also inside a client's fit (which Lightning turns into
                ``SystemExit(1)``); the checkpoint of the last finished round is on disk, and
                the Ctrl-C handler of before the fit is back in place.
        """
        sigint = signal.getsignal(signal.SIGINT)
        self._reset()
        point = resume_point(resume_from, self.checkpoint_dir)
        if point is not None:
            self._weights = restore_trainer(self, point)
            log.info("resuming after round %d from %s", self.current_round, point.path)
        else:  # callbacks drawing random numbers (seed 003's adaptive selection) draw the same each run
            seed_everything(derive_seed(self.seed, 0, _GLOBAL))
        with quiet_lightning():
            self.backend.start(self._fit_setup())
            try:
                try:
                    self.manager.call("on_train_start", trainer=self)
                    while self.current_round < self.rounds and not self.should_stop:
                        self._run_round(self.current_round + 1)
                except BaseException as exc:
                    error = ctrl_c(exc) or exc
                    try:
                        self.manager.call("on_exception", exception=error, trainer=self)
                    finally:
                        self.manager.call("on_train_end", trainer=self, result=self._result(interrupted=True))
                    if error is exc:
                        raise
                    raise error from None
                result = self._result()
                self.manager.call("on_train_end", trainer=self, result=result)
            finally:
                self.backend.stop()
                restore_sigint(sigint)
        return result

    def save_checkpoint(self, path: str | os.PathLike[str], weights_only: bool = False) -> str:
        """Write the federation checkpoint to ``path`` atomically, then fire ``on_save_checkpoint``.

        The rounds' history goes to ``history.jsonl`` in the folder of ``path`` (appended, and on
        disk before the checkpoint is): keep the two files together. Called from ``on_round_end``
        (as ``ModelCheckpoint`` does), the write waits until every callback has seen the round, so
        the file holds their states after it and resumes exactly.

        Args:
            path: The file to write.
            weights_only: As in ``lightning.Trainer.save_checkpoint``; a federation checkpoint always
                holds everything a resume needs, so only ``False`` is accepted. Defaults to ``False``.

        Raises:
            ValueError: ``weights_only`` is ``True``.
        """
        if weights_only:
            raise ValueError("`weights_only=True`: a federation checkpoint always holds the whole state to resume")
        path = os.fspath(path)
        if self._pending_saves is not None:
            self._pending_saves.append(path)
            return path
        log = HistoryLog(path)
        self._history_logs.setdefault(os.path.realpath(log.path), log).write(self.history)
        save_checkpoint(path, trainer_checkpoint(self, self._lightning_fields))
        self.manager.call("on_save_checkpoint", round_num=self.current_round, path=path, trainer=self)
        return path

    # ------------------------------------------------------------------ the round

    def _run_round(self, round_num: int) -> None:
        self.client_selection_weights = None
        self.manager.call("on_round_start", trainer=self, round_num=round_num)
        selected = self._sample(round_num)
        updates, failures = self._fit_clients(round_num, selected)
        self._aggregate(round_num, updates)
        evaluations, eval_failures = self._evaluate_clients(round_num)
        evaluated = client_metrics(evaluations, self.evaluate_metrics_aggregation_fn)
        metrics = {**_weighted_metrics(updates), **self.strategy.round_metrics(), **self._evaluate(), **evaluated}
        result = RoundResult(round_num, metrics, updates, [*failures, *eval_failures], selected, evaluations)
        self._end_round(result)

    def _fit_clients(self, round_num: int, selected: list[int]) -> tuple[list[ClientUpdate], list[ClientFailure]]:
        """Train the selected clients on the backend; fold each update into the strategy as it comes (in order)."""
        self.strategy.begin_round(round_num, self._shared(self._weights))
        clients = [self.clients[client_id] for client_id in selected]
        tasks = [
            FitTask(
                client_id,
                round_num,
                derive_seed(self.seed, round_num, _CLIENT_FIT, client_id),
                self._weights,
                self.client_lr_scale,
                self.strategy.configure_fit(client_id, round_num),
            )
            for client_id in selected
        ]
        outcomes = self.backend.fit(tasks, timeout=self.round_timeout)
        updates: list[ClientUpdate] = []
        failures: list[ClientFailure] = []
        for client, outcome in zip(clients, outcomes, strict=True):  # in the sampled order, on every backend
            if isinstance(outcome, ClientFailure):
                log.warning("round %d: client %d left out: %s", round_num, client.client_id, outcome.error)
                failures.append(outcome)
                continue
            self._learner_hooks(client, outcome, round_num)
            updates.append(outcome)
            if not self.buffer_updates:
                self.strategy.accumulate(outcome)
                outcome.weights = None
        # the server's generators after the clients do not depend on where (in which process) they trained
        seed_everything(derive_seed(self.seed, round_num, _SERVER))
        if len(updates) < self.min_clients:
            raise NotEnoughClientsError(round_num, len(selected), failures, self.min_clients)
        return updates, failures

    def _aggregate(self, round_num: int, updates: list[ClientUpdate]) -> None:
        """The strategy's new global weights, between the aggregate hooks; the model takes them."""
        self.manager.call("on_aggregate_start", trainer=self, updates=updates, round_num=round_num)
        if self.buffer_updates:
            for update in updates:
                self.strategy.accumulate(update)
        self._weights = {**self._weights, **self.strategy.finish_round()}  # local keys keep their global values
        self.manager.call("on_aggregate_end", trainer=self, weights=self._weights, round_num=round_num)
        self.model.load_state_dict(self._weights)

    def _end_round(self, result: RoundResult) -> None:
        """Record the round, fire ``on_round_end``, then write the checkpoints it asked for and ``last.ckpt``."""
        self.history.append(result)
        self.current_round = result.round_num
        self._pending_saves = []
        try:
            self.manager.call("on_round_end", trainer=self, round_num=result.round_num, result=result)
        finally:
            pending, self._pending_saves = self._pending_saves, None
        for path in dict.fromkeys(pending):
            self.save_checkpoint(path)
        if self.checkpoint_dir is not None:
            self.save_checkpoint(os.path.join(self.checkpoint_dir, LAST))
        for update in result.updates:
            update.weights = None
        summary = ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items())
        log.info("round %d/%d: %s", result.round_num, self.rounds, summary)

    def _sample(self, round_num: int) -> list[int]:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, round_num, _SAMPLING]))
        weights, n = self.client_selection_weights, len(self.clients)
        checked = None if weights is None else _checks.selection_weights(weights, n)
        return sample_clients(rng, n, self.clients_per_round, checked, round_num)

    def _learner_hooks(self, client: Client, update: ClientUpdate, round_num: int) -> None:
        manager = self.manager
        if not (manager.overrides("on_epoch_start") or manager.overrides("on_epoch_end")):
            return
        for epoch, metrics in enumerate(update.epoch_metrics):
            manager.call(
                "on_epoch_start", learner=client, epoch=epoch, round_num=round_num, update=update, trainer=self
            )
            manager.call(
                "on_epoch_end",
                learner=client,
                epoch=epoch,
                metrics=metrics,
                logs=metrics,
                round_num=round_num,
                update=update,
                trainer=self,
            )

    def _evaluate_clients(self, round_num: int) -> tuple[list[ClientEvaluation], list[ClientFailure]]:
        """Federated evaluation: the sampled clients evaluate the new global weights on their own data."""
        k = self.evaluate_clients
        if not k or (round_num % self.evaluate_every and round_num != self.rounds):
            return [], []
        chosen = evaluators(self.clients, k, np.random.SeedSequence([self.seed, round_num, _EVAL_SAMPLING]))
        tasks = [
            EvaluateTask(c, round_num, derive_seed(self.seed, round_num, _CLIENT_EVAL, c), self._weights,
                         self.strategy.configure_evaluate(c, round_num))
            for c in chosen
        ]
        return sort_evaluations(self.backend.evaluate(tasks), round_num)

    def _shared(self, weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``weights`` less the strategy's ``local_keys``: what is aggregated."""
        if not self.strategy.local_keys:
            return dict(weights)
        return {name: t for name, t in weights.items() if not self.strategy.is_local(name)}

    def _evaluate(self) -> dict[str, float]:
        if self.test_data is None:
            return {}
        if self._eval_trainer is None:
            self._eval_trainer = validation_trainer(self.trainer_kwargs)
        out = self._eval_trainer.validate(self.model, dataloaders=self.test_data, verbose=False)
        return floats(out[0]) if out else {}

    # ------------------------------------------------------------------ state

    def _fit_setup(self) -> FitSetup:
        return FitSetup(
            self.model,
            self.clients,
            self.local_epochs,
            self.trainer_kwargs,
            self.reuse_trainer,
            keep_optimizer_state=self.keep_optimizer_state,
            local_keys=self.strategy.local_keys,
            evaluate_clients=self.evaluate_clients is not None,
            algorithms=self.algorithms,
        )

    def _reset(self) -> None:
        self.should_stop = False
        self.client_selection_weights = None
        self.client_lr_scale = 1.0
        self.current_round = 0
        self.history = []
        self._history_logs: dict[str, HistoryLog] = {}  # by log file; a fit's first write to each rewrites it
        self._weights = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def _result(self, interrupted: bool = False) -> FederationResult:
        stopped = self.should_stop and self.current_round < self.rounds
        return FederationResult(
            history=list(self.history), weights=self._weights, stopped_early=stopped, interrupted=interrupted
        )


def _weighted_metrics(updates: Sequence[ClientUpdate]) -> dict[str, float]:
    return weighted_mean([(update.num_samples, update.metrics) for update in updates], largest=PRIVACY_LOSSES)
