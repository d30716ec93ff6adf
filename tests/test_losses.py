"""Losses: GAN targets, perceptual normalisation and weights, the history pool."""
from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from xinggan.config import load_config
from xinggan.losses import (
    VGG19_FILE,
    GANLoss,
    ImagePool,
    PerceptualLoss,
    VGGWeightsError,
    build_image_pools,
    build_losses,
)

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------
# GAN loss
# --------------------------------------------------------------------------------------


def test_bce_on_probabilities_is_mean_over_the_whole_map():
    p = torch.rand(2, 256, 8, 4) * 0.98 + 0.01  # a sigmoid output map
    loss = GANLoss("bce")
    assert loss.target_tensor(p, True).shape == p.shape
    assert torch.all(loss.target_tensor(p, True) == 1)
    assert torch.all(loss.target_tensor(p, False) == 0)
    torch.testing.assert_close(loss(p, True), (-torch.log(p)).mean())
    torch.testing.assert_close(loss(p, False), (-torch.log(1 - p)).mean())


def test_least_squares():
    x = torch.randn(2, 256, 8, 4)  # raw outputs, no sigmoid
    loss = GANLoss("lsgan")
    torch.testing.assert_close(loss(x, True), ((x - 1) ** 2).mean())
    torch.testing.assert_close(loss(x, False), (x ** 2).mean())


def test_bce_works_under_autocast():
    p = torch.rand(2, 8, 4, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = GANLoss("bce")(p.to(torch.bfloat16), True)
    assert value.dtype == torch.float32
    value.backward()
    assert p.grad is not None


def test_unknown_gan_mode():
    with pytest.raises(ValueError, match="bce"):
        GANLoss("wgan")


# --------------------------------------------------------------------------------------
# Perceptual loss
# --------------------------------------------------------------------------------------


def manual_relu1_2(loss: PerceptualLoss, images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] -> ImageNet mean/std -> conv1_1, relu, conv1_2, relu, by hand."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = ((images + 1) * 0.5 - mean) / std
    x = F.relu(F.conv2d(x, loss.vgg[0].weight, loss.vgg[0].bias, padding=1))
    return F.relu(F.conv2d(x, loss.vgg[2].weight, loss.vgg[2].bias, padding=1))


def test_perceptual_matches_manual_computation():
    torch.manual_seed(0)
    loss = PerceptualLoss("random")
    generated = (torch.rand(2, 3, 16, 8) * 2 - 1).requires_grad_()
    target = (torch.rand(2, 3, 16, 8) * 2 - 1).requires_grad_()
    value = loss(generated, target)
    expected = (manual_relu1_2(loss, generated) - manual_relu1_2(loss, target)).abs().mean()
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
    value.backward()
    assert generated.grad is not None and generated.grad.abs().sum() > 0
    assert target.grad is None  # target features are detached
    assert all(not p.requires_grad and p.grad is None for p in loss.parameters())


def test_perceptual_vgg_stays_frozen_in_eval_mode():
    loss = PerceptualLoss("random").train()
    assert loss.training and not loss.vgg.training
    assert len(loss.vgg) == 4  # features[0:4] only
    assert list(loss.state_dict()) == ["vgg.0.weight", "vgg.0.bias", "vgg.2.weight", "vgg.2.bias"]


def fake_vgg19_state() -> dict:
    g = torch.Generator().manual_seed(3)
    return {  # torchvision's VGG19 layout; only features.0 and features.2 are used
        "features.0.weight": torch.randn(64, 3, 3, 3, generator=g),
        "features.0.bias": torch.randn(64, generator=g),
        "features.2.weight": torch.randn(64, 64, 3, 3, generator=g),
        "features.2.bias": torch.randn(64, generator=g),
        "features.5.weight": torch.randn(128, 64, 3, 3, generator=g),
        "classifier.6.bias": torch.randn(1000, generator=g),
    }


def test_perceptual_loads_a_local_torchvision_file(tmp_path):
    state = fake_vgg19_state()
    path = tmp_path / VGG19_FILE
    torch.save(state, path)
    loss = PerceptualLoss(str(path))
    assert torch.equal(loss.vgg[0].weight, state["features.0.weight"])
    assert torch.equal(loss.vgg[2].bias, state["features.2.bias"])

    del state["features.2.bias"]
    torch.save(state, path)
    with pytest.raises(VGGWeightsError, match="not torchvision's VGG19"):
        PerceptualLoss(str(path))


def test_missing_local_weights_message(tmp_path):
    with pytest.raises(VGGWeightsError) as info:
        PerceptualLoss(str(tmp_path / "nowhere" / VGG19_FILE))
    message = str(info.value)
    assert VGG19_FILE in message and "loss.vgg_weights" in message and "checkpoints" in message


# Two processes load the hub weights at once; the download (faked: a copy of a small file that
# takes a second) must happen once, the other process waiting and then reading its file.
TWO_LOADERS = """
import os, shutil, sys, time
import torch.hub
from xinggan.losses import load_vgg19_relu1_2

def download(url, dst, *args, **kwargs):
    with open(sys.argv[2], "a") as log:
        log.write("download\\n")
    time.sleep(1.0)
    shutil.copy(sys.argv[1], dst + ".part")
    os.replace(dst + ".part", dst)

torch.hub.download_url_to_file = download
with open(sys.argv[3], "a") as ready:
    ready.write("ready\\n")
while open(sys.argv[3]).read().count("ready") < 2:  # start loading together
    time.sleep(0.01)
print(float(load_vgg19_relu1_2("")[0].bias[0]))
"""


def test_hub_weights_are_downloaded_by_one_process_while_the_others_wait(tmp_path):
    state = fake_vgg19_state()
    torch.save(state, tmp_path / "source.pth")
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch")}
    args = [sys.executable, "-c", TWO_LOADERS, str(tmp_path / "source.pth"),
            str(tmp_path / "downloads.log"), str(tmp_path / "ready.log")]
    runs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    assert (tmp_path / "downloads.log").read_text() == "download\n"
    expected = float(state["features.0.bias"][0])
    assert [float(out.split()[-1]) for out, _ in outputs] == [expected, expected]
    assert (tmp_path / "torch" / "hub" / "checkpoints" / VGG19_FILE).is_file()


def test_no_weights_and_no_internet_message(tmp_path, monkeypatch):
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)  # never download in tests
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(VGGWeightsError) as info:
        PerceptualLoss("")
    message = str(info.value)
    assert VGG19_FILE in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "loss.vgg_weights" in message and "URLError" in message


# --------------------------------------------------------------------------------------
# Image pool
# --------------------------------------------------------------------------------------


def batches(n, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 4, 2, 2, generator=g) for _ in range(n)]


def test_pool_size_zero_is_passthrough():
    pool = ImagePool(0)
    x = torch.randn(3, 4, 2, 2, requires_grad=True)
    out = pool.query(x)
    assert torch.equal(out, x) and not out.requires_grad and len(pool) == 0


def test_pool_fills_then_swaps_with_probability_half():
    pool = ImagePool(5)
    first, second = batches(2, batch=3)
    assert torch.equal(pool.query(first), first)
    assert torch.equal(pool.query(second), second)  # the last sample already meets a full pool
    assert len(pool) == 5 and torch.equal(pool.images[3:], second[:2])
    torch.manual_seed(0)
    swapped = kept = 0
    for x in batches(200, batch=4, seed=1):
        stored_before = pool.images.clone()
        out = pool.query(x)
        for i in range(4):
            if torch.equal(out[i], x[i]):
                kept += 1
            else:
                assert any(torch.equal(out[i], s) for s in stored_before)
                swapped += 1
        assert len(pool) == 5
    assert 0.42 < swapped / (swapped + kept) < 0.58  # 800 draws with p = 0.5


def test_pool_draws_follow_the_rule_exactly():
    """The documented rule, sample by sample, with the same random stream: u > 0.5 swaps with
    slot s (draws against the pool before the batch; the later of two swaps into a slot stays)."""
    pool = ImagePool(3)
    pool.query(batches(1)[0])  # fill
    shadow = [t.clone() for t in pool.images]
    torch.manual_seed(7)
    check = torch.Generator().manual_seed(7)
    duplicates = 0
    for x in batches(20, batch=6, seed=2):
        out = pool.query(x)
        u, slots = torch.rand(6, generator=check), torch.randint(3, (6,), generator=check)
        before = list(shadow)
        for i in range(6):
            if u[i] > 0.5:
                assert torch.equal(out[i], before[slots[i]])
                shadow[slots[i]] = x[i].clone()
            else:
                assert torch.equal(out[i], x[i])
        swapped = slots[u > 0.5]
        duplicates += len(swapped) - len(set(swapped.tolist()))
    assert duplicates > 0  # two swaps into one slot did happen
    assert all(torch.equal(a, b) for a, b in zip(pool.images, shadow))


def test_pool_reads_nothing_on_the_host_and_loops_over_no_sample():
    """The ops of one query: no scalar read (item, bool, ...), no boolean-mask indexing, and as
    many for a batch of 8 as for a batch of 2."""
    seen = []

    class Ops(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen[-1].append(func.__name__.split(".")[0])
            return func(*args, **(kwargs or {}))

    for batch in (2, 8):
        pool = ImagePool(3)
        pool.query(torch.randn(3, 4, 2, 2))
        seen.append([])
        with Ops():
            pool.query(torch.randn(batch, 4, 2, 2))
    assert seen[0] == seen[1]
    assert not {"_local_scalar_dense", "nonzero", "masked_select"} & set(seen[0])


def test_pool_state_round_trip_resumes_bit_exactly(tmp_path):
    pool = ImagePool(5)
    torch.manual_seed(11)
    for x in batches(4, seed=3):
        pool.query(x)
    # save pool and random state (through torch.save with the safe loader, as checkpoints do)
    torch.save({"pool": pool.state_dict(), "rng": torch.get_rng_state()}, tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["pool"]["images"].shape == (5, 4, 2, 2)
    going_on = [pool.query(x) for x in batches(6, seed=4)]
    resumed = ImagePool(5)
    resumed.load_state_dict(state["pool"])
    torch.set_rng_state(state["rng"])
    for x, out in zip(batches(6, seed=4), going_on):
        assert torch.equal(resumed.query(x), out)
    assert torch.equal(pool.images, resumed.images)
    with pytest.raises(ValueError, match="size"):
        ImagePool(4).load_state_dict(pool.state_dict())
    partial = ImagePool(5)  # a pool still filling, and an empty one
    partial.load_state_dict({"size": 5, "images": batches(1)[0]})
    assert len(partial) == 3 and torch.equal(partial.query(batches(1)[0])[:2], batches(1)[0][:2])
    empty = ImagePool(5)
    empty.load_state_dict(ImagePool(5).state_dict())
    assert len(empty) == 0


# --------------------------------------------------------------------------------------
# From the config
# --------------------------------------------------------------------------------------


def test_build_losses_from_configs():
    market = load_config(REPO / "configs" / "market.yaml", ["loss.vgg_weights=random"])
    losses = build_losses(market)
    assert losses["gan"].mode == "bce" and isinstance(losses["perceptual"], PerceptualLoss)
    fashion = load_config(REPO / "configs" / "deepfashion.yaml",
                          ["loss.vgg_weights=random", "loss.lambda_perceptual=0"])
    losses = build_losses(fashion)
    assert losses["gan"].mode == "lsgan" and "perceptual" not in losses
    pools = build_image_pools(market)
    assert [p.size for p in pools] == [50, 50] and pools[0] is not pools[1]
    assert [p.size for p in build_image_pools(market, size=25)] == [25, 25]  # one of two ranks
