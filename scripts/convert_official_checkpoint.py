"""Convert the authors' released XingGAN checkpoints into one xinggan checkpoint.

    python scripts/convert_official_checkpoint.py --config configs/market.yaml \
        --generator market/latest_net_netG.pth \
        [--shape-discriminator market/latest_net_netD_PB.pth] \
        [--appearance-discriminator market/latest_net_netD_PP.pth] \
        --out checkpoints/xinggan_market_released.pt

The files are read with ``weights_only=True``, loaded strictly into the networks the config builds,
and written with the config embedded (``python test.py --checkpoint <out>`` needs nothing else).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xinggan.checkpoint import CheckpointError, save_checkpoint
from xinggan.config import load_config_or_exit
from xinggan.models import count_parameters
from xinggan.released.convert import convert_released_state_dict, load_released_state_dict, target_network


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
    sources = {"generator": args.generator, "shape_discriminator": args.shape_discriminator,
               "appearance_discriminator": args.appearance_discriminator}
    state, notes = {"config": cfg.to_dict()}, []
    try:
        for kind, path in ((k, p) for k, p in sources.items() if p is not None):
            converted = convert_released_state_dict(kind, load_released_state_dict(path), cfg, notes)
            network = target_network(kind, cfg)  # a strict load as the final check
            network.load_state_dict(converted, strict=True, assign=True)
            state[kind] = converted
            print(f"{kind}: {path} -> {len(converted)} tensors, {count_parameters(network):,} parameters")
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
