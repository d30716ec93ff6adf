"""The re-pose studio: a browser page to re-pose a photo, draw the target pose, animate a sequence.

    python scripts/studio.py --checkpoint CKPT [--config CFG] [--host 127.0.0.1] [--port 7860]
                             [--device cpu|cuda|auto] [--gallery CSV|JSON] [--amp auto|off|bf16|fp16]

The page (Gradio) takes a photo; its keypoints are detected (MediaPipe, where the pose extra is
installed) and drawn over it, and a click places the chosen joint. The target pose is detected
on a second photo, picked from a gallery (the test poses of the config's dataset, else the toy
set's poses) or edited: pick a joint and click where it goes, hide or show it, mirror the pose.
Generate shows the result at the model's size, enlarged, in a source | skeleton | result panel,
as a PNG download, and how the photo was cropped into the model's frame. A sequence of target
poses (or a walk through the gallery) becomes an animated GIF.

Endpoint ``/repose`` (``gradio_client``): source photo, source keypoints JSON ("" detects),
target keypoints JSON, in the forms ``scripts/repose.py`` reads, with coordinates in the pixels
of the photo (source) or of any frame (target, fitted as repose.py fits it); it returns the image
and the panel. Requests are served one at a time (Gradio's queue). Nothing is fetched from the
network: no analytics, system fonts only. ``--checkpoint`` with ``--config`` loads the authors'
released netG file, converted on load.

``--amp auto`` runs the generator under bfloat16 autocast where the device multiplies bfloat16
natively (a CPU with AMX or AVX-512 BF16, a recent GPU), else in float32.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw

from xinggan.checkpoint import CheckpointError, save_checkpoint
from xinggan.config import load_config_or_exit
from xinggan.data.annotations import MISSING, DataError, read_annotations
from xinggan.joints import FLIP_PERMUTATION, JOINT_NAMES, NUM_JOINTS
from xinggan.keypoints import DetectorUnavailable, build_detector
from xinggan.models import build_generator
from xinggan.precision import AMP_CHOICES, PrecisionError, resolve_amp
from xinggan.prep.framing import MIN_JOINTS, fit_keypoints, present_joints, read_photo
from xinggan.prep.toy import POSES, Identity, toy_pose
from xinggan.repose import (ModelFrame, check_inside, frame_source, frame_target, generate,
                            keypoints_from_json, load_model, panel, parse_keypoints, save_gif)
from xinggan.runtime import DeviceError, pick_device
from xinggan.visualize import draw_skeleton

MAX_SIDE = 1024  # photos are shrunk to this longest side before detection and framing
GALLERY_SIZE = 24
VIEW_HEIGHT = 384  # height of the enlarged views (target editor, result)
THEME = gr.themes.Default(font=["system-ui", "Segoe UI", "Helvetica", "Arial", "sans-serif"],
                          font_mono=["ui-monospace", "Consolas", "monospace"])


def random_checkpoint(cfg, path: str | Path) -> Path:
    """A checkpoint of ``cfg``'s generator with random weights (for tests and timing)."""
    return save_checkpoint({"config": cfg.to_dict(), "generator": build_generator(cfg).state_dict()}, path)


def to_json(kp: np.ndarray) -> str:
    """The keypoints JSON of an (18, 2) array: a list of [y, x] pairs."""
    return json.dumps(np.asarray(kp).tolist())


def shrink(photo: np.ndarray) -> tuple[np.ndarray, float]:
    """The photo with its longest side at most MAX_SIDE, and the scale applied."""
    scale = min(1.0, MAX_SIDE / max(photo.shape[:2]))
    if scale == 1.0:
        return photo, 1.0
    size = (max(1, round(photo.shape[1] * scale)), max(1, round(photo.shape[0] * scale)))
    return np.asarray(Image.fromarray(photo).resize(size, Image.BILINEAR)), scale


def rescale(kp: np.ndarray, scale: float) -> np.ndarray:
    """Pixel-centre keypoints scaled by ``scale``; missing joints stay missing."""
    out = np.asarray(kp).copy()
    present = present_joints(out)
    out[present] = np.rint((out[present] + 0.5) * scale - 0.5).astype(np.int64).clip(0)
    return out


def zoom_for(rows: int) -> int:
    """The whole factor that brings ``rows`` up to about VIEW_HEIGHT (1 when already as high)."""
    return max(1, VIEW_HEIGHT // rows)


def enlarge(image: np.ndarray) -> np.ndarray:
    """``image`` scaled up by :func:`zoom_for` its height (nearest neighbour)."""
    k = zoom_for(image.shape[0])
    return np.repeat(np.repeat(image, k, axis=0), k, axis=1)


def load_gallery(spec: str | Path | None, cfg, frame: ModelFrame) -> list[tuple[str, np.ndarray]]:
    """(name, keypoints) of the gallery: a CSV or JSON file, the dataset's test poses, or toy poses."""
    path = Path(spec) if spec else Path(cfg.data.root) / cfg.data.test_annotations
    if path.suffix.lower() == ".json" and path.is_file():
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: not a JSON file ({exc})") from None
        if not isinstance(table, dict):
            raise DataError(f"{path}: expected {{name: keypoints, ...}}")
        rows = {k: parse_keypoints(v, f"{path}: {k}") for k, v in table.items()}
    elif path.is_file():
        rows = read_annotations(path)
    elif spec:
        raise DataError(f"{path}: file not found")
    else:  # no dataset here: the toy set's poses, drawn at the model's size
        rng = np.random.default_rng(0)
        identity = Identity.sample(rng)
        rows = {}
        for name in POSES:
            kp = np.rint(toy_pose(identity, name, rng, frame.height, frame.width)[0]).astype(np.int64)
            kp[(kp < 0).any(1) | (kp[:, 0] >= frame.height) | (kp[:, 1] >= frame.width)] = MISSING
            rows[name] = kp
    poses = [(k, v) for k, v in sorted(rows.items()) if present_joints(v).sum() >= MIN_JOINTS]
    return poses[:GALLERY_SIZE]


@contextmanager
def shown():
    """A DataError becomes a gr.Error with its message: shown in the page, returned by the API."""
    try:
        yield
    except DataError as exc:
        raise gr.Error(str(exc)) from None


class Studio:
    """The model, its frame, the detector (if any) and the gallery; its methods are the page's actions.

    Each action raises ``gr.Error`` with a one-line message on bad input; the server keeps serving.
    """

    def __init__(self, generator, cfg, device="cpu", detector=None, gallery=None, amp_dtype=None):
        self.generator, self.device, self.detector, self.amp_dtype = generator, device, detector, amp_dtype
        self.frame = ModelFrame.from_config(cfg)
        self.gallery = gallery if gallery is not None else load_gallery(None, cfg, self.frame)
        self.zoom = zoom_for(self.frame.height)
        self.out_dir = Path(tempfile.mkdtemp(prefix="xinggan-studio-"))

    # -- inputs ---------------------------------------------------------------------------
    def photo(self, path, label: str = "photo") -> tuple[np.ndarray, np.ndarray, float]:
        """(photo, shrunk photo, scale) of an uploaded file; gr.Error if there is none or it is no image."""
        if not path:
            raise gr.Error(f"upload a {label} first")
        try:
            image = read_photo(path)
        except DataError as exc:
            raise gr.Error(str(exc).replace(str(path), f"{label} {Path(path).name}", 1)) from None
        return (image, *shrink(image))

    def keypoints(self, text: str, where: str) -> np.ndarray:
        with shown():
            return keypoints_from_json(text, where)

    def detect(self, small: np.ndarray, scale: float, where: str) -> np.ndarray:
        """Detected keypoints of a shrunk photo, in the pixels of the original one."""
        if self.detector is None:
            raise gr.Error(f"{where}: no keypoint detector here (install the pose extra, "
                           "requirements-pose.txt): give the keypoints or click the joints")
        return rescale(self.detector.detect(small), 1.0 / scale)

    def source(self, path, source_json: str):
        """(framed source, shrunk photo, scale) from a photo and its keypoints ("" detects)."""
        image, small, scale = self.photo(path, "source photo")
        by = None
        if source_json and source_json.strip():
            kp = self.keypoints(source_json, "source keypoints")
            with shown():
                check_inside(kp, "source keypoints", *image.shape[:2])
        else:
            kp, by = self.detect(small, scale, "source photo"), self.detector.name
        with shown():
            return frame_source(small, rescale(kp, scale), self.frame, "source photo", detector=by), small, scale

    def target(self, target_json: str, where: str = "target keypoints") -> np.ndarray:
        """The target keypoints fitted into the model's frame."""
        if not target_json or not target_json.strip():
            raise gr.Error(f"{where}: pick a gallery pose, a photo, or give the JSON")
        kp = self.keypoints(target_json, where)
        with shown():
            return frame_target(kp, self.frame, where)

    # -- actions --------------------------------------------------------------------------
    def repose(self, path, source_json: str, target_json: str):
        """The /repose endpoint: (result, panel) at the model's size."""
        framed = self.source(path, source_json)[0]
        target = self.target(target_json)
        result = self.render(framed, target)
        return result, panel(framed.image, target, result)

    def render(self, framed, target: np.ndarray) -> np.ndarray:
        """The framed source person in the ``target`` pose, at the model's size."""
        return generate(self.generator, self.frame, framed.image, framed.keypoints, target, self.device, self.amp_dtype)

    def details(self, path, source_json: str, result, board):
        """(enlarged panel, PNG download of the result, framing picture) once a result is there."""
        if result is None:
            return None, None, None
        framed, small, _ = self.source(path, source_json)
        download = self.out_dir / f"repose_{uuid.uuid4().hex[:8]}.png"
        Image.fromarray(result).save(download)
        return enlarge(board), str(download), self.framing(small, framed)

    def framing(self, small: np.ndarray, framed) -> np.ndarray:
        """The photo with the crop box (red; grey where it runs past the photo) | the model's input."""
        (top, left), h, w = framed.origin, self.frame.height / framed.scale, self.frame.width / framed.scale
        y0, x0 = min(0, int(top)), min(0, int(left))
        y1, x1 = max(small.shape[0], int(top + h) + 1), max(small.shape[1], int(left + w) + 1)
        canvas = Image.new("RGB", (x1 - x0, y1 - y0), (200, 200, 200))
        canvas.paste(Image.fromarray(small), (-x0, -y0))
        ImageDraw.Draw(canvas).rectangle([left - x0, top - y0, left - x0 + w, top - y0 + h],
                                         outline=(255, 0, 0), width=max(2, (y1 - y0) // 150))
        canvas = canvas.resize((max(1, round(canvas.width * VIEW_HEIGHT / canvas.height)), VIEW_HEIGHT))
        model_view = enlarge(framed.image)
        both = np.full((max(VIEW_HEIGHT, model_view.shape[0]), canvas.width + 8 + model_view.shape[1], 3),
                       255, np.uint8)
        both[:VIEW_HEIGHT, :canvas.width] = np.asarray(canvas)
        both[:model_view.shape[0], canvas.width + 8:] = model_view
        return both

    def animate(self, path, source_json: str, sequence: str) -> tuple[str, str]:
        """An animated GIF of the source in each pose of ``sequence`` (one keypoints JSON a line)."""
        lines = [line for line in (sequence or "").splitlines() if line.strip()]
        if not lines:
            raise gr.Error("sequence: add target poses first (one keypoints JSON a line)")
        framed = self.source(path, source_json)[0]
        targets = [self.target(line, f"sequence line {k}") for k, line in enumerate(lines, 1)]
        frames = [self.render(framed, t) for t in targets]
        gif = str(save_gif(frames, self.out_dir / f"sequence_{uuid.uuid4().hex[:8]}.gif"))
        return gif, gif

    # -- source and target editing ---------------------------------------------------------
    def source_uploaded(self, path):
        """(source keypoints JSON, overlay) of a new photo: detected where a detector runs."""
        if not path:
            return "", None
        _, small, scale = self.photo(path, "source photo")
        text = to_json(rescale(self.detector.detect(small), 1.0 / scale)) if self.detector else ""
        return text, self.source_overlay(path, text)

    def source_overlay(self, path, source_json: str):
        """The photo at about VIEW_HEIGHT rows with the source keypoints over it (alone while invalid)."""
        if not path:
            return None
        _, small, scale = self.photo(path, "source photo")
        view = enlarge(small)
        try:
            kp = rescale(self.keypoints(source_json, "source keypoints"), scale * zoom_for(small.shape[0]))
        except gr.Error:
            return view
        return draw_skeleton(kp, *view.shape[:2], background=view)

    def place_source(self, path, source_json: str, joint: str, evt: gr.SelectData) -> str:
        """The source keypoints with ``joint`` where the overlay was clicked."""
        _, small, scale = self.photo(path, "source photo")
        kp = self.editable(source_json, "source keypoints")
        zoom = scale * zoom_for(small.shape[0])
        kp[JOINT_NAMES.index(joint)] = rescale(np.array([evt.index[::-1]]), 1.0 / zoom)[0]
        return to_json(kp)

    def editable(self, text: str, where: str) -> np.ndarray:
        """Keypoints to edit: those of ``text``, or all missing when it is empty."""
        if not text or not text.strip():
            return np.full((NUM_JOINTS, 2), MISSING, np.int64)
        return self.keypoints(text, where)

    def target_view(self, text: str) -> np.ndarray:
        """The target pose as shown and edited: fitted into the frame once it has enough joints."""
        kp = self.editable(text, "target keypoints")
        try:
            return frame_target(kp, self.frame, "target keypoints")
        except DataError:  # too few joints yet: as given
            return kp

    def target_preview(self, target_json: str):
        """The target skeleton as the model gets it, enlarged (empty while the JSON is invalid)."""
        try:
            kp = self.target_view(target_json)
        except gr.Error:
            kp = self.editable("", "")
        h, w = self.frame.height * self.zoom, self.frame.width * self.zoom
        return draw_skeleton(rescale(kp, self.zoom), h, w)

    def target_photo(self, path) -> str:
        """The target keypoints detected on a photo, fitted into the frame."""
        _, small, scale = self.photo(path, "target photo")
        kp = self.detect(small, scale, "target photo")
        with shown():
            return to_json(frame_target(kp, self.frame, "target photo", detector=self.detector.name))

    def pick(self, evt: gr.SelectData) -> str:
        return to_json(self.gallery[evt.index][1])

    def place_target(self, target_json: str, joint: str, evt: gr.SelectData) -> str:
        """The target pose (in the frame) with ``joint`` where the preview was clicked."""
        kp = self.target_view(target_json)
        kp[JOINT_NAMES.index(joint)] = rescale(np.array([evt.index[::-1]]), 1.0 / self.zoom)[0]
        return to_json(kp)

    def toggle(self, target_json: str, joint: str, hidden: dict):
        """Hide ``joint`` (remembering where it was) or show it again (there, or mid-frame)."""
        kp, j, hidden = self.editable(target_json, "target keypoints"), JOINT_NAMES.index(joint), dict(hidden)
        if present_joints(kp)[j]:
            hidden[joint] = kp[j].tolist()
            kp[j] = MISSING
        else:
            kp[j] = hidden.pop(joint, [self.frame.height // 2, self.frame.width // 2])
        return to_json(kp), hidden

    def mirror(self, target_json: str) -> str:
        """The target pose flipped left to right (left and right joints swap)."""
        flipped = self.target_view(target_json)[list(FLIP_PERMUTATION)]
        present = present_joints(flipped)
        flipped[present, 1] = self.frame.width - 1 - flipped[present, 1]
        return to_json(flipped)

    def walk(self) -> str:
        return "\n".join(to_json(kp) for _, kp in self.gallery)

    def thumbnails(self) -> list:
        h, w = self.frame.height * 2, self.frame.width * 2
        return [(draw_skeleton(rescale(fit_keypoints(kp, self.frame.height, self.frame.width), 2), h, w), name)
                for name, kp in self.gallery]


def build_page(studio: Studio) -> gr.Blocks:
    """The page: source, target pose, result and sequence, wired to ``studio``'s actions."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # also for what reads it past this page
    f = studio.frame
    with gr.Blocks(title="xinggan re-pose studio", analytics_enabled=False) as page:
        gr.Markdown(f"## Re-pose studio\nModel frame {f.height} x {f.width} (fill: {f.fill}); keypoint "
                    f"detector: {studio.detector.name if studio.detector else 'none (click the joints)'}.")
        with gr.Row():
            with gr.Column():
                gr.Markdown("### 1. Source photo")
                photo = gr.File(label="photo", elem_id="source-file")
                overlay = gr.Image(label="keypoints (click: place the joint below)", interactive=False,
                                   elem_id="source-overlay", height=VIEW_HEIGHT)
                source_joint = gr.Dropdown(list(JOINT_NAMES), value=JOINT_NAMES[0], label="joint")
                source_json = gr.Textbox(label="source keypoints JSON, [y, x] in photo pixels (empty: detect)",
                                         elem_id="source-json", lines=2)
            with gr.Column():
                gr.Markdown("### 2. Target pose")
                with gr.Tab("gallery"):
                    gallery = gr.Gallery(studio.thumbnails(), columns=4, allow_preview=False, object_fit="contain",
                                         elem_id="gallery", label="poses", height=260)
                with gr.Tab("from a photo"):
                    target_file = gr.File(label="photo of the pose")
                preview = gr.Image(studio.target_preview(""), label="skeleton (click: place the joint)",
                                   interactive=False, elem_id="target-preview", height=VIEW_HEIGHT)
                with gr.Row():
                    target_joint = gr.Dropdown(list(JOINT_NAMES), value=JOINT_NAMES[0], label="joint")
                    toggle, mirror = gr.Button("hide / show joint"), gr.Button("mirror")
                target_json = gr.Textbox(label="target keypoints JSON", elem_id="target-json", lines=2)
                hidden = gr.State({})
            with gr.Column():
                gr.Markdown("### 3. Result")
                run = gr.Button("Generate", variant="primary", elem_id="generate")
                with gr.Row():
                    result = gr.Image(label=f"result {f.height} x {f.width}", format="png",
                                      interactive=False, elem_id="result")
                    board = gr.Image(label="source | target skeleton | result", format="png",
                                     interactive=False)
                big = gr.Image(label="enlarged", format="png", interactive=False, elem_id="enlarged")
                download = gr.File(label="PNG download")
                framing = gr.Image(label="framing: the crop of the photo (red) | the model's input",
                                   interactive=False, elem_id="framing")
        with gr.Row():
            sequence = gr.Textbox(label="sequence: one target keypoints JSON a line", lines=4, scale=3)
            with gr.Column(scale=1):
                add, walk = gr.Button("add the target pose"), gr.Button("gallery walk")
                make_gif = gr.Button("make GIF", variant="primary")
            animation = gr.Image(label="animation", type="filepath", interactive=False, scale=2)
            gif_file = gr.File(label="GIF download", scale=1)

        quiet = dict(api_visibility="private")
        photo.change(studio.source_uploaded, photo, [source_json, overlay], **quiet)
        source_json.change(studio.source_overlay, [photo, source_json], overlay, **quiet)
        overlay.select(studio.place_source, [photo, source_json, source_joint], source_json, **quiet)
        gallery.select(studio.pick, None, target_json, **quiet)
        target_file.change(studio.target_photo, target_file, target_json, **quiet)
        target_json.change(studio.target_preview, target_json, preview, **quiet)
        preview.select(studio.place_target, [target_json, target_joint], target_json, **quiet)
        toggle.click(studio.toggle, [target_json, target_joint, hidden], [target_json, hidden], **quiet)
        mirror.click(studio.mirror, target_json, target_json, **quiet)
        run.click(studio.repose, [photo, source_json, target_json], [result, board], api_name="repose").success(
            studio.details, [photo, source_json, result, board], [big, download, framing], **quiet)
        add.click(lambda seq, t: "\n".join(x for x in (seq.strip(), t.strip()) if x),
                  [sequence, target_json], sequence, **quiet)
        walk.click(studio.walk, None, sequence, **quiet)
        make_gif.click(studio.animate, [photo, source_json, sequence], [animation, gif_file], api_name="animate")
    page.queue(default_concurrency_limit=1)  # one request at a time; the others wait their turn
    return page


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="trained or converted checkpoint, or a released netG")
    p.add_argument("--config", default=None, help="config of a released netG file (converted on load)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--gallery", default=None, help="gallery poses: an annotation CSV or a {name: keypoints} JSON")
    p.add_argument("--detector", default="mediapipe", help="keypoint detector (mediapipe, openpose, none)")
    p.add_argument("--weights", default=None, help="weights file of the detector, where it needs one")
    p.add_argument("--amp", default="auto", choices=AMP_CHOICES,
                   help="autocast of the generator (auto: bfloat16 where the device multiplies it natively)")
    args = p.parse_args(argv)
    config = load_config_or_exit(args.config) if args.config else None
    try:
        device = pick_device(args.device)
        generator, cfg = load_model(args.checkpoint, config, device)
        frame = ModelFrame.from_config(cfg)
        gallery = load_gallery(args.gallery, cfg, frame)
        amp_dtype, precision = resolve_amp(args.amp, device)
    except (CheckpointError, DataError, DeviceError, PrecisionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    detector = None
    if args.detector != "none":
        try:
            detector = build_detector(args.detector, weights=args.weights)
        except (DetectorUnavailable, ValueError) as exc:
            print(f"note: no keypoint detection ({exc}); the page asks for clicked joints")
    print(f"model frame {frame.height} x {frame.width}, {len(gallery)} gallery poses, on {device}; {precision}",
          flush=True)
    page = build_page(Studio(generator, cfg, device, detector, gallery, amp_dtype))
    page.launch(server_name=args.host, server_port=args.port, theme=THEME, show_error=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
