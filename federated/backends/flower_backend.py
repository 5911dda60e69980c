"""Client fits on Flower SuperNodes, sent from inside a Flower ServerApp through its ``Grid``."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from callbacks import ArgumentError, register
from callbacks.arguments import check_number, one_line
from federated.backends import flower_messages as messages
from federated.backends import flower_records as records
from federated.backends.backend import Backend, FitSetup
from federated.messages import ClientEvaluation, ClientFailure, ClientUpdate, EvaluateTask, FitTask, late

if TYPE_CHECKING:
    from federated.client.client import Client

__all__ = ["FlowerBackend"]

log = logging.getLogger(__name__)

_NODE_UNAVAILABLE = 5  # flwr's ErrorCode.NODE_UNAVAILABLE: the SuperLink answers for a node that went away


@register("backend.flower")
class FlowerBackend(Backend):
    """Trains each client on the Flower SuperNode whose ``partition-id`` is the client's id.

    It runs inside a Flower ``ServerApp`` (``federated.app.flower:server_app``, started by ``flwr
    run``), which hands it the ``Grid`` with :meth:`attach`. Each client fit is a Flower ``train``
    message to that client's SuperNode carrying its :class:`~federated.messages.FitTask` (weights,
    seed, learning-rate scale, payload) and the client's state; the node's ClientApp
    (``federated.app.flower:client_app``) builds its own data, model, client callbacks and strategy
    (whose client algorithms it runs) from the config sent along, trains with a
    :class:`~federated.ClientRunner` and replies with its update (payload included) and new state.
    The driver owns the client's state (its callbacks', optimizer's, local weights), as under Ray;
    what its client algorithms keep (SCAFFOLD's control variate) stays on its SuperNode, in Flower's
    node state for the run, and is not in the federation checkpoint. The final weights are the
    sequential backend's. No client data passes through the server.

    The clients' data lives on the SuperNodes (``remote_data``): the federation is built from the
    number of clients (``FederatedTrainer(model, 4, backend=FlowerBackend())``), and each node
    builds its own client's data from the config's ``data`` section and its node config. Client ids
    map to SuperNodes by the ``partition-id`` each reports in a ``query`` message, with the sizes of
    its client's training and validation data (``Client.num_samples``, ``num_val_samples``); it is
    asked again whenever the set of connected nodes changes: a node that restarts (with a new node
    id) takes its client back. A client whose SuperNode is not connected, replies with an error, or
    does not reply within the deadline (``timeout``, or the round's ``round_timeout`` if sooner) is
    a :class:`~federated.ClientFailure`. ``docs/flower.md`` has the commands, faults and resume.

    Args:
        timeout: Seconds a round waits for its replies (the round's ``round_timeout`` may cut it
            shorter); ``None`` waits until every node replied or the SuperLink reports it gone.
            Defaults to ``3600``.
        discovery_timeout: Seconds the start waits for the SuperNodes of all clients to connect
            and say who they are; also the longest wait for a new node's ``query`` reply.
            Defaults to ``60``.
        poll_interval: Seconds between two pulls of replies from the SuperLink. Defaults to ``0.5``.

    Raises:
        ImportError: flwr is not installed (one line naming the extra to install).
        ValueError: An argument out of range.

    Example:
        >>> backend = FlowerBackend(timeout=600)  # doctest: +SKIP
        >>> backend.attach(grid, config=config_yaml)  # in a ServerApp's main  # doctest: +SKIP
        >>> FederatedTrainer(MLP(), 2, backend=backend).fit()  # doctest: +SKIP
    """

    remote_data = True

    def __init__(
        self, *, timeout: float | None = 3600.0, discovery_timeout: float = 60.0, poll_interval: float = 0.5
    ) -> None:
        records.import_flwr()
        self.timeout = None if timeout is None else check_number("timeout", timeout, low=0, low_open=True)
        self.discovery_timeout = check_number("discovery_timeout", discovery_timeout, low=0, low_open=True)
        self.poll_interval = check_number("poll_interval", poll_interval, low=0, low_open=True)
        self._grid: Any = None
        self._config = ""
        self._setup: str | None = None
        self._algorithms: tuple[Any, ...] = ()
        self._query: Any = None  # the content of every query message: the config and the setup
        self._clients: dict[int, Client] = {}
        self._partitions: dict[int, int] = {}  # node id -> partition id, in the order the nodes answered
        self._asked: frozenset[int] = frozenset()  # the node ids of the last discovery
        self._gone: set[int] = set()  # node ids the SuperLink reported unavailable: never asked again

    def __repr__(self) -> str:
        return f"FlowerBackend(timeout={self.timeout}, discovery_timeout={self.discovery_timeout:g})"

    @property
    def attached(self) -> bool:
        """Whether a ServerApp has handed this backend its ``Grid``."""
        return self._grid is not None

    def attach(self, grid: Any, *, config: str = "") -> None:
        """Send client fits through ``grid`` (the ``Grid`` a ``ServerApp``'s main receives).

        Args:
            grid: The ServerApp's ``flwr.serverapp.Grid``.
            config: The resolved federation config (YAML text) the nodes build their data, model and
                client callbacks from. Defaults to ``""``.
        """
        self._grid = grid
        self._config = config

    # ------------------------------------------------------------------ the federation

    def start(self, setup: FitSetup) -> None:
        """Wait (up to ``discovery_timeout``) until a SuperNode answers for every client; warn about the rest.

        Raises:
            ArgumentError: The rounds run federated evaluation, and every SuperNode reported its
                client without validation data (as the other backends refuse it at the start).
        """
        if self._grid is None:
            raise RuntimeError(messages.NOT_IN_SERVERAPP)
        self._setup = messages.setup_text(setup.runner_settings())
        self._algorithms = setup.algorithms
        self._query = messages.query(messages.round_record(round_num=0, config=self._config, setup=self._setup))
        self._clients = {client.client_id: client for client in setup.clients}
        wanted = set(self._clients)
        deadline = time.monotonic() + self.discovery_timeout
        while True:
            self._discover(max(0.0, deadline - time.monotonic()))
            missing = sorted(wanted - set(self._routes()))
            if not missing or time.monotonic() >= deadline:
                break
            time.sleep(self.poll_interval)
        if setup.evaluate_clients and not missing and not any(c.num_val_samples for c in setup.clients):
            raise ArgumentError(
                "evaluate_clients",
                f"needs clients with validation data, and none of the {len(wanted)} SuperNodes' clients has any: "
                "hold some out (`data.val_fraction` in YAML), or have the data function give (train, val) pairs",
            )
        if missing:
            log.warning(
                "no SuperNode answered for partition-id(s) %s after %gs; those clients fail until one connects",
                missing,
                self.discovery_timeout,
            )

    def fit(self, tasks: Sequence[FitTask], *, timeout: float | None = None) -> Iterator[ClientUpdate | ClientFailure]:
        """Send each task to its client's SuperNode; yield the outcomes in the order of ``tasks`` as replies come."""
        replies = self._exchange(tasks, "train", timeout)
        for task, (reply, problem) in zip(tasks, replies, strict=True):
            if problem is not None:
                yield problem
                continue
            try:
                outcome, state = messages.read_fit_reply(reply.content)
            except Exception as exc:
                yield _malformed(self._clients[task.client_id], exc)
                continue
            if state:
                self._clients[task.client_id].load_state_dict(state)  # the driver owns the client's state
            yield outcome

    def evaluate(self, tasks: Sequence[EvaluateTask]) -> Iterator[ClientEvaluation | ClientFailure]:
        """Send each evaluation to its client's SuperNode; yield the outcomes in the order of ``tasks``."""
        for task, (reply, problem) in zip(tasks, self._exchange(tasks, "evaluate", None), strict=True):
            if problem is not None:
                yield problem
                continue
            try:
                yield messages.read_evaluate_reply(reply.content)
            except Exception as exc:
                yield _malformed(self._clients[task.client_id], exc)

    def stop(self) -> None:
        """Forget the round's setup; the grid stays attached (a later ``fit`` of the same ServerApp uses it)."""
        self._setup = None

    # ------------------------------------------------------------------ messages

    def _exchange(
        self, tasks: Sequence[FitTask | EvaluateTask], kind: str, round_timeout: float | None
    ) -> Iterator[tuple[Any, ClientFailure | None]]:
        """Push one message per task; yield ``(reply, None)`` or ``(None, failure)`` per task, in order."""
        flwr = records.import_flwr()
        if self._setup is None:
            raise RuntimeError("FlowerBackend: fit or evaluate before start(setup)")
        if not tasks:
            return
        wait = _sooner(self.timeout, round_timeout)
        started = time.monotonic()
        self._discover(self.discovery_timeout)
        routes = self._routes()
        claims = self._claims()
        round_num = tasks[0].round_num
        shared = messages.round_record(
            round_num=round_num, config=self._config, setup=self._setup, algorithms=self._algorithms
        )
        arrays: dict[int, Any] = {}  # by id() of the tasks' weights: the round's are encoded once
        sent: list[Any] = []
        nodes: dict[int, int] = {}  # position -> node id
        clients = [self._clients[task.client_id] for task in tasks]
        for position, (client, task) in enumerate(zip(clients, tasks, strict=True)):
            node = routes.get(client.client_id)
            if node is None or len(claims[client.client_id]) > 1:
                continue
            record = arrays.get(id(task.weights))
            if record is None:
                record = arrays[id(task.weights)] = records.weights_record(task.weights)
            content = messages.request(record, shared, task, client.state_dict())
            sent.append(flwr.Message(content, node, kind, group_id=str(round_num), **({"ttl": wait} if wait else {})))
            nodes[position] = node
        ids = list(self._grid.push_messages(sent)) if sent else []
        pending = {message_id: position for message_id, position in zip(ids, nodes, strict=True) if message_id}
        taken = set(pending.values())
        replies: dict[int, Any] = {}
        deadline = None if wait is None else started + wait
        for position in range(len(clients)):
            client = clients[position]
            if len(claims.get(client.client_id, ())) > 1:
                yield None, _claimed(client, claims[client.client_id])
                continue
            if position not in nodes:
                yield None, _no_node(client, self._known())
                continue
            if position not in taken:
                yield None, ClientFailure(client.client_id, f"the SuperLink did not take the {kind} message")
                continue
            while position not in replies and pending:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                for reply in self._grid.pull_messages(list(pending)):
                    replies[pending.pop(reply.metadata.reply_to_message_id)] = reply
                if position not in replies:
                    time.sleep(self.poll_interval)
            reply = replies.pop(position, None)
            if reply is None:
                yield None, self._late(client, nodes[position], wait, round_timeout)
            elif reply.has_error():
                yield None, self._error(client, nodes[position], reply.error)
            else:
                yield reply, None

    def _late(self, client: Client, node: int, wait: float | None, round_timeout: float | None) -> ClientFailure:
        if round_timeout is not None and wait == round_timeout:
            return late(client, round_timeout)
        return ClientFailure(
            client.client_id,
            f"no reply from its SuperNode (node {node}, partition-id={client.client_id}) within the backend's "
            f"timeout={wait:g} s",
        )

    def _error(self, client: Client, node: int, error: Any) -> ClientFailure:
        if error.code == _NODE_UNAVAILABLE:
            self._forget(node)
        reason = one_line(str(error.reason), lines=1)
        return ClientFailure(
            client.client_id,
            f"its SuperNode (node {node}, partition-id={client.client_id}) replied with Flower error "
            f"{error.code}: {reason}",
            traceback=str(error.reason),
        )

    # ------------------------------------------------------------------ which node is which client

    def _discover(self, wait: float) -> None:
        """Ask each new node for its partition id, when the set of connected nodes has changed since last time."""
        connected = frozenset(self._grid.get_node_ids()) - self._gone
        if connected == self._asked:
            return
        for node in [n for n in self._partitions if n not in connected]:
            del self._partitions[node]
        new = sorted(connected - set(self._partitions))
        if new:
            self._ask(new, wait)
        self._asked = connected

    def _ask(self, nodes: list[int], wait: float) -> None:
        flwr = records.import_flwr()
        sent = [flwr.Message(self._query, node, "query", ttl=wait or None) for node in nodes]
        ids = list(self._grid.push_messages(sent))
        pending = {message_id: node for message_id, node in zip(ids, nodes, strict=True) if message_id}
        deadline = time.monotonic() + wait
        while pending:
            for reply in self._grid.pull_messages(list(pending)):
                node = pending.pop(reply.metadata.reply_to_message_id)
                self._learn(node, reply)
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(self.poll_interval)
        if pending:
            log.warning("SuperNode(s) %s did not say their partition-id within %gs", sorted(pending.values()), wait)

    def _learn(self, node: int, reply: Any) -> None:
        if reply.has_error():
            log.warning("SuperNode %d could not say its partition-id: %s", node, one_line(str(reply.error.reason)))
            return
        try:
            site = messages.read_query_reply(reply.content)
        except Exception as exc:
            log.warning("SuperNode %d answered the query with a malformed reply: %s", node, one_line(exc))
            return
        client = self._clients.get(site.partition_id)
        if client is None:
            log.warning(
                "SuperNode %d is partition-id=%d, which names no client of %d",
                node,
                site.partition_id,
                len(self._clients),
            )
            return
        if site.error:  # its fits fail with this error, which says what to fix there
            log.warning(
                "SuperNode %d (partition-id=%d) cannot build its client: %s", node, site.partition_id, site.error
            )
        rivals = [n for n, partition in self._partitions.items() if partition == site.partition_id and n != node]
        if rivals:
            log.warning(
                "SuperNodes %s and %d all claim partition-id=%d: its client fails until only one is connected",
                ", ".join(map(str, rivals)),
                node,
                site.partition_id,
            )
        self._partitions[node] = site.partition_id
        client.num_samples, client.num_val_samples = site.num_samples, site.num_val_samples
        log.info(
            "SuperNode %d is partition-id=%d (num-partitions=%d): %d training and %d validation samples",
            node,
            site.partition_id,
            site.num_partitions,
            site.num_samples,
            site.num_val_samples,
        )

    def _routes(self) -> dict[int, int]:
        """Partition id -> node id (of nodes claiming one partition id, the last to answer: see :meth:`_claims`)."""
        return {partition: node for node, partition in self._partitions.items()}

    def _claims(self) -> dict[int, list[int]]:
        """Partition id -> the connected node ids that claim it; more than one, and that client cannot train."""
        claims: dict[int, list[int]] = {}
        for node, partition in self._partitions.items():
            claims.setdefault(partition, []).append(node)
        return {partition: sorted(nodes) for partition, nodes in claims.items()}

    def _known(self) -> list[int]:
        return sorted(set(self._partitions.values()))

    def _forget(self, node: int) -> None:
        self._partitions.pop(node, None)
        self._gone.add(node)


def _sooner(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _no_node(client: Client, known: list[int]) -> ClientFailure:
    seen = ", ".join(map(str, known)) or "none"
    return ClientFailure(
        client.client_id,
        f"no SuperNode with partition-id={client.client_id} is connected (partition ids connected: {seen}); "
        f'start one with --node-config "partition-id={client.client_id} num-partitions=<data.num_clients>"',
    )


def _claimed(client: Client, nodes: list[int]) -> ClientFailure:
    shown = " and ".join(map(str, nodes))
    return ClientFailure(
        client.client_id,
        f"SuperNodes {shown} all claim partition-id={client.client_id}, and a client trains on one site: stop "
        'all but one, or restart the others with their own --node-config "partition-id=<client id> ..."',
    )


def _malformed(client: Client, exc: BaseException) -> ClientFailure:
    what = f"{type(exc).__name__}: {one_line(exc)}"
    return ClientFailure(client.client_id, f"its SuperNode sent a malformed reply: {what}")
