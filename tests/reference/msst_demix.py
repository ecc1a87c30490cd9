"""The reference chunked inference of the band-split RoFormer checkpoints: a plain
transcription of Music-Source-Separation-Training's ``utils/model_utils.py:demix`` (ZFTurbo,
commit ccc011ab, generic mode, ``batch_size: 1``) driving a torch model.

Why a transcription and not an installed package: MSST is not on PyPI, and
``audio-separator`` 0.47.1 (the PyPI package that runs these checkpoints) cuts RoFormers its own
way (a Hamming window over ``hop_length * (dim_t - 1)`` samples, no reflect padding), not as
MSST does; it also pulls in diffq, onnx-weekly, onnx2torch, librosa and others.

The algorithm, step by step as upstream (not kerasep's code):

1. ``fade_size = chunk_size // 10``, ``step = chunk_size // num_overlap``, ``border = chunk_size
   - step``; a window of ones with ``linspace(0, 1, fade_size)`` at its start and
   ``linspace(1, 0, fade_size)`` at its end.
2. If the track is longer than ``2 * border`` (and ``border > 0``), reflect-pad it by ``border``
   at both ends.
3. For ``i = 0, step, 2 * step, ... < N``: the part ``mix[:, i:i + chunk_size]``, padded at its
   end to ``chunk_size`` by reflection if it holds more than ``chunk_size // 2`` samples, else by
   zeros; the model's output is weighted by the window, with no fade-in if ``i == 0``, else
   (``elif``) no fade-out if ``i + step >= N``; outputs and windows are summed over the part's
   real length.
4. The sum divided by the summed windows (NaN → 0), the padding cut away.
"""
import numpy as np
import torch
import torch.nn as nn


def demix(model, mix, chunk_size, num_overlap):
    """``model`` (torch: ``(1, nb_channels, chunk_size)`` → ``(1, nb_stems, nb_channels,
    chunk_size)``, or ``(1, nb_channels, chunk_size)`` for one stem) over ``mix`` ``(nb_channels,
    nb_timesteps)`` float32 → ``(nb_stems, nb_channels, nb_timesteps)`` numpy float32."""
    mix = torch.tensor(mix, dtype=torch.float32)
    fade_size = chunk_size // 10
    step = chunk_size // num_overlap
    border = chunk_size - step
    length_init = mix.shape[-1]
    windowing_array = torch.ones(chunk_size)
    windowing_array[-fade_size:] = torch.linspace(1, 0, fade_size)
    windowing_array[:fade_size] = torch.linspace(0, 1, fade_size)
    padded = length_init > 2 * border and border > 0
    if padded:
        mix = nn.functional.pad(mix, (border, border), mode="reflect")
    result = counter = None
    i = 0
    with torch.inference_mode():
        while i < mix.shape[1]:
            part = mix[:, i:i + chunk_size]
            chunk_len = part.shape[-1]
            pad_mode = "reflect" if chunk_len > chunk_size // 2 else "constant"
            part = nn.functional.pad(part, (0, chunk_size - chunk_len), mode=pad_mode, value=0)
            i += step
            x = model(part[None])
            if x.ndim == 3:  # one stem
                x = x[:, None]
            if result is None:
                result = torch.zeros((x.shape[1],) + tuple(mix.shape), dtype=torch.float32)
                counter = torch.zeros_like(result)
            window = windowing_array.clone()
            if i - step == 0:
                window[:fade_size] = 1
            elif i >= mix.shape[1]:
                window[-fade_size:] = 1
            start = i - step
            result[..., start:start + chunk_len] += x[0, ..., :chunk_len] * window[..., :chunk_len]
            counter[..., start:start + chunk_len] += window[..., :chunk_len]
    estimated = (result / counter).numpy()
    np.nan_to_num(estimated, copy=False, nan=0.0)
    if padded:
        estimated = estimated[..., border:-border]
    return estimated
