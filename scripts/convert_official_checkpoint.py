"""Convert the authors' released XingGAN checkpoints into one xinggan checkpoint.

    python scripts/convert_official_checkpoint.py --config configs/market.yaml \
        --generator market/latest_net_netG.pth \
        [--shape-discriminator market/latest_net_netD_PB.pth] \
        [--appearance-discriminator market/latest_net_netD_PP.pth] \
        --out checkpoints/xinggan_market_released.pt

The released files are read with ``torch.load(weights_only=True)``; every key is mapped by an
explicit rule (``xinggan/released/convert.py``), the weights are loaded strictly into the networks
the config builds, and the result is written with the config embedded, so that
``python test.py --checkpoint <out>`` needs nothing else.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from xinggan.checkpoint import CheckpointError, save_checkpoint
from xinggan.config import load_config_or_exit
from xinggan.models import build_discriminators, build_generator, count_parameters
from xinggan.released.convert import (
    convert_released_state_dict,
    load_released_state_dict,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, nargs="+",
                        help="the dataset's YAML (configs/market.yaml or configs/deepfashion.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override (e.g. data.root=...)")
    parser.add_argument("--generator", required=True, help="latest_net_netG.pth")
    parser.add_argument("--shape-discriminator", help="latest_net_netD_PB.pth (optional)")
    parser.add_argument("--appearance-discriminator", help="latest_net_netD_PP.pth (optional)")
    parser.add_argument("--out", required=True, help="the xinggan checkpoint to write")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config_or_exit(args.config, args.overrides)

    sources = {"generator": args.generator,
               "shape_discriminator": args.shape_discriminator,
               "appearance_discriminator": args.appearance_discriminator}
    state = {"config": cfg.to_dict()}
    notes: list[str] = []
    try:
        for kind, path in sources.items():
            if path is None:
                continue
            converted = convert_released_state_dict(kind, load_released_state_dict(path), cfg,
                                                    notes)
            # Load strictly into the network as a final check (built on the meta device:
            # the converted tensors are assigned, nothing is initialised).
            with torch.device("meta"):
                if kind == "generator":
                    network = build_generator(cfg)
                else:
                    shape_d, appearance_d = build_discriminators(cfg)
                    network = shape_d if kind == "shape_discriminator" else appearance_d
            network.load_state_dict(converted, strict=True, assign=True)
            state[kind] = converted
            print(f"{kind}: {path} -> {len(converted)} tensors, "
                  f"{count_parameters(network):,} parameters")
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"note: {note}")

    given = ", ".join(f"{kind}={Path(p).name}" for kind, p in sources.items() if p)
    state["source"] = f"converted from the authors' released checkpoints ({given})"
    out = save_checkpoint(state, args.out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
