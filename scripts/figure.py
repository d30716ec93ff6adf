#!/usr/bin/env python
r"""The qualitative comparison figure: rows are test pairs; columns source, target pose, target,
then one per method, named above it. Writes a PDF (vector labels, images embedded at native
resolution) and a PNG (every image at its own pixel size) side by side.

    python scripts/figure.py --config configs/market.yaml [--set data.root=...] \
        ours=results/market PATN=path/to/patn/strips XingGAN=path/to/xinggan/strips \
        [--pairs names.txt | --select spread|random|first] [--rows 8] [--seed 0] --out figure.pdf

A method is NAME=FOLDER: any results folder scripts/evaluate.py reads (<from>___<to>.png, the
released 5-panel strips <from>.jpg___<to>.jpg_vis.jpg, <from>_2_<to>.png ...), or a run folder
holding one (test.py's --out, a sweep variant). Sources, targets and poses come from the test
split of the config's dataset. --pairs: one <from>___<to> name per line. --select spread (the
default with two methods or more): the pairs where the methods' SSIM differs most; random: a
sample drawn with --seed; first: the first pairs of the pairs CSV.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path



def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("methods", nargs="+", metavar="NAME=FOLDER", help="one results folder per method, in column order")
    p.add_argument("--config", action="append", required=True, help="config of the dataset (repeat to overlay)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="one override, e.g. --set data.root=...; repeat --set for several (a single "
                        "value each, so that the NAME=FOLDER arguments are not taken for overrides)")
    choice = p.add_mutually_exclusive_group()
    choice.add_argument("--pairs", help="file of <from>___<to> pair names, one per line (the rows, in order)")
    choice.add_argument("--select", choices=("spread", "random", "first"),
                        help="how to choose the rows (default: spread with two methods or more, else first)")
    p.add_argument("--rows", type=int, default=8, help="rows when choosing (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of --select random")
    p.add_argument("--out", required=True, help="figure.pdf or figure.png; both are written")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from xinggan.config import ConfigError, load_config
    from xinggan.data import DataError, PairDataset
    from xinggan.figure import (FigureError, build_figure, figure_columns, output_paths, parse_methods,
                                read_method, read_pair_list, select_pairs, write_pdf, write_png)

    try:
        pdf_path, png_path = output_paths(Path(args.out))
        try:
            cfg = load_config(args.config, args.set)
        except ConfigError as exc:
            raise FigureError(f"config error: {exc}") from None
        dataset = PairDataset.from_config(cfg.data, "test")
        specs = parse_methods(args.methods)
        pair_list = read_pair_list(Path(args.pairs)) if args.pairs else None
        methods = [read_method(name, folder, dataset.pairs, cfg.data.width) for name, folder in specs]
        select = args.select or ("spread" if len(methods) > 1 else "first")
        if pair_list is None and select == "spread":
            print(f"choosing {args.rows} rows: the pairs whose SSIM differs most between "
                  f"{', '.join(m.name for m in methods)}", flush=True)
        pairs = select_pairs(dataset, methods, args.rows, select, args.seed, pair_list, cfg.eval.protocol)
        columns, labels = figure_columns(dataset, methods, pairs)
        canvas, layout, lines = build_figure(columns, labels)
        write_png(canvas, png_path)
        write_pdf(columns, lines, layout, pdf_path, title="qualitative comparison")
    except (FigureError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(pairs)} rows x {len(labels)} columns of {layout.panel_height}x{layout.panel_width} images: "
          f"wrote {pdf_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
