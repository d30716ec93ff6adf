"""What the benchmark measures: our networks' steps, the released forward pass, attention kernels.

One *setting* (:class:`Setting`) is a dataset x model x batch x attention implementation with
the AMP settings timed together; :func:`plan` lists the settings of a run and
:func:`measure_setting` turns one into report rows (one per AMP setting), using:

- :func:`bench_generator`: ``g_eval`` (generator forward, eval mode) and ``g_train`` (forward
  + backward of an L1 loss, train mode: the setting of the reference cost) under each AMP
  setting, timed interleaved, and with ``released`` the literal released forward pass
  (:mod:`xinggan.released.network`, N x N attention maps materialised) on the same weights
  and inputs, interleaved with ours; each reduced-precision row gets its :func:`deviation`
  from fp32;
- :func:`bench_iteration`: one full training iteration (G step and both D steps) of
  :class:`xinggan.training.Trainer`;
- :func:`cpu_peak_rise`: the peak-RSS rise over one generator training step in a fresh
  process (:mod:`xinggan.bench.memory`); on CUDA the peak comes from the timed process;
- :func:`sdpa_kernel_report`: which fused SDPA kernels ``attention_impl: auto`` found on CUDA.

The timing itself is :mod:`xinggan.bench.harness`; the rows' layout on the page is
:mod:`xinggan.bench.report`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch

from xinggan.bench import harness, report
from xinggan.config import load_config

__all__ = ["AMP_DTYPES", "CONFIGS", "Options", "REPO", "Setting", "backend_settings",
           "bench_generator", "bench_iteration", "cpu_peak_rise", "default_amps",
           "default_attention", "deviation", "generator_train_step", "load", "measure_setting",
           "official_weights", "plan", "released_step", "sdpa_kernel_report", "seeded_inputs"]

REPO = Path(__file__).resolve().parents[2]  # the configs are read from the repository

CONFIGS = {
    ("market", "xinggan"): "configs/market.yaml",
    ("deepfashion", "xinggan"): "configs/deepfashion.yaml",
    ("market", "xingganpp"): "configs/market_xingganpp.yaml",
    ("deepfashion", "xingganpp"): "configs/deepfashion_xingganpp.yaml",
    ("toy", "xinggan"): "configs/toy.yaml",
}

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def load(path, overrides: Sequence[str] = ()):
    """A config (a path relative to the repository, or absolute; or a list of them, later ones
    overlaying earlier ones) with ``key=value`` overrides."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    return load_config([REPO / p for p in paths], list(overrides))


def seeded_inputs(cfg, batch: int, device: torch.device, seed: int = 0) -> list:
    """Random source image, source pose, target pose and target image of the config's size."""
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.data.height, cfg.data.width
    image = torch.rand(batch, 3, h, w, generator=g) * 2 - 1
    pose = torch.rand(batch, 18, h, w, generator=g)
    pose2 = torch.rand(batch, 18, h, w, generator=g)
    target = torch.rand(batch, 3, h, w, generator=g) * 2 - 1
    return [t.to(device) for t in (image, pose, pose2, target)]


# -- choices that depend on the machine and the configs --------------------------------------


def default_amps(device: torch.device) -> tuple[list[str], str]:
    """The AMP settings timed when ``--amp`` is not given, and the line saying why: ``off`` and
    ``bf16`` where :func:`xinggan.precision.resolve_amp` ``auto`` picks bf16 on ``device`` (a GPU
    with bf16 support; a CPU with AMX-BF16 or AVX512-BF16 and oneDNN's bf16 path), else ``off``
    alone (bf16 would be emulated, and slow)."""
    from xinggan.precision import resolve_amp

    auto_dtype, line = resolve_amp("auto", device)
    return (["off", "bf16"] if auto_dtype is not None else ["off"]), line


def default_attention(device: torch.device) -> list[str]:
    """``auto`` (what the configs use: chunked on CPU, SDPA on GPU) and, for comparison, the
    implementation it does not resolve to and the reference."""
    return ["auto", "sdpa", "reference"] if device.type == "cpu" else ["auto", "chunked",
                                                                        "reference"]


def backend_settings(cfgs: Iterable, tf32: Optional[str] = None) -> tuple[bool, bool]:
    """``(deterministic, tf32)`` to time with: the configs' ``train.deterministic`` and
    ``train.tf32`` (``tf32``, ``"on"`` or ``"off"``, overrides the latter). The flags are
    process-wide, so the configs of one run must agree (ValueError naming the key otherwise)."""
    cfgs = list(cfgs)
    values = {}
    for key in ("deterministic", "tf32"):
        seen = {getattr(cfg.train, key) for cfg in cfgs}
        if key == "tf32" and tf32 is not None:
            seen = {tf32 == "on"}
        if len(seen) > 1:
            hint = "; pass --tf32 on or off" if key == "tf32" else ""
            raise ValueError(f"train.{key} differs between the configs of this run{hint}")
        values[key] = seen.pop() if seen else (key == "tf32")
    return values["deterministic"], values["tf32"]


# -- the released forward pass on our weights ------------------------------------------------


def official_weights(cfg, device: torch.device) -> dict:
    """Our generator's initial weights (seed 0) under the released key names; parameters
    require grad, buffers do not."""
    from xinggan.models import build_generator
    from xinggan.released.convert import to_official_state_dict

    torch.manual_seed(0)
    generator = build_generator(cfg)
    params = set(to_official_state_dict("generator", dict(generator.named_parameters())))
    return {k: v.detach().clone().to(device).requires_grad_(k in params)
            for k, v in to_official_state_dict("generator", generator.state_dict()).items()}


def released_step(cfg, sd: dict, training: bool):
    """A callable ``(image, pose, pose2) -> output`` running the released forward pass."""
    from xinggan.released.network import released_generator_forward

    gen = cfg.model.generator

    def forward(image, pose, pose2):
        return released_generator_forward(sd, image, pose, pose2, cfg.model.norm,
                                          n_blocks=gen.n_blocks, n_images=gen.num_candidates,
                                          training=training, dropout=gen.dropout)
    return forward


def generator_train_step(cfg, batch: int, device: torch.device, released: bool = False):
    """One generator training step, built and ready: a callable running the forward in train
    mode (ours, from seed 0, or ``released`` on the same weights) and the L1 backward against a
    random target, on inputs allocated beforehand."""
    from xinggan.models import build_generator

    image, pose, pose2, target = seeded_inputs(cfg, batch, device)
    if released:
        forward = released_step(cfg, official_weights(cfg, device), True)
    else:
        torch.manual_seed(0)
        forward = build_generator(cfg).to(device).train()

    def step():
        out = forward(image, pose, pose2)
        out = out[0] if isinstance(out, (tuple, list)) else out
        (out - target).abs().mean().backward()
    return step


# -- the measurements ------------------------------------------------------------------------


def bench_generator(cfg, batch: int, device: torch.device, repeats: int, amps,
                    released: bool = False, deviation_pairs: int = 0, warmup: int = 1) -> dict:
    """``g_eval`` and ``g_train`` of our generator under each AMP setting of ``amps`` (a name
    or a list), timed interleaved; with ``released``, the literal released forward pass (fp32)
    on the same weights and inputs too, interleaved with ours. Returns ``{amp: {...}}`` (plus
    ``"released"``); each non-``off`` entry has its ``deviation`` from fp32."""
    from xinggan.models import build_generator
    from xinggan.precision import autocast

    amps = [amps] if isinstance(amps, str) else list(amps)
    torch.manual_seed(0)
    generator = build_generator(cfg).to(device)
    image, pose, pose2, target = seeded_inputs(cfg, batch, device)

    def eval_step(dtype):
        def step():
            with torch.no_grad(), autocast(device, dtype):
                return generator(image, pose, pose2)
        return step

    def train_step(dtype):
        def step():
            generator.zero_grad(set_to_none=True)
            with autocast(device, dtype):
                out = generator(image, pose, pose2)
            (out.float() - target).abs().mean().backward()
        return step

    evals = {amp: eval_step(AMP_DTYPES[amp]) for amp in amps}
    trains = {amp: train_step(AMP_DTYPES[amp]) for amp in amps}
    if released:
        sd = official_weights(cfg, device)
        params = [v for v in sd.values() if v.requires_grad]
        rel_eval, rel_train = released_step(cfg, sd, False), released_step(cfg, sd, True)

        def released_eval():
            with torch.no_grad():
                rel_eval(image, pose, pose2)

        def released_train():
            for p in params:
                p.grad = None
            (rel_train(image, pose, pose2) - target).abs().mean().backward()

        evals["released"], trains["released"] = released_eval, released_train

    def throughput(summary: dict) -> dict:
        return {**summary, "images_per_s": batch / summary["median_s"]}

    generator.eval()
    ev = harness.timed_interleaved(evals, device, repeats, warmup)
    out: dict = {}
    for amp in amps:
        out[amp] = {"g_eval": throughput(ev[amp])}
        if amp != "off":
            out[amp]["deviation"] = deviation(generator, cfg, batch, device, AMP_DTYPES[amp],
                                              deviation_pairs)
    generator.train()
    tr = harness.timed_interleaved(trains, device, repeats, warmup)
    for amp in amps:
        out[amp]["g_train"] = throughput(tr[amp])
    if released:
        out["released"] = {"g_eval": throughput(ev["released"]),
                           "g_train": throughput(tr["released"])}
    if device.type == "cuda":  # one more step of ours alone for its peak
        for amp in amps:
            out[amp]["peak_memory_gb"] = harness.cuda_peak_over(trains[amp], device)[
                "rise_bytes"] / 2**30
    return out


@torch.no_grad()
def deviation(generator, cfg, batch: int, device: torch.device, dtype, pairs: int) -> dict:
    """How far the eval output under autocast ``dtype`` is from fp32 on the same inputs: max
    and mean abs over the timed batch, and over ``pairs`` further seeded inputs (at least the
    batch) the mean SSIM (PATN setting) of the uint8 images against the fp32 images."""
    from xinggan.metrics.ssim import PATN_SSIM, ssim
    from xinggan.precision import autocast
    from xinggan.visualize import to_uint8

    def both(image, pose, pose2):
        with autocast(device, None):
            ref = generator(image, pose, pose2).float()
        with autocast(device, dtype):
            low = generator(image, pose, pose2).float()
        return ref, low

    ref, low = both(*seeded_inputs(cfg, batch, device)[:3])
    diff = (low - ref).abs()
    result = {"max_abs": float(diff.max()), "mean_abs": float(diff.mean())}
    refs, lows, done, seed = [ref], [low], batch, 1
    while done < pairs:
        n = min(batch, pairs - done)
        r, lo = both(*seeded_inputs(cfg, n, device, seed)[:3])
        refs.append(r)
        lows.append(lo)
        done, seed = done + n, seed + 1
    as_uint8 = [torch.from_numpy(to_uint8(torch.cat(t))).permute(0, 3, 1, 2)
                for t in (lows, refs)]
    scores = ssim(as_uint8[0], as_uint8[1], PATN_SSIM)
    result.update({"ssim_vs_fp32": float(scores.mean()), "ssim_vs_fp32_min": float(scores.min()),
                   "ssim_pairs": int(scores.numel())})
    return result


def bench_iteration(cfg, batch: int, device: torch.device, repeats: int, amps,
                    warmup: int = 1) -> dict:
    """One full training iteration per AMP setting of ``amps`` (a name or a list), each its
    own trainer from the same seed, timed interleaved; ``{amp: {...}}``."""
    from xinggan.training import Trainer

    amps = [amps] if isinstance(amps, str) else list(amps)
    image, pose, pose2, target = seeded_inputs(cfg, batch, device)
    batch_dict = {"source_image": image, "source_pose": pose, "target_pose": pose2,
                  "target_image": target}
    steps = {}
    for amp in amps:
        overrides = [f"train.batch_size={batch}", f"train.amp={amp}", "loss.vgg_weights=random",
                     f"train.device={device}"]
        trainer = Trainer(cfg.replace(*overrides), "/nonexistent-benchmark-run", device=device,
                          progress=False, tensorboard=False)
        steps[amp] = (lambda t: lambda: t.step(batch_dict))(trainer)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = harness.timed_interleaved(steps, device, repeats, warmup)
    out = {}
    for amp in amps:
        res = dict(times[amp])
        res["images_per_s"] = batch / res["median_s"]
        if device.type == "cuda" and len(amps) == 1:
            res["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        out[amp] = res
    return out


def sdpa_kernel_report() -> list:
    """What ``attention_impl: auto`` found on CUDA since the last call: for each attention
    shape and dtype, the fused SDPA kernels PyTorch would run (none: it used ``chunked``)."""
    from xinggan.ops import attention

    found = [{"device": key[0], "dtype": key[1], "q": list(key[2]), "k": list(key[3]),
              "v": list(key[4]), "grad": key[5],
              "kernels": [name for name, ok in kernels.items() if ok]}
             for key, kernels in attention.SDPA_KERNELS.items()]
    attention.SDPA_KERNELS.clear()
    return found


def cpu_peak_rise(config, overrides: Sequence[str], batch: int,
                  threads: Optional[int] = None, released: bool = False) -> dict:
    """The peak-RSS rise (``rise_gb``, ``peak_gb``, ``method``) over one generator training
    step of ``config`` (a path or a list of overlaid paths) on the CPU, measured by
    :mod:`xinggan.bench.memory` in a fresh process."""
    paths = [config] if isinstance(config, (str, Path)) else list(config)
    args = [a for p in paths for a in ("--config", str(REPO / p))]
    args += [a for o in overrides for a in ("--set", o)]
    args += ["--batch", str(batch)] + (["--threads", str(threads)] if threads else [])
    args += ["--released"] if released else []
    res = harness.measure_in_fresh_process("xinggan.bench.memory", args)
    return {"rise_gb": res["rise_kb"] / 2**20, "peak_gb": res["peak_kb"] / 2**20,
            "method": res["method"]}


# -- a run: its plan and its rows ------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One entry of a run's plan: what is timed together."""

    dataset: str
    model: str
    batch: int
    amps: tuple
    attention: str
    released: bool = False  # time the released forward pass beside this one
    iteration: bool = True  # time the full training iteration (first attention only)

    @property
    def config(self) -> str:
        return CONFIGS[(self.dataset, self.model)]


@dataclass(frozen=True)
class Options:
    """How a run measures (the CLI's flags; whether the released pass runs is in the plan)."""

    repeats: int = 7
    warmup: int = 1
    threads: int = 2
    memory: bool = True
    iteration: bool = True
    deviation_pairs: int = 16


def plan(datasets: Sequence[str], models: Sequence[str], batches: Sequence[int],
         amps: Sequence[str], attention: Sequence[str], device: torch.device,
         released: bool = True) -> list[Setting]:
    """The settings of a run, in order. On CPU the AMP settings of a dataset x model x batch
    are timed together, interleaved; on GPU one at a time (each row its own CUDA peak memory).
    Every attention implementation is timed on the first batch size (the others in fp32 only),
    the later batch sizes with the first implementation. The released pass runs beside the
    first fp32 setting of each XingGAN dataset x batch. Unknown dataset x model pairs are left
    out (see :data:`CONFIGS`)."""
    groups = [tuple(amps)] if device.type == "cpu" else [(amp,) for amp in amps]
    settings, released_done = [], set()
    for ds in datasets:
        for model in models:
            if (ds, model) not in CONFIGS:
                continue
            for bi, batch in enumerate(batches):
                for group in groups:
                    for impl in attention if bi == 0 else attention[:1]:
                        if impl != attention[0]:  # other attention implementations: fp32 only
                            if "off" not in group:
                                continue
                            group = ("off",)
                        with_released = (released and model == "xinggan" and "off" in group
                                         and (ds, batch) not in released_done)
                        if with_released:
                            released_done.add((ds, batch))
                        settings.append(Setting(ds, model, batch, group, impl, with_released,
                                                impl == attention[0]))
    return settings


def measure_setting(setting: Setting, device: torch.device, options: Options) -> list[dict]:
    """The report rows of one setting, one per AMP setting. An error (e.g. out of memory) is
    recorded in the rows rather than raised."""
    overrides = [f"model.generator.attention_impl={setting.attention}"]
    cfg = load(setting.config, overrides)
    rows = {amp: {"dataset": setting.dataset, "model": setting.model, "batch": setting.batch,
                  "amp": amp, "attention": setting.attention, "config": setting.config}
            for amp in setting.amps}
    if device.type == "cuda":
        sdpa_kernel_report()  # start this setting's record afresh
    # CPU peak memory first (fp32), in subprocesses, while this process holds little
    released_peak = None
    if device.type == "cpu" and options.memory and "off" in setting.amps:
        row = rows["off"]
        harness.release_freed_memory()
        try:
            row["peak_memory_gb"] = cpu_peak_rise(setting.config, overrides, setting.batch,
                                                  options.threads)["rise_gb"]
            if setting.released:
                released_peak = cpu_peak_rise(setting.config, overrides, setting.batch,
                                              options.threads, released=True)["rise_gb"]
        except RuntimeError as exc:  # e.g. the subprocess ran out of memory
            row["memory_error"] = str(exc)[:200]
    try:
        measured = bench_generator(cfg, setting.batch, device, options.repeats,
                                   list(setting.amps), setting.released,
                                   options.deviation_pairs, options.warmup)
        for amp in setting.amps:
            rows[amp].update(measured[amp])
        if setting.released:
            rows["off"]["released"] = measured["released"]
            if released_peak is not None:
                rows["off"]["released"]["peak_memory_gb"] = released_peak
        if options.iteration and setting.iteration:
            its = bench_iteration(cfg, setting.batch, device, max(1, options.repeats // 2),
                                  list(setting.amps), options.warmup)
            for amp, it in its.items():
                projection = report.schedule_projection(cfg, setting.batch, it["median_s"])
                if projection:
                    it["projected"] = projection
                rows[amp]["iteration"] = it
        if device.type == "cuda" and setting.attention == "auto":
            rows[setting.amps[0]]["sdpa_kernels"] = sdpa_kernel_report()
    except (RuntimeError, MemoryError) as exc:  # e.g. out of memory: record and go on
        for row in rows.values():
            row["error"] = str(exc).splitlines()[0][:200]
    if device.type == "cpu" and setting.model == "xinggan" and "off" in rows:
        rows["off"]["reference"] = report.reference_cost(setting.dataset, setting.batch)
    return list(rows.values())
