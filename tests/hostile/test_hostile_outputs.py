"""Hostile conditions for outputs (issue 12): two inputs for one folder, a full disk, kill -9 at
the decode, separate and write stages, stale temporaries of dead processes, all-or-nothing stems
in both backends. Each case checks the clean outcome and that nothing already written changed
(the output folder hashed before and after)."""
import errno
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kerasep import audio, cli
from kerasep.export import runner
from testing import models, song  # noqa: F401  (shared fixtures)
from testing import MIXTURE_MP3, REPO, tiny_unet

STEMS = ["vocals", "drums", "rest"]


def run_cli(*args):
    return cli.main([str(a) for a in args])


def snapshot(folder):
    """``{relative path: sha256}`` of every file below ``folder`` (hidden ones included)."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(*folders):
    return sorted(str(p) for f in folders if Path(f).exists() for p in Path(f).rglob("*")
                  if runner.OWNED_NAME.match(p.name))


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty KERASEP_HOME (work folders go to its tmp/)."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("KERASEP_HOME", str(path))
    return path


def _existing_output(out, song_name="song"):
    """An output folder with a file of the user's and an earlier stem in it."""
    folder = out / song_name
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    sf.write(folder / "vocals.wav", np.zeros((100, 2), np.float32), 44100)
    return folder


# ---------------------------------------------------------------------------------------------
# data loss: two inputs, one output folder
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["keras", "onnx"])
def test_two_inputs_for_one_folder_refused_before_work(backend, models, song, tmp_path, home, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in "ab":
        (tmp_path / d / "song.wav").write_bytes(song.read_bytes())
    out = tmp_path / "out"
    _existing_output(out)
    before = snapshot(out)
    code = run_cli("separate", tmp_path / "a" / "song.wav", tmp_path / "b" / "song.wav", "-o", out,
                   "-m", models[backend], "--backend", backend, "--overwrite", "-q")
    assert code == 2
    assert "would all be written to" in capsys.readouterr().err
    assert snapshot(out) == before


# ---------------------------------------------------------------------------------------------
# a full disk
# ---------------------------------------------------------------------------------------------


def _tmpfs(mount, size):
    mount.mkdir()
    try:
        return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                              capture_output=True).returncode == 0
    except OSError:  # no mount command
        return False


@pytest.fixture
def small_disk(tmp_path):
    """``mount(size)``: a tmpfs of that size (umounted afterwards), or None where tmpfs cannot be
    mounted here (then the tests inject ENOSPC or a full statvfs)."""
    mounted = []

    def mount(size):
        path = tmp_path / f"disk{len(mounted)}"
        if not _tmpfs(path, size):
            return None
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", str(path)], capture_output=True)


@pytest.mark.parametrize("backend", ["keras", "onnx"])
def test_full_disk_refused_before_the_separation(backend, models, song, tmp_path, home, small_disk, capsys,
                                                 monkeypatch):
    """WAV stems whose size is known: a disk without room for all of them is said before any
    separation (600 KiB for three 265 KB stems)."""
    disk = small_disk("600k")
    if disk is None:  # the output folder's file system: 10 blocks free
        real = os.statvfs
        full = str(tmp_path / "out")
        monkeypatch.setattr(runner.os, "statvfs", lambda p: os.statvfs_result(
            tuple(real(p))[:4] + (10,) + tuple(real(p))[5:]) if str(p).startswith(full) else real(p))
        disk = tmp_path
    out = disk / "out"
    folder = _existing_output(out)
    before = snapshot(out)
    code = run_cli("separate", song, "-o", out, "-m", models[backend], "--backend", backend, "--overwrite", "-q")
    err = capsys.readouterr().err
    assert code == 1
    assert f"no space left on device for the stems of {song} in {folder}: about 0.79 MB needed" in err, err
    assert snapshot(out) == before


@pytest.mark.parametrize("backend", ["keras", "onnx"])
@pytest.mark.parametrize("how", ["tmpfs", "injected"])
def test_disk_full_during_the_write_leaves_nothing_and_says_so(how, backend, models, song, tmp_path, home,
                                                               small_disk, capsys, monkeypatch):
    """FLAC stems (size unknown beforehand) on a 250 KiB tmpfs, or ENOSPC injected into the
    last stem's writes: the message says the disk is full, nothing partial, nothing changed."""
    disk = small_disk("250k") if how == "tmpfs" else None
    if disk is None:
        if how == "tmpfs":
            pytest.skip("tmpfs cannot be mounted here (the injected case still runs)")
        original = sf.SoundFile.write

        def write(self, data):
            if os.path.basename(self.name).startswith(".rest."):
                raise OSError(errno.ENOSPC, "No space left on device")
            return original(self, data)

        monkeypatch.setattr(sf.SoundFile, "write", write)
        disk = tmp_path
    out = disk / "out"
    folder = _existing_output(out)
    before = snapshot(out)
    code = run_cli("separate", song, "-o", out, "-m", models[backend], "--backend", backend, "--overwrite", "-q",
                   "--format", "flac")
    err = capsys.readouterr().err
    assert code == 1
    assert "no space left on device while writing" in err, err
    assert "System error" not in err
    assert snapshot(out) == before  # the earlier vocals.wav is intact, no new stem, no temporary
    assert sorted(os.listdir(folder)) == ["notes.txt", "vocals.wav"]


def test_os_error_messages():
    assert runner.os_error_message(OSError(errno.ENOSPC, "x"), "/o/v.wav") == \
        "no space left on device while writing /o/v.wav"
    assert runner.os_error_message(OSError(errno.EROFS, "x"), "/o") == "read-only file system while writing /o"
    assert "permission denied" in runner.os_error_message(OSError(errno.EACCES, "x"), "/o")
    assert runner.os_error_message(OSError(errno.ELOOP, "Too many levels"), "/o") == \
        "Too many levels while writing /o"


# ---------------------------------------------------------------------------------------------
# all or nothing: a failure at the last stem, in both backends and in audio.save_stems
# ---------------------------------------------------------------------------------------------


def test_save_stems_all_or_nothing(tmp_path):
    folder = tmp_path / "out" / "song"
    good = [np.zeros((1000, 2), np.float32)]
    bad = [np.zeros((500, 2), np.float32), np.full((10, 2), np.nan, np.float32)]
    with pytest.raises(audio.AudioError, match="non-finite"):
        audio.save_stems({"vocals": folder / "vocals.wav", "rest": folder / "rest.wav"},
                         {"vocals": iter(good), "rest": iter(bad)}, 44100, 2)
    assert not (tmp_path / "out").exists()  # the folders it created are gone too
    old = _existing_output(tmp_path / "out2")
    before = snapshot(old)
    with pytest.raises(audio.AudioError):
        audio.save_stems({"vocals": old / "vocals.wav", "rest": old / "rest.wav"},
                         {"vocals": iter(good), "rest": iter(bad)}, 44100, 2, overwrite=True)
    assert snapshot(old) == before
    paths = audio.save_stems({"vocals": old / "vocals.wav", "rest": old / "rest.wav"},
                             {"vocals": iter(good), "rest": iter(good)}, 44100, 2, overwrite=True)
    assert sf.info(paths["vocals"]).frames == 1000 and sf.info(paths["rest"]).frames == 1000
    assert leftovers(old) == []


def test_output_set_undoes_renames_when_one_fails(tmp_path, monkeypatch):
    folder = _existing_output(tmp_path)
    before = snapshot(folder)
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith("rest.wav"):
            raise OSError(errno.EIO, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(runner.os, "replace", replace)
    with pytest.raises(runner.RunnerError, match="input/output error .* while writing .*rest.wav"):
        with runner.OutputSet({"vocals": folder / "vocals.wav", "rest": folder / "rest.wav"}, overwrite=True) as t:
            for tmp in t.values():
                Path(tmp).write_bytes(b"new")
            # rest.wav does not exist: os.link puts it in place; make that fail too
            monkeypatch.setattr(runner.os, "link", lambda a, b: (_ for _ in ()).throw(OSError(errno.EPERM, "no")))
    monkeypatch.undo()
    assert snapshot(folder) == before


@pytest.mark.parametrize("backend", ["keras", "onnx"])
def test_failure_at_the_last_stem_keeps_the_earlier_outputs(backend, models, song, tmp_path, home, capsys,
                                                            monkeypatch):
    original = sf.SoundFile.write

    def write(self, data):
        if os.path.basename(self.name).startswith(".rest."):
            raise RuntimeError("Error : System error.")  # what libsndfile says
        return original(self, data)

    monkeypatch.setattr(sf.SoundFile, "write", write)
    out = tmp_path / "out"
    folder = _existing_output(out)
    before = snapshot(out)
    assert run_cli("separate", song, "-o", out, "-m", models[backend], "--backend", backend,
                   "--overwrite", "-q") == 1
    err = capsys.readouterr().err
    assert "rest.wav" in err
    assert snapshot(out) == before
    assert sorted(os.listdir(folder)) == ["notes.txt", "vocals.wav"]


# ---------------------------------------------------------------------------------------------
# stale temporaries: owner pid + start time, removed only when the owner is dead
# ---------------------------------------------------------------------------------------------


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweep_removes_dead_owners_only(tmp_path):
    dead = _dead_pid()
    mine = runner.owner_token()
    live_parent = os.getppid()
    start = runner._proc_start(live_parent) or 0
    names = {
        f".vocals.wav.kerasep-{dead}-123-0badf00d.tmp": False,  # dead: removed
        f"kerasep-separate-{dead}-123-0badf00d": False,
        f".vocals.wav.{mine}.tmp": True,  # this process: kept
        f".rest.wav.kerasep-{live_parent}-{start}-0badf00d.tmp": True,  # a live process: kept
        f".rest.wav.kerasep-{live_parent}-{start + 1}-0badf00d.tmp": False,  # its pid, reused: dead owner
        ".vocals.wav.abcd.tmp": True,  # not ours
        "notes.txt": True,
    }
    for name in names:
        if name.startswith("kerasep-separate"):
            (tmp_path / name).mkdir()
            (tmp_path / name / "kerasep-x.f32").write_bytes(b"0" * 10)
        else:
            (tmp_path / name).write_bytes(b"x")
    runner.sweep_stale(tmp_path)
    assert sorted(os.listdir(tmp_path)) == sorted(n for n, keep in names.items() if keep)


def test_sweep_puts_a_dead_owners_backup_back(tmp_path):
    dead = _dead_pid()
    (tmp_path / f".vocals.wav.kerasep-{dead}-1-0badf00d.bak").write_bytes(b"old")
    runner.sweep_stale(tmp_path)
    assert (tmp_path / "vocals.wav").read_bytes() == b"old"


# ---------------------------------------------------------------------------------------------
# kill -9 at the decode, separate and write stages
# ---------------------------------------------------------------------------------------------

#: The child: `kerasep separate` with one stage made to stall (marker file written first), so
#: the parent can kill it there.
CHILD = textwrap.dedent("""
    import os, sys, time
    stage, marker = sys.argv[1], sys.argv[2]
    def stall():
        open(marker, "w").close()
        time.sleep(600)
    if stage == "decode":
        import kerasep.diskaudio as d
        blocks = d.decode_blocks
        def decode_blocks(*a, **k):
            rate, ch, it = blocks(*a, **k)
            def stalled():
                yield next(it)
                stall()
            return rate, ch, stalled()
        d.decode_blocks = decode_blocks
    elif stage == "separate":
        import kerasep.inference as inf
        sep = inf.separate_array
        def separate_array(*a, **k):
            out = sep(*a, **k)
            stall()
        inf.separate_array = separate_array
    elif stage in ("write", "runner-write"):
        import soundfile
        w = soundfile.SoundFile.write
        n = {"calls": 0}
        def write(self, data):
            n["calls"] += 1
            r = w(self, data)
            if n["calls"] == 2:
                self.flush()
                stall()
            return r
        soundfile.SoundFile.write = write
    from kerasep import cli
    sys.exit(cli.main(sys.argv[3:]))
""")


@pytest.mark.parametrize("stage,backend", [("decode", "keras"), ("separate", "keras"), ("write", "keras"),
                                           ("runner-write", "onnx")])
def test_kill_9_leaves_nothing_the_next_run_does_not_remove(stage, backend, models, song, tmp_path, home):
    out = tmp_path / "out"
    folder = _existing_output(out)
    before = snapshot(out)
    marker = tmp_path / "stalled"
    args = ["separate", str(song), "-o", str(out), "-m", str(models[backend]), "--backend", backend,
            "--overwrite", "-q"]
    env = dict(os.environ, KERASEP_HOME=str(home), PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, stage, str(marker)] + args, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"the child ended before the {stage} stage: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"the child did not reach the {stage} stage")
            time.sleep(0.1)
        work = leftovers(home / "tmp") + leftovers(out)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    # what the killed run left is named after it; the user's files are as they were
    if backend == "keras":
        assert work, "expected the killed run's work folder or temporaries"
    after = {k: v for k, v in snapshot(out).items() if not runner.OWNED_NAME.match(Path(k).name)}
    assert after == before
    # the next run removes the dead run's leftovers and writes every stem
    assert run_cli("separate", song, "-o", out, "-m", models[backend], "--backend", backend,
                   "--overwrite", "-q") == 0
    assert leftovers(home / "tmp", out) == []
    assert not (home / "tmp").exists() or os.listdir(home / "tmp") == []
    assert sorted(os.listdir(folder)) == sorted(["notes.txt"] + [f"{s}.wav" for s in STEMS])
    assert (folder / "notes.txt").read_text() == "mine"


def test_exports_and_results_sweep_a_killed_runs_temporaries(tmp_path):
    from kerasep import evaluate, export

    dead = _dead_pid()
    stale = [tmp_path / f".tiny.keras.kerasep-{dead}-1-0badf00d.tmp.keras",
             tmp_path / f".summary.json.kerasep-{dead}-1-0badf00d.tmp"]
    for p in stale:
        p.write_bytes(b"partial")
    export.save_keras(tiny_unet(), tmp_path / "tiny.keras")
    evaluate._atomic_write(tmp_path / "summary.json", "{}")
    assert sorted(os.listdir(tmp_path)) == ["summary.json", "tiny.keras"]


def test_full_disk_under_the_work_folder(models, song, tmp_path, monkeypatch, capsys):
    """$KERASEP_HOME/tmp (the decoded input, the stems' raw files) on a full disk: a message in
    words, no output, the work folder removed."""
    mount = tmp_path / "home"
    if not _tmpfs(mount, "200k"):
        pytest.skip("tmpfs cannot be mounted here")
    try:
        monkeypatch.setenv("KERASEP_HOME", str(mount))
        out = tmp_path / "out"
        assert run_cli("separate", song, "-o", out, "-m", models["keras"], "-q") == 1
        err = capsys.readouterr().err
        assert "no space left on device while writing" in err and str(mount / "tmp") in err, err
        assert not out.exists()
        assert os.listdir(mount / "tmp") == []
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


@pytest.mark.parametrize("backend", ["keras", "onnx"])
def test_sigterm_during_the_write_cleans_up_at_once(backend, models, song, tmp_path, home):
    """SIGTERM (not -9): the run removes its own temporaries and work folder on the way out."""
    out = tmp_path / "out"
    _existing_output(out)
    before = snapshot(out)
    marker = tmp_path / "stalled"
    env = dict(os.environ, KERASEP_HOME=str(home), PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, "write", str(marker), "separate", str(song), "-o", str(out),
                             "-m", str(models[backend]), "--backend", backend, "--overwrite", "-q"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "the child did not reach the write stage"
        assert leftovers(out), "expected the run's temporaries while it writes"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert leftovers(home / "tmp", out) == []
    assert snapshot(out) == before
