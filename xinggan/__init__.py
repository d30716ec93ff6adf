"""xinggan: pose-guided person image generation (XingGAN, ECCV 2020; XingGAN++, TPAMI 2025)."""

__version__ = "0.3.0"


def __getattr__(name: str):
    # ``xinggan.load_generator`` is imported on first use, so that importing a lower layer
    # (xinggan.data, xinggan.metrics) does not load inference, config and the models.
    if name == "load_generator":
        from xinggan.inference import load_generator

        return load_generator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
