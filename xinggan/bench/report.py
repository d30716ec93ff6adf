"""The benchmark's reports: ``<out>.json`` and ``<out>.md``, the schedule projection, the
reference cost.

- :func:`write_reports` writes a results dict (machine, flags, ``rows``) as JSON and as the
  Markdown of :func:`markdown`; :func:`resolve_out` places an output prefix (relative paths
  from the repository root; by default under ``runs/benchmarks/``, which git ignores: the
  tracked ``benchmarks/`` folder is written only when named).
- :func:`schedule_projection`: the hours of a config's whole schedule at a measured iteration
  time, at the config's own batch size.
- :func:`reference_cost`: the released code's cost, read from
  ``benchmarks/reference_cost.json`` (:data:`REFERENCE_COST`), the one home of those numbers
  (``docs/architecture.md``, Reference cost, describes them).

The layout of the JSON rows and of the Markdown tables is described in
``benchmarks/README.md``; the stored reports there were written by these functions.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Optional, Union

__all__ = ["DEFAULT_OUT_DIR", "REFERENCE_COST", "amp_section", "load_reference_cost",
           "markdown", "precision_note", "reference_cost", "resolve_out",
           "schedule_projection", "write_pair", "write_reports"]

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT_DIR = REPO / "runs" / "benchmarks"  # git-ignored (/runs/)
REFERENCE_COST = REPO / "benchmarks" / "reference_cost.json"


def resolve_out(out: Union[str, Path, None], name: str) -> Path:
    """The output prefix: ``out`` (relative paths are taken from the repository root; a
    trailing ``.json`` or ``.md`` is dropped), or ``runs/benchmarks/<name>`` when ``out`` is not
    given."""
    if out is None:
        return DEFAULT_OUT_DIR / name
    out = Path(out)
    if out.suffix in (".json", ".md"):  # a report's file name given for its prefix
        out = out.with_suffix("")
    return out if out.is_absolute() else REPO / out


def write_pair(out: Path, data: dict, md: str) -> tuple[Path, Path]:
    """Write ``<out>.json`` (``data``, indented) and ``<out>.md`` (``md``), creating the folder;
    the two paths."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out.with_name(out.name + ".json"), out.with_name(out.name + ".md")
    json_path.write_text(json.dumps(data, indent=1) + "\n")
    md_path.write_text(md)
    return json_path, md_path


def write_reports(results: dict, out: Path, complete: bool = True) -> tuple[Path, Path]:
    """The benchmark's two reports; ``complete`` False marks a run still going (or stopped)."""
    results["complete"] = complete
    return write_pair(out, results, markdown(results))


# -- the released code's cost ----------------------------------------------------------------


@lru_cache(maxsize=None)
def load_reference_cost(path: Path = REFERENCE_COST) -> dict:
    """The reference cost file: its description, provenance, units and ``rows``."""
    return json.loads(Path(path).read_text())


def reference_cost(dataset: str, batch: int, path: Path = REFERENCE_COST) -> Optional[dict]:
    """``{"g_eval", "g_train", "peak_gb"}`` of the released generator for ``dataset`` at
    ``batch`` (seconds, seconds, GB), or None where the file has no such row."""
    for row in load_reference_cost(Path(path))["rows"]:
        if row["dataset"] == dataset and row["batch"] == batch:
            return {"g_eval": row["g_eval"], "g_train": row["g_train"], "peak_gb": row["peak_gb"]}
    return None


# -- projection ------------------------------------------------------------------------------


def schedule_projection(cfg, batch: int, seconds_per_iteration: float) -> Optional[dict]:
    """Hours for the config's whole schedule (``train.iterations``) at this iteration time,
    only when ``batch`` is the config's own batch size (the paper's: 32)."""
    if batch != cfg.train.batch_size:
        return None
    return {"iterations": cfg.train.iterations,
            "hours": seconds_per_iteration * cfg.train.iterations / 3600}


# -- Markdown --------------------------------------------------------------------------------


def precision_note(results: dict) -> Optional[str]:
    """What ``amp off`` means in this report: on CUDA, float32 weights with TF32 products
    unless TF32 was off."""
    if not str(results.get("device", "")).startswith("cuda") or "tf32" not in results:
        return None
    if results["tf32"]:
        return ("amp off on CUDA = float32 weights with TF32 matmuls (and TF32 cuDNN "
                "convolutions), as `train.tf32: true` trains; `--tf32 off` times strict float32.")
    return "amp off on CUDA = strict float32 (TF32 off: `--tf32 off` or `train.tf32: false`)."


def _cell(v) -> str:
    if not v:
        return "-"
    return (f"{v['median_s']:.3f} [{v['min_s']:.3f}-{v['max_s']:.3f}] "
            f"({v['images_per_s']:.2f})")


def _x(fast: Optional[dict], slow: Optional[dict]) -> str:
    """How many times faster ``fast`` is than ``slow`` (medians)."""
    if not fast or not slow:
        return "-"
    return f"x{slow['median_s'] / fast['median_s']:.2f}"


def markdown(results: dict) -> str:
    """The Markdown report of a results dict."""
    m = results["machine"]
    where = m.get("gpu") or f"{m['cpu']}, {m['torch_threads']} threads"
    lines = [f"# Benchmark ({where}; torch {m['torch']}; commit {m['commit']})", "",
             f"Command: `{results.get('command', '')}`", "",
             *([f"Backends: {'; '.join(results['backends'])}.", ""]
               if results.get("backends") else []),
             *([note, ""] if (note := precision_note(results)) else []),
             *(["**Incomplete: the run stopped before the end of its plan.**", ""]
               if results.get("complete") is False else []),
             "Seconds per call, median of the repeated runs after a warm-up, [min-max], "
             "(images/s). Peak memory: " + results.get("memory_method", "-") + ".", "",
             "| dataset | model | batch | amp | attention | G eval | G fwd+bwd "
             "| iteration (G + both D) | peak memory GB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        peak = r.get("peak_memory_gb")
        err = "".join(f" {key.replace('_', ' ')}: {r[key]}" for key in ("error", "memory_error")
                      if r.get(key))
        lines.append(f"| {r['dataset']} | {r['model']} | {r['batch']} | {r['amp']} | "
                     f"{r['attention']} | {_cell(r.get('g_eval'))} | {_cell(r.get('g_train'))} | "
                     f"{_cell(r.get('iteration'))} | {'-' if peak is None else f'{peak:.2f}'} "
                     f"|{err}")
    lines += _schedule_section(results["rows"])
    lines += _kernel_section(results["rows"])
    lines += amp_section(results["rows"])
    lines += _released_section(results["rows"])
    return "\n".join(lines) + "\n"


def _schedule_section(rows: list) -> list[str]:
    projected = [r for r in rows if (r.get("iteration") or {}).get("projected")]
    if not projected:
        return []
    lines = ["", "## Full training schedule at the config's batch size", "",
             "| dataset | model | batch | amp | s / iteration | images/s | iteration peak GB "
             "| iterations | projected hours |", "|---|---|---|---|---|---|---|---|---|"]
    for r in projected:
        it = r["iteration"]
        peak = it.get("peak_memory_gb")
        lines.append(f"| {r['dataset']} | {r['model']} | {r['batch']} | {r['amp']} | "
                     f"{it['median_s']:.3f} | {it['images_per_s']:.1f} | "
                     f"{'-' if peak is None else f'{peak:.1f}'} | "
                     f"{it['projected']['iterations']} | {it['projected']['hours']:.1f} |")
    return lines


def _kernel_section(rows: list) -> list[str]:
    kernels = [(r, k) for r in rows for k in r.get("sdpa_kernels", [])]
    if not kernels:
        return []
    lines = ["", "## Fused SDPA kernels that `attention_impl: auto` found (CUDA)", "",
             "| dataset | model | batch | amp | q / k / v shape | dtype | grad | kernels |",
             "|---|---|---|---|---|---|---|---|"]
    for r, k in kernels:
        lines.append(f"| {r['dataset']} | {r['model']} | {r['batch']} | {r['amp']} | "
                     f"{k['q']} / {k['k']} / {k['v']} | {k['dtype']} | {k['grad']} | "
                     f"{', '.join(k['kernels']) or 'none: chunked'} |")
    return lines


def _released_section(rows: list) -> list[str]:
    side = [r for r in rows if r.get("released")]
    if not side:
        return []
    lines = ["", "## Side by side with the released forward pass (XingGAN, same machine)", "",
             "`released`: the literal released forward (`xinggan/released/network.py`, N x N "
             "maps materialised) on the same weights and inputs, timed by the same loop. "
             "`reference`: the released code's cost (`benchmarks/reference_cost.json`; "
             "`docs/architecture.md`, Reference cost), for comparison.", "",
             "| dataset | batch | attention | G eval ours / released s | G fwd+bwd ours / "
             "released s | peak GB ours / released | reference eval / fwd+bwd / peak |",
             "|---|---|---|---|---|---|---|"]
    for r in side:
        rel = r["released"]

        def pair(key):
            a, b = r.get(key), rel.get(key)
            if not a or not b:
                return "-"
            return (f"{a['median_s']:.3f} / {b['median_s']:.3f} "
                    f"(x{b['median_s'] / a['median_s']:.2f})")
        pa, pb = r.get("peak_memory_gb"), rel.get("peak_memory_gb")
        peak = "-" if pa is None or pb is None else f"{pa:.2f} / {pb:.2f}"
        ref = r.get("reference")
        ref_cell = f"{ref['g_eval']} / {ref['g_train']} / {ref['peak_gb']}" if ref else "-"
        lines.append(f"| {r['dataset']} | {r['batch']} | {r['attention']} | {pair('g_eval')} "
                     f"| {pair('g_train')} | {peak} | {ref_cell} |")
    return lines + ["", "(xN: how many times faster ours is; > 1 means ours is faster.)"]


def amp_section(rows: list) -> list[str]:
    """Reduced precision beside our fp32 and the released fp32 pass, from the same run."""
    fp32 = {(r["dataset"], r["model"], r["batch"], r["attention"]): r for r in rows
            if r["amp"] == "off"}
    amp_rows = [(r, fp32.get((r["dataset"], r["model"], r["batch"], r["attention"])))
                for r in rows if r["amp"] != "off"]
    if not amp_rows:
        return []
    lines = ["", "## Reduced precision beside fp32 (same run, interleaved on CPU)", "",
             "Seconds (median). (xN): how many times faster the AMP row is than our fp32 / "
             "than the released fp32 pass. Deviation: the AMP eval output against our fp32 "
             "output on the same weights and inputs (range [-1, 1]), and the mean (min) SSIM of "
             "the AMP images against the fp32 images of a small generated set.", "",
             "| dataset | model | batch | amp | G eval amp / fp32 / released | G fwd+bwd amp / "
             "fp32 / released | iteration amp / fp32 | max abs | mean abs | SSIM vs fp32 "
             "(pairs) |", "|---|---|---|---|---|---|---|---|---|---|"]

    def secs(v):
        return f"{v['median_s']:.3f}" if v else "-"

    for r, f in amp_rows:
        f = f or {}
        rel = f.get("released") or {}

        def cell(key):
            a, b, c = r.get(key), f.get(key), rel.get(key)
            text = f"{secs(a)} / {secs(b)}"
            if key != "iteration":
                text += f" / {secs(c)}"
            text += f" ({_x(a, b)}"
            if key != "iteration" and c:
                text += f", {_x(a, c)}"
            return text + ")"

        dev = r.get("deviation") or {}
        ssim_cell = (f"{dev['ssim_vs_fp32']:.4f} ({dev['ssim_vs_fp32_min']:.4f}; "
                     f"{dev['ssim_pairs']})" if dev else "-")
        lines.append(f"| {r['dataset']} | {r['model']} | {r['batch']} | {r['amp']} | "
                     f"{cell('g_eval')} | {cell('g_train')} | {cell('iteration')} | "
                     f"{dev.get('max_abs', float('nan')):.4f} | "
                     f"{dev.get('mean_abs', float('nan')):.5f} | {ssim_cell} |")
    return lines
