"""Run an OiaFed 0.2 callback through the native dispatcher: each hook at OiaFed's moment, with OiaFed's arguments."""

from __future__ import annotations

import importlib.util
import inspect
import pickle
from typing import Any

from callbacks._async import run_sync
from callbacks.callback import Callback
from callbacks.oiafed.loader import OIAFED_BASE, import_oiafed, is_oiafed_callback, is_oiafed_sync_callback
from callbacks.oiafed.views import LearnerView, TrainerView, epoch_metrics, eval_result, round_metrics, train_result

__all__ = ["OiaFedCallback", "adapt"]

_MLFLOW = "oiafed.callback.builtin.MLflowCallback"

_LEARNER_HOOKS = (
    "on_fit_start", "on_fit_end", "on_epoch_start", "on_epoch_end", "on_step_start", "on_step_end", "on_evaluate_end"
)
"""OiaFed's hooks about a learner: the epoch hooks here keep the epoch counts and records they all read."""

_SERVES: dict[str, tuple[str, ...]] = {
    "on_train_start": ("on_system_start", "on_train_begin", "on_fit_start"),
    "on_round_start": ("on_round_begin",),
    "on_round_end": ("on_round_end", "on_evaluate_end"),
    "on_train_end": ("on_train_end", "on_system_stop", "on_fit_end"),
    "on_epoch_start": _LEARNER_HOOKS,
    "on_epoch_end": _LEARNER_HOOKS,
    "on_batch_start": ("on_step_start",),
    "on_train_step_end": ("on_step_end",),
}
"""Each native hook of :class:`OiaFedCallback`, and the OiaFed hooks it fires (or keeps records for)."""


def adapt(callback: Any) -> Any:
    """``callback`` as the dispatcher runs it: an OiaFed callback in an :class:`OiaFedCallback`, others as they are.

    Raises:
        TypeError: An OiaFed ``SyncCallback`` (``TrackerSyncCallback``), or ``MLflowCallback`` without mlflow.
    """
    if is_oiafed_sync_callback(callback):
        raise TypeError(
            f"{type(callback).__name__} is an OiaFed SyncCallback: it hands the tracker's run id from OiaFed's trainer "
            "node to its learner nodes over OiaFed's transport, which this federation does not use (its clients log "
            "through their own loggers); leave it out"
        )
    if is_oiafed_callback(callback) and not isinstance(callback, OiaFedCallback):
        return OiaFedCallback(callback)
    return callback


class _MLflowTracker:
    """OiaFed's tracker as ``MLflowCallback`` uses it: ``log_metrics(metrics, step)`` into the active MLflow run."""

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        import mlflow  # type: ignore[import-not-found]

        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)


class OiaFedCallback(Callback):
    """Runs one OiaFed 0.2 callback (a subclass of ``oiafed.callback.base.Callback``) in this project's drivers.

    Each OiaFed hook the callback overrides is called positionally, as OiaFed's ``CallbackManager``
    calls it, and a coroutine it returns runs to completion before the round loop goes on. In the
    federated round loop: ``on_system_start(trainer)`` and ``on_train_begin(trainer, {"max_rounds"})``
    at the start; ``on_round_begin(trainer, round_num, {})``; per trained client, after its fit,
    ``on_fit_start(learner, config)``, ``on_epoch_start(learner, epoch)`` and
    ``on_epoch_end(learner, epoch, EpochMetrics)`` per local epoch (from 1), ``on_fit_end(learner,
    TrainResult)``; per client evaluation ``on_evaluate_end(learner, EvalResult, context)``;
    ``on_round_end(trainer, round_num, {"metrics": RoundMetrics, <each round metric>})``; at the end
    ``on_train_end(trainer, {"rounds_completed"})`` and ``on_system_stop(trainer)``. Inside a
    Lightning fit (a client's, or a centralised one): the fit, epoch and step hooks.
    ``docs/callbacks.md`` has the full table.

    Args:
        callback: The OiaFed callback.

    Raises:
        TypeError: ``callback`` is no OiaFed callback, or is ``MLflowCallback`` and mlflow is not installed.

    Example:
        >>> OiaFedCallback(object())
        Traceback (most recent call last):
        ...
        TypeError: OiaFedCallback wraps a subclass of oiafed.callback.base.Callback, got object
    """

    def __init__(self, callback: Any) -> None:
        if not is_oiafed_callback(callback):
            raise TypeError(f"OiaFedCallback wraps a subclass of {OIAFED_BASE}, got {type(callback).__name__}")
        self.callback = callback
        self._hooks = frozenset(h for hooks in _SERVES.values() for h in hooks if _overrides(callback, h))
        # the native hooks the dispatcher calls: those firing an OiaFed hook the callback overrides
        self.served_hooks = frozenset(native for native, hooks in _SERVES.items() if self._hooks.intersection(hooks))
        self._tracker = _tracker_for(callback)
        self._epochs: list[Any] = []
        self._global_epochs: dict[str, int] = {}

    def __reduce__(self) -> tuple[Any, tuple[str, bytes]]:
        # A process that unpickles it (a Ray worker, a Flower client) loads OiaFed's module the way this
        # one did, without oiafed/__init__, before the callback itself; the per-fit records start afresh.
        return _unpickle, (type(self.callback).__module__, pickle.dumps(self.callback))

    @property
    def state_key(self) -> str:
        """``OiaFed[<class name>]``."""
        return f"OiaFed[{type(self.callback).__qualname__}]"

    def _fire(self, hook: str, *args: Any) -> None:
        if hook not in self._hooks:
            return
        out = getattr(self.callback, hook)(*args)
        if out is not None and inspect.isawaitable(out):
            run_sync(out)

    def _trainer(self, trainer: Any) -> TrainerView:
        return TrainerView(trainer, self._tracker)

    def _learner(self, learner: Any, node_id: str) -> LearnerView:
        return LearnerView(learner, node_id, self._tracker, self._global_epochs.get(node_id, 0))

    # ------------------------------------------------------------------ run and rounds

    def on_train_start(self, trainer: Any, pl_module: Any = None, **kwargs: Any) -> None:
        """The run starts (system and training hooks) or, in a Lightning fit, the fit does."""
        self._epochs = []
        if pl_module is not None:
            config = {"epochs": getattr(trainer, "max_epochs", None)}
            self._fire("on_fit_start", self._learner(pl_module, "learner"), config)
            return
        view = self._trainer(trainer)
        self._fire("on_system_start", view)
        self._fire("on_train_begin", view, {"max_rounds": trainer.rounds})

    def on_round_start(self, trainer: Any, round_num: int, **kwargs: Any) -> None:
        """OiaFed's ``on_round_begin`` with an empty context."""
        self._fire("on_round_begin", self._trainer(trainer), round_num, {})

    def on_round_end(self, trainer: Any, round_num: int, result: Any, **kwargs: Any) -> None:
        """Each client evaluation's ``on_evaluate_end``, then ``on_round_end`` with the round's ``RoundMetrics``."""
        clients = getattr(trainer, "clients", None)
        for evaluation in result.evaluations:
            client = clients[evaluation.client_id] if clients is not None else evaluation
            learner = self._learner(client, f"client_{evaluation.client_id}")
            metadata = {"client_id": evaluation.client_id, "round_num": round_num}
            context = {"type": "federated_evaluation", "round_num": round_num}
            evaluated = eval_result(evaluation.num_samples, evaluation.metrics, metadata)
            self._fire("on_evaluate_end", learner, evaluated, context)
        samples = sum(update.num_samples for update in result.updates)
        metrics = round_metrics(round_num, len(result.updates), samples, result.metrics)
        self._fire("on_round_end", self._trainer(trainer), round_num, {**result.metrics, "metrics": metrics})

    def on_train_end(self, trainer: Any, result: Any = None, pl_module: Any = None, **kwargs: Any) -> None:
        """The run ends (training and system hooks) or, in a Lightning fit, the fit does."""
        if pl_module is not None:
            state = {k: v.detach().to("cpu") for k, v in pl_module.state_dict().items()}
            samples = self._epochs[-1].total_samples if self._epochs else 0
            fit = train_result(state, samples, self._epochs, dict(result or {}), {})
            self._fire("on_fit_end", self._learner(pl_module, "learner"), fit)
            return
        view = self._trainer(trainer)
        self._fire("on_train_end", view, {"rounds_completed": trainer.current_round})
        self._fire("on_system_stop", view)

    # ------------------------------------------------------------------ fits, epochs and steps

    def on_epoch_start(self, epoch: int, learner: Any = None, pl_module: Any = None, **kwargs: Any) -> None:
        """OiaFed's ``on_epoch_start(learner, epoch)``, epochs from 1; a client's first epoch opens its fit."""
        update = kwargs.get("update")
        if pl_module is not None or update is None:  # inside a Lightning fit
            self._fire("on_epoch_start", self._learner(pl_module or learner, "learner"), epoch + 1)
            return
        view = self._learner(learner, f"client_{update.client_id}")  # a client's fit, replayed on the server
        if epoch == 0:
            self._epochs = []
            config = {"epochs": len(update.epoch_metrics), "round_num": kwargs.get("round_num")}
            self._fire("on_fit_start", view, config)
        self._fire("on_epoch_start", view, epoch + 1)

    def on_epoch_end(
        self, epoch: int, logs: Any = None, learner: Any = None, pl_module: Any = None, **kwargs: Any
    ) -> None:
        """OiaFed's ``on_epoch_end(learner, epoch, EpochMetrics)``; a client's last epoch closes its fit."""
        update = kwargs.get("update")
        if pl_module is not None or update is None:  # inside a Lightning fit
            self._end_epoch(pl_module or learner, "learner", epoch, logs, _train_samples(kwargs.get("trainer")))
            return
        view = self._end_epoch(learner, f"client_{update.client_id}", epoch, logs, update.num_samples)
        if epoch == len(update.epoch_metrics) - 1:
            metadata = {"client_id": update.client_id, "round_num": kwargs.get("round_num")}
            fit = train_result(update.weights, update.num_samples, self._epochs, update.metrics, metadata)
            self._fire("on_fit_end", view, fit)

    def _end_epoch(self, learner: Any, node: str, epoch: int, logs: Any, samples: int) -> LearnerView:
        """Fire ``on_epoch_end`` with the epoch's ``EpochMetrics`` (kept for the fit's result); return the view."""
        metrics = epoch_metrics(epoch + 1, dict(logs or {}), samples)
        self._epochs.append(metrics)
        self._global_epochs[node] = self._global_epochs.get(node, 0) + 1  # OiaFed counts before its epoch end
        view = self._learner(learner, node)
        self._fire("on_epoch_end", view, epoch + 1, metrics)
        return view

    def on_batch_start(self, batch_idx: int, pl_module: Any = None, **kwargs: Any) -> None:
        """OiaFed's ``on_step_start(learner, step)``: the batch index in the epoch, as OiaFed's ``_current_step``."""
        self._fire("on_step_start", self._learner(pl_module, "learner"), batch_idx)

    def on_train_step_end(self, batch_idx: int, loss: Any = None, pl_module: Any = None, **kwargs: Any) -> None:
        """OiaFed's ``on_step_end(learner, step, StepMetrics)``."""
        value = float(loss) if loss is not None else float("nan")
        step = import_oiafed("oiafed.core.types").StepMetrics(
            loss=value, batch_size=_batch_size(kwargs.get("trainer")), metrics=dict(kwargs.get("metrics") or {})
        )
        self._fire("on_step_end", self._learner(pl_module, "learner"), batch_idx, step)


def _unpickle(module: str, payload: bytes) -> OiaFedCallback:
    if module.split(".")[0] == "oiafed":
        import_oiafed(module)
    return OiaFedCallback(pickle.loads(payload))


def _overrides(callback: Any, hook: str) -> bool:
    """Whether ``callback``'s class overrides OiaFed's no-op ``hook``."""
    own = getattr(type(callback), hook, None)
    if own is None:
        return False
    module, _, name = OIAFED_BASE.rpartition(".")
    base = next(c for c in type(callback).__mro__ if c.__module__ == module and c.__qualname__ == name)
    return own is not getattr(base, hook, None)


def _tracker_for(callback: Any) -> Any:
    kind = f"{type(callback).__module__}.{type(callback).__qualname__}"
    if kind != _MLFLOW:
        return None
    if importlib.util.find_spec("mlflow") is None:
        raise TypeError(
            "MLflowCallback logs through an MLflow tracker and mlflow is not installed: pip install mlflow (it logs "
            "to ./mlruns, or to MLFLOW_TRACKING_URI), or leave MLflowCallback out"
        )
    return _MLflowTracker()


def _train_samples(trainer: Any) -> int:
    """The training samples of a Lightning fit's epoch, where its loader's data set has a length."""
    try:
        return len(trainer.train_dataloader.dataset)
    except (AttributeError, TypeError):
        return 0


def _batch_size(trainer: Any) -> int:
    try:
        return int(trainer.train_dataloader.batch_size or 0)
    except (AttributeError, TypeError):
        return 0
