"""Outputs: naming (:func:`output_paths`), encoder options, stems, OS error messages, free
space, SIGTERM cleanup and all-or-nothing :class:`OutputSet`."""
import errno
import os
from pathlib import Path

from .common import DEFAULT_MP3_BITRATE, MP3_BITRATES, OUTPUT_FORMATS, RunnerError
from .temporaries import current_umask, owner_token, sweep_stale


def output_name(inp):
    """The folder name of ``inp``'s stems: the file name without its extension (and without
    ``.stem.mp4``), except that ``mixture.*`` is named after its parent folder, as MUSDB18-HQ
    lays tracks out (``<track>/mixture.wav`` -> ``<track>``)."""
    path = Path(inp)
    name = path.name
    name = name[: -len(".stem.mp4")] if name.endswith(".stem.mp4") else Path(name).stem
    if name == "mixture" and path.absolute().parent.name:
        name = path.absolute().parent.name
    return name


def output_paths(inp, outdir, targets, fmt):
    """``{target: OUTDIR/<name>/<target>.<fmt>}`` as ``kerasep separate`` names them
    (``<name>``: :func:`output_name`)."""
    return {t: Path(outdir) / output_name(inp) / f"{t}.{fmt}" for t in targets}


def parse_bitrate(value):
    """``"320k"``, ``"320"`` or ``320`` -> 320 (kbit/s); RunnerError unless an MPEG-1 layer III
    bitrate (:data:`MP3_BITRATES`)."""
    text = str(value).strip().lower()
    text = text[:-4] if text.endswith("kbps") else text[:-1] if text.endswith("k") else text
    try:
        kbps = int(text)
    except ValueError:
        kbps = None
    if kbps not in MP3_BITRATES:
        raise RunnerError(f"--bitrate: expected one of the MP3 bitrates {', '.join(f'{b}k' for b in MP3_BITRATES)}. "
                          f"Received: {value!r}")
    return kbps


def encoder_options(fmt, sample_rate, bitrate=None, quality=None):
    """soundfile keyword arguments (``compression_level``, ``bitrate_mode``) for ``fmt``.

    - mp3, ``bitrate`` (default 320k): constant bitrate, exact. libsndfile (1.1+) maps its
      ``compression_level`` c to the LAME bitrate ``320 - c * (320 - 32)`` kbit/s for MPEG-1
      (32, 44.1, 48 kHz); the inverse is used here, so the file has exactly that bitrate.
    - mp3, ``quality`` q in [0, 1] (1 best): variable bitrate, LAME VBR quality ``10 * (1 - q)``.
    - ogg: Vorbis is variable-bitrate only in libsndfile, no kbit/s can be asked for:
      ``quality`` q in [0, 1] (1 best) is Vorbis' quality (``oggenc -q 10 * q``); without it,
      libsndfile's default. ``bitrate`` is refused.
    - wav, flac: lossless PCM, neither applies.
    """
    if fmt not in OUTPUT_FORMATS:
        raise RunnerError(f"--format: expected one of {list(OUTPUT_FORMATS)}. Received: {fmt!r}")
    if bitrate is not None and quality is not None:
        raise RunnerError("--bitrate and --quality exclude each other (constant vs variable bitrate)")
    if quality is not None:
        try:
            quality = float(quality)
        except (TypeError, ValueError):
            quality = float("nan")
        if not 0.0 <= quality <= 1.0:
            raise RunnerError(f"--quality: expected a number in [0, 1] (1 best). Received: {quality!r}")
    if fmt in ("wav", "flac"):
        if bitrate is not None or quality is not None:
            flag = "--bitrate" if bitrate is not None else "--quality"
            raise RunnerError(f"{flag} applies to --format mp3 or ogg only; {fmt} is lossless "
                              "(use --subtype for its sample format)")
        return {}
    if fmt == "ogg":
        if bitrate is not None:
            raise RunnerError("--bitrate: Ogg Vorbis is written with variable bitrate only (libsndfile has no "
                              "bitrate setting for it); use --quality 0..1 instead (1 best)")
        return {} if quality is None else {"compression_level": 1.0 - quality}
    # mp3
    if quality is not None:
        # LAME refuses VBR quality 10 (compression 1.0): 0.999 is its lowest quality
        return {"compression_level": min(0.999, 1.0 - quality), "bitrate_mode": "VARIABLE"}
    if int(sample_rate) not in (32000, 44100, 48000):
        raise RunnerError(f"--bitrate: exact MP3 bitrates need a 32, 44.1 or 48 kHz output, the model's rate is "
                          f"{sample_rate} Hz; use --quality instead")
    kbps = DEFAULT_MP3_BITRATE if bitrate is None else parse_bitrate(bitrate)
    # libsndfile: bitrate = 320 - c * 288 (truncated); a quarter kbit/s above the target survives the
    # truncation, and c <= 0.999 because libsndfile first applies c as a VBR quality (1.0 is refused).
    level = min(0.999, max(0.0, (320 - kbps - 0.25) / 288))
    return {"compression_level": level, "bitrate_mode": "CONSTANT"}


def check_subtype(fmt, subtype):
    """The subtype to write for ``fmt`` (its default when ``subtype`` is None); RunnerError if
    ``fmt`` does not take it."""
    if fmt not in OUTPUT_FORMATS:
        raise RunnerError(f"--format: expected one of {list(OUTPUT_FORMATS)}. Received: {fmt!r}")
    _, allowed, default = OUTPUT_FORMATS[fmt]
    if subtype is None:
        return default
    subtype = str(subtype).upper()
    if subtype not in allowed:
        raise RunnerError(f"--subtype for {fmt} must be one of {list(allowed)}. Received: {subtype!r}")
    return subtype


def select_stems(targets, stems=None, two_stems=None):
    """The stems to write among a model's ``targets``: ``two_stems`` S gives ``[S, "no_S"]``
    (``no_S``: the sum of the other targets); ``stems`` (a list or a comma-separated string)
    then picks among those, in that order. RunnerError naming the flag for an unknown stem."""
    final = list(targets)
    if two_stems is not None:
        if two_stems not in final:
            raise RunnerError(f"--two-stems: unknown stem {two_stems!r}; expected one of {final}")
        final = [two_stems, f"no_{two_stems}"]
    if stems is None:
        return final
    names = [s.strip() for s in stems.split(",")] if isinstance(stems, str) else [str(s) for s in stems]
    names = [s for s in names if s]
    if not names:
        raise RunnerError(f"--stems: expected a comma-separated list of stems among {final}. Received: {stems!r}")
    for s in names:
        if s not in final:
            raise RunnerError(f"--stems: unknown stem {s!r}; expected one of {final}")
    return [s for s in final if s in names]


_ERRNO_WORDS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error (a failing disk or a lost network mount?)",
    errno.EFBIG: "file too large for this file system",
    errno.ENAMETOOLONG: "file name too long",
    errno.EMFILE: "too many open files",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, expected a file",
    errno.EXDEV: "cannot rename across file systems",
}


def os_error_message(exc, path, doing="writing"):
    """An OSError in plain words: ``"no space left on device while writing PATH"``."""
    words = _ERRNO_WORDS.get(getattr(exc, "errno", None)) or getattr(exc, "strerror", None) or str(exc)
    return f"{words} while {doing} {path}"


def write_failure(exc, path, what="file"):
    """The message for a failed write of ``path``: OSErrors by errno; libsndfile's errors (which
    say only "System error.") by what the file system says: no free space, read-only, no
    permission."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return os_error_message(exc, path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        st = os.statvfs(directory)
        if st.f_bavail * st.f_frsize < (1 << 16) or st.f_favail == 0:
            return os_error_message(OSError(errno.ENOSPC, "no space"), path)
        if st.f_flag & getattr(os, "ST_RDONLY", 1):
            return os_error_message(OSError(errno.EROFS, "read-only"), path)
    except (OSError, AttributeError):
        pass
    if not os.access(directory, os.W_OK):
        return os_error_message(OSError(errno.EACCES, "denied"), path)
    return f"could not write the {what} {path}: {exc}"


def estimated_bytes(fmt, subtype, nb_timesteps, nb_channels, sample_rate, bitrate=None, quality=None):
    """The size of one output file where it is known before writing (WAV: exact; MP3 at a
    constant bitrate: exact up to the frame padding), else None (FLAC, Ogg, VBR)."""
    if fmt == "wav":
        width = {"PCM_16": 2, "PCM_24": 3, "FLOAT": 4}.get(subtype or "PCM_16", 4)
        return 44 + int(nb_timesteps) * int(nb_channels) * width
    if fmt == "mp3" and quality is None:
        kbps = DEFAULT_MP3_BITRATE if bitrate is None else parse_bitrate(bitrate)
        return int(kbps * 1000 / 8 * nb_timesteps / sample_rate)
    return None


def check_free_space(folder, needed, what, error=None):
    """Before any work: ``error`` (default :class:`RunnerError`) when the file system of
    ``folder`` (or of its nearest existing parent) has less than ``needed`` bytes free, saying
    how much is needed and how much is free."""
    anchor = Path(folder)
    while not anchor.exists() and anchor.parent != anchor:
        anchor = anchor.parent
    try:
        st = os.statvfs(anchor)
    except (OSError, AttributeError):  # no statvfs (Windows): the write itself will say
        return
    free = st.f_bavail * st.f_frsize
    if needed > free:
        raise (error or RunnerError)(
            f"no space left on device for {what} in {folder}: about {needed / 1e6:.2f} MB needed, "
            f"{free / 1e6:.2f} MB free (nothing was written)")


class cleanup_on_sigterm:
    """``with cleanup_on_sigterm():`` SIGTERM (``kill``, a job scheduler's stop) raises
    ``SystemExit(143)`` in the main thread instead of ending the process at once, so temporaries
    are removed and an :class:`OutputSet` rolls back on the way out, as on Ctrl-C. Elsewhere
    than the main thread, or where signals cannot be set, it does nothing."""

    def __enter__(self):
        import signal
        import threading

        self.saved = None
        if threading.current_thread() is threading.main_thread():
            def terminate(signum, frame):
                raise SystemExit(128 + signum)

            try:
                self.saved = signal.signal(signal.SIGTERM, terminate)
            except (ValueError, OSError, AttributeError):
                self.saved = None
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            import signal

            signal.signal(signal.SIGTERM, self.saved)
        return False


def _fsync(path, directory=False):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


class OutputSet:
    """All-or-nothing outputs: ``with OutputSet({key: path}, overwrite) as temps:`` gives a
    temporary file beside each path (``.<name>.kerasep-<pid>-<start>-<random>.tmp``, see
    :func:`owner_token`) for the block to write; when the block ends without an error, every
    temporary is fsynced, given the mode a plain ``open`` gives (``0o666 & ~umask``) and renamed
    onto its path, together: if any rename fails, those already done are undone (a replaced
    file is restored from its hard-linked backup). On any failure, the block's included, every
    temporary is removed, and so is every folder the set created: nothing that was there before
    is changed, nothing partial is left. A dead owner's leftovers in the output folders are
    removed first (:func:`sweep_stale`).

    Errors are raised as ``error`` (default :class:`RunnerError`), in plain words
    (:func:`write_failure`)."""

    def __init__(self, paths, overwrite=False, error=None):
        self.paths = {k: Path(p) for k, p in paths.items()}
        self.overwrite = overwrite
        self.error = error or RunnerError
        self.temps, self.created = {}, []
        self.token = owner_token()

    def _makedirs(self, folder):
        missing = []
        while not folder.exists() and folder.parent != folder:
            missing.append(folder)
            folder = folder.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                raise self.error(os_error_message(exc, d, "creating the folder")) from None
            self.created.append(d)

    def __enter__(self):
        try:
            for k, p in self.paths.items():
                if p.is_dir():
                    raise self.error(f"{p}: expected a file path, found a folder")
                if os.path.lexists(p) and not self.overwrite:
                    raise self.error(f"output exists: {p} (use --overwrite to replace)")
                self._makedirs(p.parent)
                sweep_stale(p.parent)
                tmp = p.parent / f".{p.name}.{self.token}.tmp"
                try:
                    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                except OSError as exc:
                    raise self.error(os_error_message(exc, tmp)) from None
                self.temps[k] = tmp
        except BaseException:
            self.rollback()
            raise
        return dict(self.temps)

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.rollback()
            return False
        try:
            self.commit()
        except BaseException:
            self.rollback()
            raise
        return False

    def commit(self):
        mode = 0o666 & ~current_umask()
        for k, tmp in self.temps.items():
            try:
                _fsync(tmp)
                os.chmod(tmp, mode)  # soundfile may have recreated it with its own mode
            except OSError as exc:
                raise self.error(write_failure(exc, self.paths[k])) from None
        done = []  # (path, backup or None), to undo
        failing = None
        try:
            for k, p in self.paths.items():
                failing = p
                tmp, backup = self.temps[k], None
                if os.path.lexists(p):
                    if not self.overwrite:
                        raise self.error(f"output exists: {p} (use --overwrite to replace)")
                    backup = p.parent / f".{p.name}.{self.token}.bak"
                    try:
                        os.link(p, backup)
                    except OSError:  # no hard links here: the old file itself becomes the backup
                        os.replace(p, backup)
                    os.replace(tmp, p)
                else:
                    try:
                        os.link(tmp, p)  # fails if the target appeared meanwhile: never an overwrite
                    except FileExistsError:
                        raise self.error(f"output exists: {p} (use --overwrite to replace)") from None
                    except OSError:  # file system without hard links
                        os.replace(tmp, p)
                    else:
                        os.unlink(tmp)
                done.append((p, backup))
        except BaseException as exc:
            for done_path, backup in reversed(done):
                try:
                    if backup is not None:
                        os.replace(backup, done_path)
                    else:
                        os.unlink(done_path)
                except OSError:
                    pass
            if isinstance(exc, OSError):
                raise self.error(write_failure(exc, failing)) from None
            raise
        finally:
            for k, p in self.paths.items():
                backup = p.parent / f".{p.name}.{self.token}.bak"
                if os.path.lexists(backup) and os.path.lexists(p):
                    try:
                        os.unlink(backup)
                    except OSError:
                        pass
        self.temps = {}
        for folder in {p.parent for p in self.paths.values()}:
            _fsync(folder, directory=True)

    def rollback(self):
        for tmp in self.temps.values():
            try:
                os.unlink(tmp)
            except OSError:
                pass
        self.temps = {}
        for d in reversed(self.created):
            try:
                d.rmdir()  # only if empty: never what another process put there
            except OSError:
                pass
        self.created = []
