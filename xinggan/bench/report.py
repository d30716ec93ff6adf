"""The benchmark's reports (``<out>.json`` and ``<out>.md``), the schedule projection and the released
code's reference cost, read from ``benchmarks/reference_cost.json``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

REPO = Path(__file__).resolve().parents[2]
REFERENCE_COST = REPO / "benchmarks" / "reference_cost.json"


def resolve_out(out: Union[str, Path, None], name: str) -> Path:
    """The output prefix: ``out`` (relative to the repository root, without ``.json``/``.md``), else
    ``runs/benchmarks/<name>``."""
    out = Path(out) if out is not None else Path("runs") / "benchmarks" / name
    out = out.with_suffix("") if out.suffix in (".json", ".md") else out
    return out if out.is_absolute() else REPO / out


def write_pair(out: Path, data: dict, md: str) -> tuple[Path, Path]:
    """Write ``<out>.json`` and ``<out>.md``, creating the folder; the two paths."""
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = out.with_name(out.name + ".json"), out.with_name(out.name + ".md")
    paths[0].write_text(json.dumps(data, indent=1) + "\n")
    paths[1].write_text(md)
    return paths


def reference_cost(dataset: str, batch: int, path: Path = REFERENCE_COST) -> Optional[dict]:
    """``{"g_eval", "g_train", "peak_gb"}`` of the released generator (s, s, GB), or None."""
    return next(({k: r[k] for k in ("g_eval", "g_train", "peak_gb")} for r in json.loads(Path(path).read_text())
                 ["rows"] if (r["dataset"], r["batch"]) == (dataset, batch)), None)


def schedule_projection(cfg, batch: int, seconds_per_iteration: float) -> Optional[dict]:
    """Hours of the config's whole schedule at this iteration time, only at the config's batch size."""
    its = cfg.train.iterations
    return {"iterations": its, "hours": seconds_per_iteration * its / 3600} if batch == cfg.train.batch_size else None


def _s(v: Optional[dict]) -> str:
    return f"{v['median_s']:.3f}" if v else "-"


def _gb(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.2f}"


def _x(fast: Optional[dict], slow: Optional[dict]) -> str:
    """How many times faster ``fast`` is than ``slow`` (medians)."""
    return f"x{slow['median_s'] / fast['median_s']:.2f}" if fast and slow else "-"


def _table(title: str, note: str, header: str, lines: list) -> list:
    if not lines:
        return []
    return ["", f"## {title}", "", *([note, ""] if note else []), header,
            "|" + "---|" * header.count(" | ") + "---|", *lines]


def markdown(results: dict) -> str:
    """The Markdown report of a results dict."""
    m, rows = results["machine"], results["rows"]
    where = m.get("gpu") or f"{m['cpu']}, {m['torch_threads']} threads"
    amp_off = ("amp off on CUDA = float32 weights with TF32 matmuls (and TF32 cuDNN convolutions), as `train.tf32: "
               "true` trains; `--tf32 off` times strict float32." if results.get("tf32") else
               "amp off on CUDA = strict float32 (TF32 off: `--tf32 off` or `train.tf32: false`).")
    cuda = str(results.get("device", "")).startswith("cuda") and "tf32" in results

    def cell(v):  # with a CUDA peak, and the schedule's projected hours at the config's batch size
        if not v:
            return "-"
        extra = f"; {v['peak_memory_gb']:.1f} GB" if "peak_memory_gb" in v else ""
        extra += f"; {v['projected']['hours']:.1f} h for {v['projected']['iterations']}" if "projected" in v else ""
        return f"{v['median_s']:.3f} [{v['min_s']:.3f}-{v['max_s']:.3f}] ({v['images_per_s']:.2f}{extra})"

    def key(r):
        return f"| {r['dataset']} | {r['model']} | {r['batch']} | {r['amp']} |"

    out = [f"# Benchmark ({where}; torch {m['torch']}; commit {m['commit']})", "",
           f"Command: `{results.get('command', '')}`",
           *(["", f"Backends: {'; '.join(results['backends'])}."] if results.get("backends") else []),
           *(["", amp_off] if cuda else []),
           *(["", "**Incomplete: the run stopped before the end of its plan.**"] if results.get("complete") is False
             else [])]
    out += _table("Timings", "Seconds per call, median of the repeated runs after a warm-up, [min-max], (images/s). "
                  f"Peak memory: {results.get('memory_method', '-')}.", "| dataset | model | batch | amp | attention "
                  "| G eval | G fwd+bwd | iteration (G + both D) | peak memory GB |",
                  [f"{key(r)} {r['attention']} | {cell(r.get('g_eval'))} | {cell(r.get('g_train'))} | "
                   f"{cell(r.get('iteration'))} | {_gb(r.get('peak_memory_gb'))} |"
                   + (f" error: {r['error']}" if r.get("error") else "") for r in rows])
    out += _table("Measured per training iteration", "Aten ops dispatched and host reads in one iteration; "
                  "loader: bytes of one dataset item, items/s of one worker, and the workers this row's "
                  "iteration speed needs.", "| dataset | model | batch | amp | aten ops | host reads | "
                  "commonest ops | bytes / sample | samples/s / worker | consumed/s | workers needed |",
                  [f"{key(r)} {c['ops']} | {c['host_reads']} ({c['host_reads_method']}) | "
                   f"{', '.join(f'{k} {v}' for k, v in list(c['top'].items())[:3])} | {d['bytes_per_sample']} | "
                   f"{d['samples_per_s_per_worker']:.1f} | {d['consumed_per_s']:.1f} | {d['workers_needed']:.2f} |"
                   for r in rows if (c := r.get("counts")) and (d := r.get("loader"))])
    out += _table("Fused SDPA kernels that `attention_impl: auto` found (CUDA)", "",
                  "| dataset | model | batch | amp | q / v shape | dtype | grad | kernels |",
                  [f"{key(r)} {k['q']} / {k['v']} | {k['dtype']} | {k['grad']} | "
                   f"{', '.join(k['kernels']) or 'none: chunked'} |" for r in rows for k in r.get("sdpa_kernels", [])])
    return "\n".join(out + amp_section(rows) + _released_section(rows)) + "\n"


def _released_section(rows: list) -> list:
    lines = []
    for r, rel in ((r, r["released"]) for r in rows if r.get("released")):
        cells = [f"{_s(r[k])} / {_s(rel[k])} ({_x(r[k], rel[k])})" if r.get(k) and rel.get(k) else "-"
                 for k in ("g_eval", "g_train")]
        cells.append(f"{_gb(r.get('peak_memory_gb'))} / {_gb(rel.get('peak_memory_gb'))}")
        cells.append(" / ".join(str(r["reference"][k]) for k in ("g_eval", "g_train", "peak_gb"))
                     if r.get("reference") else "-")
        lines.append(f"| {r['dataset']} | {r['batch']} | {r['attention']} | " + " | ".join(cells) + " |")
    return _table("Side by side with the released forward pass (XingGAN, same machine)",
                  "`released`: the literal released forward (`xinggan/released/network.py`, N x N maps materialised) "
                  "on the same weights and inputs, timed interleaved with ours. `reference`: the released code's cost "
                  "(`benchmarks/reference_cost.json`). xN: how many times faster ours is.",
                  "| dataset | batch | attention | G eval ours / released s | G fwd+bwd ours / released s "
                  "| peak GB ours / released | reference eval / fwd+bwd / peak |", lines)


def amp_section(rows: list) -> list:
    """Reduced precision beside our fp32 and the released fp32 pass, from the same run."""
    fp32 = {(r["dataset"], r["model"], r["batch"], r["attention"]): r for r in rows if r["amp"] == "off"}
    lines = []
    for r in (r for r in rows if r["amp"] != "off"):
        f = fp32.get((r["dataset"], r["model"], r["batch"], r["attention"]), {})
        rel, dev = f.get("released") or {}, r.get("deviation") or {}

        def cell(k):  # the released pass has no training iteration
            a, b, c = r.get(k), f.get(k), rel.get(k)
            return (f"{_s(a)} / {_s(b)}" + (f" / {_s(c)}" if k != "iteration" else "") + f" ({_x(a, b)}"
                    + (f", {_x(a, c)})" if c else ")"))
        ssim = f"{dev['ssim_vs_fp32']:.4f} ({dev['ssim_vs_fp32_min']:.4f}; {dev['ssim_pairs']})" if dev else "-"
        lines.append(f"| {r['dataset']} | {r['model']} | {r['batch']} | {r['amp']} | {cell('g_eval')} | "
                     f"{cell('g_train')} | {cell('iteration')} | {dev.get('max_abs', float('nan')):.4f} | "
                     f"{dev.get('mean_abs', float('nan')):.5f} | {ssim} |")
    return _table("Reduced precision beside fp32 (same run, interleaved on CPU)",
                  "Seconds (median). (xN): how many times faster the AMP row is than our fp32 / than the released "
                  "fp32 pass. Deviation: the AMP eval output against our fp32 output on the same weights and inputs "
                  "(range [-1, 1]), and the mean (min) SSIM of the AMP images against the fp32 images.",
                  "| dataset | model | batch | amp | G eval amp / fp32 / released | G fwd+bwd amp / fp32 / released "
                  "| iteration amp / fp32 | max abs | mean abs | SSIM vs fp32 (pairs) |", lines)
