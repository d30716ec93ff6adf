"""The re-pose studio (scripts/studio.py): its actions on good and bad input, the /repose endpoint
through gradio_client, and one session in headless Chromium. Run by ``make test-studio``; in an
environment without the studio extra (requirements-studio.txt) every test skips."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from xinggan.config import load_config
from xinggan.data.annotations import read_annotations
from xinggan.joints import JOINT_NAMES
from xinggan.prep.toy import POSES
from xinggan.repose import load_model

from helpers import REPO, load_script, tiny_training_overrides
from photo_helpers import LookupDetector

gr = pytest.importorskip("gradio", reason="the studio extra is not installed (make studio-venv)")
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def studio_script():
    return load_script("studio")


@pytest.fixture(scope="module")
def checkpoint(tiny_data, tmp_path_factory, studio_script):
    """A random-weight toy generator (64 x 32) whose config names the toy data as its dataset."""
    cfg = load_config(REPO / "configs" / "toy.yaml", tiny_training_overrides(tiny_data))
    return studio_script.random_checkpoint(cfg, tmp_path_factory.mktemp("studio") / "tiny.pt")


@pytest.fixture(scope="module")
def toy(tiny_data):
    """(photo paths, keypoints) of the toy test images, by name."""
    annotations = read_annotations(tiny_data / "market-annotation-test.csv")
    names = sorted(n for n in annotations if (annotations[n] >= 0).all(axis=1).sum() >= 12)
    return {n: (str(tiny_data / "test" / n), annotations[n]) for n in names}


@pytest.fixture(scope="module")
def studio(studio_script, checkpoint):
    generator, cfg = load_model(checkpoint)
    return studio_script.Studio(generator, cfg, detector=LookupDetector())


def as_json(kp) -> str:
    return json.dumps(np.asarray(kp).tolist())


def error_of(call, *args) -> str:
    with pytest.raises(gr.Error) as info:
        call(*args)
    return info.value.message


def test_repose_gives_the_model_size_and_names_each_bad_input(studio, toy, tmp_path):
    (src, src_kp), (_, tgt_kp) = list(toy.values())[:2]
    result, board = studio.repose(src, as_json(src_kp), as_json(tgt_kp))
    assert result.shape == (64, 32, 3) and board.shape == (64, 3 * 32 + 4, 3) and result.std() > 0
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert "source photo notes.txt: not a readable image" in error_of(studio.repose, str(text), "", as_json(tgt_kp))
    assert "upload a source photo first" in error_of(studio.repose, None, as_json(src_kp), as_json(tgt_kp))
    # Nobody found by the detector; no source keypoints given.
    assert "no person found by the lookup detector" in error_of(studio.repose, src, "", as_json(tgt_kp))
    few = np.full((18, 2), -1)
    few[:4] = src_kp[:4]
    assert "only 4 of 18 joints" in error_of(studio.repose, src, as_json(few), as_json(tgt_kp))
    assert "expected {'keypoints_y'" in error_of(studio.repose, src, as_json(src_kp[:5]), as_json(tgt_kp))
    assert "target keypoints: not valid JSON" in error_of(studio.repose, src, as_json(src_kp), "[[1, 2")
    off = src_kp.copy()
    off[4] = (70, 10)
    assert "joint right_wrist at (y, x) = (70, 10) lies outside the 64 x 32 image" in error_of(
        studio.repose, src, as_json(off), as_json(tgt_kp))
    off = tgt_kp.copy()
    off[7] = (-3, 2)
    assert "joint left_wrist at (y, x) = (-3, 2) lies outside" in error_of(
        studio.repose, src, as_json(src_kp), as_json(off))


def test_a_huge_photo_is_shrunk_not_refused(studio, toy, tmp_path):
    """An 8000 x 6000 photo (the toy person scaled by 60) gives the same framing as the small one."""
    src, src_kp = next(iter(toy.values()))
    big = Image.new("RGB", (8000, 6000), (128, 128, 128))
    big.paste(Image.open(src).resize((32 * 60, 64 * 60), Image.BICUBIC), (3000, 1000))
    path = tmp_path / "big.jpg"
    big.save(path, quality=90)
    big_kp = np.where(src_kp >= 0, src_kp * 60 + 30 + np.array([1000, 3000]), -1)
    framed, small, scale = studio.source(str(path), as_json(big_kp))
    assert max(small.shape) == 1024 and scale == pytest.approx(1024 / 8000)
    assert framed.image.shape == (64, 32, 3)
    reference = studio.source(src, as_json(src_kp))[0]
    assert np.abs(framed.keypoints - reference.keypoints).max() <= 1


def test_target_editing_mirror_hide_and_click(studio, toy):
    src, kp = next((path, kp) for path, kp in toy.values() if (kp[[4, 7]] >= 0).all())  # both wrists seen
    fitted = studio.target(as_json(kp))
    mirrored = np.array(json.loads(studio.mirror(as_json(fitted))))
    # The right wrist of the mirror is the left wrist of the pose, reflected about the middle column.
    right, left = JOINT_NAMES.index("right_wrist"), JOINT_NAMES.index("left_wrist")
    assert mirrored[right].tolist() == [fitted[left, 0], 31 - fitted[left, 1]]
    hidden_json, memory = studio.toggle(as_json(fitted), "left_wrist", {})
    assert json.loads(hidden_json)[left] == [-1, -1] and memory == {"left_wrist": fitted[left].tolist()}
    shown_json, memory = studio.toggle(hidden_json, "left_wrist", memory)
    assert json.loads(shown_json)[left] == fitted[left].tolist() and memory == {}
    # A click on the enlarged preview at (x, y) puts the joint at (y, x) / zoom in the frame.
    click = gr.SelectData(None, {"index": [10 * studio.zoom + 1, 30 * studio.zoom + 2], "value": None})
    placed = json.loads(studio.place_target(as_json(fitted), "nose", click))
    assert placed[0] == [30, 10]
    # A pose drawn from nothing is shown joint by joint, before it has enough joints to fit.
    started = studio.place_target("", "neck", click)
    assert json.loads(started)[1] == [30, 10]
    preview = studio.target_preview(started)
    assert preview[30 * studio.zoom + 2, 10 * studio.zoom + 1].any() and preview[:, :5 * studio.zoom].max() == 0
    assert studio.target_preview(as_json(fitted)).shape == (64 * studio.zoom, 32 * studio.zoom, 3)
    # The source overlay shows the 64 x 32 photo enlarged as much; a click maps back to photo pixels.
    assert studio.source_overlay(src, as_json(kp)).shape == (64 * studio.zoom, 32 * studio.zoom, 3)
    assert json.loads(studio.place_source(src, "", "neck", click))[1] == [30, 10]


def test_gallery_sources_and_the_sequence_gif(studio_script, studio, toy, tiny_data, tmp_path):
    cfg = load_config(REPO / "configs" / "toy.yaml", tiny_training_overrides(tiny_data))
    frame = studio.frame
    names = [n for n, _ in studio.gallery]
    assert names == sorted(names) and set(names) <= set(read_annotations(tiny_data / "market-annotation-test.csv"))
    elsewhere = load_config(REPO / "configs" / "toy.yaml", tiny_training_overrides(tmp_path / "none"))
    toy_poses = studio_script.load_gallery(None, elsewhere, frame)
    assert [n for n, _ in toy_poses] == sorted(POSES)
    table = tmp_path / "poses.json"
    table.write_text(json.dumps({"a": studio.gallery[0][1].tolist()}))
    assert [n for n, _ in studio_script.load_gallery(table, cfg, frame)] == ["a"]
    table.write_text(json.dumps({"a": [[1, 2]]}))
    with pytest.raises(studio_script.DataError, match="poses.json: a: expected"):
        studio_script.load_gallery(table, cfg, frame)
    src, src_kp = next(iter(toy.values()))
    walk = studio.walk()
    assert len(walk.splitlines()) == len(studio.gallery)
    gif, _ = studio.animate(src, as_json(src_kp), walk)
    with Image.open(gif) as im:
        assert (im.n_frames, im.size) == (len(studio.gallery), (32, 64))
    assert "sequence line 2" in error_of(studio.animate, src, as_json(src_kp), walk.splitlines()[0] + "\n[1]")


def test_bf16_autocast_reaches_the_generator(studio, toy):
    """With amp_dtype bfloat16 the generator's convolutions run in bfloat16 (a hook sees their
    outputs), and the image stays within two grey levels of the float32 one."""
    import torch

    (src, src_kp), (_, tgt_kp) = list(toy.values())[:2]
    conv = next(m for m in studio.generator.modules() if isinstance(m, torch.nn.Conv2d))
    seen = []
    hook = conv.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    try:
        full = studio.repose(src, as_json(src_kp), as_json(tgt_kp))[0].astype(int)
        studio.amp_dtype = torch.bfloat16
        half = studio.repose(src, as_json(src_kp), as_json(tgt_kp))[0].astype(int)
    finally:
        studio.amp_dtype = None
        hook.remove()
    assert seen == [torch.float32, torch.bfloat16]
    assert half.shape == full.shape and np.abs(half - full).max() <= 2


def test_fp16_on_a_cpu_is_refused_in_one_line(studio_script, checkpoint, capsys):
    assert studio_script.main(["--checkpoint", str(checkpoint), "--amp", "fp16", "--detector", "none"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: amp fp16 needs a CUDA device") and "Traceback" not in err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    """The studio served by scripts/studio.py in a subprocess; its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("studio_server") / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "scripts/studio.py", "--checkpoint", str(checkpoint),
                                 "--port", str(port)], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the studio did not serve {url}:\n{log.read_text()}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_api_repose_errors_and_two_clients_at_once(server, toy, tmp_path):
    from gradio_client import Client, handle_file  # installed with gradio

    (src, src_kp), (_, tgt_kp) = list(toy.values())[:2]
    client = Client(server, verbose=False)
    args = (handle_file(src), as_json(src_kp), as_json(tgt_kp))
    image, board = client.predict(*args, api_name="/repose")
    result = np.asarray(Image.open(image))
    assert result.shape == (64, 32, 3) and result.std() > 0
    assert np.asarray(Image.open(board)).shape == (64, 100, 3)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(Exception, match="not a readable image"):
        client.predict(handle_file(str(text)), "", as_json(tgt_kp), api_name="/repose")
    # Two clients at once are served in turn; neither request is lost.
    other = Client(server, verbose=False)
    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(c.predict, *args, api_name="/repose") for c in (client, other)]
        answers = [np.asarray(Image.open(job.result(timeout=120)[0])) for job in jobs]
    assert all(np.array_equal(a, result) for a in answers)


def test_browser_session_offline(server, toy, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no {CHROMIUM} (apt-get install chromium)")
    src, src_kp = next(iter(toy.values()))
    requests = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1100})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(server)
            page.set_input_files("#source-file input[type=file]", src)
            page.wait_for_selector("#source-overlay img")
            page.fill("#source-json textarea", as_json(src_kp))
            page.click("#gallery button.thumbnail-item >> nth=0")
            page.wait_for_function("document.querySelector('#target-json textarea').value.length > 0")
            page.click("#generate")
            page.wait_for_selector("#framing img", timeout=60_000)
            size = page.eval_on_selector("#result img", "i => [i.naturalWidth, i.naturalHeight]")
            assert size == [32, 64]
            shot = tmp_path / "studio.png"
            page.screenshot(path=str(shot), full_page=True)
            if os.environ.get("STUDIO_SCREENSHOT"):  # refresh the README's picture
                shutil.copy(shot, os.environ["STUDIO_SCREENSHOT"])
        finally:
            browser.close()
    assert shot.stat().st_size > 0
    here = urlparse(server).netloc
    away = [u for u in requests if urlparse(u).scheme in ("http", "https", "ws", "wss")
            and urlparse(u).netloc != here]
    assert requests and away == []
