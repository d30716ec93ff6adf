"""CMU's OpenPose COCO body model (Cao et al., CVPR 2017) in PyTorch, its weight loaders, and the
multi-scale detector of PATN's ``tool/compute_coordinates.py`` that made the PATN / XingGAN PCKh
detections. Layer names follow the PyTorch port ``Hzzone/pytorch-openpose``; the steps are
listed in datasets/README.md ("Keypoint detectors"). The weights are a local file.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Optional, Sequence, Union

import h5py
import numpy as np
import torch
from skimage.transform import resize
from torch import nn

from . import DetectorUnavailable
from .openpose_post import best_person

__all__ = ["OpenPoseBody", "OpenPoseDetector", "OpenPoseWeightsError", "build_openpose_detector",
           "layer_table", "load_openpose_weights", "WEIGHT_FILES", "SCALES", "BOX_SIZE", "STRIDE"]

WEIGHT_FILES = ("pose_estimator.h5", "body_pose_model.pth")
SCALES = (0.5, 1.0, 1.5, 2.0)
BOX_SIZE = 368
STRIDE = 8
NUM_PAFS, NUM_HEATMAPS = 38, 19
_POOL = "pool"


class OpenPoseWeightsError(DetectorUnavailable):
    """A weights file that is missing, unreadable or not the OpenPose COCO body model."""


def _front(d: int) -> list:
    c = lambda n: n // d  # noqa: E731 - internal widths, divided for tiny test models
    return [("conv1_1", 3, c(64), 3), ("conv1_2", c(64), c(64), 3), (_POOL, "pool1_stage1"),
            ("conv2_1", c(64), c(128), 3), ("conv2_2", c(128), c(128), 3), (_POOL, "pool2_stage1"),
            ("conv3_1", c(128), c(256), 3), ("conv3_2", c(256), c(256), 3), ("conv3_3", c(256), c(256), 3),
            ("conv3_4", c(256), c(256), 3), (_POOL, "pool3_stage1"),
            ("conv4_1", c(256), c(512), 3), ("conv4_2", c(512), c(512), 3),
            ("conv4_3_CPM", c(512), c(256), 3), ("conv4_4_CPM", c(256), c(128), 3)]


def _stage(stage: int, branch: int, d: int) -> list:
    out = NUM_PAFS if branch == 1 else NUM_HEATMAPS
    width, features = 128 // d, 128 // d
    if stage == 1:
        return [(f"conv5_1_CPM_L{branch}", features, width, 3), (f"conv5_2_CPM_L{branch}", width, width, 3),
                (f"conv5_3_CPM_L{branch}", width, width, 3), (f"conv5_4_CPM_L{branch}", width, 512 // d, 1),
                (f"conv5_5_CPM_L{branch}", 512 // d, out, 1)]
    inputs = NUM_PAFS + NUM_HEATMAPS + features
    return [(f"Mconv{i}_stage{stage}_L{branch}", inputs if i == 1 else width, out if i == 7 else width,
             7 if i < 6 else 1) for i in range(1, 8)]


def layer_table(width_divisor: int = 1) -> list[tuple[str, list]]:
    """``[(module name, [(layer, in, out, kernel) or ('pool', name)...])...]`` of the whole network."""
    return [("model0", _front(width_divisor))] + [
        (f"model{stage}_{branch}", _stage(stage, branch, width_divisor)) for stage in range(1, 7) for branch in (1, 2)]


class OpenPoseBody(nn.Module):
    """The 6-stage, 2-branch COCO body network; ``forward(x) -> (pafs (B, 38, h, w), heatmaps (B, 19, h, w))``.
    ``width_divisor`` > 1 divides every internal width (tiny models with the real names)."""

    def __init__(self, width_divisor: int = 1):
        super().__init__()
        self.width_divisor = width_divisor
        for module_name, layers in layer_table(width_divisor):
            last = [spec[0] for spec in layers if spec[0] != _POOL][-1]
            items = []
            for spec in layers:
                if spec[0] == _POOL:
                    items.append((spec[1], nn.MaxPool2d(kernel_size=2, stride=2)))
                    continue
                name, cin, cout, k = spec
                items.append((name, nn.Conv2d(cin, cout, k, padding=k // 2)))
                if name != last or module_name == "model0":
                    items.append((f"relu_{name}", nn.ReLU(inplace=True)))
            setattr(self, module_name, nn.Sequential(OrderedDict(items)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model0(x)
        pafs, heatmaps = self.model1_1(features), self.model1_2(features)
        for stage in range(2, 7):
            joined = torch.cat([pafs, heatmaps, features], dim=1)
            pafs = getattr(self, f"model{stage}_1")(joined)
            heatmaps = getattr(self, f"model{stage}_2")(joined)
        return pafs, heatmaps


def _layer_modules(model: OpenPoseBody) -> dict[str, str]:
    """Layer name (``conv1_1``) -> module path (``model0.conv1_1``)."""
    return {spec[0]: f"{module}.{spec[0]}" for module, layers in layer_table(model.width_divisor)
            for spec in layers if spec[0] != _POOL}


def _read_h5(path: Path, layers: dict) -> dict[str, np.ndarray]:
    """``{layer.weight|bias: array}`` of a Keras HDF5 file: every dataset under a group named after a layer."""
    found: dict[str, np.ndarray] = {}

    def visit(name: str, obj) -> None:
        layer = next((p for p in reversed(name.split("/")[:-1]) if p in layers), None)
        if not isinstance(obj, h5py.Dataset) or layer is None or obj.ndim not in (1, 4):
            return
        key = f"{layer}.{'weight' if obj.ndim == 4 else 'bias'}"
        if key in found:
            raise OpenPoseWeightsError(f"{path}: two arrays for {key} (second at {name})")
        found[key] = np.asarray(obj)

    try:
        with h5py.File(path, "r") as handle:
            handle.visititems(visit)
    except OpenPoseWeightsError:
        raise
    except Exception as error:  # h5py raises OSError and others for damaged files
        raise OpenPoseWeightsError(f"{path}: cannot read as HDF5 ({type(error).__name__}: {error})") from None
    return found


def _h5_tensors(path: Path, layers: dict, expected: dict) -> dict[str, torch.Tensor]:
    tensors = {}
    for key, value in _read_h5(path, layers).items():
        layer, kind = key.rsplit(".", 1)
        target = tuple(expected[f"{layers[layer]}.{kind}"].shape)
        if kind == "weight" and value.shape != target and value.transpose(3, 2, 0, 1).shape == target:
            value = value.transpose(3, 2, 0, 1)  # Keras (kh, kw, in, out) -> (out, in, kh, kw)
        tensors[f"{layers[layer]}.{kind}"] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    return tensors


def _pth_tensors(path: Path, layers: dict) -> dict[str, torch.Tensor]:
    """A state dict keyed by bare layer names (``conv1_1.weight``) or with the ``model0.`` prefixes."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise OpenPoseWeightsError(f"{path}: cannot read as a PyTorch state dict "
                                   f"({type(error).__name__}: {error})") from None
    if not isinstance(state, dict):
        raise OpenPoseWeightsError(f"{path}: not a state dict")
    tensors = {}
    for key, value in state.items():
        layer, _, kind = key.rpartition(".")
        layer = layer.rpartition(".")[2]  # 'model0.conv1_1' or 'conv1_1'
        if layer in layers and kind in ("weight", "bias"):
            tensors[f"{layers[layer]}.{kind}"] = value.float()
    return tensors


def load_openpose_weights(model: OpenPoseBody, path: Union[str, Path]) -> OpenPoseBody:
    """Load a Keras ``.h5`` / ``.hdf5`` or a PyTorch ``.pth`` / ``.pt`` OpenPose body weights file into ``model``."""
    path = Path(path)
    if not path.is_file():
        raise OpenPoseWeightsError(f"OpenPose weights file {path} does not exist; provide PATN's Keras "
                                   f"{WEIGHT_FILES[0]} or the PyTorch conversion {WEIGHT_FILES[1]}")
    layers = _layer_modules(model)
    expected = model.state_dict()
    keras = path.suffix.lower() in (".h5", ".hdf5")
    tensors = _h5_tensors(path, layers, expected) if keras else _pth_tensors(path, layers)
    missing = [k for k in expected if k not in tensors]
    wrong = [f"{k}: file {tuple(tensors[k].shape)}, model {tuple(expected[k].shape)}"
             for k in expected if k in tensors and tuple(tensors[k].shape) != tuple(expected[k].shape)]
    if missing or wrong:
        lines = [f"{path}: not the OpenPose COCO body model (18 joints, 38 PAF + 19 heatmap channels)"]
        for label, items in (("missing", missing), ("shape mismatch", wrong)):
            if items:
                lines.append(f"  {label} ({len(items)}): " + ", ".join(items[:8]) + (" ..." if len(items) > 8 else ""))
        raise OpenPoseWeightsError("\n".join(lines))
    model.load_state_dict(tensors, strict=True)
    return model


def _resize(image: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """scikit-image ``resize(preserve_range=True)`` with the defaults of scikit-image 0.14."""
    return resize(image, tuple(shape), order=order, mode="constant", cval=0, clip=True, preserve_range=True,
                  anti_aliasing=False)


class OpenPoseDetector:
    """The released multi-scale OpenPose detection of one person (steps in datasets/README.md)."""

    name = "openpose"

    def __init__(self, model: OpenPoseBody, device: Union[str, torch.device] = "cpu",
                 scales: Sequence[float] = SCALES, box_size: int = BOX_SIZE, pad_to_stride: bool = False):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.scales, self.box_size, self.pad_to_stride = tuple(scales), box_size, pad_to_stride

    def maps(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps ``(H, W, 19)`` averaged over the scales and PAFs ``(H, W, 38)`` summed over them."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
        bgr = image[:, :, ::-1].astype(np.float64)
        height, width = bgr.shape[:2]
        heatmaps = np.zeros((height, width, NUM_HEATMAPS))
        pafs = np.zeros((height, width, NUM_PAFS))
        for scale in self.scales:
            factor = scale * self.box_size / height
            size = (np.array([height, width]) * factor).astype(np.int32)
            scaled = _resize(bgr, size, order=3) / 255 - 0.5
            if self.pad_to_stride:
                pad = [(-int(s)) % STRIDE for s in size]
                scaled = np.pad(scaled, ((0, pad[0]), (0, pad[1]), (0, 0)), constant_values=128 / 255 - 0.5)
            x = torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1)[None], dtype=np.float32))
            with torch.no_grad():
                paf, heat = (m[0].permute(1, 2, 0).double().cpu().numpy() for m in self.model(x.to(self.device)))
            if self.pad_to_stride:  # back to the padded input's size, then the padding cropped
                paf, heat = (_resize(m, scaled.shape[:2], order=1)[:size[0], :size[1]] for m in (paf, heat))
            heatmaps += _resize(heat, (height, width), order=1)
            pafs += _resize(paf, (height, width), order=1)
        return heatmaps / len(self.scales), pafs

    def detect(self, image: np.ndarray) -> np.ndarray:
        """``(18, 2)`` int64 ``(y, x)`` of the best person in an RGB uint8 image, ``-1`` for missing joints."""
        heatmaps, pafs = self.maps(np.asarray(image))
        return best_person(heatmaps, pafs, image.shape[0])


def build_openpose_detector(weights: Optional[str] = None, device: Union[str, torch.device] = "cpu",
                            width_divisor: int = 1, **options) -> OpenPoseDetector:
    """The detector with ``weights`` (``pose_estimator.h5`` or ``body_pose_model.pth``) loaded;
    ``options``: ``scales``, ``box_size``, ``pad_to_stride`` of :class:`OpenPoseDetector`."""
    if not weights:
        raise OpenPoseWeightsError(f"the OpenPose detector needs its weights file, which cannot be downloaded "
                                   f"here: provide PATN's Keras {WEIGHT_FILES[0]} or the PyTorch conversion "
                                   f"{WEIGHT_FILES[1]} (e.g. --pose-weights / --weights FILE)")
    with torch.device("cpu"):
        model = OpenPoseBody(width_divisor)
    load_openpose_weights(model, weights)
    return OpenPoseDetector(model, device=device, **options)
