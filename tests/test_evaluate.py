"""evaluate_folder and scripts/evaluate.py end to end on a tiny synthetic Market-style folder."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from xinggan.data import write_annotations, write_pairs
from helpers import smooth_image
from xinggan.data.pairs import result_stem
from xinggan.metric_registry import get_protocol
from xinggan.metrics.evaluate import MetricUnavailable, evaluate_folder, plan_metrics, select_metrics
from xinggan.metrics.inception_score import TF_INCEPTION_FILE
from xinggan.metrics.l1 import l1_distance, to_signed_unit
from xinggan.metrics.inputs import EvaluationInputError, resolve_inputs
from xinggan.metrics.mask import pose_masks
from xinggan.metrics.preprocess import jpeg_roundtrip, released_8bit
from xinggan.metrics.psnr import psnr
from xinggan.metrics.report import write_metrics
from xinggan.metrics.ssim import PATN_SSIM, ssim
from xinggan.metrics.weights import MetricWeights

PAIRS = [
    ("0001_c1s1_000001_00.jpg", "0001_c2s1_000002_00.jpg"),
    ("0001_c2s1_000002_00.jpg", "0001_c1s1_000001_00.jpg"),
    ("0002_c1s1_000101_00.jpg", "0002_c3s1_000102_00.jpg"),
    ("0002_c3s1_000102_00.jpg", "0002_c1s1_000101_00.jpg"),
]




def keypoints(rng) -> np.ndarray:
    kp = np.stack([rng.integers(5, 120, 18), rng.integers(3, 60, 18)], axis=1)
    kp[rng.random(18) < 0.2] = -1
    kp[[0, 1, 14]] = [(15, 30), (30, 32), (12, 27)]  # a head box for PCKh
    return kp


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no Inception weights here
    rng = np.random.default_rng(0)
    targets, generated = tmp_path / "test", tmp_path / "generated"
    targets.mkdir()
    generated.mkdir()
    names = sorted({n for pair in PAIRS for n in pair})
    for name in names:
        Image.fromarray(smooth_image(rng)).save(targets / name)
    for source, target in PAIRS:
        Image.fromarray(smooth_image(rng)).save(generated / f"{result_stem(source, target)}.png")
    pairs_csv = tmp_path / "market-pairs-test.csv"
    write_pairs(pairs_csv, PAIRS)
    annotations = {name: keypoints(rng) for name in names}
    annotations_csv = tmp_path / "market-annotation-test.csv"
    write_annotations(annotations_csv, annotations)
    # Detections named after the generated files: exact for the first two pairs, nothing for the others.
    detected = {}
    for i, (source, target) in enumerate(PAIRS):
        detected[f"{result_stem(source, target)}.png"] = annotations[target] if i < 2 else np.full((18, 2), -1)
    detected_csv = tmp_path / "detected.csv"
    write_annotations(detected_csv, detected)
    return {"root": tmp_path, "generated": generated, "targets": targets, "pairs": pairs_csv,
            "annotations": annotations_csv, "detected": detected_csv, "keypoints": annotations}


def load(path) -> np.ndarray:
    return np.array(Image.open(path).convert("RGB"))[None]


def direct_scores(folder, roundtrip: bool) -> dict:
    """The same numbers computed pair by pair with the metric functions."""
    scores = {"ssim": [], "mask_ssim": [], "l1": [], "psnr": []}
    for source, target in PAIRS:
        gen = load(folder["generated"] / f"{result_stem(source, target)}.png")
        tgt = load(folder["targets"] / target)
        if roundtrip:
            gen, tgt = jpeg_roundtrip(gen), jpeg_roundtrip(released_8bit(tgt))
        g, t = torch.from_numpy(gen).permute(0, 3, 1, 2), torch.from_numpy(tgt).permute(0, 3, 1, 2)
        mask = torch.from_numpy(pose_masks(folder["keypoints"][target][None], 128, 64))[:, None]
        scores["ssim"].append(ssim(g, t, PATN_SSIM).item())
        scores["mask_ssim"].append(ssim(g * mask, t * mask, PATN_SSIM).item())
        scores["l1"].append(l1_distance(to_signed_unit(g), to_signed_unit(t)).item())
        scores["psnr"].append(psnr(g.float() / 255, t.float() / 255).item())
    return {k: float(np.mean(v)) for k, v in scores.items()}


def present_joints(kp) -> int:
    return int(((kp[:, 0] != -1) & (kp[:, 1] != -1)).sum())


def run(folder, **kwargs):
    arguments = dict(generated_dir=folder["generated"], targets_dir=folder["targets"], pairs_csv=folder["pairs"],
                     annotations_csv=folder["annotations"], progress=False, batch_size=3,
                     weights={"allow_download": False})
    arguments.update(kwargs)
    return evaluate_folder(**arguments)


def test_metrics_that_run_here(folder):
    results = run(folder, protocol="patn-market", metrics=["ssim", "mask_ssim", "l1", "psnr", "pckh"],
                  detected_keypoints=folder["detected"])
    expected = direct_scores(folder, roundtrip=True)
    for metric in ("ssim", "mask_ssim", "l1", "psnr"):
        assert results[metric] == pytest.approx(expected[metric], abs=1e-9), metric
    assert results["mask_ssim"] > results["ssim"]  # masks zero most of both images
    # Exact detections on pairs 0-1, none on pairs 2-3; every target has a head box.
    kp = folder["keypoints"]
    hits = sum(present_joints(kp[t]) for _, t in PAIRS[:2])
    total = sum(present_joints(kp[t]) for _, t in PAIRS)
    assert results["pckh"] == pytest.approx(hits / total)
    assert results["protocol"] == "patn-market" and results["num_pairs"] == 4 and results["skipped"] == {}


def test_jpeg_roundtrip_switch(folder):
    off = run(folder, protocol="patn-market", metrics=["ssim"], jpeg_roundtrip=False)
    assert off["ssim"] == pytest.approx(direct_scores(folder, roundtrip=False)["ssim"], abs=1e-9)
    on = run(folder, protocol="patn-market", metrics=["ssim"])
    assert on["jpeg_roundtrip"] and not off["jpeg_roundtrip"] and on["ssim"] != off["ssim"]


def test_generated_jpegs_are_not_encoded_twice(folder):
    for png in sorted(folder["generated"].glob("*.png")):
        Image.open(png).save(png.with_suffix(".jpg"))  # step 1 done by the test script
        png.unlink()
    results = run(folder, protocol="patn-market", metrics=["ssim"])
    expected = []
    for source, target in PAIRS:
        gen = load(folder["generated"] / f"{result_stem(source, target)}.jpg")
        tgt = jpeg_roundtrip(released_8bit(load(folder["targets"] / target)))
        as_tensor = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2)  # noqa: E731
        expected.append(ssim(as_tensor(gen), as_tensor(tgt), PATN_SSIM).item())
    assert results["ssim"] == pytest.approx(np.mean(expected), abs=1e-9)


def test_unreadable_file_is_named(folder):
    broken = folder["generated"] / f"{result_stem(*PAIRS[3])}.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(EvaluationInputError) as error:
        run(folder, protocol="patn-market", metrics=["ssim"])
    assert "1 image file(s) cannot be read" in str(error.value) and broken.name in str(error.value)


def test_default_metrics_that_cannot_run_are_skipped(folder, tmp_path):
    # 12 pairs (each pair three times): enough for the 10 IS splits, so only the weights are missing.
    pairs_csv = folder["root"] / "more-pairs.csv"
    write_pairs(pairs_csv, PAIRS * 3)
    results = run(folder, protocol="patn-market", pairs_csv=pairs_csv)
    assert results["num_pairs"] == 12 and "ssim" in results and "mask_ssim" in results
    assert set(results["skipped"]) == {"is", "mask_is", "pckh"}
    for metric in ("is", "mask_is"):  # the reason names the file and where it goes
        assert TF_INCEPTION_FILE in results["skipped"][metric]
        assert str(folder["root"] / "torch-home") in results["skipped"][metric]
    assert "detected" in results["skipped"]["pckh"]
    write_metrics(results, tmp_path / "out" / "metrics.json", tmp_path / "out" / "metrics.md")
    stored = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert stored["ssim"] == pytest.approx(results["ssim"]) and "is" in stored["skipped"]
    table = (tmp_path / "out" / "metrics.md").read_text()
    assert "0.313 (patn-market)" in table and "XingGAN (paper)" in table and "reported" in table
    assert f"{results['ssim']:.4f} (patn-market)" in table


def test_too_few_pairs_for_inception_score(folder):
    results = run(folder, protocol="patn-market", metrics=None)
    assert "10 splits" in results["skipped"]["is"]


def test_explicit_metric_that_cannot_run_is_an_error(folder):
    with pytest.raises(MetricUnavailable, match="detected"):
        run(folder, protocol="patn-market", metrics=["pckh"])
    with pytest.raises(MetricUnavailable, match="annotations"):
        run(folder, protocol="patn-market", metrics=["mask_ssim"], annotations_csv=None)
    with pytest.raises(MetricUnavailable, match="real"):
        run(folder, protocol="gfla", metrics=["fid"])
    assert issubclass(MetricUnavailable, RuntimeError)
    with pytest.raises(ValueError, match="unknown metric"):
        run(folder, protocol="patn-market", metrics=["ssim", "fidelity"])


def test_missing_generated_image_is_named(folder):
    missing = folder["generated"] / f"{result_stem(*PAIRS[2])}.png"
    missing.unlink()
    with pytest.raises(EvaluationInputError) as error:
        run(folder, protocol="patn-market", metrics=["ssim"])
    message = str(error.value)
    assert "1 of 4 generated images are missing" in message and result_stem(*PAIRS[2]) in message


def test_wrong_size_target_is_named(folder):
    name = PAIRS[1][1]
    Image.fromarray(np.zeros((64, 32, 3), dtype=np.uint8)).save(folder["targets"] / name)
    with pytest.raises(EvaluationInputError) as error:
        run(folder, protocol="patn-market", metrics=["ssim"])
    assert name in str(error.value) and "64x32" in str(error.value)


def test_extra_generated_files_are_a_warning(folder):
    Image.fromarray(np.zeros((128, 64, 3), dtype=np.uint8)).save(folder["generated"] / "stray.png")
    with pytest.warns(UserWarning, match="stray.png"):
        run(folder, protocol="patn-market", metrics=["l1"])


def test_script(folder, capsys):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "evaluate.py"
    spec = importlib.util.spec_from_file_location("evaluate_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = folder["root"] / "result" / "metrics.json"
    common = ["--protocol", "patn-market", "--generated", str(folder["generated"]), "--targets",
              str(folder["targets"]), "--pairs", str(folder["pairs"]), "--annotations", str(folder["annotations"]),
              "--no-download", "--out", str(out)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert module.main(common + ["--metrics", "ssim,l1", "--no-jpeg-roundtrip"]) == 0
    printed = capsys.readouterr().out
    assert "(patn-market)" in printed and out.is_file() and out.with_suffix(".md").is_file()
    assert json.loads(out.read_text())["jpeg_roundtrip"] is False
    assert module.main(common + ["--metrics", "is"]) == 2
    assert "cannot run" in capsys.readouterr().err


@pytest.fixture
def one_thread():
    """Tiny convolutions run faster on one thread, especially on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # 4 images: singular covariances
def test_network_metrics_end_to_end_with_untrained_weights(folder, tmp_path, monkeypatch, one_thread):
    """IS, mask-IS, FID, LPIPS and mask-LPIPS through evaluate_folder, weights loaded from local files.

    Plumbing only, kept fast: the Inception resize target is lowered from 299 to 75 (its smallest
    input) and the Fréchet distance (a 2048 x 2048 sqrtm, a minute on this CPU) is taken on the
    first 32 feature dimensions; its arithmetic is pinned in test_metrics_inception.py.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torchvision.models import alexnet

    import xinggan.metrics.accumulators as accumulators_module
    from xinggan.metrics.fid import TorchvisionInception, frechet_distance
    from xinggan.metrics.inception_score import TFInception
    from xinggan.metrics.lpips import ALEXNET_FILE

    monkeypatch.setattr(FeatureExtractorInceptionV3, "INPUT_IMAGE_SIZE", 75)
    monkeypatch.setattr(TorchvisionInception, "input_size", 75)
    seen = []

    def leading_block_distance(mu1, sigma1, mu2, sigma2):
        seen.append((mu1.shape, sigma1.shape, mu2.shape, sigma2.shape))
        return frechet_distance(mu1[:32], sigma1[:32, :32], mu2[:32], sigma2[:32, :32])

    monkeypatch.setattr(accumulators_module, "frechet_distance", leading_block_distance)
    torch.manual_seed(0)
    files = {"inception": tmp_path / TF_INCEPTION_FILE, "torchvision_inception": tmp_path / "tv-inception.pth",
             "alexnet": tmp_path / ALEXNET_FILE}
    torch.save(TFInception(random_init=True).network.state_dict(), files["inception"])
    torch.save(TorchvisionInception(random_init=True).network.state_dict(), files["torchvision_inception"])
    torch.save(alexnet(weights=None).state_dict(), files["alexnet"])
    weights = {name: str(path) for name, path in files.items()} | {"allow_download": False}

    pairs_csv = folder["root"] / "ten-pairs.csv"
    write_pairs(pairs_csv, (PAIRS * 3)[:10])
    patn = run(folder, protocol="patn-market", pairs_csv=pairs_csv, metrics=["is", "mask_is"], weights=weights)
    assert patn["is"] >= 1.0 and patn["mask_is"] >= 1.0 and np.isfinite(patn["is_std"])

    cache = tmp_path / "fid-cache"
    gfla = run(folder, protocol="gfla", real_dir=folder["targets"], weights=weights, cache_dir=cache)
    assert gfla["skipped"] == {}
    assert gfla["fid"] > 0 and gfla["lpips"] > 0 and 0 < gfla["mask_lpips"] < gfla["lpips"]
    assert len(list(cache.glob("real-gfla-torchvision-128x64-*.npz"))) == 1
    assert seen == [((2048,), (2048, 2048), (2048,), (2048, 2048))]


def test_table_shows_paper_rows_of_the_same_dataset_only():
    from xinggan.metrics.report import format_table

    market = {"protocol": "gfla", "num_pairs": 3, "lpips": 0.2, "skipped": {"fid": "no real set"},
              "details": {"dataset": "market"}}
    table = format_table(market)
    assert "PIDM" not in table and "0.2000 (gfla)" in table and "skipped" in table
    fashion = dict(market, details={"dataset": "deepfashion"})
    assert "6.37 (gfla)" in format_table(fashion) and "PIDM (paper)" in format_table(fashion)


def test_deepfashion_white_padding(tmp_path):
    """patn-deepfashion: SSIM on 256 x 256 images padded with 40 white columns per side."""
    from xinggan.metrics.preprocess import pad_white_columns

    rng = np.random.default_rng(5)
    pairs = [("fashionWOMENDressesid0000001_1front.jpg", "fashionWOMENDressesid0000001_2side.jpg"),
             ("fashionWOMENDressesid0000001_2side.jpg", "fashionWOMENDressesid0000001_1front.jpg")]
    (tmp_path / "test").mkdir()
    (tmp_path / "gen").mkdir()
    for name in {n for pair in pairs for n in pair}:
        Image.fromarray(smooth_image(rng, 256, 176)).save(tmp_path / "test" / name)
    for source, target in pairs:
        Image.fromarray(smooth_image(rng, 256, 176)).save(tmp_path / "gen" / f"{result_stem(source, target)}.png")
    write_pairs(tmp_path / "pairs.csv", pairs)
    annotations = {}
    for name in {n for pair in pairs for n in pair}:
        kp = np.stack([rng.integers(10, 240, 18), rng.integers(-30, 200, 18)], axis=1)  # x out of frame too
        kp[kp[:, 1] == -1, 1] = -2  # -1 would mean "missing"
        kp[3] = -1                  # and one joint is missing
        annotations[name] = kp
    write_annotations(tmp_path / "ann.csv", annotations)
    results = evaluate_folder("patn-deepfashion", tmp_path / "gen", tmp_path / "test", tmp_path / "pairs.csv",
                              annotations_csv=tmp_path / "ann.csv", metrics=["ssim", "mask_ssim"],
                              jpeg_roundtrip=False, progress=False)
    as_tensor = lambda x: torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)  # noqa: E731
    plain, masked = [], []
    for source, target in pairs:
        gen = pad_white_columns(load(tmp_path / "gen" / f"{result_stem(source, target)}.png"), 40)
        tgt = pad_white_columns(load(tmp_path / "test" / target), 40)
        kp = annotations[target].copy()
        kp[kp[:, 1] != -1, 1] += 40         # the same joints in the padded frame
        mask = torch.from_numpy(pose_masks(kp[None], 256, 256))[:, None]
        plain.append(ssim(as_tensor(gen), as_tensor(tgt), PATN_SSIM).item())
        masked.append(ssim(as_tensor(gen) * mask, as_tensor(tgt) * mask, PATN_SSIM).item())
    assert results["ssim"] == pytest.approx(np.mean(plain), abs=1e-9)
    assert results["mask_ssim"] == pytest.approx(np.mean(masked), abs=1e-9)
    assert results["details"]["dataset"] == "deepfashion"


def test_plan_lists_what_cannot_run_and_why_in_order(folder):
    protocol = get_protocol("patn-market")
    inputs = resolve_inputs(protocol, folder["generated"], folder["targets"], folder["pairs"], log=None)
    requested, explicit = select_metrics(protocol, None)
    plan = plan_metrics(protocol, inputs, requested, explicit, {"allow_download": False})
    # No annotations: the mask metrics and PCKh; then IS, with 4 images for its 10 splits.
    assert list(plan.skipped) == ["mask_ssim", "mask_is", "pckh", "is"]
    assert "annotations" in plan.skipped["mask_ssim"] and "10 splits" in plan.skipped["is"]
    assert plan.active == ["ssim"] and not plan.needs_masks
    assert plan.tf_inception is None and plan.lpips is None  # no network for metrics that do not run


@pytest.mark.parametrize("name, network", [("patn-market", "inception"), ("patn-deepfashion", "inception"),
                                           ("toy", "inception"), ("gfla", "torchvision_inception")])
def test_one_inception_file_goes_to_the_network_of_the_protocols_fid(name, network):
    # The PATN protocols and toy score IS and FID with the TF-ported Inception, gfla's FID uses
    # torchvision's Inception-v3.
    weights = MetricWeights.for_protocol(name, inception="inception.pth", lpips="alexnet.pth", pose="body.pth",
                                         allow_download=False)
    other = ({"inception", "torchvision_inception"} - {network}).pop()
    assert getattr(weights, network) == "inception.pth" and getattr(weights, other) is None
    assert (weights.alexnet, weights.pose, weights.allow_download) == ("alexnet.pth", "body.pth", False)
    assert MetricWeights.for_protocol(name, inception="", lpips="", pose="") == MetricWeights()  # unset config values


@pytest.mark.parametrize("name, network", [("patn-market", "TF-ported Inception-v3"),
                                           ("gfla", "torchvision Inception-v3")])
def test_script_gives_the_inception_file_to_the_protocols_fid_network(folder, capsys, name, network):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "evaluate.py"
    spec = importlib.util.spec_from_file_location("evaluate_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    absent = folder["root"] / "absent-inception.pth"
    argv = ["--protocol", name, "--generated", str(folder["generated"]), "--targets", str(folder["targets"]),
            "--pairs", str(folder["pairs"]), "--metrics", "fid", "--real", str(folder["targets"]),
            "--inception-weights", str(absent), "--no-download", "--out", str(folder["root"] / "m.json")]
    assert module.main(argv) == 2
    error = capsys.readouterr().err
    assert f"{network}" in error and str(absent) in error and f"protocol {name}" in error


def test_metrics_run_without_tf32_whatever_the_caller_set(folder, monkeypatch):
    """The metric networks and measures run in strict float32 (a run may train with TF32 on),
    and the caller's TF32 settings come back afterwards."""
    import xinggan.metrics.evaluate as evaluate_module

    seen = []
    read = evaluate_module.BatchReader.read

    def recording(self, *args):
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return read(self, *args)

    monkeypatch.setattr(evaluate_module.BatchReader, "read", recording)
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        run(folder, protocol="patn-market", metrics=["ssim"])
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    assert seen and set(seen) == {(False, False)}
