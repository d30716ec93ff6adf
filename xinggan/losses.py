"""XingGAN's training losses (paper Sec. 3.4): GAN (BCE or least squares), L1, VGG19 perceptual,
and pix2pix's history pool of generated samples. The training loop applies the lambdas.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import VGG19_Weights

try:
    import fcntl
except ImportError:  # Windows: no file locks, each process loads on its own
    fcntl = None

VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's VGG19_Weights.IMAGENET1K_V1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GAN_MODES = ("bce", "lsgan")


class VGGWeightsError(RuntimeError):
    """The ImageNet VGG19 weights of the perceptual loss cannot be found or read."""


class GANLoss(nn.Module):
    """``loss(prediction, target_is_real)``: mean over the output map against a 1/0 target.

    ``"bce"`` takes float32 sigmoid probabilities (a half-precision sigmoid rounds confident
    scores to 1.0 and loses the gradient) and runs outside autocast; ``"lsgan"`` is the MSE.
    """

    def __init__(self, mode: str, real_label: float = 1.0, fake_label: float = 0.0) -> None:
        super().__init__()
        if mode not in GAN_MODES:
            raise ValueError(f"gan mode must be one of {GAN_MODES}, got {mode!r}")
        self.mode = mode
        self.real_label = real_label
        self.fake_label = fake_label

    def target_tensor(self, prediction: Tensor, target_is_real: bool) -> Tensor:
        label = self.real_label if target_is_real else self.fake_label
        return torch.full_like(prediction, label)

    def forward(self, prediction: Tensor, target_is_real: bool) -> Tensor:
        target = self.target_tensor(prediction, target_is_real)
        if self.mode == "lsgan":
            return F.mse_loss(prediction, target)
        with torch.autocast(device_type=prediction.device.type, enabled=False):
            return F.binary_cross_entropy(prediction.float(), target.float())

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


def _vgg19_relu1_2() -> nn.Sequential:
    """The first four layers of torchvision's ``vgg19().features`` (conv1_1 .. relu1_2)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(64, 64, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
    )


def _missing_weights_message(reason: str) -> str:
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    return (
        f"{reason}. The perceptual loss needs torchvision's ImageNet VGG19 weights, file "
        f"{VGG19_FILE} (https://download.pytorch.org/models/{VGG19_FILE}). Put it in the torch "
        f"hub checkpoints folder ({hub}/{VGG19_FILE}, i.e. torch.hub.get_dir()/checkpoints/) "
        f"or anywhere and set loss.vgg_weights to its path (loss.vgg_weights=random builds an "
        "untrained VGG, for tests only)."
    )


@contextlib.contextmanager
def _exclusive(lock: Path):
    """Holds an exclusive ``flock`` on the file ``lock`` (created if missing) inside the block."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:  # closing it releases the lock
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def load_vgg19_relu1_2(weights: str = "") -> nn.Sequential:
    """VGG19 ``features[0:4]`` with ImageNet weights: ``""`` (the torch hub cache, downloaded
    when missing), a path to ``vgg19-dcbb9e9d.pth``, or ``"random"`` (tests)."""
    vgg = _vgg19_relu1_2()
    if weights == "random":
        for m in vgg.modules():
            if isinstance(m, nn.Conv2d):  # as torchvision.models.VGG initialises them
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        return vgg
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise VGGWeightsError(_missing_weights_message(f"loss.vgg_weights: {path} not found"))
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - unreadable file of any kind
            raise VGGWeightsError(
                _missing_weights_message(f"{path}: cannot read ({exc})")) from None
        source = str(path)
    else:
        lock = Path(torch.hub.get_dir()) / "checkpoints" / f"{VGG19_FILE}.lock"
        try:  # one process of a machine downloads; the others wait, then read its file
            with _exclusive(lock):
                state = VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=True,
                                                                   check_hash=True)
        except Exception as exc:  # noqa: BLE001 - no internet, bad hash, unreadable cache
            raise VGGWeightsError(_missing_weights_message(
                f"could not load or download the VGG19 weights ({type(exc).__name__}: {exc})"
            )) from None
        source = f"torch hub cache ({VGG19_FILE})"
    try:
        vgg.load_state_dict({f"{i}.{p}": state[f"features.{i}.{p}"]
                             for i in (0, 2) for p in ("weight", "bias")})
    except (KeyError, RuntimeError, TypeError) as exc:
        raise VGGWeightsError(_missing_weights_message(
            f"{source}: not torchvision's VGG19 state dict ({type(exc).__name__}: {exc})"
        )) from None
    return vgg


class PerceptualLoss(nn.Module):
    """``loss(generated, target)``: L1 between VGG19 relu1_2 features; images in [-1, 1]."""

    def __init__(self, weights: str = "") -> None:
        super().__init__()
        self.vgg = load_vgg19_relu1_2(weights)
        self.vgg.requires_grad_(False)
        self.vgg.eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)

    def train(self, mode: bool = True) -> "PerceptualLoss":
        super().train(mode)
        self.vgg.eval()  # frozen: always in eval mode
        return self

    def normalize(self, images: Tensor) -> Tensor:
        """[-1, 1] -> [0, 1] -> ImageNet mean/std."""
        return ((images + 1) / 2 - self.mean) / self.std

    def features(self, images: Tensor) -> Tensor:
        return self.vgg(self.normalize(images))

    def forward(self, generated: Tensor, target: Tensor) -> Tensor:
        with torch.no_grad():  # target features are constants
            target_features = self.features(target)
        return F.l1_loss(self.features(generated), target_features)


class ImagePool:
    """History of generated samples (pix2pix / PATN) on the device: ``pool.query(batch)``.

    Fills up first; then each sample is swapped with probability 0.5 with a random stored one.
    The draws of one batch see the pool as before the batch; returned samples are detached.
    """

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        self.size = size
        self.images: Optional[Tensor] = None  # (size, ...) once a sample is stored
        self.count = 0  # samples stored: the filling needs no random numbers

    def __len__(self) -> int:
        return self.count

    def query(self, images: Tensor) -> Tensor:
        images = images.detach()
        if self.size == 0:
            return images
        if self.images is None:
            self.images = images.new_empty((self.size, *images.shape[1:]))
        fill = min(self.size - self.count, images.shape[0])
        self.images[self.count:self.count + fill] = images[:fill]
        self.count += fill
        if fill == images.shape[0]:
            return images
        return torch.cat([images[:fill], self._swap(images[fill:])])

    __call__ = query

    def _swap(self, images: Tensor) -> Tensor:
        """The swap rule on a full pool, for every sample at once."""
        n, device = images.shape[0], images.device
        swap = torch.rand(n, device=device) > 0.5
        slot = torch.randint(self.size, (n,), device=device)
        out = torch.where(swap.view(-1, *[1] * (images.dim() - 1)), self.images[slot], images)
        # per slot, the last sample swapped into it (-1: none); each write into a slot then
        # carries that sample (or the slot's own value), so the order of the writes is moot
        order = torch.where(swap, torch.arange(n, device=device), -1)
        last = torch.full((self.size,), -1, device=device).scatter_reduce(0, slot, order, "amax")
        winner = last[slot]
        value = torch.where((winner >= 0).view(-1, *[1] * (images.dim() - 1)),
                            images[winner.clamp(min=0)], self.images[slot])
        self.images.index_copy_(0, slot, value)
        return out

    def state_dict(self) -> dict:
        """``{"size": int, "images": (n, ...) tensor}`` (the n stored samples)."""
        images = self.images[:self.count] if self.count else torch.empty(0)
        return {"size": self.size, "images": images.clone()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("size") != self.size:
            raise ValueError(f"ImagePool: state of a pool of size {state.get('size')!r} loaded "
                             f"into a pool of size {self.size}")
        images = state["images"]
        count = images.shape[0] if images.numel() else 0
        if count > self.size:
            raise ValueError(f"ImagePool: state holds {count} samples for size {self.size}")
        self.images, self.count = None, count
        if count:
            self.images = images.new_empty((self.size, *images.shape[1:]))
            self.images[:count] = images


def build_losses(cfg) -> nn.ModuleDict:
    """``{"gan", "l1", "perceptual"}`` losses from ``cfg.loss`` (no perceptual loss when
    ``lambda_perceptual`` is 0)."""
    losses = nn.ModuleDict({"gan": GANLoss(cfg.loss.gan_mode), "l1": nn.L1Loss()})
    if cfg.loss.lambda_perceptual > 0:
        losses["perceptual"] = PerceptualLoss(cfg.loss.vgg_weights)
    return losses


def build_image_pools(cfg, size: Optional[int] = None) -> tuple[ImagePool, ImagePool]:
    """(shape pool, appearance pool): one history pool per discriminator, of ``size`` samples
    (default ``loss.pool_size``; one rank of several passes its share)."""
    size = cfg.loss.pool_size if size is None else size
    return ImagePool(size), ImagePool(size)
