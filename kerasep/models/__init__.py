"""Separation models built from :mod:`kerasep.layers`."""
from kerasep.models.demucs import Demucs
from kerasep.models.openunmix import OpenUnmixSeparator, build_openunmix
from kerasep.models.unet import UNetSeparator, build_unet_core

__all__ = ["UNetSeparator", "build_unet_core", "OpenUnmixSeparator", "build_openunmix", "Demucs"]
