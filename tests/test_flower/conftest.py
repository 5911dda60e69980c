"""A real Flower federation on 127.0.0.1 for the tests: one ``flower-superlink``, N ``flower-supernode`` processes.

Every process started here carries ``LB_FLOWER_TEST=<uuid>`` in its environment, and so do the
processes Flower starts from them (``flower-superexec``, ``flwr-serverapp``, ``flwr-clientapp``):
:meth:`Federation.stop` stops the ones it started by pid, then any left that carry its tag. Each
process has its own ``FLWR_HOME`` under the test's temporary directory; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

BIN = Path(sys.executable).parent  # the venv's bin: flower-superlink, flower-supernode, flwr and what they start
PARTS = Path(__file__).with_name("app_parts.py")
TAG = "LB_FLOWER_TEST"
STARTUP_S = 60.0


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 now."""
    sockets = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, *watched: subprocess.Popen) -> Any:
    """Poll ``predicate`` until it is truthy; fail after ``timeout`` or if a ``watched`` process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in watched:
            if process.poll() is not None:
                raise RuntimeError(f"{what}: {process.args[0]} exited with {process.returncode}")
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    raise TimeoutError(f"{what}: not within {timeout:g} s")


def make_certs(out: Path) -> dict[str, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 and localhost, with ``cryptography``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    valid = {"not_valid_before": now - dt.timedelta(minutes=5), "not_valid_after": now + dt.timedelta(days=1)}

    def builder(subject: x509.Name, issuer: x509.Name, key: Any) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid["not_valid_before"]).not_valid_after(valid["not_valid_after"])
        )

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lightning-bridge test CA")])
    ca = (
        builder(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = (
        builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), ca_name, server_key)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": out / "ca.crt", "cert": out / "server.pem", "key": out / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


class Federation:
    """A SuperLink and ``nodes`` SuperNodes under ``root``; node ``i`` has ``partition-id=i`` and ``node_config(i)``."""

    def __init__(
        self, root: Path, *, nodes: int = 2, tls: bool = False, node_config: Callable[[int], str] | None = None
    ) -> None:
        self.root = root
        self.tls = tls
        self.num_nodes = nodes
        self.node_config = node_config  # more of node i's --node-config, after its partition-id and num-partitions
        self.tag = uuid.uuid4().hex
        self.link_port, *self.node_ports = free_ports(1 + nodes)
        self.started: list[subprocess.Popen] = []
        self.nodes: list[subprocess.Popen | None] = [None] * nodes
        self.node_ids: dict[int, int] = {}  # partition id -> the node id its SuperNode registered with
        self.certs = make_certs(root / "certs") if tls else None
        self.connection = "lbtest-tls" if tls else "lbtest"
        self.cli_home = root / "cli"

    # ---------------------------------------------------------------- processes

    def _env(self, home: Path) -> dict[str, str]:
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "FLWR_HOME"}
        env.update(
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # the SuperLink and SuperNodes start Flower's commands
            FLWR_HOME=str(home),
            FLWR_TELEMETRY_ENABLED="0",
            FLWR_DISABLE_UPDATE_CHECK="1",
            FLWR_SUPEREXEC_TASK_POLL_INTERVAL="0.2",  # start each ServerApp and ClientApp process sooner
            PYTHONUNBUFFERED="1",
            **{TAG: self.tag},
        )
        return env

    def _start(self, name: str, command: list[str]) -> subprocess.Popen:
        where = self.root / name
        where.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                command, cwd=where, env=self._env(where / "flwr_home"), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.started.append(process)
        return process

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> Federation:
        security = (
            ["--ssl-ca-certfile", str(self.certs["ca"]), "--ssl-certfile", str(self.certs["cert"]),
             "--ssl-keyfile", str(self.certs["key"])]
            if self.certs else ["--insecure"]
        )
        link = self._start("superlink", [
            str(BIN / "flower-superlink"), *security, "--host", "127.0.0.1", "--port", str(self.link_port),
            "--disable-runtime-dependency-installation",
        ])
        wait_for(lambda: "Application startup complete" in self.log("superlink"), STARTUP_S, "SuperLink", link)
        for i in range(self.num_nodes):
            self.start_node(i, wait=False)
        for i in range(self.num_nodes):
            self.wait_registered(i)
        self._write_connection()
        return self

    def start_node(self, i: int, *, wait: bool = True) -> int | None:
        """Start (or restart) the SuperNode of partition ``i``; with ``wait``, until it has registered (its node id)."""
        name = f"supernode{i}"
        (self.root / f"{name}.log").unlink(missing_ok=True)
        security = ["--root-certificates", str(self.certs["ca"])] if self.certs else ["--insecure"]
        self.nodes[i] = self._start(name, [
            str(BIN / "flower-supernode"), *security, "--superlink", f"127.0.0.1:{self.link_port}",
            "--host", "127.0.0.1", "--port", str(self.node_ports[i]),
            "--node-config", " ".join([f"partition-id={i} num-partitions={self.num_nodes}",
                                       *([self.node_config(i)] if self.node_config else [])]),
            "--max-wait-time", str(STARTUP_S),
        ])
        return self.wait_registered(i) if wait else None

    def wait_registered(self, i: int) -> int:
        """The node id SuperNode ``i`` registered with."""
        process = self.nodes[i]
        assert process is not None
        found = wait_for(lambda: re.search(r"SuperNode ID: (\d+)", self.log(f"supernode{i}")), STARTUP_S,
                         f"SuperNode {i}", process)
        self.node_ids[i] = int(found.group(1))
        return self.node_ids[i]

    def stop_node(self, i: int, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """Send ``sig`` to SuperNode ``i`` and wait until it has exited."""
        process = self.nodes[i]
        assert process is not None
        process.send_signal(sig)
        process.wait(timeout=timeout)
        self.nodes[i] = None

    def running(self, program: str, node: int | None = None) -> list[int]:
        """The pids of this federation's live processes running ``program`` (started by SuperNode ``node``)."""
        home = None if node is None else f"FLWR_HOME={self.root / f'supernode{node}' / 'flwr_home'}".encode()
        found = []
        for pid in self._tagged():
            try:
                named = program.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
                if named and (home is None or home in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")):
                    found.append(pid)
            except OSError:
                continue
        return found

    def _tagged(self) -> list[int]:
        """Live (not zombie) processes, other than this one, whose environment carries this federation's tag."""
        needle = f"{TAG}={self.tag}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                tagged = needle in (entry / "environ").read_bytes().split(b"\0")
                if tagged and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":  # not a zombie
                    found.append(int(entry.name))
            except (OSError, IndexError):
                continue
        return found

    def stop(self) -> None:
        """SIGTERM what was started, newest first; then SIGTERM, SIGKILL what is left with this federation's tag."""
        for process in reversed(self.started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and (any(p.poll() is None for p in self.started) or self._tagged()):
            time.sleep(0.2)
        for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            for pid in self._tagged():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self._tagged():
                time.sleep(0.2)
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=5)
        assert not self._tagged(), f"processes left running: {self._tagged()}"

    # ---------------------------------------------------------------- the flwr CLI

    def _write_connection(self) -> None:
        lines = [
            "[superlink]", f'default = "{self.connection}"', "", f"[superlink.{self.connection}]",
            f'address = "127.0.0.1:{self.link_port}"',
            f'root-certificates = "{self.certs["ca"]}"' if self.certs else "insecure = true",
        ]
        self.cli_home.mkdir(parents=True, exist_ok=True)
        (self.cli_home / "config.toml").write_text("\n".join(lines) + "\n")

    def flwr(self, *args: str, timeout: float = 300.0, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``flwr ARGS`` with this federation's connection config; fail on a non-zero exit if ``check``."""
        done = subprocess.run(
            [str(BIN / "flwr"), *args], cwd=self.root, env=self._env(self.cli_home), capture_output=True, text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"flwr {' '.join(args)} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def run(self, app: Path, timeout: float = 300.0, **run_config: str) -> subprocess.CompletedProcess:
        """``flwr run APP CONNECTION --stream`` with ``run_config`` overrides; it returns when the run has ended."""
        overrides = " ".join(f"{key}={json.dumps(value)}" for key, value in run_config.items())
        return self.flwr("run", str(app), self.connection, "--stream", "--run-config", overrides, timeout=timeout)

    def run_background(self, app: Path, **run_config: str) -> subprocess.Popen:
        """``flwr run`` without waiting for it (stopped with the federation)."""
        overrides = " ".join(f"{key}={json.dumps(value)}" for key, value in run_config.items())
        with open(self.root / "flwr-run.log", "ab") as log:
            process = subprocess.Popen(
                [str(BIN / "flwr"), "run", str(app), self.connection, "--stream", "--run-config", overrides],
                cwd=self.root, env=self._env(self.cli_home), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.started.append(process)
        return process


def write_app(where: Path, config: Path | str) -> Path:
    """A Flower app directory for the package's ServerApp and ClientApp, with the test's callbacks and data."""
    where.mkdir(parents=True, exist_ok=True)
    shutil.copy(PARTS, where / "lb_app_parts.py")
    (where / "pyproject.toml").write_text(
        f"""\
[project]
name = "lbtest"
version = "1.0.0"
dependencies = []

[tool.flwr.app]
publisher = "lightning-bridge"

[tool.flwr.app.components]
serverapp = "federated.app.flower:server_app"
clientapp = "federated.app.flower:client_app"

[tool.flwr.app.config]
config = {json.dumps(str(config))}
resume = ""
output-dir = ""
"""
    )
    return where


SITE_FILE = "site{i}/records.csv"
"""Where, under the federation's folder, SuperNode ``i``'s node config says its site's records lie."""


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """A SuperLink serving TLS (a certificate for 127.0.0.1 from a throw-away CA) and 2 SuperNodes trusting it,
    shared by the test modules and stopped after the last; SuperNode ``i``'s ``data-path`` is
    :data:`SITE_FILE` under its folder, for the tests whose data lies only at the sites."""
    root = tmp_path_factory.mktemp("federation")
    fed = Federation(root, nodes=2, tls=True, node_config=lambda i: f'data-path="{root / SITE_FILE.format(i=i)}"')
    try:
        yield fed.start()
    finally:
        fed.stop()


RUNNER_SETTINGS = {
    "local_epochs": 1, "trainer_kwargs": {}, "reuse_trainer": True, "keep_optimizer_state": False, "local_keys": []
}
"""A message's ``setup`` (FitSetup.runner_settings), for messages a test builds by hand."""


def federation_config(out: Path, touched: Path) -> dict[str, Any]:
    """The tests' federation: digits over 2 clients, 3 rounds of FedProx, a recording server and client callback."""
    return {
        "seed": 0,
        "rounds": 3,
        "output_dir": str(out),
        "threads": 1,
        "data": {
            "type": "lb_app_parts:touched_digits",
            "args": {"touched": str(touched)},
            "num_clients": 2,
            "partition": {"type": "iid"},
        },
        "model": {"type": "mlp", "args": {"hidden": 16, "lr": 0.1}},
        "clients": {"per_round": 2, "local_epochs": 1, "min_clients": 1},
        "strategy": {"type": "fedprox", "args": {"mu": 0.01}},  # its proximal term travels in each message
        "backend": {"type": "flower", "args": {"timeout": 120, "discovery_timeout": 60}},
        "trainer": {"accelerator": "cpu"},
        "callbacks": [{"type": "lb_app_parts:HookRecorder", "args": {"path": "hooks.jsonl"}}],
        "client_callbacks": [{"type": "lb_app_parts:FitCounter"}],
    }


def write_yaml(path: Path, config: dict[str, Any]) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_sequential(config: dict[str, Any], app: Path, where: Path) -> Path:
    """Run ``config`` in this process with the CLI's engine (``backend`` as given), outputs under ``where``."""
    from federated.app import prepare_run

    config = {**config, "output_dir": str(where / "out")}
    config["data"] = {**config["data"], "args": {**config["data"]["args"], "touched": str(where / "touched")}}
    path = write_yaml(where / "fed.yaml", config)
    sys.path.insert(0, str(app))  # lb_app_parts
    try:
        prepare_run(str(path)).execute()
    finally:
        sys.path.remove(str(app))
    return where / "out"


def hooks(out: Path) -> list[dict[str, Any]]:
    """The hooks ``HookRecorder`` wrote under ``out``, in order."""
    return [json.loads(line) for line in (out / "hooks.jsonl").read_text().splitlines()]


def touched_by(folder: Path) -> set[tuple[str, int]]:
    """``(program, client id)`` of every process that read a client's samples."""
    found = set()
    for entry in folder.glob("read-*"):
        program, _, client = entry.name.removeprefix("read-").rsplit("-", 2)
        found.add((program, int(client.removeprefix("client"))))
    return found


def data_calls(folder: Path) -> set[tuple[str, str]]:
    """``(program, site)`` of every call of the data function: site ``all``, ``server`` or ``client<id>``."""
    found = set()
    for entry in folder.glob("call-*"):
        program, _, site = entry.name.removeprefix("call-").rsplit("-", 2)
        found.add((program, site))
    return found


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    """The helpers above, for the test modules (a conftest is not importable under ``--import-mode=importlib``)."""
    return SimpleNamespace(
        Federation=Federation, config=federation_config, write_yaml=write_yaml, write_app=write_app,
        run_sequential=run_sequential, hooks=hooks, touched_by=touched_by, data_calls=data_calls, wait_for=wait_for,
        runner_settings=RUNNER_SETTINGS, site_file=SITE_FILE,
    )
