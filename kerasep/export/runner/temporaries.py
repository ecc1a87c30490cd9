"""Temporaries: the umask, owner tokens, work folders and sweeping stale temporaries."""
import os
import re
import secrets
import shutil
from pathlib import Path


_IMPORT_UMASK = os.umask(0o022)  # read once at import (os.umask can only be read by setting it) ...
os.umask(_IMPORT_UMASK)  # ... and restored at once


def current_umask():
    """The process umask: read from ``/proc/self/status`` where Linux shows it (no change to the
    process, and a later ``os.umask`` is honoured), else the one read at import."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return _IMPORT_UMASK


# --------------------------------------------------------------------------------------------
# Owned temporaries, OS errors in words, all-or-nothing outputs (shared with the rest of kerasep)
# --------------------------------------------------------------------------------------------


def _proc_start(pid):
    """The start time of process ``pid`` (clock ticks since boot, field 22 of
    ``/proc/<pid>/stat``), or None where there is no such process or no /proc."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def owner_token():
    """``kerasep-<pid>-<start>-<random>``: the name part of every temporary kerasep leaves while
    it works (output temporaries, work folders), so that a later run can tell whether the
    process that made it is still alive (:func:`owner_alive`); ``<start>`` (the process' start
    time, 0 without /proc) tells a reused pid from the owner."""
    return f"kerasep-{os.getpid()}-{_proc_start(os.getpid()) or 0}-{secrets.token_hex(4)}"


#: Names made with :func:`owner_token`: output temporaries ``.<name>.kerasep-P-S-R.tmp`` (``.tmp.keras``
#: for Keras archives; ``.bak`` backups while a set is renamed into place), work folders
#: ``kerasep-<kind>-P-S-R``.
OWNED_NAME = re.compile(r"^(?:\.(?P<target>.+)\.kerasep|kerasep-[a-z]+)-(?P<pid>\d+)-(?P<start>\d+)-[0-9a-f]{8}"
                        r"(?P<suffix>\.tmp(?:\.[A-Za-z0-9]+)?|\.bak)?$")


def work_folder(root, kind="separate"):
    """A new folder ``root/kerasep-<kind>-<pid>-<start>-<random>`` for intermediates, after the
    dead owners' leftovers in ``root`` are removed (:func:`sweep_stale`). The caller removes it
    (``shutil.rmtree``); a kill -9 leaves it for the next run to remove."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sweep_stale(root)
    folder = root / f"kerasep-{kind}-{owner_token()[len('kerasep-'):]}"
    folder.mkdir(mode=0o700)
    return folder


def owner_alive(pid, start=0):
    """Whether process ``pid`` (started at ``start``, 0: unknown) is still running."""
    pid, start = int(pid), int(start)
    if pid == os.getpid():
        return True
    if os.path.isdir("/proc/self"):
        found = _proc_start(pid)
        return found is not None and (start == 0 or found == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def sweep_stale(directory):
    """Remove the temporaries in ``directory`` (:data:`OWNED_NAME`) whose owner process is dead
    (killed mid-write, say); a live process' are never touched. A dead owner's ``.bak`` backup
    whose target is missing is put back (the owner died renaming a set into place). Returns the
    paths removed or restored; errors are ignored (the next run tries again)."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        m = OWNED_NAME.match(entry.name)
        if m is None or owner_alive(m["pid"], m["start"]):
            continue
        try:
            if m["suffix"] == ".bak" and m["target"] and not os.path.lexists(os.path.join(directory, m["target"])):
                os.replace(entry.path, os.path.join(directory, m["target"]))
            elif entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(entry.path)
        except OSError:
            pass
    return removed
