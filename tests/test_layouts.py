"""Published result folders: strips as the released PATN/XingGAN test.py wrote them, the other
naming conventions, ambiguous folders, and the scripts' errors for missing metrics and misspelt protocols."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.io import imread

from xinggan.data import read_pairs, write_annotations, write_pairs
from xinggan.metrics.evaluate import evaluate_folder
from xinggan.metrics.inputs import EvaluationInputError
from xinggan.metrics.layouts import LAYOUTS, LayoutError, infer_layout, resolve_results
from xinggan.metrics.mask import pose_mask

from helpers import smooth_image

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC_PAIRS = [
    ("0001_c1s1_000001_00.jpg", "0001_c2s1_000002_00.jpg"),
    ("0001_c2s1_000002_00.jpg", "0001_c1s1_000001_00.jpg"),
    ("0002_c1s1_000101_00.jpg", "0002_c3s1_000102_00.jpg"),
    ("0002_c3s1_000102_00.jpg", "0002_c1s1_000101_00.jpg"),
    ("0003_c1s1_000201_00.jpg", "0003_c3s1_000202_00.jpg"),
    ("0003_c3s1_000202_00.jpg", "0003_c1s1_000201_00.jpg"),
]


def smooth(rng, height=128, width=64) -> np.ndarray:
    """A float image in [-1, 1] with natural-image-like structure (what a generator outputs)."""
    return smooth_image(rng, height, width).astype(np.float64) / 127.5 - 1


def released_uint8(x: np.ndarray) -> np.ndarray:
    """The released tensor2im: (x + 1) / 2 * 255, then astype(uint8), a truncation."""
    return ((x + 1) / 2.0 * 255.0).astype(np.uint8)


def write_released_strips(folder: Path, pairs, rng) -> dict:
    """One 5-panel JPEG strip per pair named <from>___<to>_vis.jpg, as the released test.py saved them."""
    folder.mkdir(parents=True, exist_ok=True)
    keypoints = {}
    for source, target in pairs:
        panels = [smooth(rng), np.full((128, 64, 3), -1.0), smooth(rng), np.full((128, 64, 3), -1.0), smooth(rng)]
        panels[1][40:90, 30:33] = 1.0  # a limb of the pose drawings
        panels[3][30:80, 20:23] = 1.0
        strip = np.concatenate([released_uint8(p) for p in panels], axis=1)
        Image.fromarray(strip).save(folder / f"{source}___{target}_vis.jpg")  # PIL's default JPEG (quality 75)
        kp = np.stack([rng.integers(5, 120, 18), rng.integers(3, 60, 18)], axis=1)
        kp[rng.random(18) < 0.2] = -1
        kp[[0, 1, 14]] = [(15, 30), (30, 32), (12, 27)]
        keypoints[target] = kp
    return keypoints


def skimage_0142_ssim(target: np.ndarray, generated: np.ndarray, monkeypatch) -> float:
    """scikit-image's structural_similarity with the released call's arguments; its Gaussian made
    the 13-tap filter (truncate 4.0) of scikit-image 0.14.2, with 0.14.2's 5-pixel crop (win_size 11)."""
    import skimage.metrics._structural_similarity as module

    original = module.gaussian

    def thirteen_taps(image, **kwargs):
        kwargs["truncate"] = 4.0
        return original(image, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(module, "gaussian", thirteen_taps)
        return module.structural_similarity(target, generated, gaussian_weights=True, sigma=1.5,
                                            use_sample_covariance=False, channel_axis=2, win_size=11,
                                            data_range=float(generated.max()) - float(generated.min()))


def check_strips_score_like_the_released_scripts(tmp_path, pairs, monkeypatch):
    rng = np.random.default_rng(3)
    folder = tmp_path / "results" / "market_XingGAN" / "test_latest" / "images"
    keypoints = write_released_strips(folder, pairs, rng)
    annotations = tmp_path / "market-annotation-test.csv"
    write_annotations(annotations, keypoints)
    printed = []
    results = evaluate_folder("patn-market", folder, annotations_csv=annotations, metrics=["ssim", "mask_ssim"],
                              progress=False, log=printed.append)
    assert len(printed) == 1 and "layout 'strips'" in printed[0] and f"{len(pairs)} pairs" in printed[0]
    assert "pairs from the file names" in printed[0]

    plain, masked = [], []
    for name in os.listdir(folder):  # the released getMetrics loop
        strip = imread(folder / name)
        w = strip.shape[1] // 5
        target, generated = strip[:, 2 * w:3 * w], strip[:, 4 * w:5 * w]
        source_name, target_name = name[:-8].split("___")
        mask = pose_mask(keypoints[target_name], 128, 64)[..., None].astype(np.uint8)
        plain.append(skimage_0142_ssim(target, generated, monkeypatch))
        masked.append(skimage_0142_ssim(target * mask, generated * mask, monkeypatch))
    assert results["num_pairs"] == len(pairs) and results["layout"] == "strips"
    assert results["ssim"] == pytest.approx(np.mean(plain), abs=1e-6)
    assert results["mask_ssim"] == pytest.approx(np.mean(masked), abs=1e-6)
    assert results["details"]["targets"] == "strip panel 2" and results["details"]["generated_panel"] == 4
    return folder, annotations, results


def test_released_strips_with_real_market_pair_names(tmp_path, shared_data, monkeypatch):
    pairs = read_pairs(shared_data / "market" / "market-pairs-test.csv")[:8]
    folder, annotations, results = check_strips_score_like_the_released_scripts(tmp_path, pairs, monkeypatch)
    # The same folder with the pairs CSV: the CSV's order, the same means.
    pairs_csv = tmp_path / "pairs.csv"
    write_pairs(pairs_csv, pairs)
    with_csv = evaluate_folder("patn-market", folder, pairs_csv=pairs_csv, annotations_csv=annotations,
                               metrics=["ssim", "mask_ssim"], progress=False, log=None)
    assert with_csv["ssim"] == pytest.approx(results["ssim"], abs=1e-12)
    assert with_csv["details"]["pairs"] == str(pairs_csv)


def test_released_strips_with_synthetic_names(tmp_path, monkeypatch):
    check_strips_score_like_the_released_scripts(tmp_path, SYNTHETIC_PAIRS, monkeypatch)


def test_strips_with_targets_folder_use_the_given_targets(tmp_path):
    rng = np.random.default_rng(4)
    folder = tmp_path / "strips"
    write_released_strips(folder, SYNTHETIC_PAIRS[:2], rng)
    targets = tmp_path / "test"
    targets.mkdir()
    for _, target in SYNTHETIC_PAIRS[:2]:
        Image.fromarray(np.full((128, 64, 3), 128, np.uint8)).save(targets / target)
    own = evaluate_folder("patn-market", folder, metrics=["l1"], progress=False, log=None)
    given = evaluate_folder("patn-market", folder, targets, metrics=["l1"], progress=False, log=None)
    assert given["details"]["targets"] == str(targets) and own["l1"] != given["l1"]


def touch_images(folder: Path, names, width=64, height=128):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(folder / name)


@pytest.mark.parametrize("layout, names", [
    ("stems", ["0001_c1s1_000001_00___0001_c2s1_000002_00.png", "0002_c1s1_000101_00___0002_c3s1_000102_00.jpg"]),
    ("names", ["0001_c1s1_000001_00.jpg___0001_c2s1_000002_00.jpg.png",
               "0002_c1s1_000101_00.jpg___0002_c3s1_000102_00.jpg.jpg"]),
    ("strips", ["0001_c1s1_000001_00.jpg___0001_c2s1_000002_00.jpg_vis.jpg",
                "0002_c1s1_000101_00.jpg___0002_c3s1_000102_00.jpg_vis.png"]),
    ("2", ["0001_c1s1_000001_00_2_0001_c2s1_000002_00_vis.png", "0002_c1s1_000101_00_2_0002_c3s1_000102_00.png"]),
])
def test_each_naming_convention_is_recognised(tmp_path, layout, names):
    width = 320 if layout == "strips" else 64
    touch_images(tmp_path, names, width=width)
    assert infer_layout(sorted(names), tmp_path).name == layout
    found = resolve_results(tmp_path, image_width=64)
    keys = sorted((Path(s).stem, Path(t).stem) for s, t in found.pairs)
    assert keys == [("0001_c1s1_000001_00", "0001_c2s1_000002_00"), ("0002_c1s1_000101_00", "0002_c3s1_000102_00")]
    assert found.layout.name == layout and found.panels == (5 if layout == "strips" else 1)


def test_underscore_2_strips_need_the_panel(tmp_path):
    names = ["0001_c1s1_000001_00_2_0001_c2s1_000002_00_vis.png", "0002_c1s1_000101_00_2_0002_c3s1_000102_00_vis.png"]
    touch_images(tmp_path, names, width=64 * 3)
    with pytest.raises(LayoutError, match="strips of 3 panels; pass --panel"):
        resolve_results(tmp_path, image_width=64)
    found = resolve_results(tmp_path, image_width=64, panel=2)
    assert found.panels == 3 and {g.panel for g in found.generated} == {2}
    with pytest.raises(LayoutError, match="panels 0..2"):
        resolve_results(tmp_path, image_width=64, panel=3)


def test_mixed_folder_is_ambiguous_with_examples(tmp_path):
    touch_images(tmp_path, ["0001_c1s1_000001_00___0001_c2s1_000002_00.png"])
    touch_images(tmp_path, ["0002_c1s1_000101_00.jpg___0002_c3s1_000102_00.jpg_vis.jpg"], width=320)
    with pytest.raises(LayoutError) as error:
        resolve_results(tmp_path, image_width=64)
    message = str(error.value)
    assert "several layouts; pass --layout" in message
    assert "0001_c1s1_000001_00___0001_c2s1_000002_00.png" in message and "_vis.jpg" in message
    with pytest.warns(UserWarning, match="0001_c1s1_000001_00___0001_c2s1_000002_00.png"):
        found = resolve_results(tmp_path, image_width=64, layout="strips",
                                pairs=[("0002_c1s1_000101_00.jpg", "0002_c3s1_000102_00.jpg")])
    assert len(found.pairs) == 1


def test_underscore_2_split_that_only_the_pairs_decide(tmp_path):
    # "a_2_b_2_c": (a, b_2_c) or (a_2_b, c)
    touch_images(tmp_path, ["x_2_y_2_z.png"])
    with pytest.raises(LayoutError, match="more than one '_2_'"):
        resolve_results(tmp_path, layout="2")
    found = resolve_results(tmp_path, layout="2", pairs=[("x_2_y.jpg", "z.jpg")])
    assert found.pairs == [("x_2_y.jpg", "z.jpg")]


def test_unknown_names_and_missing_targets_are_errors(tmp_path):
    touch_images(tmp_path / "odd", ["picture.png"])
    with pytest.raises(LayoutError, match="no file name fits a known layout"):
        resolve_results(tmp_path / "odd")
    touch_images(tmp_path / "stems", ["0001_c1s1_000001_00___0001_c2s1_000002_00.png"])
    with pytest.raises(EvaluationInputError, match="pass the folder of target images"):
        evaluate_folder("patn-market", tmp_path / "stems", metrics=["ssim"], progress=False, log=None)


def test_listdir_order_is_available(tmp_path):
    names = ["b.jpg___a.jpg_vis.jpg", "a.jpg___b.jpg_vis.jpg"]
    touch_images(tmp_path, names, width=320)
    assert [g.name for g in resolve_results(tmp_path, image_width=64).generated] == sorted(names)
    listed = resolve_results(tmp_path, image_width=64, file_order="listdir")
    assert [g.name for g in listed.generated] == [n for n in os.listdir(tmp_path)]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), REPO / "scripts" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_scores_released_strips_in_one_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no Inception weights here
    rng = np.random.default_rng(5)
    folder = tmp_path / "images"
    keypoints = write_released_strips(folder, SYNTHETIC_PAIRS, rng)
    annotations = tmp_path / "market-annotation-test.csv"
    write_annotations(annotations, keypoints)
    evaluate = load_script("evaluate.py")
    out = tmp_path / "out" / "metrics.json"
    common = ["--protocol", "patn-market", "--generated", str(folder), "--annotations", str(annotations),
              "--no-download", "--out", str(out)]
    # IS, mask-IS (no Inception weights, too few images) and PCKh (no pose weights) cannot run:
    # SSIM and mask-SSIM are written, the command fails naming what to provide.
    assert evaluate.main(common) == 1
    captured = capsys.readouterr()
    assert "layout 'strips'" in captured.out and "6 pairs" in captured.out
    assert "pose_estimator.h5" in captured.err and "--allow-missing" in captured.err
    stored = json.loads(out.read_text())
    assert "ssim" in stored and "mask_ssim" in stored and {"is", "mask_is", "pckh"} <= set(stored["skipped"])
    assert evaluate.main(common + ["--allow-missing"]) == 0
    assert "skipped pckh" in capsys.readouterr().out


def test_script_names_the_nearest_protocol_and_metric(tmp_path, capsys):
    evaluate = load_script("evaluate.py")
    touch_images(tmp_path, ["a___b.png"])
    base = ["--generated", str(tmp_path), "--targets", str(tmp_path), "--out", str(tmp_path / "m.json")]
    assert evaluate.main(["--protocol", "patn-markt"] + base) == 2
    assert "did you mean 'patn-market'" in capsys.readouterr().err
    assert evaluate.main(["--protocol", "patn-market", "--metrics", "mask-sim"] + base) == 2
    assert "did you mean 'mask_ssim'" in capsys.readouterr().err


def test_config_rejects_misspelt_protocol_and_metric():
    from xinggan.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"eval\.protocol\b.*'patn-fashion'.*"
                                          r"did you mean 'patn-deepfashion'\?"):
        load_config(REPO / "configs" / "market.yaml", ["eval.protocol=patn-fashion"])
    with pytest.raises(ConfigError, match=r"eval\.metrics\b.*'pkch'.*did you mean 'pckh'\?"):
        load_config(REPO / "configs" / "market.yaml", ["eval.metrics=[ssim, pkch]"])
    cfg = load_config(REPO / "configs" / "market.yaml", ["eval.allow_missing_metrics=true",
                                                         "eval.pose_weights=pose_estimator.h5"])
    assert cfg.eval.allow_missing_metrics and cfg.eval.pose_weights == "pose_estimator.h5"


def test_layouts_are_documented_with_an_example_each():
    for key, layout in LAYOUTS.items():
        assert layout.parse(layout.example), key


def test_pckh_detects_on_the_generated_panel_re_saved_as_jpeg(tmp_path, monkeypatch):
    """evaluate_folder(pose_weights=...) hands each generated panel, re-saved as JPEG as the released
    crop script did, to the OpenPose detector and scores its keypoints against the target annotation."""
    import xinggan.keypoints.openpose as openpose
    from xinggan.data import read_annotations
    from xinggan.metrics.pckh import pckh
    from xinggan.metrics.preprocess import jpeg_roundtrip

    rng = np.random.default_rng(6)
    folder = tmp_path / "images"
    keypoints = write_released_strips(folder, SYNTHETIC_PAIRS[:4], rng)
    annotations = tmp_path / "ann.csv"
    write_annotations(annotations, keypoints)
    names = sorted(os.listdir(folder))
    answers = {}  # detector output per generated panel: the target's joints for two pairs, nothing for two
    for i, name in enumerate(names):
        panel = imread(folder / name)[:, 256:320]
        target = name[:-8].split("___")[1]
        answers[jpeg_roundtrip(panel[None])[0].tobytes()] = keypoints[target] if i < 2 else np.full((18, 2), -1)

    class Recorder:
        name = "openpose"

        def detect(self, image):
            return answers[np.ascontiguousarray(image).tobytes()]  # KeyError: not the re-saved panel

    seen = {}

    def factory(weights=None, device="cpu", **options):
        seen["weights"] = weights
        return Recorder()

    monkeypatch.setattr(openpose, "build_openpose_detector", factory)
    weights = tmp_path / "pose_estimator.h5"
    detections = tmp_path / "detected.csv"
    results = evaluate_folder("patn-market", folder, annotations_csv=annotations, metrics=["pckh"],
                              pose_weights=weights, detections_csv=detections, progress=False, log=None)
    expected = pckh([answers[k] for k in answers], [keypoints[n[:-8].split("___")[1]] for n in names])
    assert seen["weights"] == str(weights)
    assert results["pckh"] == pytest.approx(expected["score"]) and 0 < results["pckh"] < 1
    stored = read_annotations(detections)
    assert sorted(stored) == names


@pytest.mark.parametrize("how", ["argument", "metric_weights"])
def test_missing_pose_weights_name_the_file(tmp_path, how):
    """The OpenPose file comes as ``pose_weights`` or inside MetricWeights (as the scripts pass
    it, MetricWeights.for_protocol); either way a missing one is named with the file to get."""
    from xinggan.metrics.weights import MetricWeights

    rng = np.random.default_rng(7)
    folder = tmp_path / "images"
    keypoints = write_released_strips(folder, SYNTHETIC_PAIRS[:2], rng)
    annotations = tmp_path / "ann.csv"
    write_annotations(annotations, keypoints)
    given = tmp_path / "nope.h5"
    kwargs = ({"pose_weights": given} if how == "argument" else
              {"weights": MetricWeights.for_protocol("patn-market", pose=str(given),
                                                     allow_download=False)})
    results = evaluate_folder("patn-market", folder, annotations_csv=annotations, metrics=None,
                              progress=False, log=None, **kwargs)
    assert "nope.h5" in results["skipped"]["pckh"] and "pose_estimator.h5" in results["skipped"]["pckh"]


def test_the_name_generation_writes_is_read_back_as_its_pair():
    from xinggan.data.pairs import result_stem

    name = result_stem("0002_c1s1_000451_03.jpg", "0002_c5s1_000551_01.jpg") + ".png"
    assert name == "0002_c1s1_000451_03___0002_c5s1_000551_01.png"
    assert infer_layout([name], Path(".")).name == "stems"
    assert LAYOUTS["stems"].parse(name) == [("0002_c1s1_000451_03", "0002_c5s1_000551_01")]
