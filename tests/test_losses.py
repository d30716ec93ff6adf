"""Losses: GAN targets, perceptual normalisation and weights, the history pool."""
from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

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


def test_perceptual_loads_a_local_torchvision_file(tmp_path):
    g = torch.Generator().manual_seed(3)
    state = {  # torchvision's VGG19 layout; only features.0 and features.2 are used
        "features.0.weight": torch.randn(64, 3, 3, 3, generator=g),
        "features.0.bias": torch.randn(64, generator=g),
        "features.2.weight": torch.randn(64, 64, 3, 3, generator=g),
        "features.2.bias": torch.randn(64, generator=g),
        "features.5.weight": torch.randn(128, 64, 3, 3, generator=g),
        "classifier.6.bias": torch.randn(1000, generator=g),
    }
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
    pool = ImagePool(4)
    first, second = batches(2, batch=2)
    assert torch.equal(pool.query(first), first)
    assert torch.equal(pool.query(second), second)
    assert len(pool) == 4
    # once full: each returned sample is the new one, one stored before the batch, or an
    # earlier sample of the same batch that was stored a moment ago
    g = torch.Generator().manual_seed(0)
    swapped = kept = 0
    for x in batches(200, batch=4, seed=1):
        stored_before = torch.cat(pool.images)
        out = pool.query(x, generator=g)
        for i in range(4):
            if torch.equal(out[i], x[i]):
                kept += 1
            else:
                assert any(torch.equal(out[i], s) for s in torch.cat([stored_before, x[:i]]))
                swapped += 1
        assert len(pool) == 4
    assert 0.42 < swapped / (swapped + kept) < 0.58  # 800 draws with p = 0.5


def test_pool_draws_follow_the_rule_exactly():
    """Simulate the documented rule with the same random stream: u > 0.5 -> swap slot randint."""
    pool = ImagePool(3)
    pool.query(batches(1)[0])  # fill
    shadow = [t.clone() for t in pool.images]
    g = torch.Generator().manual_seed(7)
    g_check = torch.Generator().manual_seed(7)
    for x in batches(10, seed=2):
        out = pool.query(x, generator=g)
        for i in range(x.shape[0]):
            if torch.rand((), generator=g_check).item() > 0.5:
                slot = int(torch.randint(3, (), generator=g_check))
                assert torch.equal(out[i:i + 1], shadow[slot])
                shadow[slot] = x[i:i + 1].clone()
            else:
                assert torch.equal(out[i:i + 1], x[i:i + 1])
    assert all(torch.equal(a, b) for a, b in zip(pool.images, shadow))


def test_pool_state_round_trip_resumes_bit_exactly(tmp_path):
    pool = ImagePool(5)
    g = torch.Generator().manual_seed(11)
    for x in batches(4, seed=3):
        pool.query(x, generator=g)
    # save pool and random state (through torch.save with the safe loader, as checkpoints do)
    torch.save({"pool": pool.state_dict(), "rng": g.get_state()}, tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    resumed = ImagePool(5)
    resumed.load_state_dict(state["pool"])
    g_resumed = torch.Generator()
    g_resumed.set_state(state["rng"])
    for x in batches(6, seed=4):
        assert torch.equal(pool.query(x, generator=g), resumed.query(x, generator=g_resumed))
    assert all(torch.equal(a, b) for a, b in zip(pool.images, resumed.images))
    with pytest.raises(ValueError, match="size"):
        ImagePool(4).load_state_dict(pool.state_dict())
    empty = ImagePool(5)
    empty.load_state_dict(ImagePool(5).state_dict())
    assert len(empty) == 0


def test_pool_uses_global_rng_without_generator():
    def run():
        torch.manual_seed(5)
        pool = ImagePool(2)
        return [pool.query(x) for x in batches(5, seed=6)]

    assert all(torch.equal(a, b) for a, b in zip(run(), run()))


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
