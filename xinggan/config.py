"""Strict, explicit configuration: a tree of frozen dataclasses loaded from YAML.

``load_config(paths, overrides)`` reads one or more YAML files (later files overlay earlier
ones) and then ``key.path=value`` overrides, checks every key and type, and returns a frozen
:class:`Config`.  Any problem raises :class:`ConfigError` naming the full key path, the file
(and line) the value came from and, for a misspelt key or choice, the closest valid one.

A file may build on another one: a top-level ``_base_: market.yaml`` (a path relative to the
file) loads that file first and overlays the rest of this one on it, as if both had been given
in that order; a base may have its own base, and a cycle is an error.  The XingGAN++ configs
are such overlays: ``configs/market_xingganpp.yaml`` is ``_base_: market.yaml`` plus the
XingGAN++ switches.

Where the values live: the dataset configs (``configs/market.yaml``, ``deepfashion.yaml``,
``toy.yaml``) set every key, so a run's recipe is read from its YAML, never from the defaults
below.  The defaults only fill
keys that a tree does not set: a config saved before a key existed (e.g. one embedded in an
older checkpoint, which is why a new key must default to the behaviour from before it) and
partial configs built in code.  They are XingGAN's Market-1501 recipe
(``docs/architecture.md``), except for the two machine-side data settings: the file names
default to "" (the layout's standard names, the ones ``configs/market.yaml`` writes out) and
``num_workers`` to 2.

Each section checks its own values in its ``validate`` method, beside its fields; the checks
that involve several sections are :meth:`Config.validate`.
"""
from __future__ import annotations

import dataclasses
import io
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Sequence, Union

import yaml

from xinggan.hints import closest, did_you_mean
from xinggan.metric_registry import METRICS, PROTOCOLS


class ConfigError(ValueError):
    """A configuration key is unknown, of the wrong type or has an invalid value."""


Origin = str  # "file.yaml:12" or "--set key=value" or the source of a rebuilt tree


def _where(origins: dict, path: tuple[str, ...]) -> Origin:
    """The closest recorded origin of this key or of one of its parents."""
    for i in range(len(path), 0, -1):
        if path[:i] in origins:
            return origins[path[:i]]
    return "defaults"


class Checks:
    """The value checks of one config section (the section at ``path``); every failure is a
    :class:`ConfigError` naming the key, and the file and line it was set in."""

    def __init__(self, section: object, path: tuple[str, ...], origins: dict) -> None:
        self.section, self.path, self.origins = section, path, origins

    def error(self, key: str, message: str) -> ConfigError:
        """The error for ``key`` (a field of the section, or a dotted path below it)."""
        sub = self.path + tuple(key.split("."))
        return ConfigError(f"{'.'.join(sub)}: {message} ({_where(self.origins, sub)})")

    def positive(self, *keys: str) -> None:
        """Each of ``keys`` is greater than zero."""
        for key in keys:
            value = getattr(self.section, key)
            if value <= 0:
                raise self.error(key, f"must be positive, got {value!r}")

    def non_negative(self, *keys: str) -> None:
        """Each of ``keys`` is zero or greater."""
        for key in keys:
            value = getattr(self.section, key)
            if value < 0:
                raise self.error(key, f"must be zero or positive, got {value!r}")

    def fraction(self, *keys: str) -> None:
        """Each of ``keys`` is in [0, 1) (a dropout rate, an Adam beta)."""
        for key in keys:
            value = getattr(self.section, key)
            if not 0.0 <= value < 1.0:
                raise self.error(key, f"must be in [0, 1), got {value}")


# --------------------------------------------------------------------------------------
# The schema, section by section: the fields, then their checks
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataConfig:
    """Where the prepared dataset lives and how samples are made."""

    dataset: Literal["market", "deepfashion"] = "market"
    root: str = "datasets/market"
    height: int = 128
    width: int = 64
    # File names relative to ``root``; an empty string picks the layout's default name.
    train_annotations: str = ""
    test_annotations: str = ""
    train_pairs: str = ""
    test_pairs: str = ""
    heatmap_sigma: float = 6.0
    num_workers: int = 2

    def validate(self, check: Checks) -> None:
        check.positive("height", "width", "heatmap_sigma")
        check.non_negative("num_workers")
        for key in ("height", "width"):
            if getattr(self, key) % 4:
                raise check.error(key, f"image size {self.height}x{self.width} must be divisible by 4")


@dataclass(frozen=True)
class GeneratorConfig:
    """The two-branch XingGAN generator and the XingGAN++ extensions (all off by default)."""

    ngf: int = 64  # width of the first encoder conv; the codes have 4 * ngf channels
    n_blocks: int = 9  # number of Xing blocks (T); the released code fixes 9
    dropout: float = 0.5  # inside every Xing block; the released code keeps it on in training
    num_candidates: int = 10  # candidate images per branch in the co-attention fusion
    qk_reduction: int = 8  # query/key projections have C / qk_reduction channels
    # Released code: one set of projections and one gamma shared by SA and AS.
    # Paper's prose: separate SA and AS blocks.  false gives separate ones.
    share_projections: bool = True
    # SA: the shape code updates the appearance code; AS: the appearance code updates the
    # shape code.  Both off is a valid (attention-free) ablation.
    appearance_update: bool = True
    shape_update: bool = True
    fusion: bool = True  # co-attention fusion head; false -> appearance decoder's first image
    attention_impl: Literal["auto", "sdpa", "reference", "chunked"] = "auto"
    attention_chunk: int = 1024  # query chunk length of the "chunked" implementation
    # XingGAN++ (our reading of the paper; see docs/xingganpp.md)
    scales: tuple[int, ...] = (1,)  # window grid per scale; (1,) is XingGAN's global attention
    enhanced_attention: bool = False
    enhanced_attention_scales: tuple[int, ...] = ()  # empty: every scale in ``scales``
    enhanced_attention_dim: int = 64
    dense_fusion: bool = False
    dense_channels: int = 32

    def validate(self, check: Checks) -> None:
        check.positive("ngf", "num_candidates", "qk_reduction", "attention_chunk",
                       "enhanced_attention_dim", "dense_channels")
        check.non_negative("n_blocks")
        check.fraction("dropout")
        if (4 * self.ngf) % self.qk_reduction:
            raise check.error("qk_reduction", f"must divide the code width {4 * self.ngf}")
        scales = list(self.scales)
        if not scales or any(s < 1 for s in scales) or len(set(scales)) != len(scales):
            raise check.error("scales", f"must be distinct positive integers, got {scales}")
        bad = [s for s in self.enhanced_attention_scales if s not in self.scales]
        if bad:
            raise check.error("enhanced_attention_scales", f"{bad} are not in scales {scales}")
        # (that every scale divides the feature grid is checked with the image size, in Config)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """PATN's ResNet patch discriminator, two of them (shape and appearance)."""

    ndf: int = 64
    n_blocks: int = 3
    dropout: float = 0.5
    # Released code: no final 1-channel conv, the (B, 4*ndf, h, w) map is the output.
    head: Literal["features", "patch"] = "features"
    sigmoid: bool = True  # Market: sigmoid + BCE; DeepFashion: no sigmoid, least squares

    def validate(self, check: Checks) -> None:
        check.positive("ndf")
        check.non_negative("n_blocks")
        check.fraction("dropout")


@dataclass(frozen=True)
class ModelConfig:
    # A label that follows the switches: "xingganpp" exactly when a XingGAN++ part (several
    # scales, enhanced attention, dense fusion) is on; --set model.name against them is an error.
    name: Literal["xinggan", "xingganpp"] = "xinggan"
    # BatchNorm on Market, InstanceNorm (affine=False) on DeepFashion; convs carry a bias
    # only with InstanceNorm, as released.
    norm: Literal["batch", "instance"] = "batch"
    init_gain: float = 0.02
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)

    def validate(self, check: Checks) -> None:
        check.positive("init_gain")
        # model.name against the generator switches: _with_model_name, after every check


@dataclass(frozen=True)
class LossConfig:
    gan_mode: Literal["bce", "lsgan"] = "bce"
    lambda_gan: float = 5.0
    lambda_l1: float = 50.0
    lambda_perceptual: float = 50.0
    # Local path to torchvision's VGG19 ImageNet weights (vgg19-dcbb9e9d.pth); empty: the
    # torchvision cache / download.  "random" builds an untrained VGG19 (tests only).
    vgg_weights: str = ""
    pool_size: int = 50  # history pool per discriminator; 0 disables it

    def validate(self, check: Checks) -> None:
        check.non_negative("lambda_gan", "lambda_l1", "lambda_perceptual", "pool_size")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    weight_decay: float = 0.0
    # Constant then linear decay to zero, in iterations.  The released schedule is stepped
    # once per official epoch (4,000 pairs = 125 iterations at batch 32): lr_step_iterations.
    lr_constant_iterations: int = 62500
    lr_decay_iterations: int = 25000
    lr_step_iterations: int = 125

    def validate(self, check: Checks) -> None:
        check.positive("lr", "lr_step_iterations")
        check.non_negative("lr_constant_iterations", "lr_decay_iterations", "weight_decay")
        check.fraction("beta1", "beta2")


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 87500  # total generator iterations
    batch_size: int = 32  # global batch, split across ranks
    seed: int = 0
    checkpoint_every: int = 2500
    checkpoint_minutes: float = 0.0  # also save when this many minutes passed since the last; 0: off
    log_every: int = 50  # also how often the host reads the losses (it waits for the device)
    image_every: int = 0  # image grids to TensorBoard; 0: at every checkpoint
    grid_pairs: int = 8
    # off | bf16 | fp16 (CUDA, with a grad scaler) | auto: bf16 where the device has native bf16
    # units, else float32 (xinggan.precision.resolve_amp; one line at start says which)
    amp: Literal["off", "bf16", "fp16", "auto"] = "off"
    compile: bool = False  # torch.compile the networks and the VGG features
    # default | reduce-overhead (CUDA graphs: no launch overhead; shapes are static) | max-autotune
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    channels_last: bool = False
    # auto: SyncBatchNorm (CUDA) where the release normalised over more images than one GPU
    # holds now (BatchNorm networks: the global batch); on | off: always | never
    sync_batchnorm: Literal["auto", "on", "off"] = "auto"
    deterministic: bool = False
    # CUDA: TF32 for float32 matmuls and cuDNN convolutions (Ampere and newer), so amp off on
    # CUDA is float32 weights with TF32 products; false: strict float32. test.py and
    # scripts/benchmark.py read it too (xinggan.runtime.configure_backends). No effect on CPU.
    tf32: bool = True
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    def validate(self, check: Checks) -> None:
        check.positive("iterations", "batch_size", "checkpoint_every", "log_every", "grid_pairs")
        check.non_negative("image_every", "checkpoint_minutes")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise check.error("device", f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")


# The protocol and metric names, from the registry (plain data: loading a config imports no torch).
ProtocolName = Literal[tuple(PROTOCOLS)]
MetricName = Literal[tuple(METRICS)]


@dataclass(frozen=True)
class EvalConfig:
    protocol: ProtocolName = "patn-market"
    batch_size: int = 32
    metrics: tuple[MetricName, ...] = ()  # empty: the protocol's defaults
    jpeg_roundtrip: Optional[bool] = None  # None: the protocol's default
    inception_weights: str = ""
    lpips_weights: str = ""
    detected_keypoints: str = ""
    # OpenPose body weights (PATN's Keras pose_estimator.h5 or body_pose_model.pth) for PCKh
    pose_weights: str = ""
    # false: a metric of the protocol that cannot run here fails test.py (after writing the others)
    allow_missing_metrics: bool = False
    max_pairs: int = 0  # 0: every test pair
    # Precision of generation in test.py (xinggan.precision.resolve_amp): off (float32, the
    # papers' protocol), bf16, fp16 (CUDA only) or auto (bf16 where the hardware has native
    # bf16 units, else float32). Scoring always runs in float32.
    amp: Literal["off", "bf16", "fp16", "auto"] = "off"

    def validate(self, check: Checks) -> None:
        check.positive("batch_size")
        check.non_negative("max_pairs")
        # protocol and metric names: checked by their types


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self, check: Checks) -> None:
        """The checks that involve several sections (run after each section's own)."""
        h, w = self.data.height // 4, self.data.width // 4
        for s in self.model.generator.scales:
            if h % s or w % s:
                raise check.error("model.generator.scales",
                                  f"scale {s} does not divide the {h} x {w} feature grid of "
                                  f"{self.data.height} x {self.data.width} images")

    # convenience -----------------------------------------------------------------
    def to_dict(self) -> dict:
        return to_dict(self)

    def to_yaml(self) -> str:
        return dump_yaml(self)

    def replace(self, *overrides: str) -> "Config":
        """A copy with ``key.path=value`` overrides applied (validated)."""
        return _build(_overlay(to_dict(self), _parse_overrides(overrides)), {})


def xingganpp_parts(gen: "GeneratorConfig") -> list[str]:
    """The XingGAN++ switches that are on in ``model.generator`` (empty: plain XingGAN)."""
    parts = []
    if tuple(gen.scales) != (1,):
        parts.append(f"scales {list(gen.scales)}")
    if gen.enhanced_attention:
        parts.append("enhanced_attention")
    if gen.dense_fusion:
        parts.append("dense_fusion")
    return parts


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------

BASE_KEY = "_base_"  # top-level key: the file this one overlays (relative to this file)


def _yaml_with_lines(text: str, source: str) -> tuple[Any, dict[tuple[str, ...], Origin]]:
    """Parse YAML and remember the line each mapping key came from."""
    try:
        node = yaml.compose(io.StringIO(text), Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    origins: dict[tuple[str, ...], Origin] = {}
    if node is None:
        return {}, origins
    loader = yaml.SafeLoader("")

    def convert(n: yaml.Node, path: tuple[str, ...]) -> Any:
        if isinstance(n, yaml.MappingNode):
            out = {}
            for key_node, value_node in n.value:
                key = loader.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    raise ConfigError(
                        f"{source}:{key_node.start_mark.line + 1}: key {key!r} under "
                        f"'{'.'.join(path) or '<top>'}' is not a string"
                    )
                sub = path + (key,)
                if key in out:
                    raise ConfigError(
                        f"{'.'.join(sub)}: duplicate key ({source}:{key_node.start_mark.line + 1})"
                    )
                origins[sub] = f"{source}:{key_node.start_mark.line + 1}"
                out[key] = convert(value_node, sub)
            return out
        if isinstance(n, yaml.SequenceNode):
            return [convert(v, path) for v in n.value]
        return loader.construct_object(n, deep=True)

    return convert(node, ()), origins


def _read_file(path: Path, chain: tuple[tuple[Path, str], ...] = ()) -> tuple[dict, dict]:
    """The tree of one YAML file, on top of its ``_base_`` file(s), and the origin of each key.

    ``chain``: the files that (through ``_base_``) asked for this one, as (resolved, shown)."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    data, lines = _yaml_with_lines(path.read_text(), str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    if BASE_KEY not in data:
        return data, lines
    base = data.pop(BASE_KEY)
    where = lines.pop((BASE_KEY,))
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{BASE_KEY}: expected the file name of the config that this file "
                          f"overlays, got {base!r} ({where})")
    base_path = path.parent / base
    if not base_path.is_file():
        raise ConfigError(f"{BASE_KEY}: {base_path}: config file not found ({where})")
    chain = chain + ((path.resolve(), str(path)),)
    resolved = [p for p, _ in chain]
    if base_path.resolve() in resolved:
        loop = [shown for _, shown in chain[resolved.index(base_path.resolve()):]] + [str(base_path)]
        raise ConfigError(f"{BASE_KEY}: {base!r} makes a cycle of bases "
                          f"({' -> '.join(loop)}) ({where})")
    tree, origins = _read_file(base_path, chain)
    origins.update(lines)
    return _overlay(tree, data), origins


def _overlay(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _overlay(out[key], value)
        else:
            out[key] = value
    return out


def _parse_overrides(overrides: Iterable[str]) -> dict:
    tree: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.path=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r}: empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: invalid value: {exc}") from None
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is both a value and a section")
        node[parts[-1]] = value
    return tree


_HINT_CUTOFF = 0.5  # similarity a misspelt key or choice needs to get a "did you mean"


def _check_type(value: Any, tp: Any, path: str, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (lists -> tuples)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{path}: expected {expected}, got {value!r} ({where})")

    if origin is Literal:
        if isinstance(value, bool):
            # YAML 1.1 reads unquoted off/on/no/yes as booleans: map them back to the choice
            spellings = ("off", "false", "no") if value is False else ("on", "true", "yes")
            value = next((a for a in args if a in spellings), value)
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            hint = did_you_mean(value, args, _HINT_CUTOFF)
            raise ConfigError(f"{path}: {value!r} is not one of {choices}{hint} ({where})")
        return value
    if origin is Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(value, inner[0], path, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            item = args[0]
            raise fail("a list of " + (f"names ({', '.join(map(repr, typing.get_args(item)))})"
                                       if typing.get_origin(item) is Literal else item.__name__))
        return tuple(_check_type(v, args[0], f"{path}[{i}]", where) for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail("a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise fail("a string")
        return value
    raise ConfigError(f"{path}: unsupported type {tp}")  # pragma: no cover


def _build_node(cls: type, data: Any, path: tuple[str, ...], origins: dict) -> Any:
    """One section from its tree: every key known and of its type, then the section's checks."""
    dotted = ".".join(path) or "<top>"
    if not isinstance(data, dict):
        raise ConfigError(
            f"{dotted}: expected a mapping of keys, got {data!r} ({_where(origins, path)})"
        )
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        sub = path + (key,)
        if key not in fields:
            near = closest(key, fields, _HINT_CUTOFF)
            hint = f" (did you mean {'.'.join(path + (near,))!r}?)" if near else ""
            raise ConfigError(
                f"{'.'.join(sub)}: unknown key{hint} ({_where(origins, sub)}) "
                f"[valid keys under {dotted}: {', '.join(fields)}]"
            )
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build_node(tp, value, sub, origins)
        else:
            kwargs[key] = _check_type(value, tp, ".".join(sub), _where(origins, sub))
    obj = cls(**kwargs)
    obj.validate(Checks(obj, path, origins))
    return obj


def _build(tree: dict, origins: dict) -> Config:
    return _with_model_name(_build_node(Config, tree, (), origins), origins)


def _with_model_name(cfg: Config, origins: dict) -> Config:
    """``model.name`` follows the switches: "xingganpp" when a XingGAN++ part is on, else
    "xinggan".  A name asked for with ``--set`` that the switches contradict is an error (the
    name selects nothing); one inherited from a YAML file is relabelled."""
    parts = xingganpp_parts(cfg.model.generator)
    derived = "xingganpp" if parts else "xinggan"
    if cfg.model.name == derived:
        return cfg
    where = _where(origins, ("model", "name"))
    if where.startswith("--set"):
        why = (f"these XingGAN++ parts are on: {', '.join(parts)}" if parts else
               "no XingGAN++ part is on (model.generator.scales [1], enhanced_attention false, "
               "dense_fusion false)")
        hint = ("start from configs/<dataset>_xingganpp.yaml" if not parts else
                "drop the override")
        raise ConfigError(
            f"model.name: {where} asks for {cfg.model.name!r}, but the model.generator switches "
            f"build {derived!r}: {why}. The name is a label and selects nothing: {hint}")
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name=derived))


def load_config(paths: Union[str, Path, Sequence[Union[str, Path]]] = (),
                overrides: Iterable[str] = ()) -> Config:
    """Load YAML files (later ones overlay earlier ones, each on top of its ``_base_`` if it
    names one) then ``key.path=value`` overrides."""
    return _load({}, {}, paths, overrides)


def load_config_or_exit(paths, overrides: Iterable[str] = ()) -> Config:
    """:func:`load_config` for command-line entry points: a bad config prints one
    ``config error: ...`` line (file, line and key) and exits with status 2, no traceback."""
    try:
        return load_config(paths, overrides)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def overlay_config(base: Config, paths: Union[str, Path, Sequence[Union[str, Path]]] = (),
                   overrides: Iterable[str] = (), source: str = "<base>") -> Config:
    """``base`` (e.g. the config embedded in a checkpoint, from ``source``) with YAML overlays
    and ``key.path=value`` overrides on top; errors name the file and line of the bad key."""
    tree = to_dict(base)
    return _load(tree, _origins_of(tree, source), paths, overrides)


def _load(tree: dict, origins: dict, paths, overrides: Iterable[str]) -> Config:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    overrides = list(overrides)
    for p in paths:
        data, lines = _read_file(Path(p))
        tree = _overlay(tree, data)
        origins.update(lines)
    over = _parse_overrides(overrides)
    for item in overrides:
        key = tuple(item.split("=", 1)[0].strip().split("."))
        origins[key] = f"--set {item}"
    tree = _overlay(tree, over)
    return _build(tree, origins)


def _origins_of(tree: dict, source: str) -> dict:
    origins = {}

    def mark(node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                origins[path + (k,)] = source
                mark(v, path + (k,))

    mark(tree, ())
    return origins


def config_from_dict(tree: dict, source: str = "<dict>") -> Config:
    """Rebuild a config from its ``to_dict`` form (e.g. the copy embedded in a checkpoint)."""
    return _build(tree, _origins_of(tree, source))


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [to_dict(v) for v in obj]
    return obj


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)


def save_config(cfg: Config, path: Union[str, Path]) -> None:
    Path(path).write_text(dump_yaml(cfg))
