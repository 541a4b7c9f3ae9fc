"""Training: the one loop every generator's training runs through, and the pieces it is made of.

loop          ``run_steps``: resume, steps, checkpoints, progress, loss log (a step is a strategy object)
minibatch     the ordinary step (AdamW, learning-rate schedule, EMA, DDP) and ``train``, its one-call form
checkpoint    the one checkpoint format
randomness    per-step seeded batches and noise (exact resume, N processes = 1)
schedule      learning rate and EMA decay
distributed   torchrun process groups and devices
"""

from ehrdiff.training.checkpoint import CHECKPOINT_FILE, read_checkpoint, same_identity, save_checkpoint
from ehrdiff.training.distributed import DistContext, distributed_context, is_main_process, resolve_device
from ehrdiff.training.loop import RunLog, StepLog, TrainingStep, flush_denormals, rate, run_steps
from ehrdiff.training.minibatch import AdamWithEMA, LossFn, MinibatchStep, TrainResult, TrainSettings, train
from ehrdiff.training.randomness import BatchNoise, BatchOrder, step_seed
from ehrdiff.training.schedule import ema_decay, learning_rate

__all__ = ["CHECKPOINT_FILE", "AdamWithEMA", "BatchNoise", "BatchOrder", "DistContext", "LossFn", "MinibatchStep",
           "RunLog", "StepLog", "TrainResult", "TrainSettings", "TrainingStep", "distributed_context", "ema_decay",
           "flush_denormals", "is_main_process", "learning_rate", "rate", "read_checkpoint", "resolve_device",
           "run_steps", "same_identity", "save_checkpoint", "step_seed", "train"]
