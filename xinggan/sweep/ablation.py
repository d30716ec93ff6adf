"""An ablation sweep: its variants (``base``, then one per overlay, named by its file stem), where
each stands and the ablation table. ``<out>/sweep.json`` holds every resolved config; each
``<out>/<variant>/`` a run: ``config.yaml``, ``status.json`` (``train.py``'s) and ``variant.json``
(the sweep's: job ids, error, metrics); ``<out>/ablation.md``, ``.csv``, ``.tex`` the table."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

from xinggan.config import Config, ConfigError, load_config, to_dict
from xinggan.metric_registry import METRICS, TABLE_ORDER, get_protocol
from xinggan.tables import Row, Table, metric_column, write_tables, write_text_atomic

DEFINITION, RECORD, STATUS, LOCK = "sweep.json", "variant.json", "status.json", "sweep.lock"
TABLE_NAMES = ("ablation.md", "ablation.csv", "ablation.tex")
# Where things are or how fast they run: these may change between two starts of a sweep.
RUNTIME_KEYS = ("data.root", "data.num_workers", "train.device", "loss.vgg_weights", "eval.batch_size",
                "eval.amp", "eval.inception_weights", "eval.lpips_weights", "eval.pose_weights",
                "eval.detected_keypoints", "eval.allow_missing_metrics")


class SweepError(ValueError):
    """Bad input to a sweep, in one line."""


class Variant(NamedTuple):
    name: str
    overlay: Optional[str]  # None for the base
    config: Config


def _changed(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config trees."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _changed(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(prefix + key)
    return out


def plan_variants(base: str, overlays: Sequence[str], sets: Sequence[str] = ()) -> list[Variant]:
    """The variants, every config loaded; overlays may not change ``eval.*`` (the base's protocol)."""
    try:
        configs = [load_config(base, sets)] + [load_config([base, o], sets) for o in overlays]
    except ConfigError as exc:
        raise SweepError(f"config error: {exc}") from None
    variants = [Variant("base", None, configs[0])]
    for overlay, cfg in zip(overlays, configs[1:]):
        if Path(overlay).stem in [v.name for v in variants]:
            raise SweepError(f"{overlay}: a second variant named '{Path(overlay).stem}' (a variant is "
                             "named by its overlay's file stem, the base 'base')")
        if cfg.eval != configs[0].eval:
            raise SweepError(f"{overlay}: changes {_changed(to_dict(configs[0].eval), to_dict(cfg.eval), 'eval.')[0]}; "
                             f"every variant is scored with the evaluation settings of the base ({base})")
        variants.append(Variant(Path(overlay).stem, overlay, cfg))
    return variants


def read_definition(out: Path) -> dict:
    try:
        return json.loads((out / DEFINITION).read_text())
    except (OSError, ValueError) as exc:
        raise SweepError(f"{out}: not a sweep folder ({DEFINITION}: {exc})") from None


def definition(out: Path, base: str, sets: Sequence[str], variants: Sequence[Variant]) -> dict:
    """This sweep's definition for folder ``out``; refuses a folder holding another sweep or other files."""
    new = {"base": base, "sets": list(sets), "cwd": os.getcwd(), "variants": [
        {"name": v.name, "overlay": v.overlay, "config": to_dict(v.config)} for v in variants]}
    if not (out / DEFINITION).is_file():
        if out.exists() and (not out.is_dir() or any(p.name != LOCK for p in out.iterdir())):
            raise SweepError(f"--out {out}: exists and is not a sweep folder; choose a new or empty one")
        return new
    old = read_definition(out)
    names = [", ".join(v["name"] for v in d["variants"]) for d in (old, new)]
    keys = [k for was, now in zip(old["variants"], new["variants"]) for k in _changed(was["config"], now["config"])
            if k not in RUNTIME_KEYS]
    if names[0] != names[1] or keys:
        raise SweepError(f"--out {out}: holds another sweep ({names[0]}" + (f"; another {keys[0]}" if keys else "")
                         + f"); this one has {names[1]}")
    return {**new, "cwd": old["cwd"]}  # the jobs run where the sweep first started


def write_definition(out: Path, data: dict, variants: Sequence[Variant]) -> None:
    """``sweep.json`` and each variant's ``config.yaml`` (runtime settings may have changed)."""
    for v in variants:
        write_text_atomic(out / v.name / "config.yaml", v.config.to_yaml())
    write_text_atomic(out / DEFINITION, json.dumps(data, indent=1) + "\n")


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def update_record(run_dir: Path, **fields) -> None:
    """Merge ``fields`` into ``<run_dir>/variant.json``; None removes a key."""
    record = {k: v for k, v in {**read_json(run_dir / RECORD), **fields}.items() if v is not None}
    write_text_atomic(run_dir / RECORD, json.dumps(record, indent=1) + "\n")


def trained(run_dir: Path, total: int) -> bool:
    """Whether ``train.py`` says it finished: state done, iteration ``total`` saved."""
    status = read_json(run_dir / STATUS)
    return status.get("state") == "done" and int(status.get("iteration", 0)) >= total


def variant_state(run_dir: Path, total: int) -> tuple[str, int, str]:
    """(state, iteration saved, detail) of a variant, from its record and train.py's status."""
    record, status = read_json(run_dir / RECORD), read_json(run_dir / STATUS)
    iteration = min(int(status.get("iteration", 0)), total)
    jobs = ", ".join(f"{s} job {record[s + '_job']}" for s in ("train", "score") if record.get(s + "_job"))
    if "metrics" in record:
        return "done", total, "  ".join(f"{METRICS[m].label} {record['metrics'][m]:.3f}"
                                        for m in TABLE_ORDER if m in record["metrics"])
    if record.get("error"):
        return "failed", iteration, f"{record['error']} (log {record.get('log')})"
    state = "trained" if trained(run_dir, total) else status.get("state", "queued" if jobs else "waiting")
    age = f"status.json of {(time.time() - status['time']) / 60:.0f} min ago" if "time" in status else ""
    return state, iteration, "; ".join(filter(None, (age, jobs)))


def write_ablation_tables(out: Path) -> list[Path]:
    """Write the table in its three formats once every variant is scored; their paths."""
    data = read_definition(out)
    records = [read_json(out / v["name"] / RECORD) for v in data["variants"]]
    if not all("metrics" in r for r in records):
        return []
    eval_cfg, base = data["variants"][0]["config"]["eval"], Path(data["base"]).stem
    protocol = get_protocol(eval_cfg["protocol"])
    metrics = [m for m in TABLE_ORDER if m in (eval_cfg["metrics"] or protocol.default_metrics)]
    sets = "".join(f" `{s}`" for s in data["sets"])
    table = Table(f"Ablation of {base} (protocol {protocol.name})", ["variant"],
                  [metric_column(m) for m in metrics],
                  description=f"every variant trained for {data['variants'][0]['config']['train']['iterations']:,} "
                              f"iterations{' with --set' + sets if sets else ''}, scored under protocol {protocol.name}")
    for entry, record in zip(data["variants"], records):
        label = entry["name"] if entry["overlay"] else f"base ({base})"
        table.rows.append(Row([label], {m: record["metrics"].get(m, "not run" if m in record.get("skipped", {})
                                                                   else None) for m in metrics}))
        table.notes.append(f"- {label}: `{data['base']}`" + (f" + `{entry['overlay']}`" if entry["overlay"] else ""))
    return write_tables([table], [out / n for n in TABLE_NAMES])


def status_lines(out: Path) -> list[str]:
    """``--status``: a line per variant (state, iteration / total, metrics or jobs; a failed
    one's last log lines below), then the counts; writes the tables once all are scored."""
    data = read_definition(out)
    width = max(len(v["name"]) for v in data["variants"])
    lines, counts = [f"sweep {out}: base {data['base']}, {len(data['variants'])} variant(s)"], {}
    for entry in data["variants"]:
        run_dir, total = out / entry["name"], entry["config"]["train"]["iterations"]
        state, iteration, detail = variant_state(run_dir, total)
        counts[state] = counts.get(state, 0) + 1
        lines.append(f"{entry['name']:<{width}}  {state:<7}  {iteration:>{len(str(total))}}/{total}  {detail}")
        lines += [f"{'':<{width}}  | {line}" for line in read_json(run_dir / RECORD).get("tail", [])]
    lines.append(", ".join(f"{n} {state}" for state, n in counts.items()))
    tables = write_ablation_tables(out)
    return lines + ["tables: " + ", ".join(map(str, tables))] * bool(tables)
