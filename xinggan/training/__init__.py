"""Training: the paper's iteration (:mod:`.step`), the loop around it (:mod:`.loop`), and the
per-rank random state that makes resuming exact (:mod:`.state`)."""
from xinggan.training.loop import Trainer, distributed_context, pick_device, versions
from xinggan.training.state import rng_state, set_rng_state
from xinggan.training.step import LOSS_NAMES, GANParts, TrainingError, lr_factor, train_step

__all__ = ["GANParts", "LOSS_NAMES", "Trainer", "TrainingError", "distributed_context", "lr_factor",
           "pick_device", "rng_state", "set_rng_state", "train_step", "versions"]
