"""EHRDiff (Yuan et al., arXiv 2303.05656): an EDM diffusion model over the encoded patient x feature matrix.

    model = EHRDiff(steps=20_000).fit(table)       # preset "default"; any setting of EHRDiffConfig overrides
    synthetic = model.sample(10_000, seed=0)       # a DataFrame in the training columns (sample_table: a Table)
    model.save("run/"); EHRDiff.load("run/")

Training adds Gaussian noise to the encoded rows (binary codes 0/1, continuous features scaled to [0, 1]) and fits
the preconditioned denoiser with the EDM loss; sampling integrates from noise with a sampler of
ehrdiff.diffusion.SAMPLERS (the paper's: 32-level Heun) from the EMA weights, and the encoder turns the output back
into the user's columns (binary columns clipped to [0, 1] and rounded at 0.5, continuous ones clipped to the
training range). That is the paper's model (presets paper-mimic, paper-cinc, paper-ecg). The default preset models
0/1 columns as Bernoulli probabilities (ehrdiff.diffusion.bernoulli) and draws them at the end instead of rounding.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from typing import Any, Iterator

import numpy as np
import torch

from ehrdiff.data.encoding import MISSING_SUFFIX, NORMAL_TAIL, TableEncoder
from ehrdiff.data.rules import rules_to_json
from ehrdiff.data.table import Table
from ehrdiff.diffusion import SAMPLERS, Denoiser, EDMLoss, MLPDenoiserNet, NoiseEmbedding, karras_sigmas
from ehrdiff.diffusion.bernoulli import BernoulliDenoiser, BernoulliEDMLoss, draw_discrete, redraw_short_rows
from ehrdiff.diffusion.panels import (NO_PANELS, declared_panels, disagreement_shares, find_panels, panels_from_names,
                                     panels_to_names, xor_panels)
from ehrdiff.diffusion.refresh import RowRefresh
from ehrdiff.diffusion.count_matching import apportion, select_code_counts, split_counts
from ehrdiff.errors import DataError, EhrdiffError, ModelFileError
from ehrdiff.data.writers import concat_tables
from ehrdiff.models.base import ExperimentRole, Generator, as_table, check_sample_size, declared_rules, register
from ehrdiff.models.ehrdiff.conditioning import (ConditionSpec, check_sampling_request, class_counts,
                                                 conditional_row_loss, guided_denoiser, sample_conditional,
                                                 split_condition)
from ehrdiff.models.ehrdiff.calibrate import (calibrate, calibrate_values, calibrates, calibrates_values,
                                              checked_class_marginals, checked_count_ties, checked_pairs,
                                              checked_prevalence, checked_tie_shares, chunk_targets,
                                              code_prevalence, meet_pairs, settle_values, tie_counts,
                                              tie_shares)
from ehrdiff.models.ehrdiff.budget import (TrainingBudget, held_out_score, plan_budget, split_holdout,
                                           stopping_schedule)
from ehrdiff.models.ehrdiff.selection import (FIT_ROWS, MIN_ROWS, POOL, PREFIX, TreeEnsemble, canonical, fit_selector,
                                              select_rows)
from ehrdiff.models.ehrdiff.config import RUNTIME_SETTINGS, SAMPLING_SETTINGS, EHRDiffConfig, config_from_dict
from ehrdiff.models.ehrdiff.patterns import checked_tree, meet_patterns, row_classes
from ehrdiff.models.ehrdiff.presets import PRESETS, make_config
from ehrdiff.models.persistence import ModelMetadata, data_fingerprint, load_model_dir, save_model_dir
from ehrdiff.privacy.secret import forget_noise_seed, keep_noise_seed, noise_seed
from ehrdiff.training import (BatchNoise, MinibatchStep, TrainSettings, distributed_context, is_main_process,
                              resolve_device, run_steps)
from ehrdiff.training.stopping import HeldOutStopping

log = logging.getLogger(__name__)

# Passes over the training rows from which fit() warns of memorisation: runs this long over small tables have
# reproduced training rows (docs/results.md, the MIMIC demos: 25,600 passes); above the floor of budget.MIN_STEPS on
# mid-sized tables (1,800 passes on CinC 2012, whose six default runs copied no training row).
MEMORISATION_PASSES = 2000
# A large sample is drawn and written in chunks of about CHUNK_BYTES of encoded float32 rows (sample_chunks), at
# least MIN_CHUNK_ROWS and at most MAX_CHUNK_ROWS rows: its memory does not grow with the number of rows.
CHUNK_BYTES = 16 * 2**20
MIN_CHUNK_ROWS, MAX_CHUNK_ROWS = 1024, 100_000
_QUICK_NETWORK = {"hidden_dims": [128, 128], "embedding_features": 32, "embedding_width": 64, "num_noise_levels": 8}


# Under DP, sigma_data of the normal-scaled columns (unless normal_sigma_data is set): a private denoiser learns
# little, and with EDM's sigma_data 1 its prior is near the columns' standard normal marginals (CinC 2012 at
# epsilon 10, before sampling calibrated continuous values: continuous KS 0.18, against 0.42 with the preset's 0.14;
# with the calibration 0.066 and 0.067; bench_private_release.py, variants full and sigma-data-0.14).
PRIVATE_NORMAL_SIGMA_DATA = 1.0
PRIOR_KEY = "prior.prior_loadings"      # in weights.safetensors when the model has a Gaussian prior


def build_denoiser(config: EHRDiffConfig, width: int, seed: int | None = None, n_classes: int = 0,
                   binary: np.ndarray | None = None, encoder: TableEncoder | None = None) -> Denoiser:
    """The preconditioned network for data of ``width`` encoded columns; weights drawn from ``seed``
    (without touching PyTorch's global random state). ``n_classes`` > 0: with a class embedding (conditioning).
    ``binary``: the encoder's 0/1 columns, which the Bernoulli head models as probabilities; or ``encoder`` itself,
    which also gives the one-hot blocks (``categorical_head`` "softmax") and the columns scaled to a normal
    (their own ``normal_sigma_data``)."""
    net_settings = config.network
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed if seed is None else seed)
        embedding = NoiseEmbedding(net_settings.embedding, net_settings.embedding_size(width),
                                   net_settings.embedding_width, n_classes)
        net = MLPDenoiserNet(width, net_settings.hidden_dims, embedding)
    if config.diffusion.binary_head != "bernoulli":
        return Denoiser(net, config.sigma_data)
    if encoder is not None:
        binary = encoder.binary_mask
    binary = np.zeros(width, bool) if binary is None else binary
    onehot, column_sd = [], None
    if encoder is not None and config.categorical_head == "softmax":
        onehot = [(start, stop) for kind, start, stop in encoder.discrete_groups() if kind == "onehot"]
    normal_sd = config.normal_sigma_data
    if normal_sd is None and config.privacy.dp:
        normal_sd = PRIVATE_NORMAL_SIGMA_DATA
    if encoder is not None and normal_sd is not None and encoder.normal_stretches():
        column_sd = np.full(width, config.sigma_data)
        column_sd[[index for index, *_ in encoder.normal_stretches()]] = normal_sd
    return BernoulliDenoiser(net, config.sigma_data, binary, onehot, column_sd)


def training_loss(cfg: EHRDiffConfig, encoder: TableEncoder | None = None,
                  panels: tuple[np.ndarray, np.ndarray] | None = None) -> EDMLoss | BernoulliEDMLoss:
    """The EDM loss, or with the Bernoulli head its loss; with ``missing_values`` "noise" and an ``encoder``, the
    squared error leaves out missing values; ``panels``: indicators modelled as disagreements (diffusion/panels.py)."""
    if cfg.diffusion.binary_head != "bernoulli":
        return EDMLoss(sigma_data=cfg.sigma_data, P_mean=cfg.P_mean, P_std=cfg.P_std)
    missing = None
    if encoder is not None and cfg.missing_values == "noise":
        missing = tuple(torch.from_numpy(a) for a in encoder.missing_pairs())
    tied = tuple(torch.from_numpy(a) for a in panels) if panels is not None and len(panels[0]) else None
    return BernoulliEDMLoss(sigma_data=cfg.sigma_data, P_mean=cfg.P_mean, P_std=cfg.P_std, missing=missing,
                            panels=tied)


def row_refresh(cfg: EHRDiffConfig, encoder: TableEncoder) -> RowRefresh | None:
    """What each training step does to its batch first (diffusion/refresh.py): values scaled to a normal spread
    over their stretches, missing values (``missing_values`` "noise") drawn afresh; None when nothing applies."""
    missing = encoder.missing_pairs() if cfg.missing_values == "noise" else (np.zeros(0, np.int64),) * 2
    refresh = RowRefresh(encoder.normal_stretches(), missing, NORMAL_TAIL)
    return refresh if refresh.active else None


def edm_row_loss(loss: EDMLoss | BernoulliEDMLoss, refresh: RowRefresh | None = None):
    """The training loop's ``loss_fn(model, rows, noise, class_labels=None)`` for an EDM loss: ln sigma draws
    first, then the data noise (as the official code), then ``refresh``'s draws, if any."""
    def row_loss(model: torch.nn.Module, rows: torch.Tensor, noise: BatchNoise,
                 class_labels: torch.Tensor | None = None) -> torch.Tensor:
        sigma_normal = noise.randn(1)
        data_noise = noise.randn(rows.shape[1])
        if refresh is not None:
            rows = refresh(rows, noise)
        return loss(model, rows, sigma_normal, data_noise, class_labels)
    return row_loss


def memorisation_warning(steps: int, batch_size: int, rows: int, private: bool) -> str | None:
    """The warning for a run long enough, relative to its data, to memorise training rows (none under DP)."""
    passes = steps * batch_size / rows
    if private or passes < MEMORISATION_PASSES:
        return None
    return (f"{steps:,} steps of batch {batch_size:,} pass over the {rows:,} training rows {passes:,.0f} times: at "
            "this length a model can memorise and reproduce training rows (docs/results.md, the MIMIC demos); "
            "check the privacy metrics of `ehrdiff evaluate` before sharing samples, or train with fewer steps "
            "or with --dp")


def watch_held_out(step: MinibatchStep, denoiser: Denoiser, row_loss, held_out: np.ndarray, training: np.ndarray,
                   seed: int, total: int) -> HeldOutStopping:
    """``step`` with the stopping rule on the ``held_out`` rows (the training rows' loss on as many of them, spread
    over the table, logged beside it)."""
    every, patience = stopping_schedule(total)
    picks = np.linspace(0, training.shape[0] - 1, held_out.shape[0]).round().astype(np.int64)
    score = held_out_score(denoiser, row_loss, torch.from_numpy(held_out), torch.from_numpy(training[picks]),
                           step.adam.ema_state, seed, step.device)
    return HeldOutStopping(step, score, step.adam.ema_state, every, patience)


@register("ehrdiff")
class EHRDiff(Generator):
    """EHRDiff. ``preset``: default (ours), paper-mimic, paper-cinc, paper-ecg (the paper's) or cpu-fast;
    keyword ``settings`` override any setting of :class:`EHRDiffConfig` by its flat name (steps, batch_size,
    seed, lr, hidden_dims, sigma_data, sampler, condition, dp, ...)."""

    # in experiments "ehrdiff" is the library's default model and "ehrdiff-paper" the paper's (the dataset's paper
    # preset, its way of modelling 0/1 columns kept under --quick)
    experiment = ExperimentRole(quick={"preset": "cpu-fast", **_QUICK_NETWORK}, variants={
        "ehrdiff-paper": ExperimentRole(quick=_QUICK_NETWORK, dataset_preset=True)})

    def __init__(self, preset: str = "default", **settings: Any) -> None:
        self.preset = preset
        self.settings = dict(settings)
        self.config = make_config(preset, **settings)      # validates now: bad settings fail before training

    def __repr__(self) -> str:
        args = ", ".join([repr(self.preset)] + [f"{k}={v!r}" for k, v in self.settings.items()])
        return f"EHRDiff({args})"

    # ---- training --------------------------------------------------------------------------------------------
    def fit(self, data, *, checkpoint_dir: str | os.PathLike | None = None, resume: bool = False,
            progress: bool = True) -> "EHRDiff":
        cfg = self.config
        table, labels, condition, private, secret = as_table(data), None, None, None, None
        if cfg.dp:      # the whole release under the budget: encoder, counts and histograms noised (private_release)
            from ehrdiff.models.ehrdiff.private_release import class_marginals, private_inputs
            count_rules = tuple(r for r in declared_rules(data) if r.kind == "count") \
                if cfg.missing_indicators != "per_column" else ()      # a count's group: missing together, declared
            # the noise's own secret seed, not cfg.seed, which model.json keeps (privacy/secret.py)
            secret = noise_seed(distributed_context(cfg.device), checkpoint_dir, resume)
            private = private_inputs(table, cfg.privacy, cfg.conditioning.condition, secret, cfg.continuous_scaling,
                                     count_rules)
            encoder, matrix, labels, condition = private.encoder, private.matrix, private.labels, private.condition
            if any(c.coding == "continuous" for c in encoder.codings_):
                log.info("continuous columns are scaled under DP by the levels of their noisy histograms (public "
                         "bin edges), not by training quantiles")
            _check_encoded(encoder, matrix)
        else:
            if cfg.conditioning.condition is not None:   # the condition column becomes a class index, not a feature
                table, labels, condition = split_condition(table, cfg.conditioning.condition)
            encoder, matrix = self._encode(table)
        n_rows, width = matrix.shape
        # panels of indicators from the rows' missingness; under DP only the declared ones (the rows' pattern
        # would leave without noise)
        if cfg.missing_indicators != "panels":
            self.panels_ = NO_PANELS
        elif private:
            self.panels_ = private_panels(encoder, private.release.declarations)
        else:
            self.panels_ = find_panels(matrix, encoder.indicator_columns())
        if len(self.panels_[0]):
            names = encoder.encoded_columns
            log.info("missing indicators: %d follow a panel leader's (%s)", len(self.panels_[0]), ", ".join(
                f"{names[m].removesuffix(MISSING_SUFFIX)} with {names[lead].removesuffix(MISSING_SUFFIX)}"
                for m, lead in zip(*self.panels_)))
        denoiser = build_denoiser(cfg, width, n_classes=condition.n_classes if condition else 0, encoder=encoder)
        if isinstance(denoiser, BernoulliDenoiser):     # start from the independent-marginals model (noisy under DP)
            denoiser.init_output(disagreement_shares(private.shares, *self.panels_) if private
                                 else xor_panels(matrix, *self.panels_).mean(axis=0))
        rows = matrix if condition is None else np.column_stack([matrix, labels.astype(np.float32)])
        fingerprint = private.fingerprint() if private else data_fingerprint(rows)
        budget = plan_budget(cfg.optimisation, "epochs" in self.settings,       # under DP from the noisy row count
                             "batch_size" in self.settings or "batch_size" in PRESETS.get(self.preset, {}),
                             private.n_rows if private else n_rows, width, cfg.dp)
        result = self._train(denoiser, rows, condition, fingerprint, checkpoint_dir, resume, progress, budget,
                             encoder, private, secret)
        denoiser.load_state_dict(result["ema_state"])           # sampling uses the EMA weights (the chosen ones)
        self.budget_, self.stopping_ = budget.to_dict(), result["stopping"]
        self.denoiser_, self.encoder_, self.condition_ = denoiser.eval(), encoder, condition
        self.n_rows_, self.n_features_ = (private.n_rows if private else n_rows), width
        self.data_fingerprint_ = None if private else fingerprint     # none under DP: a hash of the rows
        self.train_steps_, self.privacy_ = result["steps"], result["privacy"]
        self.final_loss_ = None if private else result["final_loss"]   # the loss of unnoised rows
        codes = encoder.code_columns()     # rows per number of codes (noisy under DP)
        self.code_histograms_ = private.code_histograms if private else \
            code_histograms(matrix[:, codes], labels, condition) if codes.size else None
        self.min_codes_ = min_codes(self.code_histograms_)     # the fewest codes of a training row
        self.code_prevalence_ = code_prevalence(private.shares if private else matrix.mean(axis=0), codes)
        self.rules_ = declared_rules(data)     # kept by the sampler (models/base.py keep_rules), saved in model.json
        self.class_marginals_ = class_marginals(private) if private else None    # noisy, per class (calibrate.py)
        self.code_pairs_ = private.code_pairs if private else None      # noisy, met at sampling (calibrate.py)
        self.tie_shares_ = None if private else tie_shares(table.frame, self.rules_)   # settle_values' ties
        self.count_ties_ = private.count_ties if private else None      # noisy, met at sampling (calibrate.py)
        self.measuring_tree_ = private.patterns if private else None    # from noisy counts (patterns.py)
        self.selector_, self.selector_auroc_ = None, None
        if (cfg.row_selection == "discriminator" and not private and condition is None and not codes.size
                and n_rows >= MIN_ROWS):
            self.selector_, self.selector_auroc_ = self._fit_selector(matrix)
        return self

    def _fit_selector(self, matrix: np.ndarray) -> tuple[TreeEnsemble, float]:
        """Row selection's discriminator (selection.py), fitted on up to FIT_ROWS training rows and as many rows of
        a sample of the model (drawn and calibrated by sample_table); logged with how well it tells them apart."""
        seed = self.config.seed
        n = min(len(matrix), FIT_ROWS)
        picks = np.random.default_rng(np.random.SeedSequence([seed, 0x5E1D])).choice(len(matrix), n, replace=False)
        own_seed = int(np.random.SeedSequence([seed, 0x5E1D, 1]).generate_state(1)[0])
        own = self.sample_table(n, own_seed)        # a sample as drawn (no selector yet), decoded: canonical already
        trees, score = fit_selector(canonical(self.encoder_, matrix[np.sort(picks)]),
                                    self.encoder_.transform(own, dtype=np.float32), seed)
        log.info("row selection: %d trees tell the model's rows from training rows at AUROC %.3f on rows they did "
                 "not learn from; a sample keeps rows of a %d times larger draw by their odds of being real",
                 len(trees.roots), score, POOL)
        return trees, score

    def _encode(self, table: Table) -> tuple[TableEncoder, np.ndarray]:
        """The fitted encoder and the encoded float32 matrix of a run without DP (a private run's encoder comes from
        private_release); DataError for nothing to model or non-finite values."""
        cfg = self.config
        encoder = TableEncoder(cfg.continuous_scaling, share_missing=cfg.missing_indicators != "per_column",
                               order_chains=cfg.order_encoding == "chains").fit(table)
        matrix = encoder.transform(table, dtype=np.float32)
        _check_encoded(encoder, matrix)
        return encoder, matrix

    def _train(self, denoiser: Denoiser, rows: np.ndarray, condition: ConditionSpec | None, fingerprint: str,
               checkpoint_dir, resume: bool, progress: bool, budget: TrainingBudget, encoder: TableEncoder,
               private=None, secret: int | None = None) -> dict[str, Any]:
        """Run the training loop with the plain or the private step (with the stopping rule when the budget holds
        rows out); the EMA weights and what the run reports. ``private``: the private release (its noisy row count
        stands for the rows everywhere it is kept); ``secret``: the seed of its noise (privacy/secret.py)."""
        cfg = self.config
        n_rows, width = (private.n_rows if private else rows.shape[0]), rows.shape[1] - (condition is not None)
        total = budget.steps
        ctx = distributed_context(cfg.device)
        settings = TrainSettings(steps=total, batch_size=budget.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                 betas=tuple(cfg.adam_betas), eps=cfg.adam_eps,
                                 warmup_steps=cfg.optimisation.effective_warmup(total), ema_decay=cfg.ema_decay,
                                 seed=cfg.seed, checkpoint_every=cfg.checkpoint_every)
        identity = {"model": self.name, "config": cfg.identity(), "data": fingerprint, "shape": [n_rows, width],
                    "training": settings.identity()}
        if budget.source == "data":     # runs with a given budget keep the identity they had before budgets
            identity["budget"] = budget.to_dict()
        if ctx.is_main:
            log.info("training EHRDiff (%s) on %d rows x %d columns%s: %d steps of batch %d on %s%s", self.preset,
                     n_rows - budget.held_out, width,
                     f" ({budget.held_out} more held out)" if budget.held_out else "", total, budget.batch_size,
                     ctx.device, f" x {ctx.world_size} processes" if ctx.world_size > 1 else "")
            log.info("budget: %s", budget.reason)
            warning = memorisation_warning(total, budget.batch_size, n_rows - budget.held_out, cfg.dp)
            if warning:
                log.warning(warning)
        held_out = None
        if budget.held_out:             # the stopping rule's rows leave the training data (split from the seed)
            kept, held = split_holdout(rows.shape[0], budget.held_out, cfg.seed)
            rows, held_out = rows[kept], rows[held]
        data = torch.from_numpy(rows)
        if cfg.dp:      # DP-SGD (private.py): Poisson batches, clipped per-example gradients, accountant
            from ehrdiff.models.ehrdiff.private import PrivateStep
            null = (condition.null_index, cfg.condition_dropout) if condition is not None else None
            step = PrivateStep(denoiser, data, settings, cfg.privacy, training_loss(cfg, encoder, self.panels_), width,
                               null, ctx, release=private, secret=secret)
            identity.update(step.identity())
            keep_noise_seed(checkpoint_dir, step.secret, ctx)       # before any checkpoint, for --resume
        else:
            row_loss = edm_row_loss(training_loss(cfg, encoder, self.panels_), row_refresh(cfg, encoder))
            if condition is not None:
                row_loss = conditional_row_loss(row_loss, condition.null_index, cfg.condition_dropout)
            step = MinibatchStep(denoiser, data, row_loss, settings, ctx)
            if held_out is not None:
                step = watch_held_out(step, denoiser, row_loss, held_out, rows, cfg.seed, total)
        run = run_steps(step, total, identity=identity, checkpoint_dir=checkpoint_dir, resume=resume,
                        progress=progress, context=ctx, checkpoint_every=settings.checkpoint_every,
                        log_every=settings.log_every)
        if cfg.dp:
            forget_noise_seed(checkpoint_dir, ctx)      # kept only for resuming
        privacy = step.report().to_dict() if cfg.dp else None
        if held_out is None:
            return {"ema_state": step.adam.ema_state(), "steps": run.end_step, "final_loss": run.final_loss,
                    "privacy": privacy, "stopping": None}
        step.finish(run.end_step)
        stopping = step.summary(total)
        if ctx.is_main:
            log.info("stopping rule: %s at step %d of %d; the weights of step %d are kept (held-out loss %.4f, "
                     "training rows' %.4f)", "stopped" if stopping["stopped_early"] else "ran to the end",
                     run.end_step, total, stopping["chosen_step"], stopping["held_out_loss"],
                     stopping["training_loss"])
        return {"ema_state": step.best_weights(), "steps": run.end_step, "final_loss": run.final_loss,
                "privacy": privacy, "stopping": stopping}

    # ---- sampling --------------------------------------------------------------------------------------------
    def sample_matrix(self, n: int, seed: int = 0, *, label: int | None = None, guidance: float = 0.0,
                      progress: bool = False, code_counts: np.ndarray | None = None) -> np.ndarray:
        """Sampler output in the encoded space, ``n`` x ``n_features_``: D(x; sigma_min) (unclipped), with the 0/1
        columns drawn from it when ``final_draw`` is "sample"; ``label``: class index of a conditional model (None:
        unconditional), with classifier-free ``guidance``. With ``codes_per_row`` "data" the rows are selected from
        a larger sample so that their numbers of codes follow the training histogram (of the class, with a label):
        ``code_counts[k]`` rows with k codes (default: the histogram apportioned to ``n``). ``progress`` shows a bar
        of rows sampled (one per round of count matching)."""
        n = check_sample_size(n)
        self.check_fitted()
        histogram = self._code_histogram(label)
        if histogram is None:
            return self._sample_rows(n, seed, label, guidance, progress)
        want = apportion(histogram, n) if code_counts is None else np.asarray(code_counts, dtype=np.int64)
        if int(want.sum()) != n:
            raise ValueError(f"code_counts add up to {int(want.sum())} rows, not n = {n}")
        return select_code_counts(
            lambda rows, r: self._sample_rows(rows, seed if r == 0 else _round_seed(seed, r), label, guidance,
                                              progress, "sampling" if r == 0 else f"count matching, round {r}"),
            want, self.encoder_.code_columns())

    def _code_histogram(self, label: int | None) -> np.ndarray | None:
        """The training rows per number of codes that count matching follows (of class ``label``); None when
        ``codes_per_row`` is "model" or the model has no histogram (DP, no codes, older files)."""
        histograms = getattr(self, "code_histograms_", None)
        if self.config.codes_per_row != "data" or not histograms:
            return None
        return np.asarray(histograms["all"] if label is None else histograms["by_class"][label])

    def _sample_rows(self, n: int, seed: int, label: int | None, guidance: float, progress: bool = False,
                     desc: str = "sampling") -> np.ndarray:
        from tqdm.auto import tqdm

        cfg = self.config.sampling
        device = resolve_device(self.config.device)
        denoiser = self.denoiser_.to(device)
        denoise = denoiser if label is None else guided_denoiser(denoiser, label, guidance)
        sigmas = karras_sigmas(cfg.num_noise_levels, cfg.sigma_min, cfg.sigma_max, cfg.rho, device=device)
        sampler = SAMPLERS[cfg.sampler]
        generator = torch.Generator(device=device).manual_seed(int(seed))
        out = []
        batch = self.config.sample_batch_size
        bar = tqdm(total=n, unit="row", desc=desc, disable=not progress, dynamic_ncols=True)
        with torch.inference_mode(), bar:
            for start in range(0, n, batch):
                rows = min(batch, n - start)
                latents = torch.randn((rows, self.n_features_), generator=generator, device=device)
                x = sampler(denoise, latents.to(torch.float64) * sigmas[0], sigmas, generator)
                out.append(x.to("cpu", torch.float32).numpy())
                bar.update(rows)
        matrix = np.concatenate(out)
        if cfg.final_draw == "sample":      # its own stream: the same seed gives the same latents either way
            draws = np.random.default_rng(np.random.SeedSequence([int(seed), 0x0D5A]))
            probs, matrix = matrix, draw_discrete(matrix, self.encoder_.discrete_groups(), draws)
            if cfg.min_codes == "data" and getattr(self, "min_codes_", 0) > 0:
                redraw_short_rows(matrix, probs, self.encoder_.code_columns(), self.min_codes_, draws)
        return xor_panels(matrix, *getattr(self, "panels_", NO_PANELS))     # the indicators as they are

    def sample_table(self, n: int, seed: int = 0, condition: Any = None, guidance: float | None = None,
               balance: dict | None = None, progress: bool = False) -> Table:
        """``n`` synthetic rows. A conditional model (trained with ``condition="COL"``) takes ``condition`` (one
        value of COL), or ``balance`` ({value: share}; default: the training balance), and ``guidance`` w >= 0
        (classifier-free guidance; 0 = plain conditional); see conditioning.py. More rows than one chunk
        (:meth:`sample_chunk_rows`) are drawn as :meth:`sample_chunks` draws them, and joined."""
        return concat_tables(list(self.sample_chunks(n, seed, condition, guidance, balance, progress)))

    def sample_chunk_rows(self) -> int:
        """Rows per chunk of a large sample: about ``CHUNK_BYTES`` of encoded rows (count matching holds up to
        about five times that), so the memory of sampling does not grow with the number of rows."""
        return int(min(MAX_CHUNK_ROWS, max(MIN_CHUNK_ROWS, CHUNK_BYTES // (4 * max(self.n_features_, 1)))))

    def sample_chunks(self, n: int, seed: int = 0, condition: Any = None, guidance: float | None = None,
                      balance: dict | None = None, progress: bool = False,
                      chunk_rows: int | None = None) -> Iterator[Table]:
        """:meth:`sample`'s rows, one chunk of at most ``chunk_rows`` rows (default :meth:`sample_chunk_rows`)
        at a time, for writing a sample larger than memory. Chunk j draws with its own seed (chunk 0 with ``seed``,
        so a sample of one chunk is drawn exactly as a whole); the rows per class and per number of codes of the
        whole sample are split over the chunks, so that together they follow the balance and the training
        histogram exactly; synthetic ids run on from chunk to chunk."""
        from tqdm.auto import tqdm

        n = check_sample_size(n)
        self.check_fitted()
        spec = getattr(self, "condition_", None)
        w = check_sampling_request(spec, condition, guidance, balance)
        sizes = chunk_sizes(n, chunk_rows or self.sample_chunk_rows())
        plans = self._chunk_plans(n, sizes, spec, condition, balance)
        # the kept prevalences and distributions are the training population's: a sample of it (no class, balance
        # or guidance asked for) is calibrated to them (calibrate.py), its codes swapped and its values re-spread
        population = condition is None and balance is None and w == 0.0
        calibrated = calibrates(self) and population
        targets = chunk_targets(self.code_prevalence_, [codes for _, codes in plans]) if calibrated else None
        # a private conditional model keeps each class's histograms: any mix of classes is calibrated to them
        by_class = getattr(self, "class_marginals_", None) is not None and w == 0.0
        values = calibrates_values(self) and (population or by_class)
        several = len(sizes) > 1        # one bar of rows over the chunks instead of one bar per chunk and round
        bar = tqdm(total=n, unit="row", desc="sampling", disable=not (progress and several), dynamic_ncols=True)
        inner = progress and not several
        offset = 0
        with bar:
            for j, (size, (classes, codes)) in enumerate(zip(sizes, plans)):
                chunk_seed = seed if j == 0 else _chunk_seed(seed, j)
                finish = partial(self._finish_chunk, targets=targets[j] if calibrated else None, seed=chunk_seed,
                                 codes=calibrated, values=values) if calibrated or values else None
                if spec is None:
                    matrix = self._population_rows(size, chunk_seed, inner, codes, finish)
                    table = self.encoder_.inverse_transform(matrix, id_offset=offset)
                else:
                    table = sample_conditional(self, size, chunk_seed, spec, None, w, None, inner, counts=classes,
                                               code_counts=codes, id_offset=offset, finish=finish)
                if getattr(self, "measuring_tree_", None):  # a private model's measuring patterns (patterns.py)
                    meet_patterns(table.frame, self.encoder_, self.measuring_tree_, row_classes(table.frame, spec),
                                  chunk_seed)
                if getattr(self, "count_ties_", None):      # a private model's panel counts (calibrate.py)
                    tie_counts(table.frame, self.count_ties_)
                offset += size
                bar.update(size)
                yield table

    def _population_rows(self, n: int, seed: int, progress: bool, code_counts, finish) -> np.ndarray:
        """``n`` rows of an unconditional sample, encoded, ``finish``-ed (calibrated; None: as drawn). With a fitted
        selector and ``row_selection`` "discriminator" (not with count matching), the rows are chosen from POOL
        times as many, finished before they are weighed (calibration is not what the selector should correct)
        and again after (the chosen rows' values spread on the kept distributions once more)."""
        selector = getattr(self, "selector_", None) \
            if self.config.row_selection == "discriminator" and code_counts is None else None
        if selector is not None:        # said first: the progress bar counts the larger draw
            log.info("row selection: drawing %d rows to keep %d by their odds of being real", POOL * n, n)
        drawn = self.sample_matrix(n if selector is None else POOL * n, seed, progress=progress,
                                   code_counts=code_counts)
        drawn = finish(drawn, None) if finish else drawn
        if selector is None:
            return drawn
        chosen = drawn[select_rows(selector.log_odds(canonical(self.encoder_, drawn)), n, seed)]
        return finish(chosen, None) if finish else chosen

    def _finish_chunk(self, matrix: np.ndarray, labels: np.ndarray | None, *, targets, seed: int, codes: bool,
                      values: bool) -> np.ndarray:
        """A sampled chunk (encoded) calibrated: its codes to the kept prevalences, its continuous values to the
        kept distributions, in turn with the repair of the declared rules (calibrate.py)."""
        if codes:
            matrix = calibrate(self, matrix, labels, targets, seed)
            matrix = meet_pairs(self, matrix, labels, seed)
        if not values:
            return matrix
        marginals = getattr(self, "class_marginals_", None)
        panels = getattr(self, "panels_", NO_PANELS)
        matrix = calibrate_values(self.encoder_, matrix, labels, marginals, seed, panels)
        return settle_values(self.encoder_, matrix, self.rules_, labels, marginals, seed,
                             getattr(self, "tie_shares_", None), panels)

    def _chunk_plans(self, n: int, sizes: list[int], spec: ConditionSpec | None, condition: Any,
                     balance: dict | None) -> list[tuple[np.ndarray | None, Any]]:
        """Per chunk: (rows per class or None, rows per number of codes: one array, one per class, or None), the
        whole sample's class counts and apportioned code histograms split over the chunks."""
        if spec is None:
            histogram = self._code_histogram(None)
            codes = split_counts(apportion(histogram, n), sizes) if histogram is not None else [None] * len(sizes)
            return [(None, c) for c in codes]
        classes = split_counts(class_counts(n, spec, condition, balance), sizes)
        by_class = []
        for k, total in enumerate(np.sum(classes, axis=0)):
            histogram = self._code_histogram(k)
            parts = [part[k] for part in classes]
            by_class.append(split_counts(apportion(histogram, total), parts) if histogram is not None and total
                            else [None] * len(sizes))
        return [(classes[j], [codes[j] for codes in by_class]) for j in range(len(sizes))]

    def set_sampling(self, **settings: Any) -> "EHRDiff":
        """Change sampling settings (``SAMPLING_SETTINGS``, ``sample_batch_size``, ``device``) of this model, trained
        or not; settings that change training are refused. Returns self."""
        allowed = SAMPLING_SETTINGS + RUNTIME_SETTINGS
        for key in settings:
            if key not in allowed:
                raise EhrdiffError(f"setting '{key}' changes training, not sampling; only these can be set for a "
                                   f"trained model: {', '.join(allowed)}")
        self.config = config_from_dict({**self.config.to_dict(), **settings})
        return self

    def set_params(self, **params: Any) -> "EHRDiff":
        """scikit-learn's ``set_params``; on a fitted model only sampling settings (see :meth:`set_sampling`)."""
        if self.is_fitted():
            return self.set_sampling(**params)
        return super().set_params(**params)

    # ---- persistence -----------------------------------------------------------------------------------------
    def _content(self) -> dict[str, Any]:
        return {"model": self.name, "preset": self.preset, "overrides": self.settings,
                "config": self.config.to_dict(), "encoder": self.encoder_.to_dict(),
                "columns": [c.name for c in self.encoder_.codings_], "n_rows": self.n_rows_,
                "n_features": self.n_features_,
                **({"data_fingerprint": self.data_fingerprint_} if self.data_fingerprint_ else {}),
                "train_steps": self.train_steps_, "final_loss": self.final_loss_, "min_codes": self.min_codes_,
                "codes_per_row_histograms": getattr(self, "code_histograms_", None),
                "code_prevalence": getattr(self, "code_prevalence_", None),
                **({"class_marginals": self.class_marginals_} if getattr(self, "class_marginals_", None) else {}),
                **({"tie_shares": self.tie_shares_} if getattr(self, "tie_shares_", None) else {}),
                **({"code_pairs": self.code_pairs_} if getattr(self, "code_pairs_", None) else {}),
                **({"count_ties": self.count_ties_} if getattr(self, "count_ties_", None) else {}),
                **({"measuring_tree": self.measuring_tree_} if getattr(self, "measuring_tree_", None) else {}),
                "condition": self.condition_.to_dict() if getattr(self, "condition_", None) else None,
                "budget": getattr(self, "budget_", None), "stopping": getattr(self, "stopping_", None),
                "rules": rules_to_json(getattr(self, "rules_", ())),
                **({"missing_panels": panels_to_names(self.encoder_.encoded_columns, self.panels_)}
                   if len(getattr(self, "panels_", NO_PANELS)[0]) else {}),
                **({"row_selector": {"trees": len(self.selector_.roots), "auroc": self.selector_auroc_}}
                   if getattr(self, "selector_", None) is not None else {}),
                **(getattr(self, "privacy_", None) or {})}

    def save(self, path: str | os.PathLike) -> None:
        """Write model.json + weights.safetensors (EMA weights). Under torchrun only rank 0 writes."""
        self.check_fitted()
        if not is_main_process():
            return
        selector = getattr(self, "selector_", None)
        save_model_dir(path, self._content(),
                       {**self.denoiser_.state_dict(), **(selector.to_tensors() if selector is not None else {})})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EHRDiff":
        """The model saved at ``path``; model.json is verified (persistence.read_model_metadata) and each field
        checked, so a modified or crafted folder is refused with one line."""
        metadata, tensors = load_model_dir(path)
        if metadata["model"] != "ehrdiff":
            raise ModelFileError(f"{path}: holds a '{metadata['model']}' model, not an ehrdiff one")
        try:
            model = cls._from_metadata(metadata)
            denoiser = build_denoiser(model.config, model.n_features_,
                                      n_classes=model.condition_.n_classes if model.condition_ else 0,
                                      encoder=model.encoder_)
            model.selector_, model.selector_auroc_ = checked_selector(metadata, tensors, model.n_features_)
            if PRIOR_KEY in tensors:        # a private model's Gaussian prior (diffusion/gaussian_prior.py)
                denoiser.set_prior(*(tensors[f"prior.prior_{part}"] for part in ("columns", "loadings", "diagonal")))
            denoiser.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(PREFIX)}, strict=True)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelFileError(f"{path}: model.json and the weights do not fit together "
                                 f"({str(exc).splitlines()[0][:200]}); train again") from None
        except ModelFileError:
            raise
        except EhrdiffError as exc:  # config validation: here a problem of the model file
            raise ModelFileError(f"{path}: invalid model settings ({exc})") from None
        model.denoiser_ = denoiser.eval()
        return model

    @classmethod
    def _from_metadata(cls, metadata: ModelMetadata) -> "EHRDiff":
        """A model with model.json's settings and learned state, but no weights yet; each field type-checked."""
        model = cls.__new__(cls)
        model.preset = metadata.typed("preset", str, "a preset name")
        model.settings = metadata.typed("overrides", dict, "an object of settings")
        model.config = config_from_dict(metadata.typed("config", dict, "an object of settings"))
        model.encoder_ = metadata.encoder()
        model.n_rows_ = metadata.typed("n_rows", int, "a whole number")
        model.n_features_ = metadata.typed("n_features", int, "a whole number")
        model.data_fingerprint_ = metadata.typed("data_fingerprint", str, "text", optional=True)   # none under DP
        model.train_steps_ = metadata.typed("train_steps", int, "a whole number")
        model.final_loss_ = metadata.typed("final_loss", (int, float), "a number", optional=True)
        model.min_codes_ = metadata.typed("min_codes", int, "a whole number", optional=True) or 0   # older: none
        if model.encoder_.width != model.n_features_:
            raise metadata.invalid("n_features", f"the encoder's width {model.encoder_.width}", model.n_features_)
        spec = metadata.typed("condition", dict, "an object", optional=True)
        model.condition_ = ConditionSpec.from_dict(spec) if spec else None
        model.code_histograms_ = checked_histograms(metadata, model)     # older files: none, no count matching
        model.code_prevalence_ = checked_prevalence(metadata, len(model.encoder_.code_columns()))  # older: none
        model.class_marginals_ = checked_class_marginals(metadata, model.encoder_, model.condition_)
        model.budget_ = metadata.typed("budget", dict, "an object", optional=True)        # older files: none
        model.stopping_ = metadata.typed("stopping", dict, "an object", optional=True)
        model.rules_ = metadata.rules()
        model.tie_shares_ = checked_tie_shares(metadata, model.rules_)
        model.code_pairs_ = checked_pairs(metadata, len(model.encoder_.code_columns()))
        model.count_ties_ = checked_count_ties(metadata, model.rules_)
        model.measuring_tree_ = checked_tree(metadata, model.encoder_,
                                             model.condition_.n_classes if model.condition_ else 1)
        model.panels_ = checked_panels(metadata, model.encoder_)
        metadata.privacy()          # a stated guarantee must be positive numbers
        model.privacy_ = {k: v for k, v in metadata.items() if k.startswith("dp_")} or None
        return model


def _check_encoded(encoder: TableEncoder, matrix: np.ndarray) -> None:
    """DataError for nothing to model or non-finite values."""
    if matrix.shape[1] == 0:
        raise DataError("the table has no columns to model")
    if not np.isfinite(matrix).all():
        row, col = np.argwhere(~np.isfinite(matrix))[0]
        raise DataError(f"encoded column '{encoder.encoded_columns[col]}' row {row} is not finite; "
                        "replace NaN/infinite values")


def code_histograms(codes: np.ndarray, labels: np.ndarray | None, condition) -> dict[str, Any]:
    """Training rows per number of codes (index k: rows with k codes), overall and per class of a condition."""
    counts = codes.sum(axis=1).round().astype(np.int64)
    size = int(counts.max()) + 1
    by_class = None
    if condition is not None:
        by_class = [np.bincount(counts[labels == c], minlength=size).tolist() for c in range(condition.n_classes)]
    return {"all": np.bincount(counts, minlength=size).tolist(), "by_class": by_class}


def checked_histograms(metadata: ModelMetadata, model: "EHRDiff") -> dict[str, Any] | None:
    """model.json's ``codes_per_row_histograms`` (None when absent), refused unless they are what
    :func:`code_histograms` writes for this model: counts of rows with 0 .. k codes (k at most its code columns),
    overall and, for a conditional model, per class."""
    key = "codes_per_row_histograms"
    value = metadata.typed(key, dict, "an object", optional=True)
    if value is None:
        return None
    n_codes = len(model.encoder_.code_columns())
    classes = model.condition_.n_classes if model.condition_ else 0
    by_class = value.get("by_class")
    valid = _is_histogram(value.get("all"), n_codes) and (
        by_class is None if not classes else
        isinstance(by_class, list) and len(by_class) == classes and all(_is_histogram(h, n_codes) for h in by_class))
    if not valid:
        raise metadata.invalid(key, f"rows per number of codes (at most {n_codes}), overall"
                               + (f" and for each of {classes} classes" if classes else ""), value)
    return value


def private_panels(encoder: TableEncoder, declarations) -> tuple[np.ndarray, np.ndarray]:
    """A private run's panels: the ones its bounds file declares (privacy/declared.py), none without; DataError,
    naming the file, for panels that overlap."""
    try:
        return declared_panels(encoder, declarations.panels)
    except ValueError as exc:
        raise DataError(f"{declarations.source}: {exc}") from None


def checked_panels(metadata: ModelMetadata, encoder: TableEncoder) -> tuple[np.ndarray, np.ndarray]:
    """model.json's ``missing_panels`` as (members, leaders) encoded indices (none when absent: older files and
    models without panels), refused unless they pair missing-indicator columns as find_panels does."""
    pairs = metadata.get("missing_panels")
    if pairs is None:
        return NO_PANELS
    try:
        return panels_from_names(encoder.encoded_columns, encoder.indicator_columns(), pairs)
    except ValueError as exc:
        raise metadata.invalid("missing_panels", str(exc), pairs) from None


def checked_selector(metadata: ModelMetadata, tensors: dict, width: int) -> tuple[TreeEnsemble | None, float | None]:
    """Row selection's trees (selection.py) and their AUROC from the weights and model.json's ``row_selector``
    (none when absent: older files, models without one), refused unless both are there and well formed."""
    info = metadata.typed("row_selector", dict, "an object", optional=True)
    arrays = {k: v for k, v in tensors.items() if k.startswith(PREFIX)}
    if info is None and not arrays:
        return None, None
    score = info.get("auroc") if info else None
    if not arrays or not isinstance(score, (int, float)) or isinstance(score, bool) or not 0 <= score <= 1:
        raise metadata.invalid("row_selector", "the trees' count and AUROC, with the trees in the weights", info)
    try:
        trees = TreeEnsemble.from_tensors(arrays, width)
    except ValueError as exc:
        raise metadata.invalid("row_selector", str(exc), info) from None
    if info.get("trees") != len(trees.roots):
        raise metadata.invalid("row_selector", f"the count of the {len(trees.roots)} trees in the weights", info)
    return trees, float(score)


def _is_histogram(counts: Any, n_codes: int) -> bool:
    return (isinstance(counts, list) and 0 < len(counts) <= n_codes + 1
            and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts) and sum(counts) > 0)


def min_codes(histograms: dict[str, Any] | None) -> int:
    """The fewest codes of a training row, read off the histogram (0 without one)."""
    return int(np.flatnonzero(histograms["all"])[0]) if histograms else 0


def chunk_sizes(n: int, chunk_rows: int) -> list[int]:
    """``n`` rows as chunks of ``chunk_rows`` (the last one shorter)."""
    if chunk_rows <= 0:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    return [min(chunk_rows, n - start) for start in range(0, n, chunk_rows)]


def _chunk_seed(seed: int, chunk: int) -> int:
    """The seed of chunk ``chunk`` (>= 1) of a large sample (chunk 0 uses ``seed`` itself)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0xC4C4, chunk]).generate_state(1)[0])


def _round_seed(seed: int, round_number: int) -> int:
    """The seed of the ``round_number``-th extra batch of count matching (round 0 uses ``seed`` itself)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0xC0DE, round_number]).generate_state(1)[0])


__all__ = ["EHRDiff", "build_denoiser", "chunk_sizes", "code_histograms", "edm_row_loss", "memorisation_warning",
           "min_codes", "row_refresh", "training_loss"]
