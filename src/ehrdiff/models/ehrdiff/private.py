"""Differentially private training of EHRDiff: DP-SGD (Abadi et al. 2016) with Poisson sampling, per-example
clipping, Gaussian noise and Opacus's privacy accountant, with several noise draws per example (DPDM, Dockhorn
et al. 2022, "augmentation multiplicity").

One step s:
  1. Poisson sampling: each training row joins the batch independently with probability q = batch_size / n_rows
     (the draw is seeded by (secret seed, s), ehrdiff.privacy.secret: not the run's saved seed, which would let
     anyone holding the model folder redraw it; a resumed run reads the secret kept next to its checkpoints);
  2. each sampled row's loss is the mean of the EDM loss over K (sigma, noise) draws, and its gradient is ONE
     per-example gradient (its norm from the layers' inputs and output gradients, ``ClippedGradientSum``;
     checked against torch.func's per-example gradients, ``PerExampleGradients``);
  3. each per-example gradient is clipped to norm at most C (max_grad_norm);
  4. the clipped gradients are summed (over processes too, under torch.distributed), Gaussian noise
     N(0, (noise_multiplier C)^2) is added once, and the sum is divided by the expected batch size q n_rows;
  5. AdamW, learning-rate schedule and EMA as in the ordinary loop (post-processing: no privacy cost).

Each row changes the sum by at most C per step however many draws it gets, so the sampled Gaussian mechanism's
accounting holds: the noise multiplier is found with ``opacus.accountants.utils.get_noise_multiplier`` for the
target (epsilon, delta), q and the number of steps, and the epsilon actually spent is read back from the same
accountant. Opacus is an optional dependency (``pip install ehrdiff[dp]``), imported only here and lazily.

The per-example loss is EDM's weighted squared error written with plain operations, and the network runs its
plain forward (``plain=True``: module hooks and torch.func cannot look inside the hand-written fused training path).
The step is a strategy of the one training loop (``PrivateStep``, run by ehrdiff.training.run_steps).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from ehrdiff.diffusion.bernoulli import BernoulliDenoiser
from ehrdiff.diffusion.preconditioning import c_in, c_noise, c_out, c_skip, training_sigma
from ehrdiff.errors import EhrdiffError
from ehrdiff.models.ehrdiff.conditioning import drop_labels, n_classes
from ehrdiff.models.ehrdiff.config import PrivacySettings
from ehrdiff.privacy.accounting import MAX_NOISE_MULTIPLIER, require_opacus
from ehrdiff.privacy.secret import noise_seed
from ehrdiff.training import AdamWithEMA, BatchNoise, DistContext, StepLog, TrainSettings, step_seed

log = logging.getLogger(__name__)

CHUNK_ROWS = 256                   # examples per forward/backward pass (memory: CHUNK_ROWS x K rows)
_POISSON_STREAM, _DP_NOISE_STREAM = 101, 102     # per-step seed streams (ehrdiff.training.randomness uses 1 and 2)


# ---- accounting ----------------------------------------------------------------------------------------------
def sample_rate(batch_size: int, n_rows: int) -> float:
    if batch_size > n_rows:
        raise EhrdiffError(f"DP training needs batch size <= rows ({batch_size} > {n_rows}): the expected batch "
                           "is batch_size rows out of n_rows; lower --batch-size")
    return batch_size / n_rows


def find_noise_multiplier(epsilon: float, delta: float, rate: float, steps: int, accountant: str = "rdp") -> float:
    """The smallest noise multiplier (to Opacus's tolerance) whose spent epsilon after ``steps`` steps at
    sampling rate ``rate`` is at most ``epsilon``; EhrdiffError when none is usable."""
    require_opacus()
    from opacus.accountants.utils import get_noise_multiplier

    why = (f"epsilon={epsilon:g}, delta={delta:g} cannot be reached in {steps} steps at sampling rate {rate:.4g}")
    # one accountant call at the largest usable noise settles an unreachable budget quickly (Opacus's own search
    # would double the noise up to 1e6 first, which takes minutes at large sampling rates)
    at_max = spent_epsilon(MAX_NOISE_MULTIPLIER, rate, steps, delta, accountant)
    if not at_max <= epsilon:
        raise EhrdiffError(f"{why}: even noise multiplier {MAX_NOISE_MULTIPLIER:g} spends epsilon {at_max:.3g}; "
                           "raise --epsilon or --delta, or train fewer steps or with a smaller batch")
    try:
        with warnings.catch_warnings():     # "optimal order is the largest alpha": the bound is valid, just loose
            warnings.simplefilter("ignore", UserWarning)
            sigma = float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=rate,
                                               steps=steps, accountant=accountant, epsilon_tolerance=0.01))
    except (ValueError, OverflowError, ZeroDivisionError, RuntimeError):
        raise EhrdiffError(f"{why}: no amount of noise suffices; raise --epsilon or --delta, or train fewer steps "
                           "or with a smaller batch") from None
    if not math.isfinite(sigma) or sigma > MAX_NOISE_MULTIPLIER:
        raise EhrdiffError(f"{why} with usable noise (it needs noise multiplier {sigma:.3g} > "
                           f"{MAX_NOISE_MULTIPLIER:g}); raise --epsilon, or train fewer steps or with a smaller batch")
    return sigma


def spent_epsilon(noise_multiplier: float, rate: float, steps: int, delta: float, accountant: str = "rdp") -> float:
    """Epsilon spent by ``steps`` sampled Gaussian steps, from Opacus's accountant."""
    require_opacus()
    from opacus.accountants import create_accountant

    acc = create_accountant(mechanism=accountant)
    acc.history = [(noise_multiplier, rate, steps)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(acc.get_epsilon(delta=delta))


# ---- per-example gradients -----------------------------------------------------------------------------------
class _PlainNet(nn.Module):
    """The denoiser's network through its plain forward (what torch.func can differentiate per example)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor, scale: torch.Tensor,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net.reference_forward(x, noise_level, scale, class_labels)


@dataclass
class LossShape:
    """EDM's loss settings (for :class:`PerExampleGradients`, which writes the loss out for torch.func)."""

    sigma_data: float
    P_mean: float
    P_std: float


class PerExampleGradients:
    """Per-example gradients of the K-draw mean EDM loss of a Denoiser, clipped to ``max_grad_norm``, with
    torch.func (vmap of grad): the explicit, slower form that tests check ``ClippedGradientSum`` against.

    ``rows`` (B, d) or, for a conditional model, (B, d + 1) with the class index last; ``draws`` holds the
    normal numbers of the step: "sigma" (B, K, 1), "noise" (B, K, d) and, when conditional, "drop" (B,)."""

    def __init__(self, denoiser: nn.Module, loss: LossShape, max_grad_norm: float,
                 condition: tuple[int, float] | None = None) -> None:
        self.plain = _PlainNet(denoiser.net)
        self.names = [n for n, _ in self.plain.named_parameters()]
        self.loss, self.max_grad_norm, self.condition = loss, float(max_grad_norm), condition
        if condition is not None and not n_classes(denoiser):
            raise ValueError("a condition was given but the network has no class embedding")
        from torch.func import grad, vmap
        self._grads = vmap(grad(self._example_loss, has_aux=True), in_dims=(None, None, 0, 0, 0, 0))

    def _example_loss(self, params, buffers, row, drop, sigma_normal, noise):
        from torch.func import functional_call

        sd, shape = self.loss.sigma_data, self.loss
        x = row[:noise.shape[-1]]
        sigma = training_sigma(sigma_normal, shape.P_mean, shape.P_std)        # (K, 1)
        noisy = x + sigma * noise                                             # (K, d)
        label = None
        if self.condition is not None:
            label = drop_labels(row[-1].round().long(), drop, *self.condition)
        f = functional_call(self.plain, (params, buffers), (noisy, c_noise(sigma).reshape(-1), c_in(sigma, sd), label))
        # EDM's weighted loss lambda ||D - x||^2 in its equivalent form ||F - target||^2 (Karras et al. eq. 8)
        target = (x - c_skip(sigma, sd) * noisy) / c_out(sigma, sd)
        loss = (f - target.detach()).square().mean()          # mean over the K draws and the d features
        return loss, loss.detach()

    def __call__(self, rows: torch.Tensor, draws: dict[str, torch.Tensor], clip: bool = True
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """({name: (B, *shape) per-example gradients, clipped when ``clip``}, (B,) per-example losses)."""
        params = {n: p.detach() for n, p in self.plain.named_parameters()}
        buffers = {n: b for n, b in self.plain.named_buffers()}
        drop = draws.get("drop", torch.zeros(rows.shape[0], device=rows.device))
        grads, losses = self._grads(params, buffers, rows, drop, draws["sigma"], draws["noise"])
        if clip:
            norms = per_example_norms(grads)
            factor = (self.max_grad_norm / (norms + 1e-6)).clamp_(max=1.0)
            grads = {n: g * factor.view(-1, *([1] * (g.dim() - 1))) for n, g in grads.items()}
        return grads, losses


class ClippedGradientSum:
    """The sum over examples of their clipped per-example gradients, without materialising them.

    Every parameter of the network sits in an nn.Linear or the class nn.Embedding. For a Linear layer used by
    example i's K rows with inputs A_i (K x in) and output gradients G_i (K x out), the example's weight gradient
    is G_i^T A_i, whose squared norm is sum_{k,k'} (A_i A_i^T)_{kk'} (G_i G_i^T)_{kk'} (Goodfellow 2015;
    "ghost clipping", Li et al. 2022), and its bias gradient is the sum of G_i's rows. So one forward and one
    backward pass of the (B K) rows give every example's gradient norm, hence its clipping factor c_i, and the
    clipped sum is sum_i c_i G_i^T A_i = (c-weighted G)^T A: a K-times-larger ordinary training step.
    Exactly equal to clipping the per-example gradients of ``PerExampleGradients`` (tested)."""

    def __init__(self, denoiser: nn.Module, loss: Callable, max_grad_norm: float,
                 condition: tuple[int, float] | None = None) -> None:
        self.denoiser, self.net, self.loss = denoiser, denoiser.net, loss
        self.max_grad_norm, self.condition = float(max_grad_norm), condition
        self.modules = [m for m in self.net.modules() if isinstance(m, (nn.Linear, nn.Embedding))]
        owned = {id(p) for m in self.modules for p in m.parameters(recurse=False)}
        stray = [n for n, p in self.net.named_parameters() if id(p) not in owned]
        if stray:
            raise ValueError(f"parameters outside Linear/Embedding layers cannot be clipped here: {stray}")
        prefix = {id(m): n for n, m in self.net.named_modules()}
        self.param_names = {id(m): ("net." + prefix[id(m)] + ".").replace("..", ".") for m in self.modules}

    def __call__(self, rows: torch.Tensor, draws: dict[str, torch.Tensor]
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """({parameter name: sum of clipped gradients}, (B,) per-example losses, (B,) unclipped gradient norms)."""
        B, K, d = draws["noise"].shape
        clean = rows[:, :d].repeat_interleave(K, dim=0)
        labels = None
        if self.condition is not None:
            labels = drop_labels(rows[:, -1].round().long(), draws["drop"], *self.condition).repeat_interleave(K)
        seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

        def keep(module, inputs, output):
            seen[id(module)] = (inputs[0], output)

        hooks = [m.register_forward_hook(keep) for m in self.modules]
        try:       # the network's plain forward: its fused training path is invisible to module hooks
            with torch.enable_grad():
                per_row = self.loss(self.denoiser, clean, draws["sigma"].reshape(B * K, 1),
                                    draws["noise"].reshape(B * K, d), labels, plain=True)
        finally:
            for h in hooks:
                h.remove()
        losses = per_row.view(B, K).mean(dim=1)        # example i: the mean of its K draws' losses
        used = [m for m in self.modules if id(m) in seen]
        outputs = [seen[id(m)][1] for m in used]
        grads_out = torch.autograd.grad(losses.sum(), outputs)
        with torch.no_grad():
            squares = torch.zeros(B, device=rows.device)
            for m, g in zip(used, grads_out):
                a = seen[id(m)][0]
                if isinstance(m, nn.Linear):
                    a3, g3 = a.reshape(B, K, -1), g.reshape(B, K, -1)
                    squares += (torch.bmm(a3, a3.transpose(1, 2)) * torch.bmm(g3, g3.transpose(1, 2))).sum((1, 2))
                    if m.bias is not None:
                        squares += g3.sum(1).square().sum(1)
                else:       # the class table: all K rows of an example read the same class row
                    squares += g.reshape(B, K, -1).sum(1).square().sum(1)
            norms = squares.sqrt()
            factor = (self.max_grad_norm / (norms + 1e-6)).clamp_(max=1.0).repeat_interleave(K).unsqueeze(1)
            summed: dict[str, torch.Tensor] = {}
            for m, g in zip(used, grads_out):
                a, gw, name = seen[id(m)][0], g * factor, self.param_names[id(m)]
                if isinstance(m, nn.Linear):
                    summed[name + "weight"] = gw.t().mm(a)
                    if m.bias is not None:
                        summed[name + "bias"] = gw.sum(0)
                else:
                    summed[name + "weight"] = torch.zeros_like(m.weight).index_add_(0, a.reshape(-1), gw)
        return summed, losses.detach(), norms


def per_example_norms(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    """L2 norm of each example's gradient over all parameters together."""
    squares = sum(g.reshape(g.shape[0], -1).square().sum(1) for g in grads.values())
    return torch.as_tensor(squares).sqrt()


def step_draws(noise: BatchNoise, rows: int, width: int, draws: int, conditional: bool) -> dict[str, torch.Tensor]:
    """The step's normal numbers for this process's rows (label dropout first, as in the non-private loss)."""
    out = {}
    if conditional:
        out["drop"] = noise.randn()
    out["sigma"] = noise.randn(draws, 1)
    out["noise"] = noise.randn(draws, width)
    return out


def poisson_batch(n_rows: int, rate: float, seed: int, step: int) -> torch.Tensor:
    """Indices of the rows in step ``step``'s batch: each row independently with probability ``rate``."""
    generator = torch.Generator().manual_seed(step_seed(seed, step, _POISSON_STREAM))
    return torch.nonzero(torch.rand(n_rows, generator=generator) < rate).flatten()


# ---- what a run reports ----------------------------------------------------------------------------------
@dataclass
class PrivacyReport:
    """What is stored with the model (model.json, keys ``dp_*``)."""

    dp_epsilon: float              # spent, from the accountant after the run
    dp_delta: float
    dp_target_epsilon: float
    dp_noise_multiplier: float
    dp_max_grad_norm: float
    dp_noise_draws: int
    dp_sample_rate: float
    dp_steps: int
    dp_accountant: str
    dp_sampling: str = "poisson"
    dp_release: dict | None = None   # every mechanism of the whole release and their composition (ehrdiff.privacy)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def plan(privacy: PrivacySettings, batch_size: int, n_rows: int, steps: int) -> tuple[float, float]:
    """(sampling rate, noise multiplier) of a private run; EhrdiffError when the budget cannot be met."""
    privacy.validate()
    rate = sample_rate(batch_size, n_rows)
    if privacy.dp_delta >= 1 / n_rows:
        log.warning("DP delta %g is not below 1 / rows = %.3g: the guarantee is weak (delta << 1/n is usual)",
                    privacy.dp_delta, 1 / n_rows)
    return rate, find_noise_multiplier(privacy.dp_epsilon, privacy.dp_delta, rate, steps, privacy.dp_accountant)



# ---- the step ------------------------------------------------------------------------------------------------
class PrivateStep:
    """One DP-SGD step of a Denoiser (a strategy of ehrdiff.training.run_steps): Poisson batch, K draws per
    example, clipped per-example gradients summed (over processes too), Gaussian noise added once, then AdamW and
    the EMA. ``data``: features, plus the class index last when ``condition`` = (null class, dropout) is given;
    ``loss(denoiser, rows, sigma_normal, noise, class_labels, plain=...)``: EDMLoss or BernoulliEDMLoss."""

    description = "DP training"

    def __init__(self, denoiser: nn.Module, data: torch.Tensor, settings: TrainSettings, privacy: PrivacySettings,
                 loss: Callable, width: int, condition: tuple[int, float] | None, ctx: DistContext,
                 release=None, secret: int | None = None) -> None:
        self.n_rows, self.total, self.release = data.shape[0], settings.steps, release
        # Poisson batches and gradient noise from a secret seed, not settings.seed (privacy/secret.py)
        self.secret = noise_seed(ctx) if secret is None else secret
        if release is None:
            self.rate, self.sigma = plan(privacy, settings.batch_size, self.n_rows, self.total)
        else:       # the whole release (private_release.py): DP-SGD spends what the noisy statistics left
            privacy.validate()
            while True:     # a small budget or table: the measuring tree is given up first, then the prior
                try:
                    mechanism = release.sgd(settings.batch_size, self.total, privacy.dp_max_grad_norm)
                    break
                except EhrdiffError:
                    dropped = release.drop_optional()
                    if dropped is None:
                        raise
                    log.warning("the budget leaves DP-SGD no room beside the %s: trained without them", dropped)
            self.rate, self.sigma = mechanism.sample_rate, mechanism.noise_multiplier
            if release.prior and isinstance(denoiser, BernoulliDenoiser):   # the columns' noisy relations, kept
                denoiser.set_prior(**release.prior)         # once the budget has room for them (gaussian_prior.py)
        self.settings, self.privacy, self.width, self.condition, self.ctx = settings, privacy, width, condition, ctx
        self.device = ctx.device
        denoiser.to(self.device)
        self.data = data.to(device=self.device, dtype=torch.float32).contiguous()
        self.adam = AdamWithEMA(denoiser, settings, self.device)
        self.clipped_sum = ClippedGradientSum(denoiser, loss, privacy.dp_max_grad_norm, condition)
        self.generator = torch.Generator(device=self.device)
        self.noise_generator = torch.Generator(device=self.device)
        denoiser.train()
        if ctx.is_main:
            log.info("DP-SGD: target epsilon %g, delta %g, sampling rate %.4g, %d steps -> noise multiplier %.4f "
                     "(clip %g, %d draws per example, %s accountant)", privacy.dp_epsilon, privacy.dp_delta,
                     self.rate, self.total, self.sigma, privacy.dp_max_grad_norm, privacy.dp_noise_draws,
                     privacy.dp_accountant)

    def identity(self) -> dict[str, Any]:
        """What a resumed run must share with this one besides the model and data."""
        p = self.privacy
        return {"privacy": {"epsilon": p.dp_epsilon, "delta": p.dp_delta, "max_grad_norm": p.dp_max_grad_norm,
                            "noise_draws": p.dp_noise_draws, "accountant": p.dp_accountant},
                "noise_multiplier": self.sigma}

    def __call__(self, step: int) -> StepLog:
        self.adam.set_learning_rate(step)
        batch = poisson_batch(self.n_rows, self.rate, self.secret, step).to(self.device)
        m, ctx = batch.numel(), self.ctx
        lo, hi = ctx.rank * m // ctx.world_size, (ctx.rank + 1) * m // ctx.world_size
        flat = self._clipped_sums(batch, step, lo, hi)
        if ctx.world_size > 1:
            dist.all_reduce(flat)          # every process now holds the sum of all clipped gradients
        # the same secretly seeded noise on every process, added once to the (identical) global sum
        self.noise_generator.manual_seed(step_seed(self.secret, step, _DP_NOISE_STREAM))
        C, offset = self.privacy.dp_max_grad_norm, 0
        expected = self.rate * (self.release.n_rows if self.release is not None else self.n_rows)
        for p in self.adam.params:
            total_grad = flat[offset:offset + p.numel()].view_as(p)
            offset += p.numel()
            gaussian = torch.randn(p.shape, generator=self.noise_generator, device=self.device)
            p.grad = total_grad.add_(gaussian, alpha=self.sigma * C).div_(expected)
        self.adam.update(step)
        self.adam.optimizer.zero_grad(set_to_none=True)
        return StepLog(float(flat[-1]), m, {"batch": str(m)})

    def _clipped_sums(self, batch: torch.Tensor, step: int, lo: int, hi: int) -> torch.Tensor:
        """This process's clipped gradient sum of rows ``batch[lo:hi]``, flat, with their loss sum last."""
        summed = [torch.zeros_like(p) for p in self.adam.params]
        loss_sum = torch.zeros((), device=self.device)
        if hi > lo:
            rows = self.data.index_select(0, batch[lo:hi])
            noise = BatchNoise(self.generator, self.settings.seed, step, lo, hi, self.device)
            draws = step_draws(noise, hi - lo, self.width, self.privacy.dp_noise_draws, self.condition is not None)
            for a in range(0, hi - lo, CHUNK_ROWS):
                b = min(a + CHUNK_ROWS, hi - lo)
                sums, losses, _ = self.clipped_sum(rows[a:b], {k: v[a:b] for k, v in draws.items()})
                if len(sums) != len(self.adam.names):
                    raise RuntimeError(f"clipping covered {sorted(sums)}, not every parameter {self.adam.names}")
                for acc, name in zip(summed, self.adam.names):
                    acc += sums[name]
                loss_sum += losses.sum()
        return torch.cat([g.reshape(-1) for g in summed] + [loss_sum.reshape(1)])

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return self.adam.state()

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: Path) -> None:
        self.adam.restore(tensors, meta, path)

    def report(self) -> PrivacyReport:
        """The privacy spent by the whole run (from the accountant), as stored with the model."""
        p = self.privacy
        if self.release is not None:        # the composed total of every mechanism (ehrdiff.privacy.accounting)
            ledger = self.release.release.to_dict()
            return PrivacyReport(dp_epsilon=ledger["epsilon"], dp_delta=ledger["delta"], dp_target_epsilon=p.dp_epsilon,
                                 dp_noise_multiplier=self.sigma, dp_max_grad_norm=p.dp_max_grad_norm,
                                 dp_noise_draws=p.dp_noise_draws, dp_sample_rate=self.rate, dp_steps=self.total,
                                 dp_accountant=p.dp_accountant, dp_release=ledger)
        return PrivacyReport(dp_epsilon=spent_epsilon(self.sigma, self.rate, self.total, p.dp_delta, p.dp_accountant),
                             dp_delta=p.dp_delta, dp_target_epsilon=p.dp_epsilon, dp_noise_multiplier=self.sigma,
                             dp_max_grad_norm=p.dp_max_grad_norm, dp_noise_draws=p.dp_noise_draws,
                             dp_sample_rate=self.rate, dp_steps=self.total, dp_accountant=p.dp_accountant)


__all__ = ["CHUNK_ROWS", "ClippedGradientSum", "LossShape", "PerExampleGradients", "PrivacyReport", "PrivateStep",
           "find_noise_multiplier", "per_example_norms", "plan", "poisson_batch", "require_opacus", "spent_epsilon"]
