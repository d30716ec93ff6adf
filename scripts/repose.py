"""Re-pose the person of a photo with a trained checkpoint: "put this person in that pose".

    python scripts/repose.py --checkpoint CKPT --source PHOTO --target PHOTO|CSV:NAME|KEYPOINTS.json
                             [--target ...] --out OUT.png|OUT.gif [--panel] [--config CFG]
                             [--detector mediapipe|openpose] [--weights FILE]
                             [--source-keypoints CSV:NAME|KEYPOINTS.json] [--as-is]

The source's keypoints are detected (or read with --source-keypoints); the target pose is
detected on a photo, or read from a row of an annotation CSV (``path/to/annotations.csv:NAME``)
or a JSON file. The person is cropped around the keypoints with a margin and scaled into the
frame of the checkpoint's config (128 x 64 Market-1501, 256 x 176 DeepFashion, ...), the space
beyond the photo filled as the dataset's images are (border pixels for Market, white for
DeepFashion); the target pose is fitted the same way. --as-is takes a source already of the
model's size and keypoints already in its frame (the images and CSV rows of a prepared dataset).
The generator runs in float32. OUT.png is the result at the model's size; --panel also writes
OUT_panel.png: source | target skeleton | result. Several --target give one frame each of an
animated OUT.gif (and OUT_panel.gif). --config with the authors' released netG file converts
it on load to the network the config describes.

MediaPipe (the default detector, optional extra requirements-pose.txt) finds nobody or wrong
joints on 128 x 64 Market-sized crops: give those keypoints from a CSV or another detector.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from xinggan.checkpoint import CheckpointError
from xinggan.config import load_config_or_exit
from xinggan.data.annotations import DataError
from xinggan.keypoints import DetectorUnavailable, build_detector
from xinggan.prep.framing import FILLS, MIN_JOINTS, read_photo
from xinggan.repose import (ModelFrame, frame_source, frame_target, generate, is_keypoint_spec,
                            keypoints_from_spec, load_model, panel, save_gif)
from xinggan.runtime import DeviceError, pick_device

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="trained or converted checkpoint, or a released netG")
    p.add_argument("--config", default=None, help="config of a released netG file (converted on load)")
    p.add_argument("--source", required=True, help="photo of the person to re-pose")
    p.add_argument("--source-keypoints", default=None, metavar="CSV:NAME|KEYPOINTS.json",
                   help="keypoints of the source photo instead of detecting them")
    p.add_argument("--target", required=True, action="append", metavar="PHOTO|CSV:NAME|KEYPOINTS.json",
                   help="the pose: a photo (detected), a row of an annotation CSV, or a JSON file; "
                        "repeat for the frames of a GIF")
    p.add_argument("--out", required=True, type=Path, help="output image (PNG, or GIF for several targets)")
    p.add_argument("--panel", action="store_true",
                   help="also write <out>_panel.png: source | target skeleton | result")
    p.add_argument("--frame-ms", type=int, default=400, help="duration of a GIF frame (ms)")
    p.add_argument("--detector", default="mediapipe", help="keypoint detector (mediapipe, openpose)")
    p.add_argument("--weights", default=None, help="weights file of the detector, where it needs one")
    p.add_argument("--as-is", action="store_true",
                   help="source image and keypoints are already in the model's frame: no cropping")
    p.add_argument("--fill", choices=FILLS, default=None,
                   help="what fills the frame beyond the photo (default: the dataset's: border for "
                        "Market, white for DeepFashion)")
    p.add_argument("--min-joints", type=int, default=MIN_JOINTS,
                   help=f"fewest joints a pose may have (default {MIN_JOINTS})")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    return p.parse_args(argv)


def error(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def main(argv=None, detector=None) -> int:
    """Run the command; ``detector`` (an object with ``name`` and ``detect``) replaces --detector."""
    args = parse_args(argv)

    def keypoints(spec: str):
        """(keypoints, detector name or None) of a keypoint spec or a photo."""
        nonlocal detector
        if is_keypoint_spec(spec):
            return keypoints_from_spec(spec), None
        photo = read_photo(spec)
        if detector is None:
            detector = build_detector(args.detector, weights=args.weights)
        return detector.detect(photo), detector.name

    out = args.out
    gif = out.suffix.lower() == ".gif"
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        return error(f"{out}: give an image file name (.png, .jpg, .gif, ...)", 2)
    if len(args.target) > 1 and not gif:
        return error(f"{out}: {len(args.target)} --target poses make an animation; give a .gif --out", 2)
    config = load_config_or_exit(args.config) if args.config else None
    try:
        device = pick_device(args.device)
        generator, cfg = load_model(args.checkpoint, config, device)
        frame = ModelFrame.from_config(cfg, args.fill)
        print(f"model frame {frame.height} x {frame.width} (fill: {frame.fill}); float32 on {device}")

        source_image = read_photo(args.source)
        if args.source_keypoints:
            source_kp, by = keypoints_from_spec(args.source_keypoints), None
        else:
            source_kp, by = keypoints(args.source)
        source = frame_source(source_image, source_kp, frame, args.source, args.as_is, args.min_joints, by)
        results, panels = [], []
        for spec in args.target:
            target_kp, by = keypoints(spec)
            target_kp = frame_target(target_kp, frame, spec, args.as_is, args.min_joints, by)
            results.append(generate(generator, frame, source.image, source.keypoints, target_kp, device))
            panels.append(panel(source.image, target_kp, results[-1]))
    except (DataError, CheckpointError, DetectorUnavailable, DeviceError) as exc:
        return error(str(exc))
    except ValueError as exc:  # a detector's options (an unknown name, weights it does not take)
        return error(str(exc), 2)

    out.parent.mkdir(parents=True, exist_ok=True)
    panel_path = out.with_name(f"{out.stem}_panel{out.suffix}")
    for path, frames, wanted in ((out, results, True), (panel_path, panels, args.panel)):
        if not wanted:
            continue
        if gif:
            save_gif(frames, path, args.frame_ms)
        else:
            Image.fromarray(frames[0]).save(path)
        print(f"wrote {path} ({len(frames)} frame{'s' * (len(frames) > 1)} of "
              f"{frames[0].shape[0]} x {frames[0].shape[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
