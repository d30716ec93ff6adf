"""What a sweep is and where its variants stand. Variant ``base`` is the base config; the others
are named by their overlay's file stem. ``<out>/sweep.json`` holds every resolved config and the
folder the jobs run in; ``<out>/<variant>/`` the run: ``config.yaml``, ``status.json`` (written
by ``train.py``) and ``variant.json`` (the sweep's record: job ids, error, metrics)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from xinggan.config import Config, ConfigError, load_config, to_dict
from xinggan.tables import write_text_atomic

DEFINITION, RECORD, STATUS, LOCK = "sweep.json", "variant.json", "status.json", "sweep.lock"
# Where things are or how fast they run, not what is trained or scored: these may change between
# two starts of a sweep (a moved dataset, weights found after a scoring failed).
RUNTIME_KEYS = ("data.root", "data.num_workers", "train.device", "loss.vgg_weights", "eval.batch_size",
                "eval.amp", "eval.inception_weights", "eval.lpips_weights", "eval.pose_weights",
                "eval.detected_keypoints", "eval.allow_missing_metrics")


class SweepError(ValueError):
    """Bad input to a sweep; the message is one line naming the file, line or option."""


@dataclass(frozen=True)
class Variant:
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
    """The variants, every config loaded and checked. An overlay may not change ``eval.*``:
    every variant is scored with the base's protocol."""
    try:
        configs = [load_config(base, sets)] + [load_config([base, o], sets) for o in overlays]
    except ConfigError as exc:
        raise SweepError(f"config error: {exc}") from None
    variants = [Variant("base", None, configs[0])]
    for overlay, cfg in zip(overlays, configs[1:]):
        name = Path(overlay).stem
        if name in [v.name for v in variants]:
            raise SweepError(f"{overlay}: a second variant named '{name}' (a variant is named by "
                             "its overlay's file stem, the base 'base')")
        if cfg.eval != configs[0].eval:
            key = _changed(to_dict(configs[0].eval), to_dict(cfg.eval), "eval.")[0]
            raise SweepError(f"{overlay}: changes {key}; every variant is scored with the "
                             f"evaluation settings of the base ({base})")
        variants.append(Variant(name, overlay, cfg))
    return variants


def definition(base: str, sets: Sequence[str], variants: Sequence[Variant]) -> dict:
    return {"base": base, "sets": list(sets), "cwd": os.getcwd(),
            "variants": [{"name": v.name, "overlay": v.overlay, "iterations": v.config.train.iterations,
                          "config": to_dict(v.config)} for v in variants]}


def read_definition(out: Path) -> dict:
    try:
        return json.loads((out / DEFINITION).read_text())
    except (OSError, ValueError) as exc:
        raise SweepError(f"{out}: not a sweep folder ({DEFINITION}: {exc})") from None


def check_out(out: Path, new: dict) -> Optional[dict]:
    """The definition already in ``out``, None for a new or empty folder; :class:`SweepError`
    when ``out`` holds another sweep or other files."""
    if not (out / DEFINITION).is_file():
        if out.exists() and (not out.is_dir() or any(p.name != LOCK for p in out.iterdir())):
            raise SweepError(f"--out {out}: exists and is not a sweep folder; choose a new or empty one")
        return None
    old = read_definition(out)
    names = [", ".join(v["name"] for v in d["variants"]) for d in (old, new)]
    if names[0] != names[1]:
        raise SweepError(f"--out {out}: holds another sweep ({names[0]}; this one has {names[1]})")
    for was, now in zip(old["variants"], new["variants"]):
        keys = [k for k in _changed(was["config"], now["config"]) if k not in RUNTIME_KEYS]
        if keys:
            raise SweepError(f"--out {out}: holds another sweep: its {now['name']} has another {keys[0]}")
    return old


def write_definition(out: Path, data: dict, variants: Sequence[Variant]) -> None:
    """``sweep.json`` and each variant's ``config.yaml`` (runtime settings may have changed)."""
    for v in variants:
        write_text_atomic(out / v.name / "config.yaml", v.config.to_yaml())
    write_text_atomic(out / DEFINITION, json.dumps(data, indent=1) + "\n")


def read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def update_record(run_dir: Path, **fields) -> None:
    """Merge ``fields`` into ``<run_dir>/variant.json``; None removes a key."""
    record = {k: v for k, v in {**read_json(run_dir / RECORD), **fields}.items() if v is not None}
    write_text_atomic(run_dir / RECORD, json.dumps(record, indent=1) + "\n")


def trained(run_dir: Path, total: int) -> bool:
    """Whether ``train.py`` says it finished: state done, iteration ``total`` saved."""
    status = read_json(run_dir / STATUS)
    return status.get("state") == "done" and int(status.get("iteration", 0)) >= total
