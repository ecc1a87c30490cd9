"""Separation models built from :mod:`kerasep.layers`."""
from kerasep.models.unet import UNetSeparator, build_unet_core

__all__ = ["UNetSeparator", "build_unet_core"]
