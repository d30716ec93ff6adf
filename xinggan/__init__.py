"""xinggan: pose-guided person image generation (XingGAN, ECCV 2020; XingGAN++, TPAMI 2025)."""

__version__ = "0.1.0"
from xinggan.inference import load_generator  # noqa: E402,F401
