"""Record-level DP-SGD in a ``lightning.Trainer`` fit, with Opacus: clipped, noised steps and their privacy account."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback as LightningCallback
from torch.utils.data import DataLoader
from typing_extensions import override

from callbacks import ArgumentError
from callbacks.arguments import check_number, echo
from lightning_bridge.metrics import EPSILON, EPSILON_NEXT

try:
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis import rdp as rdp_analysis
    from opacus.data_loader import DPDataLoader
    from opacus.grad_sample import GradSampleHooks
    from opacus.optimizers import DPOptimizer
    from opacus.validators import ModuleValidator
except ImportError as exc:  # pragma: no cover - the privacy extra is missing
    raise ImportError(f"DP-SGD needs Opacus: pip install 'lightning-bridge[privacy]' ({exc})") from exc

if TYPE_CHECKING:
    from torch.optim import Optimizer

__all__ = ["DPSGD", "check_private_model", "epsilon_of"]

History = list[tuple[float, float, int]]
"""An RDP account: ``(noise_multiplier, sample_rate, steps)`` runs of steps, as Opacus's ``RDPAccountant`` keeps it."""


class DPSGD(LightningCallback):
    """Trains the LightningModule with DP-SGD (Abadi et al., 2016): per-sample clipping, Gaussian noise, an account.

    At the start of each fit the module's training is made private with Opacus: its grad-sample
    hooks compute per-sample gradients on the module itself (no wrapper: ``state_dict`` keeps the
    model's own names), the optimizer ``configure_optimizers`` built becomes an Opacus
    ``DPOptimizer`` (each sample's gradient clipped to ``max_grad_norm``, Gaussian noise of standard
    deviation ``noise_multiplier * max_grad_norm`` added to their sum, divided by the expected batch
    size), and with ``poisson_sampling`` the train loader becomes an Opacus ``DPDataLoader`` (each
    sample in each batch with probability ``1 / len(loader)``, the same number of batches). Every
    step is counted in the callback's own RDP account, which goes on across fits and is saved in
    Lightning checkpoints (:meth:`state_dict`). The hooks come off at the end of the fit (also a
    failed one), so the same module can be made private again by the next fit.

    At the end of each training epoch the module logs ``dp/epsilon``, the epsilon spent so far at
    ``delta``, and ``dp/epsilon_next``, what one more epoch of the same steps would bring it to (a
    budget callback stops before passing its budget): Lightning's ``callback_metrics``, and the
    native callbacks' ``logs`` through :class:`~lightning_bridge.LightningCallbackAdapter`. The
    noise and the Poisson draws come from generators of their own, seeded at fit start by a draw
    from torch's global generator: ``lightning.seed_everything`` makes a fit repeat exactly.

    The module must compute its loss as a mean over the batch, train with one optimizer without
    gradient accumulation, on one device, and hold only layers Opacus supports (no BatchNorm: use
    GroupNorm); the loader's batch size sets the sampling rate. A hook that changes the gradients in
    ``on_before_optimizer_step`` runs before the clipping and noise, which replace them.

    Args:
        noise_multiplier: The noise's standard deviation over ``max_grad_norm``, ``>= 0`` (``0``:
            clipping only, and an infinite epsilon).
        max_grad_norm: The L2 norm each sample's gradient is clipped to, ``> 0``.
        delta: The delta the epsilon is reported at, in ``(0, 1)``; below one over the number of
            training samples.
        poisson_sampling: Draw each batch by Poisson sampling, which the account assumes; ``False``
            keeps the loader's own batches (the account then overstates the privacy). Defaults to ``True``.

    Raises:
        ArgumentError: An argument out of range; at fit start, a model Opacus cannot train
            (its offending layer named), several optimizers, gradient accumulation, several devices or a
            loss-scaling precision (``16-mixed`` on a GPU).

    Example:
        >>> dp = DPSGD(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5)
        >>> dp.epsilon, dp.steps
        (0.0, 0)
    """

    def __init__(self, noise_multiplier: float, max_grad_norm: float, delta: float, poisson_sampling: bool = True):
        self.noise_multiplier = float(check_number("noise_multiplier", noise_multiplier, low=0.0))
        self.max_grad_norm = float(check_number("max_grad_norm", max_grad_norm, low=0.0, low_open=True))
        self.delta = float(check_number("delta", delta, low=0.0, high=1.0, low_open=True, high_open=True))
        if not isinstance(poisson_sampling, bool):
            raise ArgumentError("poisson_sampling", f"must be true or false, got {echo(poisson_sampling)}")
        self.poisson_sampling = poisson_sampling
        self.accountant = RDPAccountant()
        self._hooks: GradSampleHooks | None = None
        self._optimizers: list[Optimizer] = []
        self._sample_rate = 0.0
        self._epoch_start_steps = 0
        self._logged = False

    @property
    def history(self) -> History:
        """The account so far: ``(noise_multiplier, sample_rate, steps)`` runs, oldest first."""
        return list(self.accountant.history)

    @property
    def steps(self) -> int:
        """The private steps taken so far, over every fit."""
        return sum(int(steps) for _, _, steps in self.accountant.history)

    @property
    def epsilon(self) -> float:
        """The epsilon spent so far at ``delta`` (``0.0`` before the first step)."""
        return epsilon_of(self.accountant.history, self.delta)

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(
            noise_multiplier=self.noise_multiplier, max_grad_norm=self.max_grad_norm, delta=self.delta
        )

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        check_private_model(pl_module)
        if trainer.world_size != 1:
            raise ArgumentError("trainer", f"{trainer.world_size} processes; DP-SGD here trains on one device")
        if getattr(trainer.precision_plugin, "scaler", None) is not None:  # 16-mixed on a GPU: scaled per-sample grads
            raise ArgumentError(
                "precision",
                f"{trainer.precision} scales the loss, which the per-sample clipping would see; use bf16-mixed or 32",
            )
        if trainer.accumulate_grad_batches != 1:
            raise ArgumentError(
                "accumulate_grad_batches",
                f"{trainer.accumulate_grad_batches}; DP-SGD takes one private step per batch: leave it at 1",
            )

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        optimizers = list(trainer.optimizers)
        if len(optimizers) != 1:
            raise ArgumentError("model", f"configure_optimizers gave {len(optimizers)} optimizers; DP-SGD takes one")
        loader = self._private_loader(trainer)
        self._sample_rate = loader.sample_rate if isinstance(loader, DPDataLoader) else 1 / len(loader)
        expected_batch_size = max(1, int(len(loader.dataset) * self._sample_rate))  # type: ignore[arg-type]
        self._hooks = GradSampleHooks(pl_module, batch_first=True, loss_reduction="mean")
        private = DPOptimizer(
            optimizers[0],
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=self.max_grad_norm,
            expected_batch_size=expected_batch_size,
            loss_reduction="mean",
            generator=seeded_generator(next(pl_module.parameters()).device),
        )
        private.attach_step_hook(self.accountant.get_optimizer_hook_fn(sample_rate=self._sample_rate))
        self._optimizers = optimizers
        trainer.optimizers = [private]

    @override
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._epoch_start_steps = self.steps
        self._logged = False

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # logged at the epoch's last batch, as an epoch metric: every callback's on_train_epoch_end sees it
        if batch_idx + 1 >= trainer.num_training_batches:
            self.log_epsilon(pl_module)

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._logged:  # an epoch cut short (a stop asked for in a batch): the callbacks after this one see it
            self.log_epsilon(pl_module)

    def log_epsilon(self, pl_module: LightningModule) -> None:
        """Log ``dp/epsilon`` and ``dp/epsilon_next`` (this epoch's steps once more) as epoch metrics of the module."""
        steps = self.steps - self._epoch_start_steps
        spent = self.epsilon
        following = [*self.history, (self.noise_multiplier, self._sample_rate, steps)] if steps else self.history
        for name, value in ((EPSILON, spent), (EPSILON_NEXT, epsilon_of(following, self.delta))):
            pl_module.log(name, torch.tensor(value, dtype=torch.float64), on_step=False, on_epoch=True, batch_size=1)
        self._logged = True

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self._release(trainer)

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._release(trainer)  # Lightning calls no teardown hook after an exception

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"history": [[float(nm), float(q), int(n)] for nm, q, n in self.accountant.history]}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.accountant.history = [(float(nm), float(q), int(n)) for nm, q, n in state_dict.get("history", [])]

    def _private_loader(self, trainer: Trainer) -> DataLoader:
        """The fit's train loader, Poisson-sampled with ``poisson_sampling``; the fit trains on what this returns.

        Lightning 2.6 has no public way for a callback to replace the train loader of a fit under
        way: the loader comes from the fit loop's ``_data_source``, read once after ``on_fit_start``,
        and every ``Trainer.fit`` sets it anew from its arguments. Its ``instance`` takes the loader.
        """
        source = trainer.fit_loop._data_source
        loader = source.dataloader()
        if not isinstance(loader, DataLoader) or not hasattr(loader.dataset, "__len__"):
            raise ArgumentError(
                "train_dataloaders",
                f"DP-SGD trains on one torch DataLoader over a sized dataset, got {type(loader).__name__}",
            )
        if self.poisson_sampling and not isinstance(loader, DPDataLoader):
            loader = DPDataLoader.from_data_loader(loader, generator=seeded_generator("cpu"))
        elif isinstance(loader, DPDataLoader):  # one made already (DPLightningDataModule's): its draws seeded too
            loader.batch_sampler.generator = seeded_generator("cpu")
        source.instance = loader
        return loader

    def _release(self, trainer: Trainer) -> None:
        """Take the grad-sample hooks off the module and give the trainer its own optimizer back."""
        if self._hooks is not None:
            self._hooks.cleanup()
            self._hooks = None
        if self._optimizers:
            trainer.optimizers = self._optimizers
            self._optimizers = []

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_hooks": None, "_optimizers": []}  # what one fit attached: nothing elsewhere


def epsilon_of(history: History, delta: float) -> float:
    """The epsilon of an RDP account at ``delta``, as Opacus's ``RDPAccountant`` computes it; ``0.0`` when empty.

    The RDP of ``n`` steps is ``n`` times that of one, which is computed once per ``(noise_multiplier,
    sample_rate)``: an epoch's report costs microseconds, not the accountant's tens of milliseconds.

    Example:
        >>> epsilon_of([], 1e-5)
        0.0
        >>> round(epsilon_of([(1.0, 0.01, 1000)], 1e-5), 3)
        2.101
    """
    if not history:
        return 0.0
    rdp = sum(np.asarray(_rdp_of_one_step(float(nm), float(q))) * int(n) for nm, q, n in history)
    epsilon, _ = rdp_analysis.get_privacy_spent(orders=RDPAccountant.DEFAULT_ALPHAS, rdp=rdp, delta=delta)
    return float(epsilon)


@functools.lru_cache(maxsize=256)
def _rdp_of_one_step(noise_multiplier: float, sample_rate: float) -> tuple[float, ...]:
    """The RDP of one step of the sampled Gaussian mechanism at each of Opacus's default orders."""
    one = rdp_analysis.compute_rdp(
        q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=RDPAccountant.DEFAULT_ALPHAS
    )
    return tuple(float(x) for x in one)


def seeded_generator(device: torch.device | str) -> torch.Generator:
    """A generator on ``device`` seeded by a draw from torch's global CPU generator.

    The noise (on the parameters' device) and the Poisson draws of a fit then follow the seed of
    the global generator at its start, which ``lightning.seed_everything`` and a federation's task
    seed set, whatever the device's own generator or the loader's held before.
    """
    seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    return torch.Generator(device=device).manual_seed(seed)


def check_private_model(module: torch.nn.Module) -> None:
    """Refuse a model with a layer Opacus cannot train privately, naming the first such layer and the fix.

    Raises:
        ArgumentError: ``model`` holds such a layer (BatchNorm: use GroupNorm).
    """
    for name, layer in module.named_modules():
        validator = next((v for kind, v in ModuleValidator.VALIDATORS.items() if isinstance(layer, kind)), None)
        if validator is None or not any(p.requires_grad for p in layer.parameters(recurse=False)):
            continue
        errors = validator(layer)
        if not errors:
            continue
        kind = type(layer).__name__
        if "BatchNorm" in kind:
            fix = "replace it with nn.GroupNorm (opacus.validators.ModuleValidator.fix(model) does it)"
        else:
            fix = "replace it with the layer opacus.validators.ModuleValidator.fix(model) puts in its place"
        reason = str(errors[0]).split(". ")[0].strip()
        raise ArgumentError("model", f"its layer `{name}` ({kind}) cannot train with DP-SGD ({reason}); {fix}")
