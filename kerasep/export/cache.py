"""The verified ONNX export cache in ``$KERASEP_HOME/onnx/`` (``kerasep separate``'s auto and
onnx backends, ``kerasep.separate(backend=...)``).

A cached export is named ``<model>-<key>.onnx``, ``key`` the digest of what it was made from
(kerasep's, tf2onnx's and onnx's versions and the weights' sha256: the registry's for a zoo name,
the file's for a ``.keras``/``.th`` file, the variables' for a model in memory); its record
``<model>-<key>.json`` holds that and the file's own sha256, checked before each use. A fresh
export is compared with the Keras model on a probe (:func:`kerasep.export.capability.verify_export`)
before it is cached.

:func:`onnx_engine` picks the engine of a separation (``backend="auto"|"keras"|"onnx"``) and
:func:`separate_session` runs an array through a cached export.
"""
import hashlib
import json
import sys
import time
from pathlib import Path


def _versions():
    from importlib import metadata

    versions = {}
    for package in ("kerasep", "tf2onnx", "onnx"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


#: Revisions of the exported ONNX graph per model family, in that family's cache records only
#: (the other families' keys, and so their cached files, stay as they are): raised when the
#: graph an export writes changes, so that a file an older exporter wrote is exported again.
#: htdemucs 2: the fused norms, GELU and attention scales (kerasep.export.onnx.fusions); 3: and
#: the Conv1D biases and 1x1 convolutions;
#: bs_roformer/mel_band_roformer 2: attention as com.microsoft.MultiHeadAttention
#: (kerasep.export.onnx.attention).
GRAPH_REVISIONS = {"htdemucs": 3, "bs_roformer": 2, "mel_band_roformer": 2}
#: The families a model file keyed by its bytes may hold: a demucs ``.th`` is HT-Demucs or Demucs v2
#: (so a Demucs v2 file is exported again once per HT-Demucs revision). ``.ckpt`` files are keyed
#: once loaded (:func:`model_record`, by their class's family).
FILE_FAMILIES = {".th": ["htdemucs"]}


def _with_revision(record, families):
    """``record`` plus ``graph_revision`` (the highest of ``families``' :data:`GRAPH_REVISIONS`)
    where one of the families has a revision."""
    revisions = [GRAPH_REVISIONS[f] for f in families if f in GRAPH_REVISIONS]
    return dict(record, graph_revision=max(revisions)) if revisions else record


def _keyed(record):
    text = json.dumps(record, sort_keys=True, default=str)
    return dict(record, key=hashlib.sha256(text.encode()).hexdigest()[:16])


def onnx_cache_record(name):
    """What a cached ONNX export of zoo model ``name`` depends on: kerasep's, tf2onnx's and
    onnx's versions, the model's registry entry and its weights' sha256; ``key`` (16 hex digits of
    their sha256) names the file, so a change in any of them means another export."""
    from kerasep.zoo import registry

    entry = registry.MODELS[name]
    source = entry.get("weights")
    weights = dict(registry.weight_source(source)["files"]) if source else {}
    families = [entry.get("family")] + [m.get("family") for m in entry.get("config", {}).get("members", [])]
    return _keyed(_with_revision({"model": name, "entry": entry, "versions": _versions(), "weights_sha256": weights},
                                 families))


def file_cache_record(path):
    """:func:`onnx_cache_record` of a model file (``.keras``, demucs ``.th``): keyed by its
    sha256 instead of a registry entry."""
    from kerasep.zoo.weights import sha256sum

    path = Path(path)
    record = {"model": path.name, "versions": _versions(), "weights_sha256": {path.name: sha256sum(path)}}
    return _keyed(_with_revision(record, FILE_FAMILIES.get(path.suffix.lower(), [])))


def cache_path(record):
    """``$KERASEP_HOME/onnx/<model>-<key>.onnx`` of a cache record."""
    from kerasep.zoo.weights import home

    stem = Path(record["model"]).stem if record["model"].endswith((".keras", ".th")) else record["model"]
    return home() / "onnx" / f"{stem}-{record['key']}.onnx"


def record_path(path):
    return Path(path).with_suffix(".json")


def cache_problem(path, record):
    """None when the cached export ``path`` is there and matches its recorded sha256 and
    ``record``; else why it cannot be used."""
    from kerasep.zoo.weights import sha256sum

    path = Path(path)
    if not path.is_file():
        return "first run"
    try:
        saved = json.loads(record_path(path).read_text())
    except (OSError, ValueError):
        return f"has no readable record {record_path(path).name} (its sha256 and what it was made from)"
    if not isinstance(saved, dict):
        return f"has an invalid record {record_path(path).name}"
    for field in ("versions", "weights_sha256", "key"):
        if saved.get(field) != json.loads(json.dumps(record[field], default=str)):
            return f"was made for other {field.replace('_', ' ')} ({saved.get(field)}, now {record[field]})"
    found = sha256sum(path)
    if saved.get("onnx_sha256") != found:
        return f"does not match its recorded sha256 (expected {saved.get('onnx_sha256')}, found {found})"
    return None


def export_to_cache(model, label, path, record):
    """Export the loaded separator ``model`` to the cache file ``path``: written beside it,
    verified against ``model`` on a probe, then renamed into place with its record (sha256).
    Announced and timed on stderr. Raises what the export or the verification raises (nothing
    is cached then)."""
    from kerasep import export
    from kerasep.evaluate import _atomic_write
    from kerasep.export.capability import verify_export
    from kerasep.zoo.weights import sha256sum

    path = Path(path)
    print(f"exporting {label} to ONNX (once; cached in {path.parent})", file=sys.stderr)
    start = time.monotonic()
    tmp = path.with_name(f".{path.stem}.verify.onnx")
    try:
        export.export(model, tmp, format="onnx", overwrite=True)
        error = verify_export(model, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    _atomic_write(record_path(path), json.dumps(dict(record, onnx_sha256=sha256sum(path)), indent=2))
    print(f"exported {label} in {time.monotonic() - start:.0f} s (checked against Keras on a probe: "
          f"relative error {error:.1e})", file=sys.stderr)
    return path


def model_record(model):
    """:func:`onnx_cache_record` of a separator in memory: its class, its config and the sha256
    of its weights (:func:`kerasep.export.metadata.weights_sha256`)."""
    from kerasep.export.metadata import weights_sha256

    name = model.zoo_name or type(model).__name__
    config = json.loads(json.dumps(model.get_config(), sort_keys=True, default=str))
    from kerasep.zoo import registry

    families = [f for f, target in registry.FAMILIES.items() if target.rsplit(":", 1)[1] == type(model).__name__]
    return _keyed(_with_revision({"model": name, "config": config, "versions": _versions(),
                                  "weights_sha256": weights_sha256(model)}, families))


def cached_export(model, record=None, label=None):
    """The path of a verified cached ONNX export of the separator ``model`` (exported and
    verified first when there is none, see :func:`export_to_cache`); ``record`` (default
    :func:`model_record`) says what the cached file is keyed by."""
    record = record or model_record(model)
    path = cache_path(record)
    reason = cache_problem(path, record)
    if reason is None:
        return path
    if reason != "first run":
        print(f"kerasep: the cached export {path} {reason}; exporting again", file=sys.stderr)
    return export_to_cache(model, label or record["model"], path, record)


BACKENDS = ("auto", "keras", "onnx")


def _record_for(model):
    """The cache record of a zoo name, a ``.keras``/``.th`` file or a separator in memory; None
    for other files (a bag ``.yaml``: keyed once loaded)."""
    if isinstance(model, (str, Path)):
        name = str(model)
        if name.endswith((".keras", ".th")):
            return file_cache_record(name) if Path(name).is_file() else None
        if name.endswith((".yaml", ".yml", ".ckpt")):  # a .ckpt with its YAML: keyed once loaded
            return None
        from kerasep import zoo

        zoo.info(name)  # KeyError naming the zoo for an unknown name
        return onnx_cache_record(name)
    return model_record(model)


def _keras_preferred(model):
    """Why ``backend="auto"`` takes Keras for ``model`` (a zoo name, or a loaded separator) by its
    family's :attr:`~kerasep.models.Separator.auto_backend`; None otherwise and for model files,
    which are asked once loaded."""
    if isinstance(model, (str, Path)):
        from kerasep.zoo import registry

        entry = registry.MODELS.get(str(model))
        if entry is None:
            return None
        cls = registry.family_class(entry["family"])
    else:
        cls = type(model)
    if cls.auto_backend == "keras":  # every family is a Separator, which defines it
        return f"{cls.__name__} runs faster on Keras than in onnxruntime (--backend onnx to choose ONNX)"
    return None


def onnx_engine(model, weights=None, backend="auto", shifts=0, load=None):
    """The engine :func:`kerasep.separate` runs: ``(session, keras_model, reason)``.

    ``session`` is a :class:`kerasep.export.runner.OnnxSeparator` of a verified cached export
    (``backend="onnx"``, or ``"auto"`` when the model's family prefers ONNX
    (:attr:`~kerasep.models.Separator.auto_backend`), onnxruntime, onnx and tf2onnx import and
    :func:`kerasep.export.capability.onnx_problem` finds nothing), ``keras_model`` None unless it
    had to be loaded; or ``session`` is None, ``keras_model`` the separator (loaded with
    ``load(model)`` when ``model`` is a name or file, once) and ``reason`` why ONNX was not
    taken. ``shifts`` are Keras-only. An ``.onnx`` path runs as it is.

    Raises:
        ValueError: unknown ``backend``, or ``backend="onnx"`` with ``shifts`` or for a model
            that cannot go the ONNX way (the reason said).
    """
    from kerasep.export.capability import onnx_problem, onnx_runtime_problem
    from kerasep.export.runner import OnnxSeparator

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}. Received: backend={backend!r}")
    named = isinstance(model, (str, Path))
    keras_model = None if named else model
    if named and str(model).endswith(".onnx"):
        if backend == "keras":
            raise ValueError(f"backend='keras' cannot run the ONNX file {model}; use backend='onnx' or 'auto'")
        return OnnxSeparator(model), None, None
    if backend == "keras":
        return None, keras_model or load(model), "backend='keras'"
    if backend == "auto" and not named:  # a model in memory may change (training): Keras, as given
        return None, keras_model, "a model in memory runs in Keras (backend='onnx' exports it)"
    if shifts:
        if backend == "onnx":
            raise ValueError("shifts are not available with backend='onnx' (use backend='keras' or 'auto')")
        return None, keras_model or load(model), "shifts run on the Keras backend only"
    if backend == "auto":
        prefers = _keras_preferred(model)
        if prefers:
            return None, keras_model or load(model), prefers
    problem = onnx_runtime_problem(export=False)
    if problem is None:
        record = _record_for(model)
        path = cache_path(record) if record else None
        if path is not None and cache_problem(path, record) is None:
            return OnnxSeparator(path), keras_model, None
        keras_model = keras_model or load(model)
        problem = _keras_preferred(keras_model) if backend == "auto" else None
        if problem:
            return None, keras_model, problem
        problem = onnx_problem(keras_model)
        if problem is None:
            record = record or model_record(keras_model)
            try:
                path = cached_export(keras_model, record, label=Path(str(record["model"])).name)
                return OnnxSeparator(path), keras_model, None
            except Exception as exc:  # NotImplementedError, tf2onnx's own errors, the probe check
                if backend == "onnx":
                    raise
                print(f"kerasep: the ONNX export failed ({exc}); separating with Keras", file=sys.stderr)
                return None, keras_model, f"the ONNX export failed: {exc}"
    if backend == "onnx":
        raise ValueError(f"backend='onnx' is not available for this model: {problem}")
    return None, keras_model or load(model), problem


def separate_session(session, mix, chunk_seconds=None, progress=False, two_stems=None):
    """:func:`kerasep.export.runner.separate_array` of an ``OnnxSeparator`` on ``mix``
    ``(nb_timesteps, nb_channels)``, with ``two_stems`` folded as
    :func:`kerasep.inference.separate_array` does: ``{target: (nb_timesteps, nb_channels)}``."""
    import numpy as np

    from kerasep.export import runner

    if two_stems is not None and two_stems not in session.targets:
        raise ValueError(f"two_stems must be one of the model's targets {session.targets}. Received: {two_stems!r}")
    out = runner.separate_array(session, np.asarray(mix, np.float32), chunk_seconds=chunk_seconds, progress=progress)
    if two_stems is None:
        return out
    rest = sum(v for t, v in out.items() if t != two_stems)
    return {two_stems: out[two_stems], f"no_{two_stems}": rest}
