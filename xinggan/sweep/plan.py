"""What a sweep is and where it stands: its variants, its folder, the state of each variant.

A sweep is a base config plus overlays (``configs/ablations/*.yaml`` or any), each variant being
``load_config([base, overlay], sets)``; the base alone is the first variant (the full model's
row) unless left out. The sweep folder ``--out`` holds:

``sweep.json``
    the definition: base, overlays, ``--set`` values and each variant's resolved config. Starting
    a sweep on a folder whose definition differs is refused (another sweep's variants live there).
``<variant>/``
    the variant's run folder: ``config.yaml`` (resolved), ``state.json``, ``checkpoints/``,
    ``stats.jsonl``, ``train.log``, ``test.log``, ``results/`` (generated images, metrics).
``submitit/``
    submitit's job folders (pickled jobs, the jobs' own stdout / stderr).
``ablation.md``, ``ablation.csv``, ``ablation.tex``
    the table, once every variant is scored.

``state.json`` (written atomically) says ``waiting``, ``running``, ``done`` or ``failed`` with the
job, the iteration reached, the metrics when scored, and for a failure the error and the last
lines of the log.
"""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from xinggan.config import Config, ConfigError, load_config, to_dict
from xinggan.tables import write_text_atomic

__all__ = ["BASE_NAME", "STATES", "SweepError", "Variant", "check_definition", "definition",
           "plan_variants", "read_definition", "read_state", "training_progress", "write_state"]

BASE_NAME = "base"
STATES = ("waiting", "running", "done", "failed")
DEFINITION_FILE = "sweep.json"
STATE_FILE = "state.json"
FORMAT = "xinggan-sweep"
VERSION = 1


# Settings that say where things are or how fast they run, not what is trained or how it is
# scored: they may change between two starts of a sweep (a moved dataset, weights files found
# after a scoring failed); every other change makes it another sweep.
RUNTIME_KEYS = ("data.root", "data.num_workers", "train.device", "loss.vgg_weights", "eval.batch_size",
                "eval.amp", "eval.inception_weights", "eval.lpips_weights", "eval.pose_weights",
                "eval.detected_keypoints", "eval.allow_missing_metrics")


class SweepError(ValueError):
    """Bad input to a sweep; the message is one line naming the file, line and key."""


@dataclass(frozen=True)
class Variant:
    name: str                 # folder name and table row
    overlay: Optional[str]    # the overlay file as given; None for the base
    config: Config

    @property
    def iterations(self) -> int:
        return self.config.train.iterations


def _changed_keys(a, b, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two ``to_dict`` trees."""
    out = []
    for key in sorted(set(a) | set(b)):
        path = f"{prefix}{key}"
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _changed_keys(va, vb, path + ".")
        elif va != vb:
            out.append(path)
    return out


def _key_origin(overlay: Path, dotted: str) -> str:
    """``file:line`` of ``dotted`` (or of its closest parent) in the YAML file ``overlay``."""
    from xinggan.config import _yaml_with_lines  # the parser that gives config errors their lines

    try:
        _, origins = _yaml_with_lines(overlay.read_text(), str(overlay))
    except (OSError, ConfigError):
        return str(overlay)
    parts = tuple(dotted.split("."))
    for i in range(len(parts), 0, -1):
        if parts[:i] in origins:
            return origins[parts[:i]]
    return str(overlay)


def plan_variants(base: str, overlays: Sequence[str], sets: Sequence[str] = (),
                  include_base: bool = True) -> list[Variant]:
    """The variants of a sweep, every config loaded and checked; :class:`SweepError` on bad input.

    Every variant is scored with the base's evaluation protocol, so an overlay may not change
    ``eval.*`` (the error names the overlay's line).
    """
    try:
        base_cfg = load_config(base, sets)
    except ConfigError as exc:
        raise SweepError(f"config error: {exc}") from None
    variants = [Variant(BASE_NAME, None, base_cfg)] if include_base else []
    seen: dict[str, str] = {BASE_NAME: base} if include_base else {}
    for overlay in overlays:
        name = Path(overlay).stem
        if name == BASE_NAME and include_base:
            raise SweepError(f"{overlay}: an overlay may not be named '{BASE_NAME}' (the base "
                             "config's row); rename it or pass --no-base")
        if name in seen:
            raise SweepError(f"{overlay}: two variants would be named '{name}' "
                             f"({seen[name]} and {overlay}); the overlay's file stem names its row")
        seen[name] = overlay
        try:
            cfg = load_config([base, overlay], sets)
        except ConfigError as exc:
            raise SweepError(f"config error: {exc}") from None
        if cfg.eval != base_cfg.eval:
            key = _changed_keys(to_dict(base_cfg.eval), to_dict(cfg.eval), "eval.")[0]
            raise SweepError(f"{key}: the overlay changes the evaluation settings "
                             f"({_key_origin(Path(overlay), key)}); every variant is scored with "
                             f"the base's ({base}), so put evaluation changes in the base or --set")
        variants.append(Variant(name, overlay, cfg))
    if not variants:
        raise SweepError("nothing to run: --no-base and no overlays")
    return variants


# -- the definition in <out>/sweep.json -------------------------------------------------------


def same_as_base(variants: Sequence[Variant]) -> list[Variant]:
    """The overlay variants whose config equals the base's (their rows repeat the base's)."""
    base = next((v for v in variants if v.overlay is None), None)
    return [v for v in variants if base is not None and v.overlay is not None and v.config == base.config]


def definition(base: str, overlays: Sequence[str], sets: Sequence[str], variants: Sequence[Variant],
               cwd: str) -> dict:
    return {
        "format": FORMAT, "version": VERSION,
        "base": base, "overlays": list(overlays), "sets": list(sets),
        "cwd": cwd,  # jobs run here: relative paths in the configs (data.root) mean the same
        "variants": [{"name": v.name, "overlay": v.overlay, "iterations": v.iterations,
                      "config": to_dict(v.config)} for v in variants],
    }


def read_definition(out: Path) -> dict:
    path = Path(out) / DEFINITION_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SweepError(f"{out}: not a sweep folder (no {DEFINITION_FILE})") from None
    except (OSError, ValueError) as exc:
        raise SweepError(f"{path}: unreadable sweep definition ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SweepError(f"{path}: not a sweep definition written by scripts/sweep.py")
    if data.get("version", 0) > VERSION:
        raise SweepError(f"{path}: written by a newer version (format {data['version']}); "
                         "update the code")
    return data


def check_definition(out: Path, new: dict) -> bool:
    """True when ``out`` holds this very sweep already, False when ``out`` is new or empty;
    :class:`SweepError` when it holds another sweep or other files."""
    out = Path(out)
    if not (out / DEFINITION_FILE).is_file():
        if out.exists() and (not out.is_dir() or any(p.name != "sweep.lock" for p in out.iterdir())):
            raise SweepError(f"--out {out}: exists and is not a sweep folder (no {DEFINITION_FILE}); "
                             "choose a new or empty folder")
        return False
    old = read_definition(out)
    old_names = [v["name"] for v in old["variants"]]
    new_names = [v["name"] for v in new["variants"]]
    if old_names != new_names:
        raise SweepError(f"--out {out}: holds another sweep's variants ({', '.join(old_names)}; "
                         f"this one has {', '.join(new_names)}); use another --out folder")
    for before, now in zip(old["variants"], new["variants"]):
        keys = [k for k in _changed_keys(before["config"], now["config"]) if k not in RUNTIME_KEYS]
        if keys:
            shown = "; ".join(f"{k}: {_lookup(before['config'], k)!r} recorded, "
                              f"{_lookup(now['config'], k)!r} now" for k in keys[:3])
            raise SweepError(f"--out {out}: variant '{now['name']}' was defined with another config "
                             f"({shown}); another sweep lives there, use another --out folder")
    return True


def _lookup(tree: dict, dotted: str):
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def write_definition(out: Path, data: dict, variants: Sequence[Variant]) -> None:
    """Create or update the sweep folder: sweep.json, each variant's folder, its config.yaml
    (the resolved config, which its jobs read: runtime settings may have changed) and state."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / DEFINITION_FILE, json.dumps(data, indent=1) + "\n")
    for variant in variants:
        run_dir = out / variant.name
        run_dir.mkdir(exist_ok=True)
        write_text_atomic(run_dir / "config.yaml", variant.config.to_yaml())
        if not (run_dir / STATE_FILE).is_file():
            write_state(run_dir, state="waiting", iterations=variant.iterations,
                        overlay=variant.overlay, note="not started")


# -- per-variant state ------------------------------------------------------------------------


def read_state(run_dir: Path) -> dict:
    try:
        data = json.loads((Path(run_dir) / STATE_FILE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_state(run_dir: Path, event: Optional[str] = None, **fields) -> dict:
    """Merge ``fields`` into ``<run_dir>/state.json`` (atomically); None values remove keys.
    ``event``: a line added to the state's ``events`` (the last 50 are kept)."""
    state = read_state(run_dir)
    state.update(fields)
    if event:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        state["events"] = (list(state.get("events") or []) + [f"{stamp} {event}"])[-50:]
    state = {k: v for k, v in state.items() if v is not None}
    if state.get("state") not in STATES:
        raise ValueError(f"state must be one of {STATES}, got {state.get('state')!r}")
    state["updated"] = time.time()
    write_text_atomic(Path(run_dir) / STATE_FILE, json.dumps(state, indent=1) + "\n")
    return state


def _last_json_line(path: Path, chunk: int = 1 << 16) -> Optional[dict]:
    """The last complete JSON line of ``path``, reading only its end."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - chunk))
            tail = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def training_progress(run_dir: Path) -> int:
    """Iterations trained, from the end of ``stats.jsonl`` and the state file (which records
    where a stopped run saved); no checkpoint is read."""
    last = _last_json_line(Path(run_dir) / "stats.jsonl") or {}
    state = read_state(run_dir)
    return max(int(last.get("iteration", 0)), int(state.get("iteration", 0)))


def log_tail(path: Path, lines: int = 15) -> list[str]:
    """The last ``lines`` non-empty lines of a log, progress-bar redraws reduced to their last."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - (1 << 16)))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    out = [line.split("\r")[-1].rstrip() for line in text.splitlines()]
    return [line for line in out if line.strip()][-lines:]


def hostname() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (TypeError, ValueError):
        return False
    return True
