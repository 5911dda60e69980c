"""The federation of a YAML config on Flower's Deployment Runtime: the ``ServerApp`` and the ``ClientApp``.

A Flower app directory names them in its ``pyproject.toml``::

    [tool.flwr.app.components]
    serverapp = "federated.app.flower:server_app"
    clientapp = "federated.app.flower:client_app"

    [tool.flwr.app.config]
    config = "fed.yaml"      # the federation's YAML (relative: in the app directory)
    resume = ""              # "auto" continues from output_dir's last checkpoint; or a checkpoint path
    output-dir = ""          # overrides the YAML's output_dir

and ``flwr run <app dir> <superlink connection>`` starts the run. :data:`server_app` runs, inside
the SuperLink's SuperExec, what ``python -m lightning_bridge.fed`` runs (:func:`~federated.app.prepare_run`,
then :meth:`~federated.app.Run.execute`: the outputs are written on the server's machine), with
the config's ``backend: {type: flower}`` attached to Flower's ``Grid``. :data:`client_app` runs on
each SuperNode, one process per message: it builds that node's client from the config the server
sends (the data from the same ``data`` section, its function given the node's ``--node-config``, so
that it builds this node's share alone; the model; the client callbacks; the strategy, whose client
algorithms run in each fit) and trains or evaluates it with a :class:`~federated.ClientRunner`.
A node builds all of it from its own installed code and unpickles nothing it is sent
(:mod:`federated.backends.flower_messages`). The server builds only its own share (its node config is
Flower's empty one), so no client's data is ever on the server. ``docs/flower.md`` has the commands.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from callbacks import ConfigError, dump_yaml, load_yaml
from callbacks.arguments import echo, one_line
from federated import _checks
from federated.app.builders import build_callbacks_at, build_data, build_model
from federated.app.client_algorithms import build_client_algorithms
from federated.app.config import validate_config
from federated.app.run import prepare_run
from federated.app.strategy_entry import build_federation_strategy
from federated.backends import flower_messages as messages
from federated.backends import flower_records as records
from federated.backends.flower_backend import FlowerBackend
from federated.client.algorithm import check_algorithms
from federated.client.client import Client
from federated.client.runner import ClientRunner
from federated.client.trainer_args import quiet_lightning
from federated.messages import ClientFailure
from federated.seeding import seed_everything

__all__ = ["answer_query", "client_app", "evaluate", "serve", "server_app", "train"]


def _new_app(kind: str) -> Any:
    """A ``flwr`` ServerApp or ClientApp, or ``None`` without the flower extra (the module still imports)."""
    try:
        if kind == "server":
            from flwr.serverapp import ServerApp

            return ServerApp()
        from flwr.clientapp import ClientApp

        return ClientApp()
    except ImportError:
        return None


server_app = _new_app("server")
"""The ``flwr.serverapp.ServerApp``: :func:`serve` is its main."""

client_app = _new_app("client")
"""The ``flwr.clientapp.ClientApp``: it answers ``query``, ``train`` and ``evaluate`` messages."""


# ------------------------------------------------------------------ the server


def serve(grid: Any, context: Any) -> None:
    """Run the federation the run config names on ``grid``'s SuperNodes, writing the CLI's outputs here.

    Run config keys: ``config`` (the YAML; a relative path is looked up in the app directory, then
    in the working directory), ``resume`` (``""``, ``"auto"`` or a checkpoint path, as the CLI's
    ``--resume``) and ``output-dir`` (``""`` keeps the YAML's ``output_dir``).

    Raises:
        ConfigError: The config is wrong, or its backend is not ``flower``.
    """
    settings = context.run_config
    if "config" not in settings:
        raise _said(ConfigError("missing: name the federation's YAML in [tool.flwr.app.config]", "config"))
    config_path = _in_app_dir(str(settings["config"]), grid)
    out = str(settings.get("output-dir", "") or "")
    resume = str(settings.get("resume", "") or "") or None
    overrides = [f"output_dir={json.dumps(out)}"] if out else []
    try:
        run = prepare_run(config_path, overrides, resume=resume)
    except ConfigError as exc:
        raise _said(exc) from None
    backend = run.trainer.backend
    if not isinstance(backend, FlowerBackend):
        found = run.config["backend"]["type"]
        raise _said(
            ConfigError(
                f"{echo(found)}; under `flwr run` the clients train on the SuperNodes: set `backend: {{type: flower}}`",
                "backend.type",
            )
        )
    backend.attach(grid, config=dump_yaml(run.config))
    for warning in run.warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if run.resume is not None:
        print(f"resuming after round {run.resume_round} from {run.resume}", flush=True)
    summary = run.execute()
    final = ", ".join(f"{k}={v:.4f}" for k, v in summary["final"].items())
    print(
        f"rounds run: {summary['rounds']} of {summary['planned']}; final: {final}; outputs: {run.output_dir}",
        flush=True,
    )


def _said(exc: ConfigError) -> ConfigError:
    """``exc``, once printed as the one ``error:`` line the CLI would print."""
    print(f"error: {exc}", file=sys.stderr, flush=True)
    return exc


def _in_app_dir(path: str, grid: Any) -> str:
    """``path``, or where it is in the run's app directory (the FAB ``flwr run`` sent) when relative and there."""
    if os.path.isabs(path):
        return path
    try:
        from flwr.common.config import get_project_dir

        run = grid.run
        candidate = os.path.join(get_project_dir(run.fab_id, run.fab_version, run.fab_hash), path)
    except Exception:  # no app directory to look in: the working directory's
        return path
    return candidate if os.path.isfile(candidate) else path


# ------------------------------------------------------------------ the SuperNodes


def answer_query(message: Any, context: Any) -> Any:
    """Build this SuperNode's client from the config sent; reply with its ``partition-id`` and data sizes.

    Raises:
        ConfigError: The node config lacks ``partition-id`` or ``num-partitions`` (the reply is
            Flower's error, and the server cannot route this node's client to it).
    """
    partition, count = _partition(context.node_config)
    try:
        config, setup = messages.read_query(message.content)
        client = _site(config, setup, context.node_config).client
    except Exception as exc:
        site = messages.Site(partition, count, error=f"{type(exc).__name__}: {one_line(exc)}")
    else:
        site = messages.Site(partition, count, client.num_samples, client.num_val_samples)
    return _reply(message, messages.query_reply(site))


def train(message: Any, context: Any) -> Any:
    """Train this node's client from the message's weights and state; reply with its update and new state.

    The client algorithms' kept states (SCAFFOLD's control variate) stay on this SuperNode, in its
    ``context.state`` for the run, and never travel; the rest of the client's state goes back to
    the server, which sends it with the client's next task.
    """
    try:
        request = messages.read_request(message.content)
    except Exception as exc:
        return _reply(message, messages.fit_reply(_refused(context.node_config, exc), {}))
    try:
        site = _request_site(request, context.node_config)
        messages.check_algorithms(request.algorithms, site.runner.algorithms)
    except Exception as exc:
        return _reply(message, messages.fit_reply(_unbuilt(request, exc), {}))
    client = site.client.fresh(request.state)
    client.algorithm_states = records.node_algorithm_states(context.state, client.client_id)
    with quiet_lightning():
        outcome = site.runner.fit(client, request.fit_task())
    records.keep_algorithm_states(context.state, client.client_id, client.algorithm_states)
    state = client.state_dict()
    state.pop("algorithms", None)  # kept on this node (above), not sent to the server
    return _reply(message, messages.fit_reply(outcome, state))


def evaluate(message: Any, context: Any) -> Any:
    """Evaluate the message's weights on this node's validation data; reply with the metrics."""
    try:
        request = messages.read_request(message.content)
    except Exception as exc:
        return _reply(message, messages.evaluate_reply(_refused(context.node_config, exc)))
    try:
        site = _request_site(request, context.node_config)
    except Exception as exc:
        return _reply(message, messages.evaluate_reply(_unbuilt(request, exc)))
    client = site.client.fresh(request.state)
    with quiet_lightning():
        outcome = site.runner.evaluate(client, request.evaluate_task())
    return _reply(message, messages.evaluate_reply(outcome))


if client_app is not None:
    client_app.query()(answer_query)
    client_app.train()(train)
    client_app.evaluate()(evaluate)
if server_app is not None:
    server_app.main()(serve)


@dataclass
class _Site:
    """What one SuperNode builds once per process: its client (data, callback template) and runner.

    The runner's client algorithms are those of the config's ``strategy`` and ``clients.dp_sgd``, built here as
    the server builds them.
    """

    key: tuple[str, str, int]
    client: Client
    runner: ClientRunner


_built: list[_Site] = []  # Flower starts a process per message; should it reuse one, the build is kept


def _request_site(request: messages.Request, node_config: Mapping[str, Any]) -> _Site:
    """:func:`_site` for a ``train`` or ``evaluate`` message, which must be for this node's client.

    Raises:
        ConfigError: The server sent another client's fit.
    """
    partition, _ = _partition(node_config)
    if request.client_id != partition:
        raise ConfigError(
            f"this SuperNode is partition-id={partition}, but the server sent client {request.client_id}",
            "partition-id",
        )
    return _site(request.config, request.setup, node_config)


def _site(config_text: str, setup: Mapping[str, Any], node_config: Mapping[str, Any]) -> _Site:
    """This node's client and runner for the config the server sent (built once per process).

    The data function of the config's ``data`` section is called with this node's config, and
    builds this node's client alone (:func:`~federated.data.site_of`).

    Raises:
        ConfigError: The node config lacks ``partition-id``, its ``num-partitions`` is not the
            config's ``data.num_clients``, or the data function fails.
    """
    partition, count = _partition(node_config)
    key = (config_text, repr(sorted(setup.items())), partition)
    if _built and _built[0].key == key:
        return _built[0]
    config = validate_config(load_yaml(config_text, "the config the server sent"))
    if count != config["data"]["num_clients"]:
        raise ConfigError(
            f"{count} in this SuperNode's --node-config, but the federation has data.num_clients="
            f"{config['data']['num_clients']}; start the node with num-partitions={config['data']['num_clients']}",
            "num-partitions",
        )
    warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)  # Lightning vs torch 2.13
    if config["threads"] is not None:
        torch.set_num_threads(config["threads"])
    seed_everything(config["seed"])  # as prepare_run does before it builds the data
    data = build_data(config["data"], config["seed"], node_config=dict(node_config))
    model = build_model(config["model"], data)
    [(train_data, val_data)] = _checks.client_loaders(data.client_loaders, config["data"]["batch_size"])
    template = build_callbacks_at(config["client_callbacks"], "client_callbacks")
    client = Client(partition, train_data, template, on_error=config["on_error"], val_data=val_data)
    strategy = build_federation_strategy(config)
    own = [*strategy.client_algorithms(), *build_client_algorithms(config)]  # the config's, as the server's
    algorithms = check_algorithms(own, type(strategy).__name__, model)
    _built[:] = [_Site(key, client, ClientRunner(model, **setup, algorithms=algorithms))]
    return _built[0]


def _partition(node_config: Mapping[str, Any]) -> tuple[int, int]:
    """``(partition-id, num-partitions)`` of a SuperNode's ``--node-config``.

    Raises:
        ConfigError: One is missing or not a non-negative integer, or the id is not below the count.
    """
    values = []
    for key in ("partition-id", "num-partitions"):
        value = node_config.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(
                f"{'missing' if value is None else echo(value)} in this SuperNode's --node-config; start it with "
                '--node-config "partition-id=<client id> num-partitions=<data.num_clients>"',
                key,
            )
        values.append(value)
    partition, count = values
    if partition >= count:
        raise ConfigError(f"{partition}, but num-partitions is {count}: ids run from 0 to {count - 1}", "partition-id")
    return partition, count


def _refused(node_config: Mapping[str, Any], exc: BaseException) -> ClientFailure:
    """The failure of a message this node would not read: nothing in it was loaded or run."""
    partition, _ = _partition(node_config)
    return ClientFailure(
        partition,
        f"the SuperNode refused the server's message: {type(exc).__name__}: {one_line(exc)}",
        traceback.format_exc(),
    )


def _unbuilt(request: messages.Request, exc: BaseException) -> ClientFailure:
    return ClientFailure(
        request.client_id,
        f"the SuperNode could not build its client: {type(exc).__name__}: {one_line(exc)}",
        traceback.format_exc(),
    )


def _reply(message: Any, content: Any) -> Any:
    from flwr.app import Message

    return Message(content, reply_to=message)
