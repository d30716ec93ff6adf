"""Training: the paper's iteration (:mod:`.step`), the parts it updates (:mod:`.parts`), the
checkpoint state (:mod:`.state`), the run log (:mod:`.runlog`), stop signals (:mod:`.signals`)
and the loop that puts them together (:mod:`.loop`)."""
from xinggan.runtime import distributed_context, pick_device, versions
from xinggan.training.loop import Trainer
from xinggan.training.state import rng_state, set_rng_state
from xinggan.training.step import LOSS_NAMES, GANParts, TrainingError, lr_factor, train_step

__all__ = ["GANParts", "LOSS_NAMES", "Trainer", "TrainingError", "distributed_context", "lr_factor",
           "pick_device", "rng_state", "set_rng_state", "train_step", "versions"]
