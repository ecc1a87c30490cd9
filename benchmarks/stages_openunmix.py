"""Per-stage profile of Open-Unmix's Keras path for ``benchmarks/sweep.py``.

``openunmix_stages(model, mix)`` runs the chunks that :func:`kerasep.inference.separate_array`
runs (the model's ``chunking`` policy through ``plan_chunks``: chunk, context and Wiener-window
alignment as the default ``kerasep separate``), each stage as its own ``tf.function`` with a
dynamic-length signature (one trace for every chunk length, as the chunked path's): STFT, network
(magnitude and every target's spectrogram model, the BLSTMs), Wiener (EM on the model's windows,
XLA-compiled as in ``separate_stft``),
iSTFT (every stem), and the cross-fade of the chunk outputs in numpy. The stage sum is
comparable with the ``separate`` row printed under it; the difference is the cost of running the
stages as one graph.
"""
import time

import numpy as np


def openunmix_stages(model, mix):
    """``[(stage, seconds)]`` of ``model`` (an ``OpenUnmixSeparator``) on ``mix``
    ``(nb_timesteps, nb_channels)``, timed on a second pass (the first traces every function)."""
    from kerasep.backend import tf
    from kerasep.export.runner import crossfade_weights, plan_chunks

    policy = model.chunking
    rate, n = model.sample_rate, mix.shape[0]
    chunk = int(policy.chunk_seconds() * rate)
    context = int(round(policy.context_seconds * rate))
    plan = plan_chunks(n, chunk, context, policy.alignment)
    c, f = model.nb_channels, model.nb_bins
    stems = model.wiener_stems

    stft = tf.function(model.stft, input_signature=[tf.TensorSpec((None, c, None), tf.float32)])
    network = tf.function(lambda spec: model.estimate_spectrograms(model.mix_magnitude(spec)),
                          input_signature=[tf.TensorSpec((None, c, None, f, 2), tf.float32)])
    wiener = tf.function(lambda est, spec: model.wiener(est, spec, jit_compile=True), input_signature=[
        tf.TensorSpec((None, len(model.targets), c, None, f), tf.float32),
        tf.TensorSpec((None, c, None, f, 2), tf.float32)])
    istft = tf.function(lambda spec, x: model.istft(spec, length=x), input_signature=[
        tf.TensorSpec((None, c, None, f, 2), tf.float32), tf.TensorSpec((None, c, None), tf.float32)])

    def one_pass():
        totals = dict.fromkeys(("STFT", "network (4 targets: fc, BLSTMs)", "Wiener (EM)", "iSTFT",
                                "cross-fade (numpy)"), 0.0)
        out = {t: np.zeros((n, c), np.float32) for t in model.output_targets}

        def timed(stage, thunk):
            # each thunk ends with a host copy (.numpy()), so the stage's ops have all run
            start = time.perf_counter()
            result = thunk()
            totals[stage] += time.perf_counter() - start
            return result

        for k, (_, _, s, e) in enumerate(plan):
            x = tf.constant(np.ascontiguousarray(mix[s:e].T)[None])
            spec = timed("STFT", lambda: stft(x).numpy())
            est = timed("network (4 targets: fc, BLSTMs)", lambda: network(spec).numpy())
            filtered = timed("Wiener (EM)", lambda: wiener(est, spec).numpy())
            ys = timed("iSTFT", lambda: {t: istft(filtered[:, stems.index(t)], x).numpy()
                                         for t in model.output_targets})
            start = time.perf_counter()
            w = crossfade_weights(s, e, plan, k)[:, None]
            for t in model.output_targets:
                out[t][s:e] += ys[t][0].T * w
            totals["cross-fade (numpy)"] += time.perf_counter() - start
        return totals

    one_pass()
    totals = one_pass()
    covered = sum(e - s for _, _, s, e in plan)
    rows = list(totals.items())
    rows.append((f"(stages' sum; {len(plan)} chunk(s) covering {covered / rate:.1f} s of input for "
                 f"{n / rate:.1f} s of audio, x{covered / n:.2f})", sum(totals.values())))
    return rows
