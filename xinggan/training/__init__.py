"""Training: the paper's iteration (:mod:`.step`) and the loop that runs it (:mod:`.loop`), with
their plumbing: checkpoint state (:mod:`.state`), the run log (:mod:`.runlog`), stop signals
(:mod:`.signals`) and the processes of a multi-GPU run (:mod:`.distributed`)."""
from xinggan.runtime import distributed_context, pick_device
from xinggan.training.loop import Trainer, build_parts
from xinggan.training.step import LOSS_NAMES, GANParts, TrainingError, lr_factor, train_step

__all__ = ["GANParts", "LOSS_NAMES", "Trainer", "TrainingError", "build_parts",
           "distributed_context", "lr_factor", "pick_device", "train_step"]
