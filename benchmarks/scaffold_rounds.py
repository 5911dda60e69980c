"""Rounds to a target accuracy under client drift: SCAFFOLD against FedAvg (and FedProx, FedNova).

The scikit-learn digits split over 20 clients by a Dirichlet(0.1) draw of each class's samples
(most clients hold two or three classes), 10 clients sampled per round, 5 local epochs of SGD
(the built-in MLP 64-128-10, lr 0.1, batch 32), one torch thread. Printed for each strategy and
seed (the partition, the model and the client draws): the first round whose server-side test
accuracy reaches ``--target`` (0.90), and the median over the seeds. SCAFFOLD's headline
(Karimireddy et al., 2020) is that its control variates undo the drift that many local steps on
skewed data cause, so that it needs fewer rounds.

    python benchmarks/scaffold_rounds.py [--rounds 40] [--target 0.9] [--seeds 3]
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import torch

from federated import MLP, FedAvg, FederatedTrainer, FedNova, FedProx, Scaffold, digits_federation
from federated.client.trainer_args import quiet_lightning

CLIENTS, PER_ROUND, EPOCHS, ALPHA = 20, 10, 5, 0.1


def rounds_to(strategy: Any, rounds: int, target: float, seed: int) -> int | None:
    """The first round at ``target`` accuracy, ``None`` if none of ``rounds`` gets there."""
    loaders, test = digits_federation(num_clients=CLIENTS, partition="dirichlet", alpha=ALPHA, seed=seed)
    torch.manual_seed(seed)
    fed = FederatedTrainer(
        MLP(), loaders, test, rounds=rounds, clients_per_round=PER_ROUND, local_epochs=EPOCHS, strategy=strategy,
        seed=seed,
    )
    accuracy = [r.metrics["accuracy"] for r in fed.fit().history]
    return next((i + 1 for i, a in enumerate(accuracy) if a >= target), None)


STRATEGIES: dict[str, Any] = {
    "fedavg": FedAvg,
    "fedavg (unweighted)": lambda: FedAvg(weighted=False),
    "scaffold": Scaffold,
    "scaffold (unweighted)": lambda: Scaffold(weighted=False),
    "fedprox (mu 0.01)": FedProx,
    "fednova": FedNova,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, kind, default in (("--rounds", int, 40), ("--target", float, 0.9), ("--seeds", int, 3)):
        parser.add_argument(flag, type=kind, default=default)
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = range(args.seeds)
    print(f"digits, {CLIENTS} clients Dirichlet({ALPHA}), {PER_ROUND} per round, {EPOCHS} local epochs: "
          f"rounds to accuracy {args.target} (seeds {', '.join(map(str, seeds))}; {args.rounds + 1}: never)")
    for name, make in STRATEGIES.items():
        with quiet_lightning():
            reached = [rounds_to(make(), args.rounds, args.target, seed) or args.rounds + 1 for seed in seeds]
        print(f"{name:<22} {' '.join(f'{r:>3d}' for r in reached)}   median {statistics.median(reached):g}", flush=True)


if __name__ == "__main__":
    main()
