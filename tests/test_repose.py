"""scripts/repose.py end to end with a checkpoint trained on toy data, and every input error."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from xinggan.checkpoint import CheckpointError
from xinggan.config import load_config
from xinggan.data.annotations import read_annotations, read_pairs
from xinggan.models import build_generator
from xinggan.prep.framing import read_photo
from xinggan.prep.toy import make_toy_dataset
from xinggan.released.convert import to_released_state_dict
from xinggan.repose import ModelFrame, generate, load_model

from helpers import tiny_training_overrides
from photo_helpers import REPO, LookupDetector, load_script, train_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tiny_data, tmp_path_factory):
    return train_tiny_checkpoint(tiny_data, tmp_path_factory.mktemp("repose_run"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Toy people drawn as 160 x 120 'photos' (not the model's 64 x 32), with their keypoints."""
    root = tmp_path_factory.mktemp("repose_photos")
    make_toy_dataset(root, seed=7, identities=1, test_identities=1, poses=4, test_pairs=4,
                     height=160, width=120)
    annotations = read_annotations(root / "market-annotation-test.csv")
    names = sorted(annotations)
    return root, annotations, names


def lookup_for(root, annotations, names):
    detector = LookupDetector()
    for name in names:
        detector.register(read_photo(root / "test" / name), annotations[name])
    return detector


def test_photo_to_photo_gives_an_image_of_the_checkpoint_size(checkpoint, photos, tmp_path):
    root, annotations, names = photos
    detector = lookup_for(root, annotations, names)
    script = load_script("repose")
    for k, target in enumerate(names[1:3]):
        out = tmp_path / f"out{k}.png"
        code = script.main(["--checkpoint", str(checkpoint), "--source", str(root / "test" / names[0]),
                            "--target", str(root / "test" / target), "--out", str(out), "--panel"],
                           detector=detector)
        assert code == 0
        result = np.asarray(Image.open(out))
        assert result.shape == (64, 32, 3)
        panel = np.asarray(Image.open(tmp_path / f"out{k}_panel.png"))
        assert panel.shape == (64, 3 * 32 + 2 * 2, 3)
        assert np.array_equal(panel[:, -32:], result)  # the panel ends with the result
    assert detector.seen == [(160, 120, 3)] * 4  # source and target photos of both runs


class Probe(torch.nn.Module):
    """A stand-in generator that shows its inputs: source red, source pose, target pose."""

    def forward(self, image, source_pose, target_pose):
        return torch.cat([image[:, :1], source_pose.amax(1, keepdim=True) * 2 - 1,
                          target_pose.amax(1, keepdim=True) * 2 - 1], dim=1)


def test_the_generator_gets_the_framed_source_and_both_poses():
    frame = ModelFrame(height=64, width=32, fill="border", sigma=2.0)
    source = np.random.default_rng(0).integers(0, 256, (64, 32, 3), dtype=np.uint8)
    source_kp = np.full((18, 2), -1)
    source_kp[[0, 1, 2]] = [(10, 16), (20, 16), (20, 8)]
    target_kp = np.full((18, 2), -1)
    target_kp[[0, 8, 13]] = [(12, 5), (40, 20), (60, 30)]
    out = generate(Probe(), frame, source, source_kp, target_kp).astype(int)
    assert np.abs(out[..., 0] - source[..., 0]).max() <= 1  # the source image, in [-1, 1] and back
    for channel, kp in ((1, source_kp), (2, target_kp)):
        peaks = {tuple(p) for p in np.argwhere(out[..., channel] >= 254)}
        assert peaks == {tuple(p) for p in kp if p[0] >= 0}, channel


def test_keypoints_from_csv_and_json_through_the_command_line(checkpoint, photos, tmp_path, capsys):
    """The CSV row through a real command line; both JSON forms through the script's main()."""
    root, annotations, names = photos
    csv = root / "market-annotation-test.csv"
    target = annotations[names[2]]
    json_path = tmp_path / "pose.json"
    json_path.write_text(json.dumps({"keypoints_y": target[:, 0].tolist(),
                                     "keypoints_x": target[:, 1].tolist()}))
    pairs_json = tmp_path / "pairs.json"
    pairs_json.write_text(json.dumps(target.tolist()))
    script, results = load_script("repose"), []
    for k, spec in enumerate((f"{csv}:{names[2]}", str(json_path), str(pairs_json))):
        out = tmp_path / f"out{k}.png"
        argv = ["--checkpoint", str(checkpoint), "--source", str(root / "test" / names[0]),
                "--source-keypoints", f"{csv}:{names[0]}", "--target", spec, "--out", str(out)]
        if k == 0:
            run = subprocess.run([sys.executable, "scripts/repose.py", *argv], cwd=REPO, capture_output=True,
                                 text=True, timeout=300)
            code, stdout = run.returncode, run.stdout + run.stderr
        else:
            code, stdout = script.main(argv), capsys.readouterr().out
        assert code == 0, stdout
        assert "model frame 64 x 32 (fill: border)" in stdout
        results.append(np.asarray(Image.open(out)))
    assert results[0].shape == (64, 32, 3)
    assert np.array_equal(results[0], results[1]) and np.array_equal(results[0], results[2])


def test_as_is_takes_a_prepared_image_and_its_row(checkpoint, tiny_data, tmp_path, capsys):
    script = load_script("repose")
    csv = tiny_data / "market-annotation-test.csv"
    source, target = read_pairs(tiny_data / "market-pairs-test.csv")[0]
    out = tmp_path / "out.png"
    code = script.main(["--checkpoint", str(checkpoint), "--source", str(tiny_data / "test" / source),
                        "--source-keypoints", f"{csv}:{source}", "--target", f"{csv}:{target}",
                        "--out", str(out), "--as-is"])
    assert code == 0 and np.asarray(Image.open(out)).shape == (64, 32, 3)
    # The same call on a photo of another size is refused, naming it.
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((128, 64, 3), np.uint8)).save(big)
    code = script.main(["--checkpoint", str(checkpoint), "--source", str(big), "--source-keypoints",
                        f"{csv}:{source}", "--target", f"{csv}:{target}", "--out", str(out), "--as-is"])
    assert code == 1
    assert f"{big}: image is 128 x 64" in capsys.readouterr().err


def run_error(script, argv, detector, capsys) -> str:
    code = script.main(argv, detector=detector)
    err = capsys.readouterr().err
    assert code != 0, err
    assert err.startswith("error:") and "Traceback" not in err
    return err


def test_every_input_error_names_its_file(checkpoint, photos, tmp_path, capsys):
    root, annotations, names = photos
    detector = lookup_for(root, annotations, names)
    script = load_script("repose")
    source, target = str(root / "test" / names[0]), str(root / "test" / names[1])
    out = str(tmp_path / "out.png")
    base = ["--checkpoint", str(checkpoint), "--out", out]

    # Nobody in the source photo (a photo the detector finds no one in).
    empty = tmp_path / "empty.jpg"
    Image.fromarray(np.full((90, 60, 3), 200, np.uint8)).save(empty)
    err = run_error(script, base + ["--source", str(empty), "--target", target], detector, capsys)
    assert f"{empty}: no person found by the lookup detector" in err
    # ... or in the target photo.
    err = run_error(script, base + ["--source", source, "--target", str(empty)], detector, capsys)
    assert f"{empty}: no person found" in err
    # Too few joints for the model.
    few = annotations[names[1]].copy()
    few[4:] = -1
    few_photo = tmp_path / "few.png"
    Image.fromarray(np.full((90, 60, 3), 50, np.uint8)).save(few_photo)
    detector.register(read_photo(few_photo), few)
    err = run_error(script, base + ["--source", source, "--target", str(few_photo)], detector, capsys)
    assert f"{few_photo}: only 4 of 18 joints found" in err and "at least 8" in err
    # Files that are not images, as the source and as the target photo.
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    err = run_error(script, base + ["--source", str(text), "--target", target], detector, capsys)
    assert f"{text}: not a readable image" in err
    err = run_error(script, base + ["--source", source, "--target", str(text)], detector, capsys)
    assert f"{text}: not a readable image" in err
    # Keypoint files: a missing CSV row, a malformed JSON, a JSON of the wrong shape.
    csv = root / "market-annotation-test.csv"
    err = run_error(script, base + ["--source", source, "--target", f"{csv}:nobody.jpg"], detector, capsys)
    assert f"{csv}: no row for 'nobody.jpg'" in err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    err = run_error(script, base + ["--source", source, "--target", str(bad)], detector, capsys)
    assert f"{bad}: not valid JSON" in err
    bad.write_text(json.dumps([[1, 2]] * 5))
    err = run_error(script, base + ["--source", source, "--target", str(bad)], detector, capsys)
    assert f"{bad}: expected" in err
    # A checkpoint that is not there.
    err = run_error(script, ["--checkpoint", str(tmp_path / "none.pt"), "--out", out, "--source", source,
                             "--target", target], detector, capsys)
    assert "none.pt" in err


def test_an_error_in_a_real_run_is_one_line_without_traceback(checkpoint, photos, tmp_path):
    root, _, names = photos
    text = tmp_path / "photo.jpg"
    text.write_text("this is not a jpeg")
    csv = root / "market-annotation-test.csv"
    run = subprocess.run([sys.executable, "scripts/repose.py", "--checkpoint", str(checkpoint),
                          "--source", str(text), "--source-keypoints", f"{csv}:{names[0]}",
                          "--target", f"{csv}:{names[1]}", "--out", str(tmp_path / "o.png")],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [run.stderr.strip()]  # one line
    assert f"{text}: not a readable image" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "o.png").exists()


def test_three_targets_make_a_three_frame_gif(checkpoint, tiny_data, tmp_path, capsys):
    script = load_script("repose")
    csv = tiny_data / "market-annotation-test.csv"
    names = sorted(read_annotations(csv))
    out = tmp_path / "walk.gif"
    argv = ["--checkpoint", str(checkpoint), "--source", str(tiny_data / "test" / names[0]),
            "--source-keypoints", f"{csv}:{names[0]}", "--out", str(out), "--panel"]
    for name in names[1:4]:
        argv += ["--target", f"{csv}:{name}"]
    assert script.main(argv) == 0, capsys.readouterr().err
    with Image.open(out) as gif:
        assert (gif.format, gif.n_frames, gif.size) == ("GIF", 3, (32, 64))
    with Image.open(tmp_path / "walk_panel.gif") as gif:
        assert (gif.n_frames, gif.size) == (3, (3 * 32 + 2 * 2, 64))
    # Several targets with a PNG name are refused before anything runs.
    code = script.main(argv[:6] + ["--out", str(tmp_path / "x.png"), "--target", f"{csv}:{names[1]}",
                                   "--target", f"{csv}:{names[2]}"])
    assert code == 2 and "give a .gif --out" in capsys.readouterr().err


def test_joints_outside_the_photo_are_named(checkpoint, photos, tmp_path, capsys):
    root, annotations, names = photos
    script = load_script("repose")
    source_kp = annotations[names[0]].copy()
    source_kp[4] = (500, 20)  # below the 160 x 120 photo
    pose = tmp_path / "source.json"
    pose.write_text(json.dumps(source_kp.tolist()))
    target = tmp_path / "target.json"
    target.write_text(json.dumps(annotations[names[1]].tolist()))
    err = run_error(script, ["--checkpoint", str(checkpoint), "--source", str(root / "test" / names[0]),
                             "--source-keypoints", str(pose), "--target", str(target),
                             "--out", str(tmp_path / "o.png")], None, capsys)
    assert "joint right_wrist at (y, x) = (500, 20) lies outside the 160 x 120 image" in err
    target_kp = annotations[names[1]].copy()
    target_kp[7] = (-5, 3)
    target.write_text(json.dumps(target_kp.tolist()))
    err = run_error(script, ["--checkpoint", str(checkpoint), "--source", str(root / "test" / names[0]),
                             "--source-keypoints", f"{root / 'market-annotation-test.csv'}:{names[0]}",
                             "--target", str(target), "--out", str(tmp_path / "o.png")], None, capsys)
    assert f"{target}: joint left_wrist at (y, x) = (-5, 3) lies outside the image" in err


def test_a_released_generator_file_is_converted_on_load(tmp_path):
    cfg = load_config(REPO / "configs" / "toy.yaml", tiny_training_overrides(tmp_path))
    ours = build_generator(cfg).state_dict()
    released = tmp_path / "latest_net_netG.pth"
    torch.save(to_released_state_dict("generator", ours), released)
    generator, loaded_cfg = load_model(released, cfg)
    assert loaded_cfg is cfg
    assert all(torch.equal(generator.state_dict()[k], v) for k, v in ours.items())
    with pytest.raises(CheckpointError, match="not an xinggan checkpoint"):
        load_model(released)  # without the config it cannot be converted
