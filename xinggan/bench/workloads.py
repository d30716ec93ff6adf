"""What the benchmark measures: our generator beside the released forward pass, the training iteration
with its ops and host reads, the data loader. A *setting* (:func:`plan`) is timed together."""
from __future__ import annotations

import functools
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from xinggan.bench import harness, report
from xinggan.config import load_config
from xinggan.data import DataError, PairDataset, model_inputs
from xinggan.metrics.ssim import PATN_SSIM, ssim
from xinggan.models import build_generator
from xinggan.ops import attention
from xinggan.precision import autocast
from xinggan.prep.toy import make_toy_dataset
from xinggan.released.convert import to_released_state_dict
from xinggan.released.network import released_generator_forward
from xinggan.runtime import configure_backends
from xinggan.training import build_parts, train_step
from xinggan.visualize import to_uint8

REPO = Path(__file__).resolve().parents[2]  # the configs are read from the repository
CONFIGS = {(d, m): f"configs/{d}{'_xingganpp' * (m == 'xingganpp')}.yaml"
           for d, m in (("market", "xinggan"), ("deepfashion", "xinggan"), ("market", "xingganpp"),
                        ("deepfashion", "xingganpp"), ("toy", "xinggan"))}
AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def load(paths, overrides: Sequence[str] = ()):
    """A config from a path relative to the repository (or a list of overlaid paths)."""
    return load_config([REPO / p for p in ([paths] if isinstance(paths, (str, Path)) else paths)], list(overrides))


def model_batch(cfg, batch: int, device: torch.device, seed: int = 0) -> dict:
    """A seeded batch as the loader collates it, made the networks' inputs by :func:`model_inputs`."""
    g, h, w = torch.Generator().manual_seed(seed), cfg.data.height, cfg.data.width
    raw = {f"{side}_{key}": torch.randint(0, 256, (batch, 3, h, w), generator=g, dtype=torch.uint8) if key == "image"
           else torch.rand(batch, 18, 2, generator=g) * torch.tensor([h - 1.0, w - 1.0])
           for side in ("source", "target") for key in ("image", "keypoints")}
    return model_inputs(raw, device, cfg.data.heatmap_sigma)


def released_forward(cfg, device: torch.device):
    """The released forward ``(image, pose, pose2, training) -> output`` on our generator's initial
    weights (seed 0), and the weights that take gradients."""
    torch.manual_seed(0)
    generator, gen = build_generator(cfg), cfg.model.generator
    names = set(to_released_state_dict("generator", dict(generator.named_parameters())))
    sd = {k: v.detach().clone().to(device).requires_grad_(k in names)
          for k, v in to_released_state_dict("generator", generator.state_dict()).items()}
    forward = functools.partial(released_generator_forward, sd, norm=cfg.model.norm, n_blocks=gen.n_blocks,
                                n_images=gen.num_candidates, dropout=gen.dropout)
    return forward, [v for v in sd.values() if v.requires_grad]


def generator_steps(cfg, batch: int, device: torch.device, amps: Sequence[str], released: bool):
    """``(evals, trains, generator)``: per AMP setting (and ``released``), the eval-mode call and the
    train-mode forward + L1 backward."""
    torch.manual_seed(0)
    generator = build_generator(cfg).to(device)
    b = model_batch(cfg, batch, device)
    x, target = (b["source_image"], b["source_pose"], b["target_pose"]), b["target_image"]

    def step(fn, dtype, mode, params=None):  # with params: train mode, forward + L1 backward
        def run():
            mode()
            for p in params or ():
                p.grad = None
            with torch.set_grad_enabled(params is not None), autocast(device, dtype):
                out = fn(*x)
            if params is not None:
                (out.float() - target).abs().mean().backward()
        return run

    evals = {a: step(generator, AMP_DTYPES[a], generator.eval) for a in amps}
    trains = {a: step(generator, AMP_DTYPES[a], generator.train, list(generator.parameters())) for a in amps}
    if released:
        forward, params = released_forward(cfg, device)
        evals["released"] = step(functools.partial(forward, training=False), None, lambda: None)
        trains["released"] = step(functools.partial(forward, training=True), None, lambda: None, params)
    return evals, trains, generator


@torch.no_grad()
def deviation(generator, cfg, batch: int, device: torch.device, dtype, pairs: int) -> dict:
    """The eval output under autocast ``dtype`` against fp32: max and mean abs over the first batch,
    SSIM (PATN setting) over ``pairs`` seeded inputs."""
    generator.eval()
    lows, refs, seed = [], [], 0
    while seed == 0 or sum(len(r) for r in refs) < pairs:
        b = model_batch(cfg, batch, device, seed)
        x = (b["source_image"], b["source_pose"], b["target_pose"])
        refs.append(generator(*x).float())
        with autocast(device, dtype):
            lows.append(generator(*x).float())
        seed += 1
    diff = (lows[0] - refs[0]).abs()
    low, ref = (torch.from_numpy(to_uint8(torch.cat(t))).permute(0, 3, 1, 2) for t in (lows, refs))
    scores = ssim(low, ref, PATN_SSIM)
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "ssim_vs_fp32": float(scores.mean()),
            "ssim_vs_fp32_min": float(scores.min()), "ssim_pairs": int(scores.numel())}


def iteration_steps(cfg, batch: int, device: torch.device, amps: Sequence[str]) -> dict:
    """One training iteration (:func:`train_step`) per AMP setting, each with its own parts, on one batch."""
    def step(amp):
        c = cfg.replace(f"train.batch_size={batch}", f"train.amp={amp}", "loss.vgg_weights=random",
                        f"train.device={device}")
        parts, b = build_parts(c, device, notice=lambda line: None), model_batch(c, batch, device)
        return lambda: train_step(parts, b, c.optim.lr, 1)
    return {amp: step(amp) for amp in amps}


def cpu_peak_rise(paths, overrides: Sequence[str], batch: int, threads: Optional[int], released: bool) -> dict:
    """The peak-RSS rise over one generator forward + L1 backward on the CPU (run in a fresh process)."""
    if threads:
        torch.set_num_threads(threads)
    cfg = load(paths, overrides)
    configure_backends("cpu", deterministic=cfg.train.deterministic, tf32=cfg.train.tf32)
    step = generator_steps(cfg, batch, torch.device("cpu"), ["off"], released)[1]["released" if released else "off"]
    return harness.peak_rss_over(step)


def loader_rate(cfg, samples: int = 8) -> dict:
    """Bytes of one dataset item and items per second one loader worker reads: the config's training
    data where it is there, else toy images of its size."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            dataset, source = PairDataset.from_config(cfg.data, "train"), str(cfg.data.root)
        except (DataError, OSError):
            h, w = cfg.data.height, cfg.data.width
            make_toy_dataset(tmp, identities=2, test_identities=1, poses=3, test_pairs=2, height=h, width=w)
            dataset, source = PairDataset(tmp, "train", h, w, sigma=cfg.data.heatmap_sigma), f"toy images {h} x {w}"
        item, start = dataset[0], time.perf_counter()
        for i in range(samples):
            dataset[i % len(dataset)]
        rate = samples / (time.perf_counter() - start)
    return {"bytes_per_sample": sum(v.nbytes for v in item.values() if torch.is_tensor(v)),
            "samples_per_s_per_worker": rate, "source": source}


def sdpa_kernel_report() -> list:
    """The fused SDPA kernels ``attention_impl: auto`` found on CUDA since the last call."""
    found = [{"dtype": k[1], "q": list(k[2]), "v": list(k[4]), "grad": k[5],
              "kernels": [name for name, ok in kernels.items() if ok]} for k, kernels in attention.SDPA_KERNELS.items()]
    attention.SDPA_KERNELS.clear()
    return found


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
    config = property(lambda self: CONFIGS[(self.dataset, self.model)])


@dataclass(frozen=True)
class Options:
    """How a run measures (the command line's flags)."""
    repeats: int = 7
    warmup: int = 1
    threads: int = 2
    memory: bool = True
    iteration: bool = True
    deviation_pairs: int = 16


def plan(datasets, models, batches, amps, impls, device: torch.device, released: bool = True) -> list:
    """The settings of a run: AMP settings together on CPU, one at a time on GPU; every attention
    implementation at the first batch size (the others fp32 only); the released pass beside the first
    fp32 setting of each XingGAN dataset x batch. Unknown dataset x model pairs are left out."""
    groups = [tuple(amps)] if device.type == "cpu" else [(amp,) for amp in amps]
    settings, released_done = [], set()
    for ds, model in ((d, m) for d in datasets for m in models if (d, m) in CONFIGS):
        for bi, batch in enumerate(batches):
            for group in groups:
                others = [(("off",), impl) for impl in impls[1:] if bi == 0 and "off" in group]
                for timed, impl in [(group, impls[0]), *others]:
                    side = released and model == "xinggan" and "off" in timed and (ds, batch) not in released_done
                    released_done |= {(ds, batch)} if side else set()
                    settings.append(Setting(ds, model, batch, timed, impl, side, impl == impls[0]))
    return settings


def measure_setting(s: Setting, device: torch.device, options: Options) -> list[dict]:
    """The report rows of one setting, one per AMP setting; an error (out of memory) is recorded in them."""
    overrides = [f"model.generator.attention_impl={s.attention}"]
    cfg = load(s.config, overrides)
    rows = {a: {"dataset": s.dataset, "model": s.model, "batch": s.batch, "amp": a, "attention": s.attention,
                "config": s.config} for a in s.amps}
    sdpa_kernel_report()  # this setting's record starts afresh
    try:
        if device.type == "cpu" and options.memory and "off" in s.amps:  # fresh processes, this one idle
            for rel in (False, True)[:1 + s.released]:
                rise = harness.in_fresh_process(cpu_peak_rise, s.config, overrides, s.batch, options.threads, rel)
                row = rows["off"].setdefault("released", {}) if rel else rows["off"]
                row["peak_memory_gb"] = rise["rise_kb"] / 2**20
        _generator_rows(cfg, s, device, options, rows)
        if options.iteration and s.iteration:
            _iteration_rows(cfg, s, device, options, rows)
        if device.type == "cuda" and s.attention == "auto":
            rows[s.amps[0]]["sdpa_kernels"] = sdpa_kernel_report()
    except (RuntimeError, MemoryError) as exc:  # e.g. out of memory: record and go on
        for row in rows.values():
            row["error"] = str(exc).splitlines()[0][:200]
    if device.type == "cpu" and s.model == "xinggan" and "off" in rows:
        rows["off"]["reference"] = report.reference_cost(s.dataset, s.batch)
    return list(rows.values())


def _generator_rows(cfg, s: Setting, device: torch.device, options: Options, rows: dict) -> None:
    evals, trains, generator = generator_steps(cfg, s.batch, device, s.amps, s.released)
    for key, fns in (("g_eval", evals), ("g_train", trains)):
        times = harness.timed_interleaved(fns, device, options.repeats, options.warmup)
        for name in fns:
            row = rows["off"].setdefault("released", {}) if name == "released" else rows[name]
            row[key] = {**times[name], "images_per_s": s.batch / times[name]["median_s"]}
    for amp in s.amps:
        if amp != "off":
            rows[amp]["deviation"] = deviation(generator, cfg, s.batch, device, AMP_DTYPES[amp], options.deviation_pairs)
        if device.type == "cuda":
            rows[amp]["peak_memory_gb"] = harness.cuda_peak_gb(trains[amp], device)


def _iteration_rows(cfg, s: Setting, device: torch.device, options: Options, rows: dict) -> None:
    steps = iteration_steps(cfg, s.batch, device, s.amps)
    times = harness.timed_interleaved(steps, device, max(1, options.repeats // 2), options.warmup)
    loader = loader_rate(cfg)
    for amp, step in steps.items():
        it = {**times[amp], "images_per_s": s.batch / times[amp]["median_s"]}
        if device.type == "cuda":
            it["peak_memory_gb"] = harness.cuda_peak_gb(step, device)
        if projected := report.schedule_projection(cfg, s.batch, it["median_s"]):
            it["projected"] = projected
        rows[amp].update(iteration=it, counts=harness.count_ops(step, device), loader={
            **loader, "consumed_per_s": it["images_per_s"],
            "workers_needed": it["images_per_s"] / loader["samples_per_s_per_worker"]})
