"""Rounds to a target accuracy under client drift: SCAFFOLD against FedAvg (and FedProx, FedNova).

The scikit-learn digits split over 20 clients by a Dirichlet(0.1) draw of each class's samples
(most clients hold two or three classes), 10 clients sampled per round, 5 local epochs of SGD
(the built-in MLP 64-128-10, lr 0.1, batch 32), one torch thread, seeds fixed. Printed for each
strategy: the first round whose server-side test accuracy reaches ``--target`` (0.90), the best
accuracy and the last one. SCAFFOLD's headline (Karimireddy et al., 2020) is that its control
variates undo the drift that many local steps on skewed data cause, so it needs fewer rounds.

    python benchmarks/scaffold_rounds.py [--rounds 60] [--target 0.9] [--seed 0]
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from federated import MLP, FedAvg, FederatedTrainer, FedNova, FedProx, Scaffold, digits_federation
from federated.client.trainer_args import quiet_lightning

CLIENTS, PER_ROUND, EPOCHS, ALPHA = 20, 10, 5, 0.1


def rounds_to(strategy: Any, rounds: int, target: float, seed: int) -> tuple[int | None, float, float]:
    """The first round at ``target`` accuracy (``None`` if never), the best accuracy and the last."""
    loaders, test = digits_federation(num_clients=CLIENTS, partition="dirichlet", alpha=ALPHA, seed=seed)
    torch.manual_seed(seed)
    fed = FederatedTrainer(
        MLP(), loaders, test, rounds=rounds, clients_per_round=PER_ROUND, local_epochs=EPOCHS, strategy=strategy,
        seed=seed,
    )
    accuracy = [r.metrics["accuracy"] for r in fed.fit().history]
    first = next((i + 1 for i, a in enumerate(accuracy) if a >= target), None)
    return first, max(accuracy), accuracy[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, kind, default in (("--rounds", int, 60), ("--target", float, 0.9), ("--seed", int, 0)):
        parser.add_argument(flag, type=kind, default=default)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"digits, {CLIENTS} clients Dirichlet({ALPHA}), {PER_ROUND} per round, {EPOCHS} local epochs, "
          f"seed {args.seed}: rounds to accuracy {args.target}")
    strategies = {"fedavg": FedAvg(), "scaffold": Scaffold(), "fedprox (mu 0.01)": FedProx(), "fednova": FedNova()}
    for name, strategy in strategies.items():
        with quiet_lightning():
            first, best, last = rounds_to(strategy, args.rounds, args.target, args.seed)
        reached = f"{first:>3d}" if first is not None else f"not in {args.rounds}"
        print(f"{name:<18} rounds {reached}   best {best:.3f}   last {last:.3f}", flush=True)


if __name__ == "__main__":
    main()
