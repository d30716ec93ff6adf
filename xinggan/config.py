"""Strict, explicit configuration: a tree of frozen dataclasses loaded from YAML.

``load_config(paths, overrides)`` reads one or more YAML files (later files overlay earlier
ones) and then ``key.path=value`` overrides, checks every key and type, and returns a frozen
:class:`Config`.  Any problem raises :class:`ConfigError` naming the full key path, the file
(and line) the value came from and, for a misspelt key, the closest valid key.

The dataset YAML files in ``configs/`` spell out every value of the released recipe
(``docs/architecture.md``); the defaults below are the Market-1501 recipe.
"""
from __future__ import annotations

import dataclasses
import difflib
import io
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Sequence, Union

import yaml


class ConfigError(ValueError):
    """A configuration key is unknown, of the wrong type or has an invalid value."""


# --------------------------------------------------------------------------------------
# The schema
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
    appearance_update: bool = True  # SA: the shape code updates the appearance code
    shape_update: bool = True  # AS: the appearance code updates the shape code
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


@dataclass(frozen=True)
class DiscriminatorConfig:
    """PATN's ResNet patch discriminator, two of them (shape and appearance)."""

    ndf: int = 64
    n_blocks: int = 3
    dropout: float = 0.5
    # Released code: no final 1-channel conv, the (B, 4*ndf, h, w) map is the output.
    head: Literal["features", "patch"] = "features"
    sigmoid: bool = True  # Market: sigmoid + BCE; DeepFashion: no sigmoid, least squares


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


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 87500  # total generator iterations
    batch_size: int = 32  # global batch, split across ranks
    seed: int = 0
    checkpoint_every: int = 2500
    log_every: int = 50
    image_every: int = 0  # image grids to TensorBoard; 0: at every checkpoint
    grid_pairs: int = 8
    # off | bf16 | fp16 (CUDA, with a grad scaler) | auto: bf16 where the device has native bf16
    # units, else float32 (xinggan.precision.resolve_amp; one line at start says which)
    amp: Literal["off", "bf16", "fp16", "auto"] = "off"
    compile: bool = False
    channels_last: bool = False
    sync_batchnorm: bool = False
    deterministic: bool = False
    # CUDA: TF32 for float32 matmuls and cuDNN convolutions (Ampere and newer), so amp off on
    # CUDA is float32 weights with TF32 products; false: strict float32. test.py and
    # scripts/benchmark.py read it too (xinggan.runtime.configure_backends). No effect on CPU.
    tf32: bool = True
    device: str = "auto"  # auto | cpu | cuda | cuda:N


@dataclass(frozen=True)
class EvalConfig:
    protocol: str = "patn-market"
    batch_size: int = 32
    metrics: tuple[str, ...] = ()  # empty: the protocol's defaults
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


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    # convenience -----------------------------------------------------------------
    def to_dict(self) -> dict:
        return to_dict(self)

    def to_yaml(self) -> str:
        return dump_yaml(self)

    def replace(self, *overrides: str) -> "Config":
        """A copy with ``key.path=value`` overrides applied (validated)."""
        return _build(_overlay(to_dict(self), _parse_overrides(overrides)), {})


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------

Origin = str  # "file.yaml:12" or "--set" or "default"


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


def _where(origins: dict, path: tuple[str, ...]) -> str:
    # the closest recorded origin of this key or one of its parents
    for i in range(len(path), 0, -1):
        if path[:i] in origins:
            return origins[path[:i]]
    return "defaults"


def _check_type(value: Any, tp: Any, path: str, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (lists -> tuples)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    name = getattr(tp, "__name__", str(tp))

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{path}: expected {expected}, got {value!r} ({where})")

    if origin is Literal:
        if isinstance(value, bool):
            # YAML 1.1 reads unquoted off/on/no/yes as booleans: map them back to the choice
            spellings = ("off", "false", "no") if value is False else ("on", "true", "yes")
            value = next((a for a in args if a in spellings), value)
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            hint = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(f"{path}: {value!r} is not one of {choices} ({where}){extra}")
        return value
    if origin is Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(value, inner[0], path, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise fail(f"a list of {getattr(args[0], '__name__', args[0])}")
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
    raise ConfigError(f"{path}: unsupported type {name}")  # pragma: no cover


def _build_node(cls: type, data: Any, path: tuple[str, ...], origins: dict) -> Any:
    dotted = ".".join(path) or "<top>"
    if not isinstance(data, dict):
        raise ConfigError(
            f"{dotted}: expected a mapping of keys, got {data!r} ({_where(origins, path)})"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        sub = path + (key,)
        if key not in fields:
            hint = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.5)
            extra = f"; did you mean '{'.'.join(path + (hint[0],))}'?" if hint else ""
            valid = ", ".join(fields)
            raise ConfigError(
                f"{'.'.join(sub)}: unknown key ({_where(origins, sub)}){extra} "
                f"[valid keys under {dotted}: {valid}]"
            )
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build_node(tp, value, sub, origins)
        else:
            kwargs[key] = _check_type(value, tp, ".".join(sub), _where(origins, sub))
    obj = cls(**kwargs)
    _validate(obj, path, origins)
    return obj


def _positive(obj: Any, names: Sequence[str], path: tuple[str, ...], origins: dict,
              allow_zero: bool = False) -> None:
    for name in names:
        value = getattr(obj, name)
        if value < 0 or (value == 0 and not allow_zero):
            sub = path + (name,)
            need = "zero or positive" if allow_zero else "positive"
            raise ConfigError(f"{'.'.join(sub)}: must be {need}, got {value!r} ({_where(origins, sub)})")


def _validate(obj: Any, path: tuple[str, ...], origins: dict) -> None:
    """Value checks of one section (cross-section checks are in ``_validate_config``)."""

    def err(name: str, msg: str) -> ConfigError:
        sub = path + (name,)
        return ConfigError(f"{'.'.join(sub)}: {msg} ({_where(origins, sub)})")

    if isinstance(obj, DataConfig):
        _positive(obj, ["height", "width", "heatmap_sigma"], path, origins)
        _positive(obj, ["num_workers"], path, origins, allow_zero=True)
        if obj.height % 4 or obj.width % 4:
            raise err("height", f"image size {obj.height}x{obj.width} must be divisible by 4")
    elif isinstance(obj, GeneratorConfig):
        _positive(obj, ["ngf", "num_candidates", "qk_reduction", "attention_chunk",
                        "enhanced_attention_dim", "dense_channels"], path, origins)
        _positive(obj, ["n_blocks"], path, origins, allow_zero=True)
        if not 0.0 <= obj.dropout < 1.0:
            raise err("dropout", f"must be in [0, 1), got {obj.dropout}")
        if (4 * obj.ngf) % obj.qk_reduction:
            raise err("qk_reduction", f"must divide the code width {4 * obj.ngf}")
        if not obj.scales or any(s < 1 for s in obj.scales) or len(set(obj.scales)) != len(obj.scales):
            raise err("scales", f"must be distinct positive integers, got {list(obj.scales)}")
        bad = [s for s in obj.enhanced_attention_scales if s not in obj.scales]
        if bad:
            raise err("enhanced_attention_scales", f"{bad} are not in scales {list(obj.scales)}")
        if not (obj.appearance_update or obj.shape_update) and obj.n_blocks > 0:
            pass  # both directions off is a valid (attention-free) ablation
    elif isinstance(obj, DiscriminatorConfig):
        _positive(obj, ["ndf"], path, origins)
        _positive(obj, ["n_blocks"], path, origins, allow_zero=True)
        if not 0.0 <= obj.dropout < 1.0:
            raise err("dropout", f"must be in [0, 1), got {obj.dropout}")
    elif isinstance(obj, ModelConfig):
        _positive(obj, ["init_gain"], path, origins)
    elif isinstance(obj, LossConfig):
        _positive(obj, ["lambda_gan", "lambda_l1", "lambda_perceptual", "pool_size"], path,
                  origins, allow_zero=True)
    elif isinstance(obj, OptimConfig):
        _positive(obj, ["lr", "lr_step_iterations"], path, origins)
        _positive(obj, ["lr_constant_iterations", "lr_decay_iterations", "weight_decay"], path,
                  origins, allow_zero=True)
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(obj, name) < 1.0:
                raise err(name, f"must be in [0, 1), got {getattr(obj, name)}")
    elif isinstance(obj, TrainConfig):
        _positive(obj, ["iterations", "batch_size", "checkpoint_every", "log_every",
                        "grid_pairs"], path, origins)
        _positive(obj, ["image_every"], path, origins, allow_zero=True)
        if obj.device != "auto" and obj.device != "cpu" and not obj.device.startswith("cuda"):
            raise err("device", f"must be auto, cpu, cuda or cuda:N, got {obj.device!r}")
    elif isinstance(obj, EvalConfig):
        _positive(obj, ["batch_size"], path, origins)
        _positive(obj, ["max_pairs"], path, origins, allow_zero=True)
        # imported here: the metrics package imports torch and the metric networks
        from xinggan.metrics.protocols import ALL_METRICS, PROTOCOLS

        def nearest(value: str, valid) -> str:
            hint = difflib.get_close_matches(value, list(valid), n=1, cutoff=0.4)
            return f"; did you mean {hint[0]!r}?" if hint else ""

        if obj.protocol not in PROTOCOLS:
            raise err("protocol", f"unknown evaluation protocol {obj.protocol!r}{nearest(obj.protocol, PROTOCOLS)} "
                                  f"[valid: {', '.join(sorted(PROTOCOLS))}]")
        for metric in obj.metrics:
            if metric not in ALL_METRICS:
                raise err("metrics", f"unknown metric {metric!r}{nearest(metric, ALL_METRICS)} "
                                     f"[valid: {', '.join(ALL_METRICS)}]")


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


def _validate_config(cfg: Config, origins: dict) -> None:
    """Checks that involve several sections."""
    g = cfg.model.generator
    h, w = cfg.data.height // 4, cfg.data.width // 4
    for s in g.scales:
        if h % s or w % s:
            sub = ("model", "generator", "scales")
            raise ConfigError(
                f"model.generator.scales: scale {s} does not divide the {h} x {w} feature grid "
                f"of {cfg.data.height} x {cfg.data.width} images ({_where(origins, sub)})"
            )


def _build(tree: dict, origins: dict) -> Config:
    cfg = _build_node(Config, tree, (), origins)
    _validate_config(cfg, origins)
    return _with_model_name(cfg, origins)


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
    """Load YAML files (later ones overlay earlier ones) then ``key.path=value`` overrides."""
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
        p = Path(p)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        data, lines = _yaml_with_lines(p.read_text(), str(p))
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections")
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
