"""XingGAN++ assembled: every config and overlay builds, both resolutions run forward and
backward, dense fusion reduces to XingGAN's fusion, and the configs train."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xinggan.config import load_config
from xinggan.models import build_discriminators, build_generator, count_parameters

REPO = Path(__file__).resolve().parents[1]
BASES = ["market.yaml", "deepfashion.yaml", "market_xingganpp.yaml", "deepfashion_xingganpp.yaml"]
OVERLAYS = sorted(p.name for p in (REPO / "configs" / "ablations").glob("*.yaml"))
TINY = ["model.generator.ngf=8", "model.generator.n_blocks=2", "model.generator.num_candidates=2",
        "model.generator.enhanced_attention_dim=8", "model.generator.dense_channels=4",
        "model.discriminator.ndf=8", "model.discriminator.n_blocks=1"]


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("overlay", [None] + OVERLAYS)
def test_every_config_and_overlay_builds(base, overlay):
    paths = [REPO / "configs" / base] + ([REPO / "configs" / "ablations" / overlay] if overlay else [])
    cfg = load_config(paths)
    with torch.device("meta"):  # building the full-size networks without allocating them
        generator = build_generator(cfg)
        shape_d, appearance_d = build_discriminators(cfg)
    assert count_parameters(generator) > 0
    assert count_parameters(shape_d) > 0 and count_parameters(appearance_d) > 0
    if overlay is None and base in ("market.yaml", "deepfashion.yaml"):
        assert count_parameters(generator) == {"market.yaml": 44_853_189,
                                               "deepfashion.yaml": 44_844_634}[base]


def test_xingganpp_is_bigger_than_xinggan_and_ablations_shrink_it():
    def params(*paths):
        cfg = load_config([REPO / "configs" / p for p in paths])
        with torch.device("meta"):
            return count_parameters(build_generator(cfg))

    full = params("market_xingganpp.yaml")
    assert full > params("market.yaml")
    for overlay in ("single_scale", "no_enhanced_attention", "no_dense_fusion",
                    "shared_projections"):
        assert params("market_xingganpp.yaml", f"ablations/{overlay}.yaml") < full, overlay


@pytest.mark.parametrize("base", ["market_xingganpp.yaml", "deepfashion_xingganpp.yaml"])
def test_forward_backward_at_full_resolution_tiny_width(base):
    cfg = load_config(REPO / "configs" / base, TINY)
    torch.manual_seed(0)
    generator = build_generator(cfg)
    shape_d, appearance_d = build_discriminators(cfg)
    h, w = cfg.data.height, cfg.data.width
    image = torch.rand(1, 3, h, w) * 2 - 1
    sp, tp = torch.rand(2, 1, 18, h, w).unbind(0)
    out = generator(image, sp, tp)
    assert out.shape == (1, 3, h, w)
    loss = out.abs().mean() + shape_d(torch.cat([out, tp], 1)).mean() \
        + appearance_d(torch.cat([out, image], 1)).mean()
    loss.backward()
    grads = [p.grad for p in generator.parameters() if p.requires_grad]
    assert all(g is not None for g in grads[:5])
    # the zero-initialised residual scales of the attention receive a gradient (the attention
    # weights themselves only do once a scale is non-zero)
    gamma_grads = [p.grad for n, p in generator.named_parameters() if "gamma" in n]
    assert gamma_grads and all(g is not None and g.abs().sum() > 0 for g in gamma_grads)


def test_dense_fusion_with_zero_dense_weights_is_xinggan_fusion():
    """A dense head that starts from a CAF head's weights (dense rows zero) gives the same image
    as XingGAN's fusion head for the same generator weights."""
    base_cfg = load_config(REPO / "configs" / "market.yaml", TINY)
    dense_cfg = base_cfg.replace("model.generator.dense_fusion=true")
    torch.manual_seed(0)
    base = build_generator(base_cfg).eval()
    dense = build_generator(dense_cfg).eval()
    with torch.no_grad():
        for name, p in base.named_parameters():  # non-zero gammas, so the blocks matter
            if "gamma" in name:
                p.fill_(0.3)
    shared = {k: v for k, v in base.state_dict().items() if not k.startswith("fusion.")}
    result = dense.load_state_dict(shared, strict=False)
    assert all(k.startswith("fusion.") for k in result.missing_keys)
    assert not result.unexpected_keys
    dense.fusion.load_caf_state_dict(base.fusion.state_dict(), zero_dense=True)
    image = torch.rand(2, 3, 128, 64) * 2 - 1
    sp, tp = torch.rand(2, 2, 18, 128, 64).unbind(0)
    with torch.no_grad():
        a = base(image, sp, tp)
        b = dense(image, sp, tp)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # and the dense stack is really read: non-zero dense weights change the fusion maps
    with torch.no_grad():
        dense.fusion.to_maps.weight.normal_(0, 1.0)  # maps far from uniform
        maps_before = dense(image, sp, tp, return_details=True)[1]["maps"]
        for p in dense.fusion.stage_compressions.parameters():
            p.normal_(0, 0.5)
        w = dense.fusion.up1.weight  # ConvTranspose: (in, out, k, k); zeroed rows read the stages
        dense_rows = w.flatten(1).abs().sum(1) == 0
        assert dense_rows.sum() == 2 * 4  # 2 blocks x 4 dense channels
        w[dense_rows] = torch.randn_like(w[dense_rows]) * 0.5
        maps_after = dense(image, sp, tp, return_details=True)[1]["maps"]
    assert (maps_after - maps_before).abs().max() > 1e-3


@pytest.mark.parametrize("base", ["market_xingganpp.yaml", "deepfashion_xingganpp.yaml"])
def test_xingganpp_configs_train_on_toy_data_through_train_py(base, tmp_path):
    """Both XingGAN++ configs train through the same train.py as XingGAN (the DeepFashion one
    at the toy data's 128 x 64, where every scale still divides the 32 x 16 grid)."""
    import subprocess
    import sys

    from xinggan import load_generator
    from xinggan.checkpoint import load_checkpoint
    from xinggan.prep.toy import make_toy_dataset

    make_toy_dataset(tmp_path / "toy", seed=4, identities=2, test_identities=1, poses=3,
                     test_pairs=3, height=128, width=64)
    sets = TINY + [
        f"data.root={tmp_path / 'toy'}", "data.height=128", "data.width=64", "data.num_workers=0",
        "data.train_annotations=market-annotation-train.csv",
        "data.test_annotations=market-annotation-test.csv",
        "data.train_pairs=market-pairs-train.csv", "data.test_pairs=market-pairs-test.csv",
        "train.batch_size=2", "train.iterations=2", "train.checkpoint_every=2",
        "train.grid_pairs=1", "loss.lambda_perceptual=0",
    ]
    cmd = [sys.executable, "train.py", "--config", f"configs/{base}", "--run-dir",
           str(tmp_path / "run"), "--no-progress"]
    for item in sets:
        cmd += ["--set", item]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    ckpt = tmp_path / "run" / "checkpoints" / "latest.pt"
    state = load_checkpoint(ckpt)
    assert state["iteration"] == 2 and state["config"]["model"]["name"] == "xingganpp"
    from xinggan.models.multiscale_attention import MultiScaleCrossAttention

    g = load_generator(ckpt)
    assert any(isinstance(m, MultiScaleCrossAttention) for m in g.modules())
