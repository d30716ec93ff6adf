"""The OpenPose COCO body model: architecture against the published definition, both weight
loaders on synthetic files with the real layer names, the post-processing on synthetic maps with
known people, and the detector through the keypoint registry."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from xinggan.joints import OPENPOSE_LIMBS
from xinggan.keypoints import DetectorUnavailable, build_detector
from xinggan.keypoints.openpose import OpenPoseBody, load_openpose_weights
from xinggan.keypoints.openpose_post import PAF_CHANNELS, best_person
from xinggan.models import count_parameters


def published_definition() -> dict:
    """Layer -> (in, out, kernel) of the COCO body model as the Caffe prototxt / Keras / PyTorch
    ports define it, written out here independently of the module under test."""
    layers = {}
    vgg = [("conv1_1", 3, 64), ("conv1_2", 64, 64), ("conv2_1", 64, 128), ("conv2_2", 128, 128),
           ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256), ("conv3_4", 256, 256),
           ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3_CPM", 512, 256), ("conv4_4_CPM", 256, 128)]
    for name, cin, cout in vgg:
        layers[name] = (cin, cout, 3)
    for branch, out in ((1, 38), (2, 19)):
        layers[f"conv5_1_CPM_L{branch}"] = (128, 128, 3)
        layers[f"conv5_2_CPM_L{branch}"] = (128, 128, 3)
        layers[f"conv5_3_CPM_L{branch}"] = (128, 128, 3)
        layers[f"conv5_4_CPM_L{branch}"] = (128, 512, 1)
        layers[f"conv5_5_CPM_L{branch}"] = (512, out, 1)
        for stage in range(2, 7):
            layers[f"Mconv1_stage{stage}_L{branch}"] = (185, 128, 7)
            for i in range(2, 6):
                layers[f"Mconv{i}_stage{stage}_L{branch}"] = (128, 128, 7)
            layers[f"Mconv6_stage{stage}_L{branch}"] = (128, 128, 1)
            layers[f"Mconv7_stage{stage}_L{branch}"] = (128, out, 1)
    return layers


def module_of(layer: str) -> str:
    if layer.startswith("conv5_"):
        return f"model1_{layer[-1]}"
    if layer.startswith("Mconv"):
        stage = layer.split("_stage")[1][0]
        return f"model{stage}_{layer[-1]}"
    return "model0"


def test_architecture_matches_the_published_definition():
    with torch.device("meta"):
        model = OpenPoseBody()
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {}
    for layer, (cin, cout, k) in published_definition().items():
        expected[f"{module_of(layer)}.{layer}.weight"] = (cout, cin, k, k)
        expected[f"{module_of(layer)}.{layer}.bias"] = (cout,)
    assert state == expected
    count = sum(cin * cout * k * k + cout for cin, cout, k in published_definition().values())
    assert count_parameters(model) == count
    # a ReLU after every convolution but the last of each stage branch
    relus = {name[len("relu_"):] for _, module in model.named_children() for name, _ in module.named_children()
             if name.startswith("relu_")}
    last = {f"conv5_5_CPM_L{b}" for b in (1, 2)} | {f"Mconv7_stage{s}_L{b}" for s in range(2, 7) for b in (1, 2)}
    assert relus == set(published_definition()) - last


def test_forward_shapes_and_signed_outputs():
    torch.manual_seed(0)
    model = OpenPoseBody(width_divisor=16).eval()
    with torch.no_grad():
        pafs, heatmaps = model(torch.randn(1, 3, 40, 24))
    assert pafs.shape == (1, 38, 5, 3) and heatmaps.shape == (1, 19, 5, 3)
    assert (heatmaps < 0).any() and (pafs < 0).any()  # no ReLU on the outputs


def tiny_model(seed: int = 1) -> OpenPoseBody:
    torch.manual_seed(seed)
    model = OpenPoseBody(width_divisor=16)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return model


def write_keras_h5(model: OpenPoseBody, path) -> None:
    """A Keras 2 ``model.save`` layout: model_weights/<layer>/<layer>/kernel:0 (kh, kw, in, out) and bias:0."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as handle:
        group = handle.create_group("model_weights")
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Conv2d):
                layer = name.split(".")[-1]
                inner = group.create_group(layer).create_group(layer)
                inner["kernel:0"] = module.weight.detach().numpy().transpose(2, 3, 1, 0)
                inner["bias:0"] = module.bias.detach().numpy()


def test_keras_h5_loader(tmp_path):
    source = tiny_model()
    path = tmp_path / "pose_estimator.h5"
    write_keras_h5(source, path)
    loaded = load_openpose_weights(OpenPoseBody(width_divisor=16), path)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.randn(1, 3, 32, 24)
    with torch.no_grad():
        assert torch.equal(loaded(x)[1], source(x)[1])


@pytest.mark.parametrize("prefixed", [False, True])
def test_pytorch_pth_loader(tmp_path, prefixed):
    source = tiny_model(2)
    state = source.state_dict()
    if not prefixed:  # body_pose_model.pth: bare layer names, 'conv1_1.weight'
        state = {k.split(".", 1)[1]: v for k, v in state.items()}
        assert "conv1_1.weight" in state and "Mconv7_stage6_L2.bias" in state
    path = tmp_path / "body_pose_model.pth"
    torch.save(state, path)
    loaded = load_openpose_weights(OpenPoseBody(width_divisor=16), path)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_loader_errors_name_the_file(tmp_path):
    with pytest.raises(DetectorUnavailable, match="pose_estimator.h5"):
        load_openpose_weights(OpenPoseBody(width_divisor=16), tmp_path / "absent.pth")
    wrong = tmp_path / "other.pth"
    torch.save({"conv1_1.weight": torch.zeros(4, 3, 3, 3)}, wrong)
    with pytest.raises(DetectorUnavailable, match="not the OpenPose COCO body model") as error:
        load_openpose_weights(OpenPoseBody(width_divisor=16), wrong)
    assert str(wrong) in str(error.value)
    with pytest.raises(DetectorUnavailable, match="body_pose_model.pth"):
        build_detector("openpose", weights=None)


def test_detector_through_the_registry(tmp_path):
    path = tmp_path / "body_pose_model.pth"
    torch.save({k.split(".", 1)[1]: v for k, v in tiny_model(3).state_dict().items()}, path)
    detector = build_detector("openpose", weights=str(path), width_divisor=16, scales=(0.25,))
    assert detector.name == "openpose"
    image = np.random.default_rng(0).integers(0, 256, (64, 32, 3), dtype=np.uint8)
    heatmaps, pafs = detector.maps(image)
    assert heatmaps.shape == (64, 32, 19) and pafs.shape == (64, 32, 38)
    keypoints = detector.detect(image)
    assert keypoints.shape == (18, 2) and keypoints.dtype == np.int64
    present = keypoints[:, 0] != -1
    assert np.all((keypoints[present] >= 0) & (keypoints[present] < [64, 32]))
    padded = build_detector("openpose", weights=str(path), width_divisor=16, scales=(0.25,), pad_to_stride=True)
    assert padded.maps(image)[0].shape == (64, 32, 19)


# --- post-processing on synthetic maps -------------------------------------------------------

PERSON = np.array([  # (y, x) of a standing person in a 128 x 64 image, COCO-18 order
    (14, 32), (26, 32), (27, 24), (42, 21), (56, 19), (27, 40), (42, 43), (56, 45), (62, 27), (84, 27),
    (106, 27), (62, 37), (84, 37), (106, 37), (11, 29), (11, 35), (13, 26), (13, 38)])


def draw_person(heatmaps, pafs, joints, peak=1.0, limbs=range(19)):
    h, w = heatmaps.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    for j, (y, x) in enumerate(joints):
        if y < 0:
            continue
        heatmaps[:, :, j] = np.maximum(heatmaps[:, :, j], peak * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 2.0 ** 2)))
    for k in limbs:
        a, b = OPENPOSE_LIMBS[k]
        if joints[a][0] < 0 or joints[b][0] < 0:
            continue
        pa, pb = np.array(joints[a], float)[::-1], np.array(joints[b], float)[::-1]  # (x, y)
        direction = (pb - pa) / np.linalg.norm(pb - pa)
        rel = np.stack([xx - pa[0], yy - pa[1]], axis=-1)
        along = rel @ direction
        across = np.abs(rel @ np.array([-direction[1], direction[0]]))
        band = (along >= -1) & (along <= np.linalg.norm(pb - pa) + 1) & (across <= 1.5)
        pafs[band, PAF_CHANNELS[k][0]] = direction[0]
        pafs[band, PAF_CHANNELS[k][1]] = direction[1]


def test_post_processing_recovers_a_known_person():
    heatmaps, pafs = np.zeros((128, 64, 19)), np.zeros((128, 64, 38))
    draw_person(heatmaps, pafs, PERSON)
    assert np.array_equal(best_person(heatmaps, pafs, 128), PERSON)


def test_post_processing_keeps_the_highest_scoring_person_and_drops_unlinked_peaks():
    heatmaps, pafs = np.zeros((128, 128, 19)), np.zeros((128, 128, 38))
    draw_person(heatmaps, pafs, PERSON)                         # full person on the left
    partial = PERSON + [0, 64]
    partial[[3, 4, 6, 7, 9, 10, 12, 13]] = -1                   # no arms below the elbow, no legs
    draw_person(heatmaps, pafs, partial, peak=0.8)
    heatmaps[120, 120, 4] = 0.9                                 # a stray wrist peak with no limb field
    result = best_person(heatmaps, pafs, 128)
    assert np.array_equal(result, PERSON)
    # without the full person the partial one is found, missing joints -1
    heatmaps2, pafs2 = np.zeros((128, 128, 19)), np.zeros((128, 128, 38))
    draw_person(heatmaps2, pafs2, partial, peak=0.8)
    assert np.array_equal(best_person(heatmaps2, pafs2, 128), partial)


def test_post_processing_drops_people_with_fewer_than_four_parts_and_weak_fields():
    heatmaps, pafs = np.zeros((128, 64, 19)), np.zeros((128, 64, 38))
    head = -np.ones((18, 2), dtype=int)
    head[[0, 1, 14]] = PERSON[[0, 1, 14]]                       # three parts, two limbs
    draw_person(heatmaps, pafs, head)
    assert np.all(best_person(heatmaps, pafs, 128) == -1)
    heatmaps, pafs = np.zeros((128, 64, 19)), np.zeros((128, 64, 38))
    draw_person(heatmaps, pafs, PERSON)
    pafs *= 0.04                                                # below the 0.05 sample threshold
    assert np.all(best_person(heatmaps, pafs, 128) == -1)
    heatmaps[:, :, :18] *= 0.09                                 # and peaks below 0.1: nothing at all
    assert np.all(best_person(heatmaps, np.zeros_like(pafs), 128) == -1)
