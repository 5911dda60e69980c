"""Cost of the four DP-FedAvg wrappers, with their privacy account, against the bare unweighted FedAvg.

Two measurements, each a ratio of medians against a baseline run in this process, the runs of each
repeat interleaved so that a slower machine slows them all. Each time is taken twice: wall time,
and this process's CPU time (``time.process_time``), which other processes disturb less.

1. A federation's round: scikit-learn digits split IID over 50 clients, 10 sampled per round, the
   built-in MLP 64-128-10 (SGD, lr 0.1, batch 32, one local epoch), server evaluation after each
   round, for ``--rounds`` rounds; ``FedAvg(weighted=False)`` alone against each wrapper around it,
   with ``delta`` (so each round also computes ``privacy/epsilon`` and ``privacy/epsilon_next``).
   Noise multiplier 1, clipping norm 0.5 (the adaptive ones' initial norm; their noisy count at
   standard deviation 1). Printed: the median time per round, its ratio to the baseline's, and the
   extra ms per round; apart, the account's one-time setup (the RDP of one round, which
   dp-accounting computes once per setting and the wrappers cache) and its cost per round.
2. Aggregation alone: ``begin_round``, ``accumulate`` of 10 client updates and ``finish_round`` on
   synthetic float32 updates of the MLP's size (9,610 parameters: part 1's aggregation) and of
   about 1M parameters (two linear layers 1024x512), every update 100 times the clipping norm, so
   that the server-side wrappers clip each one (the dearest case). The client-side wrappers only
   count the clients' ``clipped`` bits here: their clipping runs in the clients' fits, which part 1
   includes.

    python benchmarks/dp_wrappers.py [--repeats 5] [--rounds 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from federated import MLP, FedAvg, FederatedTrainer, Strategy, digits_federation
from federated.client.trainer_args import quiet_lightning
from federated.messages import ClientUpdate, StateDict
from federated.privacy import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    PrivacyAccount,
    UpdateClipping,
)

CLIENTS, PER_ROUND, NOISE, CLIP, DELTA = 50, 10, 1.0, 0.5, 1e-4
MODELS: dict[str, dict[str, tuple[int, ...]]] = {
    "the MLP of part 1": {name: tuple(t.shape) for name, t in MLP().state_dict().items()},
    "two layers 1024x512": {
        "fc1.weight": (1024, 512), "fc1.bias": (1024,), "fc2.weight": (512, 1024), "fc2.bias": (512,)
    },
}
"""The state dicts aggregated in part 2, by name: shapes of float32 tensors."""

STRATEGIES: dict[str, Callable[[], Strategy]] = {
    "FedAvg(weighted=False)": lambda: FedAvg(weighted=False),
    "ServerSideFixedClipping": lambda: DifferentialPrivacyServerSideFixedClipping(
        FedAvg(weighted=False), NOISE, CLIP, delta=DELTA
    ),
    "ClientSideFixedClipping": lambda: DifferentialPrivacyClientSideFixedClipping(
        FedAvg(weighted=False), NOISE, CLIP, delta=DELTA
    ),
    "ServerSideAdaptiveClipping": lambda: DifferentialPrivacyServerSideAdaptiveClipping(
        FedAvg(weighted=False), NOISE, initial_clipping_norm=CLIP, clipped_count_stddev=1.0, delta=DELTA
    ),
    "ClientSideAdaptiveClipping": lambda: DifferentialPrivacyClientSideAdaptiveClipping(
        FedAvg(weighted=False), NOISE, initial_clipping_norm=CLIP, clipped_count_stddev=1.0, delta=DELTA
    ),
}
"""The baseline first, then the four wrappers around the same unweighted mean."""


Timing = tuple[float, float]
"""Wall and CPU seconds."""


def clock() -> Timing:
    return time.perf_counter(), time.process_time()


def since(start: Timing, per: int = 1) -> Timing:
    wall, cpu = clock()
    return (wall - start[0]) / per, (cpu - start[1]) / per


def run_federation(
    make: Callable[[], Strategy], loaders: Sequence[Any], test: DataLoader | None, rounds: int
) -> Timing:
    """Wall and CPU seconds per round of ``fit`` for ``rounds`` rounds (the model built before the clock starts)."""
    torch.manual_seed(0)
    fed = FederatedTrainer(
        MLP(), loaders, test, rounds=rounds, clients_per_round=PER_ROUND, strategy=make(), seed=0, on_error="raise"
    )
    start = clock()
    fed.fit()
    return since(start, rounds)


def federation_table(repeats: int, rounds: int) -> None:
    loaders, test = digits_federation(num_clients=CLIENTS, partition="iid", batch_size=32, seed=0)
    for make in STRATEGIES.values():  # warm-up: imports, the first Trainer, the account's cached RDP
        run_federation(make, loaders, test, 1)
    times: dict[str, list[Timing]] = {name: [] for name in STRATEGIES}
    for _ in range(repeats):
        for name, make in STRATEGIES.items():
            times[name].append(run_federation(make, loaders, test, rounds))
    print(f"\n1. a federation's round: digits, {CLIENTS} clients, {PER_ROUND} per round, MLP 64-128-10, "
          f"{rounds} rounds")
    _print_ratios(times)
    start = time.perf_counter()
    account = PrivacyAccount(NOISE, CLIENTS + 1, PER_ROUND, DELTA)  # a setting whose RDP is not computed yet
    print(f"the account's one-time setup (RDP of one round, per setting): {(time.perf_counter() - start) * 1e3:.0f} ms")
    start = time.perf_counter()
    for rounds in range(1, 101):  # what a round adds: epsilon after it and after one more
        account.epsilon(rounds), account.epsilon(rounds + 1)
    print(f"the account's cost per round (two epsilon() calls): {(time.perf_counter() - start) * 10:.2f} ms")


def synthetic_round(
    shapes: dict[str, tuple[int, ...]], seed: int
) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """The global weights and 10 clients' weights, each update of norm 100 times the clipping norm."""
    generator = torch.Generator().manual_seed(seed)
    start = {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}
    size = sum(t.numel() for t in start.values())
    scale = 100 * CLIP / size**0.5  # a coordinate's std for an update of norm ~100 C
    clients = [
        {name: t + scale * torch.randn(t.shape, generator=generator) for name, t in start.items()}
        for _ in range(PER_ROUND)
    ]
    return start, clients


def aggregate_once(strategy: Strategy, round_num: int, start: StateDict, clients: Sequence[StateDict]) -> Timing:
    """Wall and CPU seconds of one round's aggregation: begin_round, accumulate each update, finish_round."""
    client_side = getattr(strategy, "client_side", False)
    payload: dict[str, Any] = {UpdateClipping.name: {"clipped": True}} if client_side else {}
    updates = [
        ClientUpdate(client_id=i, num_samples=1, weights=dict(weights), payload=dict(payload))
        for i, weights in enumerate(clients)
    ]
    torch.manual_seed(round_num)  # the round loop seeds the noise's generator before aggregating
    begin = clock()
    strategy.begin_round(round_num, start)
    for update in updates:
        strategy.accumulate(update)
    strategy.finish_round()
    strategy.round_metrics()
    return since(begin)


def aggregation_table(repeats: int, model: str) -> None:
    start, clients = synthetic_round(MODELS[model], 0)
    strategies = {name: make() for name, make in STRATEGIES.items()}
    for strategy in strategies.values():
        strategy.begin_federation(num_clients=CLIENTS, clients_per_round=PER_ROUND)
        aggregate_once(strategy, 0, start, clients)  # warm-up
    times: dict[str, list[Timing]] = {name: [] for name in STRATEGIES}
    for repeat in range(1, repeats + 1):
        for name, strategy in strategies.items():
            times[name].append(aggregate_once(strategy, repeat, start, clients))
    size = sum(t.numel() for t in start.values())
    print(f"\n2. aggregation alone, {model}: {PER_ROUND} updates of {size:,} float32 parameters, "
          "each clipped on the server side")
    _print_ratios(times)


def _print_ratios(times: dict[str, list[Timing]]) -> None:
    medians = {name: [statistics.median(t[i] for t in values) for i in (0, 1)] for name, values in times.items()}
    base = medians[next(iter(STRATEGIES))]
    print(f"{'':<28} {'wall':-^33} {'CPU':-^33}")
    print(f"{'strategy':<28}" + f" {'ms/round':>9} {'ratio':>6} {'extra ms/round':>15}" * 2)
    for name, median in medians.items():
        cells = (f" {m * 1e3:>9.2f} {m / b:>6.2f} {(m - b) * 1e3:>15.2f}" for m, b in zip(median, base, strict=True))
        print(f"{name:<28}" + "".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: leave as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("federated").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), median of {args.repeats} repeats; "
          f"noise multiplier {NOISE}, clipping norm {CLIP}, delta {DELTA}")
    with quiet_lightning():
        federation_table(args.repeats, args.rounds)
    for model in MODELS:
        aggregation_table(args.repeats, model)


if __name__ == "__main__":
    main()
