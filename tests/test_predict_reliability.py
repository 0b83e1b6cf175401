"""emoctx predict loses nothing: one writer per output, nothing written over, damaged video frames, folders with
links and unreadable parts, any file name, resume that refuses a changed box file and ends byte-identical, and a
full disk."""

import errno
import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import emoctx.inference.decode as decode
import emoctx.inference.predictor as predictor_module
from emoctx.cli import main
from emoctx.inference import BoxFileDetector, Detection, Predictor, read_prediction_table
from emoctx.inference.runner import predict_to_file
from emoctx.inference.sources import expand_sources
from emoctx.inference.video import decode_frames
from emoctx.inference.writers import PartialLog
from emoctx.io import OutputLock

pytestmark = pytest.mark.usefixtures("fresh_log_handlers")


# persons per image: uneven, so that an uninterrupted run's batches of 2 straddle the group boundary at 8 images
PERSONS = [1, 2, 3, 1, 2, 3, 1, 2, 2, 1, 3, 1]


def _photo(path, seed, size=(160, 120)):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), (5, 5), 0)
    Image.fromarray(img).save(path, quality=90)


def _box(k, i):
    return [5 + 20 * k + i, 10, 60 + 20 * k + i, 110]


@pytest.fixture
def photos(tmp_path):
    """Twelve photos with 1-3 persons each, a corrupt one, and their box file."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    rows = []
    for i, n in enumerate(PERSONS):
        name = f"p{i:02d}.jpg"
        _photo(folder / name, i)
        rows += [
            dict(zip(("image", "x1", "y1", "x2", "y2"), [f"imgs/{name}", *_box(k, i)])) for k in range(n)
        ]
    (folder / "zz_corrupt.jpg").write_bytes(b"not a jpeg")
    boxes = tmp_path / "b.csv"
    pd.DataFrame(rows).to_csv(boxes, index=False)
    return {"folder": folder, "boxes": boxes, "root": tmp_path}


def _argv(photos, model, out, *extra):
    argv = ["predict", str(photos["folder"]), "--model", str(model), "--boxes", str(photos["boxes"])]
    return [*argv, "--out", str(out), "--no-progress", "--batch-size", "2", "--workers", "0", *extra]


def _interrupt_after(monkeypatch, n, action):
    """Make the n-th sidecar append of a run call ``action(log)`` first."""
    original = PartialLog.append
    calls = {"n": 0}

    def append(self, source, rows, done):
        calls["n"] += 1
        if calls["n"] == n:
            action(self)
        return original(self, source, rows, done)

    monkeypatch.setattr(PartialLog, "append", append)
    return calls


# ----------------------------------------------------------------------------------------------- item 3
def test_a_second_run_on_the_same_output_is_refused_while_the_first_runs(
    photos, tiny_model_path, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "t.jsonl"
    second = {}

    def run_again(_log):
        second["status"] = main(_argv(photos, tiny_model_path, out))
        second["err"] = capsys.readouterr().err

    _interrupt_after(monkeypatch, 3, run_again)
    assert main(_argv(photos, tiny_model_path, out)) == 0
    assert second["status"] == 2
    assert "is being written by another run (emoctx predict (process" in second["err"], second["err"]
    df = read_prediction_table(out)
    assert len(df) == sum(PERSONS) + 1  # every person and the corrupt file: nothing lost
    assert not out.with_name("t.jsonl.lock").exists() and not out.with_name("t.jsonl.partial").exists()
    with OutputLock(out):  # taken again once released; the lock file names the holder meanwhile
        assert "emoctx" in out.with_name("t.jsonl.lock").read_text()


def test_a_table_missing_finished_sources_is_never_written(
    photos, tiny_model_path, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "t.jsonl"

    def replaced_by_someone_else(log):
        header = log.path.read_text().splitlines()[0]
        log.path.with_name("x").write_text(header + "\n")
        os.replace(log.path.with_name("x"), log.path)  # the run keeps appending to the old, unlinked file

    _interrupt_after(monkeypatch, 4, replaced_by_someone_else)
    assert main(_argv(photos, tiny_model_path, out)) == 2
    err = capsys.readouterr().err
    assert "not recorded as finished" in err and "--resume" in err and "Traceback" not in err, err
    assert not out.exists()


# ----------------------------------------------------------------------------------------------- item 4
def test_out_never_replaces_an_input_or_a_foreign_file(
    photos, tiny_model_path, tmp_path, monkeypatch, capsys
):
    photo = photos["folder"] / "p00.jpg"
    before = photo.read_bytes()
    loads = []
    monkeypatch.setattr(
        predictor_module, "load_model", lambda *a, **k: loads.append(a) or pytest.fail("model loaded")
    )
    for out, extra, message in [
        (photo, (), "is one of the inputs"),
        (photo, ("--overwrite",), "is one of the inputs"),
        (photos["boxes"], ("--overwrite",), "is one of the inputs"),
        (tiny_model_path, ("--overwrite",), "is one of the inputs"),
        (photos["folder"], (), "is a folder"),
    ]:
        assert main(_argv(photos, tiny_model_path, out, *extra)) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert photo.read_bytes() == before and not loads  # refused before any work
    notes = tmp_path / "notes.jsonl"
    notes.write_text("my own notes\n")
    assert main(_argv(photos, tiny_model_path, notes)) == 2
    assert "is not a prediction table" in capsys.readouterr().err and notes.read_text() == "my own notes\n"
    monkeypatch.undo()
    # annotated copies mirror the inputs' names: never into the inputs' own place (here through a link)
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "imgs").symlink_to(photos["folder"], target_is_directory=True)
    assert (
        main(_argv(photos, tiny_model_path, tmp_path / "a.jsonl", "--annotate", str(tmp_path / "ann"))) == 2
    )
    assert "would be written over the input" in capsys.readouterr().err and photo.read_bytes() == before
    assert main(_argv(photos, tiny_model_path, notes, "--overwrite")) == 0  # asked for
    assert len(read_prediction_table(notes)) == sum(PERSONS) + 1
    assert main(_argv(photos, tiny_model_path, notes)) == 0  # a previous table is replaced without asking
    # a file in the way of the progress file is not replaced either
    other = tmp_path / "o.csv"
    other.with_name("o.csv.partial").write_text("precious")
    assert main(_argv(photos, tiny_model_path, other)) == 2
    assert "is not a progress file" in capsys.readouterr().err
    assert other.with_name("o.csv.partial").read_text() == "precious"
    # the table inside the folder it was made from is not an input of the next run
    inside = photos["folder"] / "table.csv"
    assert main(_argv(photos, tiny_model_path, inside)) == 0
    assert main(_argv(photos, tiny_model_path, inside)) == 0
    assert not read_prediction_table(inside)["source"].str.endswith("table.csv").any()


# ----------------------------------------------------------------------------------------------- item 5
def _clip(path, n=10):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(n):
        frame = np.full((120, 160, 3), 40 + 20 * i, np.uint8)
        cv2.putText(frame, str(i), (50, 80), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
        writer.write(frame)
    writer.release()
    data = path.read_bytes()
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    assert len(starts) == n, "one JPEG per frame"
    return data, starts


def test_damaged_and_missing_video_frames_are_reported_and_the_rest_decoded(tiny_model_path, tmp_path):
    data, starts = _clip(tmp_path / "ok.avi")
    damaged = bytearray(data)
    damaged[starts[4] : starts[5] - 8] = bytes(starts[5] - 8 - starts[4])  # frame 4's JPEG zeroed
    (tmp_path / "damaged.avi").write_bytes(damaged)
    (tmp_path / "short.avi").write_bytes(data[: starts[6] + 50])  # header: 10 frames; 6 decodable
    got = {name: list(decode_frames(tmp_path / name)) for name in ("damaged.avi", "short.avi")}
    assert [f.index for f in got["damaged.avi"] if f.pixels is not None] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    [bad] = [f for f in got["damaged.avi"] if f.error]
    assert bad.index == 4 and "frame 4: cannot be decoded" in bad.error
    # every frame, decoded or not, has its time from the header's 10 frames per second
    assert [f.time_s for f in got["damaged.avi"]] == pytest.approx([k / 10 for k in range(10)])
    # the frames after the damaged one keep their indices: the same pictures as in the intact file
    intact = {f.index: f.pixels for f in decode_frames(tmp_path / "ok.avi")}
    assert all(np.array_equal(f.pixels, intact[f.index]) for f in got["damaged.avi"] if f.pixels is not None)
    assert [f.index for f in got["short.avi"] if f.pixels is not None] == [0, 1, 2, 3, 4, 5]
    assert [(f.index, f.error is not None) for f in got["short.avi"][6:]] == [(6, True)]
    assert "frames 6-9 of the 10 the header announces could not be read" in got["short.avi"][6].error
    assert [f.index for f in decode_frames(tmp_path / "damaged.avi", stride=3) if f.pixels is not None] == [
        0,
        3,
        6,
        9,
    ]

    # through emoctx predict: rows for the good frames, an error row with its frame for each problem
    boxes = tmp_path / "vb.csv"
    rows = [
        {"image": n, "frame": f, "x1": 10, "y1": 10, "x2": 90, "y2": 110}
        for n in ("damaged.avi", "short.avi")
        for f in range(10)
    ]
    pd.DataFrame(rows).to_csv(boxes, index=False)
    out = tmp_path / "v.jsonl"
    argv = [
        "predict",
        str(tmp_path / "damaged.avi"),
        str(tmp_path / "short.avi"),
        "--model",
        str(tiny_model_path),
    ]
    assert main([*argv, "--boxes", str(boxes), "--out", str(out), "--no-progress", "--smooth", "off"]) == 0
    df = read_prediction_table(out)
    for name, good, errors in (
        ("damaged.avi", [0, 1, 2, 3, 5, 6, 7, 8, 9], [4]),
        ("short.avi", list(range(6)), [6]),
    ):
        part = df[df["source"].str.endswith(name)]
        assert part[part["error"].isna()]["frame"].tolist() == good
        assert part[part["error"].notna()]["frame"].tolist() == errors


# ----------------------------------------------------------------------------------------------- item 6
@pytest.mark.timeout(120)
def test_folders_follow_links_without_loops_and_report_unreadable_parts(tmp_path, monkeypatch):
    g = tmp_path / "g"
    (g / "sub" / "deeper").mkdir(parents=True)
    (g / "locked").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for path in (
        g / "a.jpg",
        g / "sub" / "b.jpg",
        g / "sub" / "deeper" / "c.jpg",
        elsewhere / "d.jpg",
        g / "locked" / "e.jpg",
    ):
        path.write_bytes(b"x")
    (g / "linked").symlink_to(elsewhere, target_is_directory=True)  # a linked subfolder: searched
    for name, target in (("up1", ".."), ("up2", "../.."), ("self", ".")):  # three links back up: loops
        (g / "sub" / name).symlink_to(target, target_is_directory=True)
    (g / "sub" / "deeper" / "up3").symlink_to("../..", target_is_directory=True)

    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # unreadable even for root
    want = {"a.jpg", "b.jpg", "c.jpg", "d.jpg"}
    for arg in (str(g), str(g / "**" / "*.jpg")):
        specs = expand_sources([arg])
        images = [s for s in specs if s.kind == "image"]
        assert sorted(Path(s.path).name for s in images) == sorted(want), arg  # each file once
        errors = [s for s in specs if s.kind == "error"]
        assert len(errors) == 1 and "locked: cannot list this folder: Permission denied" in errors[0].error
    assert [s.kind for s in expand_sources([str(g / "**" / "*.png")])] == ["error"]  # no match


# ----------------------------------------------------------------------------------------------- item 7
def test_file_names_that_are_not_utf8_are_written_escaped(tiny_model_path, tmp_path, monkeypatch):
    folder = tmp_path / "names"
    folder.mkdir()
    raw = os.fsdecode(os.fsencode(str(folder)) + b"/caf\xe9.jpg")  # Latin-1 bytes: not UTF-8
    _photo(raw, 0)
    Path(os.fsdecode(os.fsencode(str(folder)) + b"/bad\xff.jpg")).write_bytes(b"not an image")
    for k, name in enumerate(("a1.jpg", "a2.jpg", "plain.jpg", "z1.jpg")):
        _photo(folder / name, k + 1)

    class Fixed:
        def detect(self, images):
            return [[Detection((10.0, 10.0, 80.0, 100.0), 0.9)] for _ in images]

    for suffix in ("jsonl", "csv", "parquet"):
        out = tmp_path / f"n.{suffix}"
        predict_to_file(Predictor(tiny_model_path, Fixed(), num_workers=0), [folder], out, progress=False)
        df = read_prediction_table(out)
        names = ["a1.jpg", "a2.jpg", "bad\\xff.jpg", "caf\\xe9.jpg", "plain.jpg", "z1.jpg"]
        assert [Path(s).name for s in df["source"]] == names
        error = df[df["error"].notna()]["error"].iloc[0]
        assert "bad\\xff.jpg" in error
    # resume across such names: groups of 4 images at batch size 1; interrupted after the first group
    out = tmp_path / "r.jsonl"
    predictor = Predictor(tiny_model_path, Fixed(), num_workers=0, batch_size=1, detector_batch=1)
    predict_to_file(predictor, [folder], tmp_path / "ref.jsonl", progress=False)

    def stop(_log):
        raise KeyboardInterrupt

    assert predictor.group_size == 4
    _interrupt_after(monkeypatch, 5, stop)
    with pytest.raises(KeyboardInterrupt):
        predict_to_file(predictor, [folder], out, progress=False)
    monkeypatch.undo()
    decoded = []
    real = decode.read_image
    monkeypatch.setattr(decode, "read_image", lambda p, **kw: decoded.append(Path(p).name) or real(p, **kw))
    predict_to_file(predictor, [folder], out, resume=True, progress=False)
    assert decoded == ["plain.jpg", "z1.jpg"]  # the group with the two undecodable names was found done
    assert out.read_bytes() == (tmp_path / "ref.jsonl").read_bytes()


# ----------------------------------------------------------------------------------------------- item 8
def test_resume_refuses_a_changed_box_file(photos, tiny_model_path, tmp_path, monkeypatch, capsys):
    out = tmp_path / "t.jsonl"

    def stop(_log):
        raise KeyboardInterrupt

    _interrupt_after(monkeypatch, 3, stop)
    assert main(_argv(photos, tiny_model_path, out)) == 130
    monkeypatch.undo()
    df = pd.read_csv(photos["boxes"])
    df["x2"] += 5  # same name, other boxes
    df.to_csv(photos["boxes"], index=False)
    assert main(_argv(photos, tiny_model_path, out, "--resume")) == 2
    err = capsys.readouterr().err
    assert "other settings (detector differ" in err and "b.csv@" in err, err
    assert main(_argv(photos, tiny_model_path, out, "--resume", "--batch-size", "3")) == 2
    assert "batch_size" in capsys.readouterr().err


def _values(results):
    return np.concatenate([np.r_[p.probabilities, p.vad] for r in results for p in r.persons])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_resumed_run_computes_the_same_bits(photos, tiny_model_path, precision):
    """Skipping the finished groups leaves every later batch as it was: values equal to the last bit."""
    predictor = Predictor(
        tiny_model_path, BoxFileDetector(photos["boxes"]), batch_size=2, num_workers=0, precision=precision
    )
    specs = expand_sources([photos["folder"]])
    assert sum(PERSONS[:8]) % 2 == 1  # an uninterrupted run has a batch of 2 across the 8th and 9th images
    full = list(predictor.predict_sources(specs))
    done = [s.path for s in specs[:8]]  # the first group: finished before an interruption
    resumed = list(predictor.predict_sources(specs, skip=done))
    later = [r for r in full if r.source not in done]
    assert [r.source for r in resumed] == [r.source for r in later]
    assert np.array_equal(_values(resumed), _values(later))
    assert predictor.group_size == 8 and predictor.groups(specs) == [0] * 8 + [1] * 5


def test_resume_mid_group_ends_byte_identical(photos, tiny_model_path, tmp_path, monkeypatch):
    reference = tmp_path / "ref.csv"
    assert main(_argv(photos, tiny_model_path, reference)) == 0
    out = tmp_path / "t.csv"

    def stop(_log):
        raise KeyboardInterrupt

    _interrupt_after(monkeypatch, 11, stop)  # the first group of 8 and two of the second are finished
    assert main(_argv(photos, tiny_model_path, out)) == 130
    monkeypatch.undo()
    decoded = []
    real = decode.read_image
    monkeypatch.setattr(decode, "read_image", lambda p, **kw: decoded.append(Path(p).name) or real(p, **kw))
    assert main(_argv(photos, tiny_model_path, out, "--resume")) == 0
    assert decoded == [
        "p08.jpg",
        "p09.jpg",
        "p10.jpg",
        "p11.jpg",
        "zz_corrupt.jpg",
    ]  # the unfinished group again
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(reference.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------- item 9
def test_a_full_disk_is_a_clear_error_with_the_resume_command(
    photos, tiny_model_path, tmp_path, monkeypatch, capsys
):
    reference = tmp_path / "ref.jsonl"
    assert main(_argv(photos, tiny_model_path, reference)) == 0
    out = tmp_path / "t.jsonl"

    def disk_full(log):  # from now on the sidecar's writes go to a device that is always full
        log._file.flush()
        log._file.close()
        log._file = open("/dev/full", "a")  # noqa: SIM115

    _interrupt_after(monkeypatch, 4, disk_full)
    assert main(_argv(photos, tiny_model_path, out)) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err, err
    assert "make room and continue with: emoctx predict" in err and err.rstrip().endswith("--resume"), err
    sidecar = out.with_name("t.jsonl.partial")
    assert len(sidecar.read_text().splitlines()) == 1 + 3 and not out.exists()
    monkeypatch.undo()

    # the final table cannot be written: the previous table is unchanged, the sidecar kept
    import emoctx.inference.runner as runner

    def no_room(rows, path, fmt=None, metadata=None):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(runner, "write_predictions", no_room)
    assert main(_argv(photos, tiny_model_path, out, "--resume")) == 2
    assert "No space left on device" in capsys.readouterr().err and sidecar.exists()
    monkeypatch.undo()
    assert main(_argv(photos, tiny_model_path, out, "--resume")) == 0
    assert out.read_bytes() == reference.read_bytes()


def test_other_commands_never_write_over_an_input_or_into_a_wrong_kind_of_path(
    photos, tiny_model_path, tmp_path, capsys
):
    table = tmp_path / "evaldir" / "predictions.parquet"
    table.parent.mkdir()
    table.write_bytes(b"PAR1")
    records = tmp_path / "records.parquet"
    records.write_bytes(b"PAR1")
    summary_dir = tmp_path / "sum"
    summary_dir.mkdir()
    (summary_dir / "errors.csv").write_text("source,error\n")
    cases = [
        (["export", str(tiny_model_path), "--out", str(tiny_model_path)], "is one of the inputs"),
        (["export", str(tiny_model_path), "--out", str(tmp_path)], "is a folder"),
        (["summarize", str(table), "--out", str(table)], "is a file; give a folder"),
        (
            ["summarize", str(summary_dir / "errors.csv"), "--out", str(summary_dir)],
            "would replace the input",
        ),
        (
            ["evaluate", "--predictions", str(table), "--records", str(records), "--out", str(table.parent)],
            "writing predictions.parquet there would replace the input",
        ),
        (
            [
                "predict-records",
                "--model",
                str(tiny_model_path),
                "--records",
                str(records),
                "--root",
                str(tmp_path),
            ]
            + ["--out", str(records)],
            "is one of the inputs",
        ),
        (
            ["calibrate", str(tiny_model_path), "--records", str(records), "--root", str(tmp_path)]
            + ["--out", str(records)],
            "is one of the inputs",
        ),
        (  # the table itself would be replaced by the summary written after it
            _argv(photos, tiny_model_path, summary_dir / "overview.csv", "--summary", str(summary_dir)),
            "writing overview.csv there would replace the input",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert table.read_bytes() == b"PAR1" and records.read_bytes() == b"PAR1"
    assert (summary_dir / "errors.csv").read_text() == "source,error\n"
