"""What a sweep has produced: where each variant stands (``--status``) and the ablation table,
one row per variant (the base first) and the base protocol's metrics as columns, written by
:mod:`xinggan.tables` as ``ablation.md``, ``.csv`` and ``.tex`` once every variant is scored."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from xinggan.metric_registry import METRICS, TABLE_ORDER, get_protocol
from xinggan.sweep.variants import RECORD, STATUS, read_definition, read_json, trained
from xinggan.tables import Column, Row, Table, write_tables

TABLE_NAMES = ("ablation.md", "ablation.csv", "ablation.tex")


def ablation_table(out: Path) -> Optional[Table]:
    """The table once every variant is scored, else None."""
    data = read_definition(out)
    records = [read_json(out / v["name"] / RECORD) for v in data["variants"]]
    if not all("metrics" in r for r in records):
        return None
    first, base = data["variants"][0], Path(data["base"]).stem
    protocol = get_protocol(first["config"]["eval"]["protocol"])
    wanted = first["config"]["eval"]["metrics"] or protocol.default_metrics
    metrics = [m for m in TABLE_ORDER if m in wanted]
    table = Table(f"Ablation of {base} (protocol {protocol.name})", ["variant"],
                  [Column(m, METRICS[m].label, METRICS[m].better) for m in metrics],
                  description=f"every variant trained for {first['iterations']:,} iterations and "
                              f"scored under protocol {protocol.name}")
    for entry, record in zip(data["variants"], records):
        label = f"{entry['name']} ({base})" if entry["overlay"] is None else entry["name"]
        skipped = record.get("skipped", {})
        table.rows.append(Row([label], {m: record["metrics"].get(m, "not run" if m in skipped else None)
                                        for m in metrics}))
        table.notes.append(f"- {label}: `{data['base']}`" + (f" + `{entry['overlay']}`" if entry["overlay"] else ""))
    if data["sets"]:
        table.notes.append("- every variant with --set " + " ".join(f"`{s}`" for s in data["sets"]))
    return table


def write_ablation_tables(out: Path) -> list[Path]:
    """Write the three tables when every variant is scored; their paths."""
    table = ablation_table(out)
    return write_tables([table], [out / n for n in TABLE_NAMES]) if table else []


def variant_state(run_dir: Path, total: int) -> tuple[str, int, str]:
    """(state, iteration saved, detail) of a variant, from its record and train.py's status."""
    record, status = read_json(run_dir / RECORD), read_json(run_dir / STATUS)
    iteration = min(int(status.get("iteration", 0)), total)
    jobs = ", ".join(f"{s} job {record[s + '_job']}" for s in ("train", "score") if record.get(s + "_job"))
    if "metrics" in record:
        metrics = record["metrics"]
        return "done", total, "  ".join(f"{METRICS[m].label} {metrics[m]:.3f}" for m in TABLE_ORDER if m in metrics)
    if record.get("error"):
        return "failed", iteration, f"{record['error']} (log {record.get('log')})"
    state = "trained" if trained(run_dir, total) else status.get("state", "queued" if jobs else "waiting")
    if "time" in status:
        jobs = f"status.json of {(time.time() - status['time']) / 60:.0f} min ago" + (f"; {jobs}" if jobs else "")
    return state, iteration, jobs


def status_lines(out: Path) -> list[str]:
    """``--status``: a line per variant (state, iteration / total, metrics or jobs; a failed
    one's last log lines below), then the counts; writes the tables once all are scored."""
    data = read_definition(out)
    width = max(len(v["name"]) for v in data["variants"])
    lines, counts = [f"sweep {out}: base {data['base']}, {len(data['variants'])} variant(s)"], {}
    for entry in data["variants"]:
        run_dir, total = out / entry["name"], int(entry["iterations"])
        state, iteration, detail = variant_state(run_dir, total)
        counts[state] = counts.get(state, 0) + 1
        lines.append(f"{entry['name']:<{width}}  {state:<7}  {iteration:>{len(str(total))}}/{total}  {detail}")
        lines += [f"{'':<{width}}  | {line}" for line in read_json(run_dir / RECORD).get("tail", [])]
    tables = write_ablation_tables(out)
    return lines + [", ".join(f"{n} {state}" for state, n in counts.items())] + (
        ["tables: " + ", ".join(map(str, tables))] if tables else [])
