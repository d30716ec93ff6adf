"""Strict configuration: a tree of frozen dataclasses loaded from YAML (torch-free).

``load_config(paths, overrides)`` overlays YAML files (each on its ``_base_`` file, if it names one)
and ``key.path=value`` overrides, checks every key and type, and returns a frozen :class:`Config`;
a :class:`ConfigError` names the key, the file and line, and the closest valid spelling. The dataset
configs set every key; the defaults below fill older saved configs and partial trees in code.
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


def _where(origins: dict, path: tuple[str, ...]) -> str:
    """Where this key or its closest parent was set ("file.yaml:12", "--set k=v", a source), or "defaults"."""
    return next((origins[path[:i]] for i in range(len(path), 0, -1) if path[:i] in origins), "defaults")


class Checks:
    """The value checks of the section at ``path``; each failure names the key, file and line."""

    def __init__(self, section: object, path: tuple[str, ...], origins: dict) -> None:
        self.section, self.path, self.origins = section, path, origins

    def error(self, key: str, message: str) -> ConfigError:
        sub = self.path + tuple(key.split("."))
        return ConfigError(f"{'.'.join(sub)}: {message} ({_where(self.origins, sub)})")

    def _each(self, keys, ok, message: str) -> None:
        for key in keys:
            value = getattr(self.section, key)
            if not ok(value):
                raise self.error(key, message.format(value))

    def positive(self, *keys: str) -> None:
        self._each(keys, lambda v: v > 0, "must be positive, got {!r}")

    def non_negative(self, *keys: str) -> None:
        self._each(keys, lambda v: v >= 0, "must be zero or positive, got {!r}")

    def fraction(self, *keys: str) -> None:
        self._each(keys, lambda v: 0.0 <= v < 1.0, "must be in [0, 1), got {}")


# The schema, section by section: the fields, then their checks.


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
    n_blocks: int = 9  # Xing blocks (T)
    dropout: float = 0.5  # inside every Xing block, on in training
    num_candidates: int = 10  # candidate images per branch in the co-attention fusion
    qk_reduction: int = 8  # query/key projections have C / qk_reduction channels
    share_projections: bool = True  # one set of projections and gamma for SA and AS, as released
    appearance_update: bool = True  # SA: the shape code updates the appearance code
    shape_update: bool = True  # AS: the appearance code updates the shape code
    fusion: bool = True  # co-attention fusion head; false -> appearance decoder's first image
    attention_impl: Literal["auto", "sdpa", "reference", "chunked"] = "auto"
    attention_chunk: int = 1024  # query chunk length of the "chunked" implementation
    # XingGAN++ (docs/xingganpp.md)
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


@dataclass(frozen=True)
class DiscriminatorConfig:
    """PATN's ResNet patch discriminator, two of them (shape and appearance)."""

    ndf: int = 64
    n_blocks: int = 3
    dropout: float = 0.5
    head: Literal["features", "patch"] = "features"  # features: the (B, 4*ndf, h, w) map, as released
    sigmoid: bool = True  # Market: sigmoid + BCE; DeepFashion: no sigmoid, least squares

    def validate(self, check: Checks) -> None:
        check.positive("ndf")
        check.non_negative("n_blocks")
        check.fraction("dropout")


@dataclass(frozen=True)
class ModelConfig:
    name: Literal["xinggan", "xingganpp"] = "xinggan"  # a label that follows the generator switches
    norm: Literal["batch", "instance"] = "batch"  # Market: batch; DeepFashion: instance (convs with bias)
    init_gain: float = 0.02
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)

    def validate(self, check: Checks) -> None:
        check.positive("init_gain")


@dataclass(frozen=True)
class LossConfig:
    gan_mode: Literal["bce", "lsgan"] = "bce"
    lambda_gan: float = 5.0
    lambda_l1: float = 50.0
    lambda_perceptual: float = 50.0
    vgg_weights: str = ""  # vgg19-dcbb9e9d.pth; empty: torchvision's cache; "random": untrained (tests)
    pool_size: int = 50  # history pool per discriminator; 0 disables it

    def validate(self, check: Checks) -> None:
        check.non_negative("lambda_gan", "lambda_l1", "lambda_perceptual", "pool_size")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    weight_decay: float = 0.0
    # constant, then linear decay to zero, stepped every lr_step_iterations (an official epoch)
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
    amp: Literal["off", "bf16", "fp16", "auto"] = "off"  # auto: bf16 where native (xinggan.precision)
    compile: bool = False  # torch.compile the networks and the VGG features
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    channels_last: bool = False
    sync_batchnorm: Literal["auto", "on", "off"] = "auto"  # auto: where BatchNorm saw the global batch
    deterministic: bool = False
    tf32: bool = True  # CUDA: TF32 float32 products (xinggan.runtime.configure_backends); false: strict
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
    pose_weights: str = ""  # OpenPose body weights (pose_estimator.h5 or body_pose_model.pth) for PCKh
    allow_missing_metrics: bool = False  # false: a metric that cannot run here fails test.py
    max_pairs: int = 0  # 0: every test pair
    amp: Literal["off", "bf16", "fp16", "auto"] = "off"  # of generation; scoring is float32

    def validate(self, check: Checks) -> None:
        check.positive("batch_size")
        check.non_negative("max_pairs")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self, check: Checks) -> None:
        h, w = self.data.height // 4, self.data.width // 4
        for s in self.model.generator.scales:
            if h % s or w % s:
                raise check.error("model.generator.scales",
                                  f"scale {s} does not divide the {h} x {w} feature grid of "
                                  f"{self.data.height} x {self.data.width} images")

    def to_dict(self) -> dict:
        return to_dict(self)

    def to_yaml(self) -> str:
        return dump_yaml(self)

    def replace(self, *overrides: str) -> "Config":
        """A copy with ``key.path=value`` overrides applied (validated)."""
        return _build(_overlay(to_dict(self), _parse_overrides(overrides)), {})


def xingganpp_parts(gen: GeneratorConfig) -> list[str]:
    """The XingGAN++ switches that are on in ``model.generator`` (empty: plain XingGAN)."""
    return ([f"scales {list(gen.scales)}"] if tuple(gen.scales) != (1,) else []) + [
        name for name in ("enhanced_attention", "dense_fusion") if getattr(gen, name)]


# Loading

BASE_KEY = "_base_"  # top-level key: the file this one overlays (relative to this file)
_HINT_CUTOFF = 0.5  # similarity a misspelt key or choice needs to get a "did you mean"


def _yaml_with_lines(text: str, source: str) -> tuple[Any, dict[tuple[str, ...], str]]:
    """Parse YAML and remember the line each mapping key came from."""
    try:
        node = yaml.compose(io.StringIO(text), Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    origins: dict[tuple[str, ...], str] = {}
    loader = yaml.SafeLoader("")

    def convert(n: yaml.Node, path: tuple[str, ...]) -> Any:
        if isinstance(n, yaml.SequenceNode):
            return [convert(v, path) for v in n.value]
        if not isinstance(n, yaml.MappingNode):
            return loader.construct_object(n, deep=True)
        out = {}
        for key_node, value_node in n.value:
            key, line = loader.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise ConfigError(f"{source}:{line}: key {key!r} under '{'.'.join(path) or '<top>'}' is not a string")
            if key in out:
                raise ConfigError(f"{'.'.join(path + (key,))}: duplicate key ({source}:{line})")
            origins[path + (key,)] = f"{source}:{line}"
            out[key] = convert(value_node, path + (key,))
        return out

    return ({} if node is None else convert(node, ())), origins


def _read_file(path: Path, chain: tuple[tuple[Path, str], ...] = ()) -> tuple[dict, dict]:
    """The tree of one YAML file on top of its ``_base_`` file(s), and the origin of each key;
    ``chain``: the files that asked for this one, as (resolved, shown)."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    data, lines = _yaml_with_lines(path.read_text(), str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    if BASE_KEY not in data:
        return data, lines
    base, where = data.pop(BASE_KEY), lines.pop((BASE_KEY,))
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
        raise ConfigError(f"{BASE_KEY}: {base!r} makes a cycle of bases ({' -> '.join(loop)}) ({where})")
    tree, origins = _read_file(base_path, chain)
    return _overlay(tree, data), {**origins, **lines}


def _overlay(base: dict, top: dict) -> dict:
    return {**base, **{k: _overlay(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                       for k, v in top.items()}}


def _parse_overrides(overrides: Iterable[str]) -> dict:
    tree: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.path=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r}: empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: invalid value: {exc}") from None
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is both a value and a section")
        node[parts[-1]] = value
    return tree


_SCALARS = {bool: ("true or false", (bool,)), int: ("an integer", (int,)), float: ("a number", (int, float)),
            str: ("a string", (str,))}


def _check_type(value: Any, tp: Any, path: str, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (lists -> tuples)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        if isinstance(value, bool):  # YAML 1.1 reads unquoted off/on/no/yes as booleans
            spellings = ("off", "false", "no") if value is False else ("on", "true", "yes")
            value = next((a for a in args if a in spellings), value)
        if value not in args:
            hint = did_you_mean(value, args, _HINT_CUTOFF)
            raise ConfigError(f"{path}: {value!r} is not one of {', '.join(map(repr, args))}{hint} ({where})")
        return value
    if origin is Union:
        return None if value is None and type(None) in args else _check_type(value, args[0], path, where)
    if origin is tuple:
        if isinstance(value, (list, tuple)):
            return tuple(_check_type(v, args[0], f"{path}[{i}]", where) for i, v in enumerate(value))
        item = args[0]
        expected = "a list of " + (f"names ({', '.join(map(repr, typing.get_args(item)))})"
                                   if typing.get_origin(item) is Literal else item.__name__)
    else:
        expected, types = _SCALARS[tp]
        if isinstance(value, types) and (tp is bool or not isinstance(value, bool)):
            return float(value) if tp is float else value
    raise ConfigError(f"{path}: expected {expected}, got {value!r} ({where})")


def _build_node(cls: type, data: Any, path: tuple[str, ...], origins: dict) -> Any:
    """One section from its tree: every key known and of its type, then the section's checks."""
    dotted = ".".join(path) or "<top>"
    if not isinstance(data, dict):
        raise ConfigError(f"{dotted}: expected a mapping of keys, got {data!r} ({_where(origins, path)})")
    hints, fields = typing.get_type_hints(cls), [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        sub = path + (key,)
        if key not in fields:
            near = closest(key, fields, _HINT_CUTOFF)
            hint = f" (did you mean {'.'.join(path + (near,))!r}?)" if near else ""
            raise ConfigError(f"{'.'.join(sub)}: unknown key{hint} ({_where(origins, sub)}) "
                              f"[valid keys under {dotted}: {', '.join(fields)}]")
        kwargs[key] = (_build_node(hints[key], value, sub, origins) if dataclasses.is_dataclass(hints[key])
                       else _check_type(value, hints[key], ".".join(sub), _where(origins, sub)))
    obj = cls(**kwargs)
    obj.validate(Checks(obj, path, origins))
    return obj


def _build(tree: dict, origins: dict) -> Config:
    """The config of ``tree``, with ``model.name`` following the generator switches: a name asked
    for with ``--set`` that they contradict is an error, one inherited from a file is relabelled."""
    cfg = _build_node(Config, tree, (), origins)
    parts = xingganpp_parts(cfg.model.generator)
    derived = "xingganpp" if parts else "xinggan"
    if cfg.model.name == derived:
        return cfg
    where = _where(origins, ("model", "name"))
    if where.startswith("--set"):
        why = (f"these XingGAN++ parts are on: {', '.join(parts)}" if parts else
               "no XingGAN++ part is on (model.generator.scales [1], enhanced_attention false, dense_fusion false)")
        hint = "drop the override" if parts else "start from configs/<dataset>_xingganpp.yaml"
        raise ConfigError(f"model.name: {where} asks for {cfg.model.name!r}, but the model.generator switches "
                          f"build {derived!r}: {why}. The name is a label and selects nothing: {hint}")
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name=derived))


def load_config(paths: Union[str, Path, Sequence[Union[str, Path]]] = (),
                overrides: Iterable[str] = ()) -> Config:
    """Load YAML files (later ones overlay earlier ones) then ``key.path=value`` overrides."""
    return _load({}, {}, paths, overrides)


def load_config_or_exit(paths, overrides: Iterable[str] = ()) -> Config:
    """:func:`load_config` for entry points: a bad config prints one ``config error: ...`` line and
    exits with status 2, no traceback."""
    try:
        return load_config(paths, overrides)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def overlay_config(base: Config, paths: Union[str, Path, Sequence[Union[str, Path]]] = (),
                   overrides: Iterable[str] = (), source: str = "<base>") -> Config:
    """``base`` (e.g. a checkpoint's config, from ``source``) with YAML overlays and overrides on top."""
    tree = to_dict(base)
    return _load(tree, _origins_of(tree, source), paths, overrides)


def _load(tree: dict, origins: dict, paths, overrides: Iterable[str]) -> Config:
    overrides = list(overrides)
    for p in [paths] if isinstance(paths, (str, Path)) else paths:
        data, lines = _read_file(Path(p))
        tree = _overlay(tree, data)
        origins.update(lines)
    over = _parse_overrides(overrides)
    origins.update({tuple(item.split("=", 1)[0].strip().split(".")): f"--set {item}" for item in overrides})
    return _build(_overlay(tree, over), origins)


def _origins_of(tree: dict, source: str, path: tuple[str, ...] = ()) -> dict:
    """Every key path of ``tree`` with ``source`` as its origin."""
    origins = {}
    for key, value in tree.items():
        origins[path + (key,)] = source
        origins.update(_origins_of(value, source, path + (key,)) if isinstance(value, dict) else {})
    return origins


def config_from_dict(tree: dict, source: str = "<dict>") -> Config:
    """Rebuild a config from its ``to_dict`` form (e.g. the copy embedded in a checkpoint)."""
    return _build(tree, _origins_of(tree, source))


# Writing


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    return [to_dict(v) for v in obj] if isinstance(obj, tuple) else obj


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)


def save_config(cfg: Config, path: Union[str, Path]) -> None:
    Path(path).write_text(dump_yaml(cfg))
