"""The qualitative comparison figure (xinggan.figure), written as PDF and PNG side by side.

    python scripts/figure.py --config configs/market.yaml ours=results/market XingGAN=path/to/strips \
        [--set data.root=...] [--pairs names.txt | --select spread|random|first] [--rows 8] --out fig.pdf
"""
import argparse
import sys
from pathlib import Path

from xinggan.config import ConfigError, load_config
from xinggan.data import DataError, PairDataset
from xinggan.figure import FigureError, draw, figure_columns, read_methods, read_pair_list, select_pairs
from xinggan.metrics.inputs import EvaluationInputError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("methods", nargs="+", metavar="NAME=FOLDER", help="results folders, in column order")
    p.add_argument("--config", action="append", required=True, help="config of the dataset (repeat to overlay)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="one override (repeat)")
    p.add_argument("--pairs", help="file of <from>___<to> names, one per line: the rows, in order")
    p.add_argument("--select", choices=("spread", "random", "first"), help="default: spread with 2+ methods")
    p.add_argument("--rows", type=int, default=8, help="rows when choosing")
    p.add_argument("--seed", type=int, default=0, help="seed of --select random")
    p.add_argument("--out", required=True, help="figure.pdf or figure.png; both are written")
    args = p.parse_args(argv)
    out = Path(args.out)
    try:
        if out.suffix.lower() not in (".pdf", ".png"):
            raise FigureError(f"--out {out}: the name must end in .pdf or .png (both are written)")
        cfg = load_config(args.config, args.set)
        dataset = PairDataset.from_config(cfg.data, "test")
        methods = read_methods(args.methods, dataset.pairs, cfg.data.width)
        pair_list = read_pair_list(Path(args.pairs)) if args.pairs else None
        select = args.select or ("spread" if len(methods) > 1 else "first")
        pairs = select_pairs(dataset, methods, args.rows, select, args.seed, pair_list, cfg.eval.protocol)
        columns, labels = figure_columns(dataset, methods, pairs)
        out.parent.mkdir(parents=True, exist_ok=True)
        h, w = draw(columns, labels, [out.with_suffix(".pdf"), out.with_suffix(".png")])
    except (ConfigError, DataError, EvaluationInputError, FigureError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(pairs)} rows x {len(labels)} columns of {h}x{w} images: wrote {out.with_suffix('.pdf')} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
