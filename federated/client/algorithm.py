"""The client half of a federated algorithm: a Lightning callback that runs inside a client's fit.

A strategy names its client algorithms (:meth:`~federated.Strategy.client_algorithms`); every fit of
the federation runs them, in that order, with the task's payload for each and each client's own
kept state. That is the room SCAFFOLD's control variates, FedNova's step count and FedProx's
proximal term need, whatever backend carries the task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from lightning.pytorch.callbacks import Callback as LightningCallback

if TYPE_CHECKING:
    from lightning.pytorch import LightningModule

    from federated.messages import StateDict

__all__ = ["ClientAlgorithm", "check_algorithms"]


class ClientAlgorithm(LightningCallback):
    """Base of client algorithms: set up from a task, act during the fit, reply and keep state.

    For each client fit the runner calls :meth:`begin` with the task's starting weights, the
    payload the strategy sent this algorithm (``task.payload[name]``, ``{}`` if none) and what the
    algorithm kept for this client after its previous fit (``{}`` the first time); the object is
    then one of the fit's Lightning callbacks, so any Lightning hook is its to use
    (``on_before_optimizer_step`` to correct gradients); after the fit :meth:`end` returns the
    reply for the strategy (``update.payload[name]``) and the state to keep for this client.

    One object serves every fit on a worker, one after the other: what it sets in :meth:`begin`
    belongs to that fit alone. What it keeps is a dict of tensors and primitives, saved in the
    federation checkpoint with the client and restored on resume; on a failed fit it stays as it
    was. Under Ray and Flower the object is built again (pickled, or from the config) in each
    worker. A failed fit, or a reply holding a non-finite tensor, makes the client a
    :class:`~federated.ClientFailure`.

    Attributes:
        name: The algorithm's key in payloads and kept states; two algorithms of one fit must
            have different names.
        conflicts: Names of algorithms that must not run in the same fit as this one.

    Example:
        >>> import torch
        >>> class CountSteps(ClientAlgorithm):
        ...     name = "count_steps"
        ...     def begin(self, weights, payload, state):
        ...         self.steps, self.total = 0, state.get("total", 0)
        ...     def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        ...         self.steps += 1
        ...     def end(self, module):
        ...         return {"steps": self.steps}, {"total": self.total + self.steps}
        >>> algorithm = CountSteps()
        >>> algorithm.begin({}, {}, {"total": 3})
        >>> algorithm.end(None)
        ({'steps': 0}, {'total': 3})
    """

    name: ClassVar[str] = ""
    conflicts: ClassVar[tuple[str, ...]] = ()

    def begin(self, weights: StateDict, payload: Mapping[str, Any], state: Mapping[str, Any]) -> None:
        """Set up one client fit, before Lightning starts it; nothing by default.

        Args:
            weights: The weights the fit starts from (CPU tensors; the module holds them too).
            payload: What the strategy sent this algorithm for this client.
            state: What this algorithm kept for this client, ``{}`` before its first fit.
        """

    def check_model(self, model: LightningModule) -> None:
        """Refuse a ``model`` this algorithm cannot train, when the federation is built; nothing by default.

        Raises:
            ArgumentError: Naming ``model`` and what in it is wrong.
        """

    def end(self, module: LightningModule) -> tuple[dict[str, Any], dict[str, Any]]:
        """After a successful fit of ``module``: ``(reply, state)``, the reply payload and the state to keep.

        Tensors of both should be on the CPU. Nothing sent and nothing kept by default.
        """
        return {}, {}


def check_algorithms(
    algorithms: Sequence[Any], owner: str, model: LightningModule | None = None
) -> tuple[ClientAlgorithm, ...]:
    """``algorithms`` as a tuple, refused when one is no ClientAlgorithm, two conflict or one refuses ``model``.

    Args:
        algorithms: The client algorithms of one fit, in order.
        owner: Who gives them (the strategy's class name), for the message.
        model: The model the clients train, for each algorithm's :meth:`~ClientAlgorithm.check_model`.
            Defaults to none (not checked).

    Raises:
        TypeError: An entry is not a ``ClientAlgorithm``, or has no ``name``.
        ValueError: Two share a name, or one names another among its ``conflicts``.
        ArgumentError: An algorithm cannot train ``model``.
    """
    out = tuple(algorithms)
    for algorithm in out:
        if not isinstance(algorithm, ClientAlgorithm) or not algorithm.name:
            raise TypeError(
                f"{owner}.client_algorithms() must give ClientAlgorithm objects with a `name`, got {algorithm!r}"
            )
    names = [algorithm.name for algorithm in out]
    for algorithm in out:
        if names.count(algorithm.name) > 1:
            raise ValueError(f"{owner}: two client algorithms named {algorithm.name!r} in one fit")
        clash = [other for other in algorithm.conflicts if other in names]
        if clash:
            raise ValueError(f"{owner}: client algorithm {algorithm.name!r} cannot run in the same fit as {clash[0]!r}")
        if model is not None:
            algorithm.check_model(model)
    return out
