"""What the benchmark measures: our generator beside the released forward pass, the training
iteration with its ops and host reads, the data loader. A *setting* (:func:`plan`) is a dataset x
model x batch x attention implementation with its AMP settings timed together; every batch comes
from :func:`model_batch`, the one place that makes the networks' inputs."""
from __future__ import annotations

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
CONFIGS = {("market", "xinggan"): "configs/market.yaml", ("deepfashion", "xinggan"): "configs/deepfashion.yaml",
           ("market", "xingganpp"): "configs/market_xingganpp.yaml",
           ("deepfashion", "xingganpp"): "configs/deepfashion_xingganpp.yaml", ("toy", "xinggan"): "configs/toy.yaml"}
AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def load(paths, overrides: Sequence[str] = ()):
    """A config from a path relative to the repository (or a list of overlaid paths)."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    return load_config([REPO / p for p in paths], list(overrides))


def model_batch(cfg, batch: int, device: torch.device, seed: int = 0) -> dict:
    """A seeded batch as the loader collates it (uint8 images, (18, 2) keypoints), turned into
    the networks' inputs on ``device`` by :func:`xinggan.data.model_inputs`."""
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.data.height, cfg.data.width
    raw = {f"{side}_{key}": torch.randint(0, 256, (batch, 3, h, w), generator=g, dtype=torch.uint8) if key == "image"
           else torch.rand(batch, 18, 2, generator=g) * torch.tensor([h - 1.0, w - 1.0])
           for side in ("source", "target") for key in ("image", "keypoints")}
    return model_inputs(raw, device, cfg.data.heatmap_sigma)


def released_forward(cfg, device: torch.device):
    """The released forward pass on our generator's initial weights (seed 0): a callable
    ``(image, pose, pose2, training) -> output`` and the weights that take gradients."""
    torch.manual_seed(0)
    generator, gen = build_generator(cfg), cfg.model.generator
    names = set(to_released_state_dict("generator", dict(generator.named_parameters())))
    sd = {k: v.detach().clone().to(device).requires_grad_(k in names)
          for k, v in to_released_state_dict("generator", generator.state_dict()).items()}

    def forward(image, pose, pose2, training):
        return released_generator_forward(sd, image, pose, pose2, cfg.model.norm, n_blocks=gen.n_blocks,
                                          n_images=gen.num_candidates, training=training, dropout=gen.dropout)
    return forward, [v for v in sd.values() if v.requires_grad]


def generator_steps(cfg, batch: int, device: torch.device, amps: Sequence[str], released: bool):
    """``(evals, trains, generator, inputs)``: callables per AMP setting (and ``released``) running
    the generator in eval mode and the forward + L1 backward in train mode."""
    torch.manual_seed(0)
    generator = build_generator(cfg).to(device)
    b = model_batch(cfg, batch, device)
    x, target = (b["source_image"], b["source_pose"], b["target_pose"]), b["target_image"]

    def evaluate(fn, dtype, mode):
        def step():
            mode()
            with torch.no_grad(), autocast(device, dtype):
                return fn(*x)
        return step

    def train(fn, dtype, params, mode):
        def step():
            mode()
            for p in params:
                p.grad = None
            with autocast(device, dtype):
                out = fn(*x)
            (out.float() - target).abs().mean().backward()
        return step

    evals = {a: evaluate(generator, AMP_DTYPES[a], generator.eval) for a in amps}
    trains = {a: train(generator, AMP_DTYPES[a], list(generator.parameters()), generator.train) for a in amps}
    if released:
        forward, params = released_forward(cfg, device)
        evals["released"] = evaluate(lambda *x: forward(*x, False), None, lambda: None)
        trains["released"] = train(lambda *x: forward(*x, True), None, params, lambda: None)
    return evals, trains, generator, x


@torch.no_grad()
def deviation(generator, cfg, batch: int, device: torch.device, dtype, pairs: int) -> dict:
    """The eval output under autocast ``dtype`` against fp32 on the same inputs: max and mean abs
    over the first batch, and the SSIM (PATN setting, uint8) over ``pairs`` seeded inputs."""
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
    """One full training iteration per AMP setting (:func:`xinggan.training.train_step`), each with
    its own parts from the config's seed, on one batch."""
    steps = {}
    for amp in amps:
        c = cfg.replace(f"train.batch_size={batch}", f"train.amp={amp}", "loss.vgg_weights=random",
                        f"train.device={device}")
        parts = build_parts(c, device, notice=lambda line: None)
        b = model_batch(c, batch, device)
        steps[amp] = (lambda p, x: lambda: train_step(p, x, c.optim.lr, 1))(parts, b)
    return steps


def cpu_peak_rise(paths, overrides: Sequence[str], batch: int, threads: Optional[int], released: bool) -> dict:
    """In this process (meant to be a fresh one, :func:`harness.in_fresh_process`): the peak-RSS
    rise over one generator forward + L1 backward in train mode on the CPU."""
    if threads:
        torch.set_num_threads(threads)
    cfg = load(paths, overrides)
    configure_backends("cpu", deterministic=cfg.train.deterministic, tf32=cfg.train.tf32)
    step = generator_steps(cfg, batch, torch.device("cpu"), ["off"], released)[1]["released" if released else "off"]
    return harness.peak_rss_over(step)


def loader_rate(cfg, samples: int = 8) -> dict:
    """Bytes of one dataset item (its tensors) and items per second read by one process (one loader
    worker): the config's training data where it is there, else toy images of the config's size."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            dataset, source = PairDataset.from_config(cfg.data, "train"), str(cfg.data.root)
        except (DataError, OSError):
            h, w = cfg.data.height, cfg.data.width
            make_toy_dataset(tmp, identities=2, test_identities=1, poses=3, test_pairs=2, height=h, width=w)
            dataset, source = PairDataset(tmp, "train", h, w, sigma=cfg.data.heatmap_sigma), f"toy images {h} x {w}"
        item = dataset[0]
        start = time.perf_counter()
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

    @property
    def config(self) -> str:
        return CONFIGS[(self.dataset, self.model)]


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
    """The settings of a run. On CPU the AMP settings are timed together, on GPU one at a time;
    every attention implementation on the first batch size (the others in fp32 only), later
    batches with the first; the released pass beside the first fp32 setting of each XingGAN
    dataset x batch. Unknown dataset x model pairs are left out."""
    groups = [tuple(amps)] if device.type == "cpu" else [(amp,) for amp in amps]
    settings, released_done = [], set()
    for ds, model in ((d, m) for d in datasets for m in models if (d, m) in CONFIGS):
        for bi, batch in enumerate(batches):
            for group in groups:
                for impl in impls if bi == 0 else impls[:1]:
                    if impl != impls[0] and "off" not in group:
                        continue
                    group = group if impl == impls[0] else ("off",)
                    side = released and model == "xinggan" and "off" in group and (ds, batch) not in released_done
                    released_done |= {(ds, batch)} if side else set()
                    settings.append(Setting(ds, model, batch, group, impl, side, impl == impls[0]))
    return settings


def measure_setting(s: Setting, device: torch.device, options: Options) -> list[dict]:
    """The report rows of one setting, one per AMP setting; an error (e.g. out of memory) is
    recorded in the rows rather than raised."""
    overrides = [f"model.generator.attention_impl={s.attention}"]
    cfg = load(s.config, overrides)
    rows = {a: {"dataset": s.dataset, "model": s.model, "batch": s.batch, "amp": a, "attention": s.attention,
                "config": s.config} for a in s.amps}
    sdpa_kernel_report()  # this setting's record starts afresh
    try:
        if device.type == "cpu" and options.memory and "off" in s.amps:  # fresh processes, this one idle
            peaks = [harness.in_fresh_process(cpu_peak_rise, s.config, overrides, s.batch, options.threads, rel)
                     ["rise_kb"] / 2**20 for rel in (False, True)[:1 + s.released]]
            rows["off"]["peak_memory_gb"] = peaks[0]
            rows["off"].update({"released": {"peak_memory_gb": peaks[1]}} if s.released else {})
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
    evals, trains, generator, _ = generator_steps(cfg, s.batch, device, s.amps, s.released)
    names = [*s.amps, *(["released"] if s.released else [])]
    for key, fns in (("g_eval", evals), ("g_train", trains)):
        times = harness.timed_interleaved(fns, device, options.repeats, options.warmup)
        for name in names:
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
        projected = report.schedule_projection(cfg, s.batch, it["median_s"])
        it.update({"projected": projected} if projected else {})
        rows[amp]["iteration"] = it
        rows[amp]["counts"] = harness.count_ops(step, device)
        rows[amp]["loader"] = {**loader, "consumed_per_s": it["images_per_s"],
                               "workers_needed": it["images_per_s"] / loader["samples_per_s_per_worker"]}
