"""Separation models built from :mod:`kerasep.layers`, each fulfilling the :class:`Separator`
contract (:mod:`kerasep.models.separator`)."""
from kerasep.models.demucs import Demucs
from kerasep.models.openunmix import OpenUnmixSeparator, build_openunmix
from kerasep.models.separator import ChunkPolicy, NotASeparatorError, Separator, TrainingFace, check_separator
from kerasep.models.unet import UNetSeparator, build_unet_core

__all__ = ["Separator", "ChunkPolicy", "TrainingFace", "NotASeparatorError", "check_separator",
           "UNetSeparator", "build_unet_core", "OpenUnmixSeparator", "build_openunmix", "Demucs"]

from kerasep.models.htdemucs import HTDemucs  # noqa: E402

__all__ += ["HTDemucs"]

from kerasep.models.roformer import BSRoformer, MelBandRoformer  # noqa: E402

__all__ += ["BSRoformer", "MelBandRoformer"]
