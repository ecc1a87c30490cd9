"""kerasep.evaluate on the real MUSDB18 track: museval numbers reproduced, CLI outputs."""
import json
from pathlib import Path

import numpy as np
import pytest

from testing import TRACK

# museval 0.4.1 BSSEval v4 medians (1 s windows) for museval's "mixture as estimate" example
# (each of the 4 sources estimated as mixture / 4, accompaniment as 0.75 x mixture) on the
# fixture track: computed with museval called directly and pinned here as regression numbers.
PINNED_SDR = {"vocals": 0.861245, "drums": 1.4677, "bass": 1.679815, "other": 0.94218, "accompaniment": 7.018675}
PINNED_SIR = {"vocals": -5.6188, "accompaniment": 6.34573}


@pytest.fixture(scope="module")
def track(musdb_root):
    import musdb

    db = musdb.DB(root=str(musdb_root), subsets="test")
    assert [t.name for t in db.tracks] == [TRACK]
    return db.tracks[0]


@pytest.mark.slow
def test_reproduces_museval_on_fixed_estimates(track):
    import museval

    from kerasep import evaluate as ev

    mix = track.audio
    est = {k: mix / 4 for k in ("vocals", "drums", "bass", "other")}
    est["accompaniment"] = 0.75 * mix
    store, mdx = ev.evaluate_track(track, est)
    table = ev.summary([store])
    for target, value in PINNED_SDR.items():
        assert table[target]["SDR"] == pytest.approx(value, abs=1e-4), target
    for target, value in PINNED_SIR.items():
        assert table[target]["SIR"] == pytest.approx(value, abs=1e-4), target
    # frame by frame equal to museval.evaluate called directly (4-source problem)
    names = ["vocals", "drums", "bass", "other"]
    sdr, isr, sir, sar = museval.evaluate([track.targets[n].audio for n in names], [est[n] for n in names],
                                          win=track.rate, hop=track.rate)
    frames = json.loads(store.json)
    got = {t["name"]: [f["metrics"]["SDR"] for f in t["frames"]] for t in frames["targets"]}
    np.testing.assert_allclose(got["drums"], sdr[1], atol=1e-4)
    np.testing.assert_allclose(got["other"], sdr[3], atol=1e-4)
    # MDX global SDR: 10 log10(sum s^2 / sum (s - s_hat)^2) over the whole track
    s = track.targets["vocals"].audio
    assert mdx["vocals"] == pytest.approx(10 * np.log10(np.sum(s**2) / np.sum((s - mix / 4) ** 2)), abs=1e-6)


def test_global_sdr_and_complement():
    from kerasep import evaluate as ev

    s = np.ones((100, 2))
    assert ev.global_sdr(s, s * 0.9) == pytest.approx(20.0, abs=1e-6)
    mix = np.full((10, 2), 3.0, np.float32)
    est = ev.complete_estimates({"vocals": np.ones((10, 2), np.float32)}, mix)
    np.testing.assert_array_equal(est["accompaniment"], 2.0)
    with pytest.raises(ValueError, match="two or more MUSDB targets"):
        ev.complete_estimates({"drums": mix, "piano": mix}, mix)


@pytest.mark.slow
def test_cli_evaluate_writes_json_summary_and_plot(musdb_root, tmp_path):
    from kerasep import cli
    from kerasep.models import UNetSeparator

    model = UNetSeparator(n_fft=512, hop_length=128, T=16, F=64, conv_n_filters=[4, 8, 16], dropout=0.0)
    model.build((None, 2, None))
    path = tmp_path / "tiny.keras"
    model.save(path)
    out = tmp_path / "eval"
    assert cli.main(["evaluate", str(path), "--musdb", str(musdb_root), "--subset", "test", "-o", str(out)]) == 0
    per_track = json.loads((out / "test" / f"{TRACK}.json").read_text())
    assert {t["name"] for t in per_track["targets"]} == {"vocals", "accompaniment"}
    assert len(per_track["targets"][0]["frames"]) == 6  # 6 s, 1 s windows
    summary = json.loads((out / "summary.json").read_text())["median_frames_median_tracks"]
    assert set(summary) == {"vocals", "accompaniment"} and set(summary["vocals"]) == {"SDR", "SIR", "ISR", "SAR"}
    mdx = json.loads((out / "mdx_sdr.json").read_text())
    assert set(mdx["mean"]) == {"vocals", "accompaniment"}
    assert (out / "sdr_per_track.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main(["evaluate", str(path), "--musdb", str(tmp_path / "none"), "-o", str(tmp_path / "none_out")]) == 2


@pytest.mark.slow
def test_evaluate_files_get_the_umask_mode(musdb_root, tmp_path):
    import os

    from kerasep import evaluate as ev
    from testing import tiny_unet

    old = os.umask(0o022)
    try:
        ev.evaluate(tiny_unet(targets=["vocals", "accompaniment"]), musdb_root, tmp_path / "eval", log=lambda *a: None)
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "eval").rglob("*") if p.is_file()]
    assert {p.name for p in files} == {f"{TRACK}.json", "summary.json", "mdx_sdr.json", "sdr_per_track.png"}
    assert {p.name: p.stat().st_mode & 0o777 for p in files} == {p.name: 0o644 for p in files}


def test_atomic_write_mode_and_no_leftover(tmp_path):
    import os

    from kerasep import evaluate as ev

    old = os.umask(0o027)
    try:
        ev._atomic_write(tmp_path / "a" / "x.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a" / "x.json").stat().st_mode & 0o777 == 0o640
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.json"]


def test_results_folder_named_after_the_run():
    from kerasep import evaluate as ev

    assert ev.results_name("runs/unet-small/model.keras") == "unet-small"
    assert ev.results_name("/abs/runs/my run/model.keras") == "my run"
    assert ev.results_name("models/best.keras") == "best"
    assert ev.results_name("unet-2stems") == "unet-2stems"


def test_cli_evaluate_refuses_earlier_results_before_loading(tmp_path, monkeypatch, capsys):
    from kerasep import cli, zoo

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "small").mkdir(parents=True)
    earlier = tmp_path / "evaluation" / "small" / "summary.json"  # the default folder: the run's name
    earlier.parent.mkdir(parents=True)
    earlier.write_text("{}")
    loaded = []
    monkeypatch.setattr(zoo, "load", lambda *a, **k: loaded.append(a) or pytest.fail("loaded the model"))
    args = ["evaluate", "runs/small/model.keras", "--musdb", str(tmp_path / "musdb")]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert str(Path("evaluation") / "small") in err and "summary.json" in err and "--overwrite" in err
    assert earlier.read_text() == "{}" and loaded == []
    # per-track results count too; another -o folder is free
    (tmp_path / "other" / "test").mkdir(parents=True)
    (tmp_path / "other" / "test" / "track.json").write_text("{}")
    assert cli.main(args + ["-o", "other"]) == 1
    # with --overwrite the command goes on (to the model, missing here)
    monkeypatch.setattr(zoo, "load", lambda *a, **k: (_ for _ in ()).throw(FileNotFoundError("no model")))
    assert cli.main(args + ["--overwrite"]) == 2
    assert "no model" in capsys.readouterr().err


def test_evaluate_api_refuses_earlier_results(tmp_path):
    from kerasep import evaluate as ev

    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        ev.evaluate("not-even-loaded", tmp_path / "musdb", tmp_path)
    assert ev.existing_results(tmp_path) == [tmp_path / "summary.json"]
