"""Per-client overhead of FederatedTrainer against a hand-written PyTorch FedAvg loop.

The same federation runs both ways in this process: scikit-learn digits split IID over K clients,
an MLP 64-128-10, SGD (lr 0.1), batch 32, one local epoch, every client in every round, global
evaluation on the test split after each round. K=10 for 5 rounds and K=50 for 3 rounds. Prints the
median wall time of each over the repeats, their ratio, and the overhead per client fit in ms.
A second table splits one client fit: the raw PyTorch epoch, a bare ``lightning.Trainer.fit``
(reused trainer, nothing of this project), and FederatedTrainer's whole round divided by its fits.

    python benchmarks/round_overhead.py [--repeats 5] [--threads 1]

``--big-clients`` runs instead 10 clients of 2000 samples against a naive loop of a fresh
``lightning.Trainer(...).fit`` per client, with and without server evaluation
(``benchmarks/big_clients.py``); ``--threads-report`` prints the threads each loop runs.

Small models on few cores run faster with one intra-op thread, and timings vary less; both loops
use the same setting.
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import time
import warnings
from collections.abc import Callable, Sequence

import torch
from torch.nn import functional as F  # noqa: N812 - the usual alias
from torch.utils.data import DataLoader

from federated import MLP, FederatedTrainer, digits_federation

SETUPS = ((10, 5), (50, 3))  # (clients, rounds)
LR = 0.1


def make_model(seed: int) -> MLP:
    torch.manual_seed(seed)
    return MLP(in_features=64, hidden=128, num_classes=10, lr=LR)


def run_federated(loaders: Sequence[DataLoader], test: DataLoader, rounds: int, seed: int) -> float:
    fed = FederatedTrainer(
        make_model(seed), loaders, test, rounds=rounds, clients_per_round=len(loaders), seed=seed
    )
    start = time.perf_counter()
    fed.fit()
    return time.perf_counter() - start


def run_raw(loaders: Sequence[DataLoader], test: DataLoader, rounds: int, seed: int) -> float:
    """FedAvg in plain PyTorch: what the federated loop does, minus Lightning and the callbacks."""
    global_model = make_model(seed).net
    start = time.perf_counter()
    worker = copy.deepcopy(global_model)
    weights = {k: v.detach().clone() for k, v in global_model.state_dict().items()}
    for round_num in range(1, rounds + 1):
        sums = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in weights.items()}
        total, loss_sum = 0, 0.0
        for client_id, loader in enumerate(loaders):
            worker.load_state_dict(weights)
            torch.manual_seed(seed * 1_000_003 + round_num * 1009 + client_id)
            optimizer = torch.optim.SGD(worker.parameters(), lr=LR)
            epoch_loss = torch.zeros(())
            for x, y in loader:
                optimizer.zero_grad()
                loss = F.cross_entropy(worker(x), y)
                loss.backward()
                optimizer.step()
                epoch_loss += loss.detach() * len(y)
            n = len(loader.dataset)  # type: ignore[arg-type]
            for k, v in worker.state_dict().items():
                sums[k].add_(v.detach().clone(), alpha=n)
            total += n
            loss_sum += float(epoch_loss)
        weights = {k: (s / total).to(weights[k].dtype) for k, s in sums.items()}
        global_model.load_state_dict(weights)
        correct, seen = 0, 0
        with torch.no_grad():
            for x, y in test:
                logits = global_model(x)
                F.cross_entropy(logits, y)
                correct += int((logits.argmax(1) == y).sum())
                seen += len(y)
    return time.perf_counter() - start


def median_time(fn: Callable[[], float], repeats: int) -> float:
    return statistics.median(fn() for _ in range(repeats))


def per_fit_ms(loaders: Sequence[DataLoader], repeats: int) -> tuple[float, float]:
    """Median ms of one client epoch in raw PyTorch, and of one bare Lightning fit on a reused Trainer."""
    from lightning.pytorch import Trainer

    from federated.client.trainer_args import CLIENT_TRAINER_DEFAULTS, fresh_fit_loop, quiet_lightning

    model = make_model(0)
    net = copy.deepcopy(model.net)
    raw, bare = [], []
    kwargs = {**CLIENT_TRAINER_DEFAULTS, "max_epochs": 1}
    with quiet_lightning():
        trainer = Trainer(**kwargs)
        for _ in range(repeats):
            for loader in loaders:
                start = time.perf_counter()
                optimizer = torch.optim.SGD(net.parameters(), lr=LR)
                for x, y in loader:
                    optimizer.zero_grad()
                    F.cross_entropy(net(x), y).backward()
                    optimizer.step()
                raw.append(time.perf_counter() - start)
                start = time.perf_counter()
                fresh_fit_loop(trainer, kwargs)
                trainer.fit(model, loader)
                bare.append(time.perf_counter() - start)
    return statistics.median(raw) * 1e3, statistics.median(bare) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: leave as is)")
    parser.add_argument("--big-clients", action="store_true", help="10 clients x 2000 samples against naive Lightning")
    parser.add_argument("--threads-report", action="store_true", help="the threads alive during each loop's fits")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("federated").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    if args.threads_report or args.big_clients:
        from big_clients import big_clients, threads_report

        if args.threads_report:
            threads_report()
        else:
            big_clients(args.repeats)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), median of {args.repeats} repeats")
    print(f"{'clients':>7} {'rounds':>6} {'raw s':>8} {'federated s':>12} {'ratio':>6} {'overhead/fit ms':>16}")
    splits: list[tuple[int, float, float, float]] = []
    for clients, rounds in SETUPS:
        loaders, test = digits_federation(num_clients=clients, partition="iid", batch_size=32, seed=0)
        run_federated(loaders, test, 1, seed=0)  # warm-up: imports, first Trainer, allocator
        run_raw(loaders, test, 1, seed=0)
        fed = median_time(lambda: run_federated(loaders, test, rounds, seed=0), args.repeats)  # noqa: B023
        raw = median_time(lambda: run_raw(loaders, test, rounds, seed=0), args.repeats)  # noqa: B023
        per_fit = (fed - raw) / (clients * rounds) * 1e3
        print(f"{clients:>7} {rounds:>6} {raw:>8.3f} {fed:>12.3f} {fed / raw:>6.2f} {per_fit:>16.2f}")
        splits.append((clients, *per_fit_ms(loaders, args.repeats), fed / (clients * rounds) * 1e3))
    print("\none client fit, ms (median)")
    print(f"{'clients':>7} {'raw epoch':>10} {'bare Lightning fit':>19} {'FederatedTrainer':>17}")
    for clients, raw_ms, bare_ms, fed_ms in splits:
        print(f"{clients:>7} {raw_ms:>10.2f} {bare_ms:>19.2f} {fed_ms:>17.2f}")


if __name__ == "__main__":
    main()
