"""The length-sweep and end-to-end benchmarks run (a tiny length, the small size) and print
their tables, so that they do not rot. Their input is the committed example song."""
import os
import re
import subprocess
import sys

import pytest

from testing import MIXTURE_MP3, REPO


def _run(script, *args, home):
    env = dict(os.environ, KERASEP_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="3")
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *map(str, args)],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res.stdout


@pytest.mark.slow
def test_sweep_prints_the_table_and_the_profile(tmp_path):
    out = _run("sweep.py", "--family", "demucs", "--size", "small", "--lengths", "0.5", "--repeats", "1",
               "--engines", "reference", "tf", "--input", MIXTURE_MP3, home=tmp_path)
    assert "random weights (seeded)" in out and re.search(r"\(load [\d.]+ [\d.]+ [\d.]+ -> load", out)
    assert re.search(r"\| 0\.5 s \| reference \| [\d.]+ \| [\d.]+ \| 1\.00x \|", out)
    assert re.search(r"\| 0\.5 s \| tf \| [\d.]+ \| [\d.]+ \| [\d.]+x \|", out)
    for stage in ("decode", "separate (whole Keras path)", "write (16-bit WAV)"):
        assert re.search(rf"\| {re.escape(stage)} \| [\d.]+ \| [\d.]+ \|", out), stage


@pytest.mark.slow
def test_e2e_times_whole_processes(kerasep_home, spleeter_weights):
    """The Keras engine and the reference (the ONNX default needs a first export: not here)."""
    out = _run("bench_e2e.py", "--lengths", "1", "--repeats", "1", "--engines", "kerasep-keras", "reference",
               "--input", MIXTURE_MP3, home=kerasep_home)
    for engine in ("kerasep-keras", "reference"):
        assert re.search(rf"\| 1 s \| {engine} \| [\d.]+ \| [\d.]+ \| \d+ \| [\d.]+x \|", out), engine


def test_help_shows_the_command():
    for script in ("sweep.py", "bench_e2e.py"):
        res = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--help"], capture_output=True,
                             text=True, cwd=REPO, timeout=120)
        assert res.returncode == 0 and "command: KERASEP_HOME=~/.cache/kerasep python benchmarks/" in res.stdout
