"""Re-pose the person of a photo with a trained checkpoint: "put this person in that pose".

    python scripts/repose.py --checkpoint CKPT --source PHOTO --target PHOTO|CSV:NAME|KEYPOINTS.json
                             --out OUT.png [--panel] [--detector mediapipe|openpose] [--weights FILE]
                             [--source-keypoints CSV:NAME|KEYPOINTS.json] [--as-is]

The source's keypoints are detected (or read with --source-keypoints); the target pose is
detected on a photo, or read from a row of an annotation CSV (``path/to/annotations.csv:NAME``)
or a JSON file. The person is cropped around the keypoints with a margin and scaled into the
frame of the checkpoint's config (128 x 64 Market-1501, 256 x 176 DeepFashion, ...), the space
beyond the photo filled as the dataset's images are (border pixels for Market, white for
DeepFashion); the target pose is fitted the same way. --as-is takes a source already of the
model's size and keypoints already in its frame (the images and CSV rows of a prepared dataset).
The generator runs in float32. OUT.png is the result at the model's size; --panel also writes
OUT_panel.png: source | target skeleton | result.

MediaPipe (the default detector, optional extra requirements-pose.txt) finds nobody or wrong
joints on 128 x 64 Market-sized crops: give those keypoints from a CSV or another detector.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from xinggan.data.annotations import DataError
from xinggan.prep.framing import FILLS, MIN_JOINTS, read_photo


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="trained or converted checkpoint")
    p.add_argument("--source", required=True, help="photo of the person to re-pose")
    p.add_argument("--source-keypoints", default=None, metavar="CSV:NAME|KEYPOINTS.json",
                   help="keypoints of the source photo instead of detecting them")
    p.add_argument("--target", required=True, metavar="PHOTO|CSV:NAME|KEYPOINTS.json",
                   help="the pose: a photo (detected), a row of an annotation CSV, or a JSON file")
    p.add_argument("--out", required=True, type=Path, help="output image (PNG)")
    p.add_argument("--panel", action="store_true",
                   help="also write <out>_panel.png: source | target skeleton | result")
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
    from xinggan.checkpoint import CheckpointError, load_checkpoint
    from xinggan.inference import embedded_config, load_generator
    from xinggan.keypoints import DetectorUnavailable, build_detector
    from xinggan.repose import (ModelFrame, frame_source, frame_target, generate, is_keypoint_spec,
                                keypoints_from_spec, panel)
    from xinggan.training import pick_device

    def get_detector():
        nonlocal detector
        if detector is None:
            detector = build_detector(args.detector, weights=args.weights)
        return detector

    out = args.out
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"):
        return error(f"{out}: give an image file name (.png, .jpg, ...)", 2)
    try:
        state = load_checkpoint(args.checkpoint)  # read once: config here, weights below
        cfg = embedded_config(state, args.checkpoint)
        frame = ModelFrame.from_config(cfg, args.fill)
        print(f"model frame {frame.height} x {frame.width} (fill: {frame.fill}); float32 on {args.device}")

        source_image = read_photo(args.source)
        if args.source_keypoints:
            source_kp, by = keypoints_from_spec(args.source_keypoints), None
        else:
            det = get_detector()
            source_kp, by = det.detect(source_image), det.name
        source_image, source_kp = frame_source(source_image, source_kp, frame, args.source,
                                               args.as_is, args.min_joints, by)

        if is_keypoint_spec(args.target):
            target_kp, by = keypoints_from_spec(args.target), None
        else:
            target_photo = read_photo(args.target)
            det = get_detector()
            target_kp, by = det.detect(target_photo), det.name
        target_kp = frame_target(target_kp, frame, args.target, args.as_is, args.min_joints, by)

        device = pick_device(args.device)
        generator = load_generator(args.checkpoint, device=device, state=state)
        result = generate(generator, frame, source_image, source_kp, target_kp, device)
    except (DataError, CheckpointError, DetectorUnavailable) as exc:
        return error(str(exc))
    except ValueError as exc:  # a detector's options (an unknown name, weights it does not take)
        return error(str(exc), 2)

    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(result).save(out)
    print(f"wrote {out} ({result.shape[0]} x {result.shape[1]})")
    if args.panel:
        panel_path = out.with_name(f"{out.stem}_panel{out.suffix}")
        Image.fromarray(panel(source_image, target_kp, result)).save(panel_path)
        print(f"wrote {panel_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
