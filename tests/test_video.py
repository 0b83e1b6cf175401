"""Videos: per-frame rows, identities across frames (box files and ultralytics tracking), smoothing, frame stride,
annotated video output, videos mixed with photos in a folder, and unreadable videos."""

import json

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from emoctx import labels
from emoctx.cli import main
from emoctx.inference import BoxFileDetector, Predictor, read_prediction_table, video
from emoctx.inference.detect import UltralyticsDetector
from emoctx.inference.draw import draw_scale
from emoctx.inference.video import (
    FALLBACK_FOURCC,
    IoUTracker,
    TrackSmoother,
    VideoWriter,
    choose_fourcc,
    mp4_fourcc,
    read_frames,
    video_fourcc,
)

PROB_COLUMNS = [f"p_{s}" for s in labels.SLUGS]
N_FRAMES = 10


def _boxes(t):
    """Two figures walking towards each other (they never overlap), frame ``t``."""
    return [(10 + 6 * t, 20, 50 + 6 * t, 110), (150 - 6 * t, 15, 190 - 6 * t, 105)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("video")
    media = root / "media"
    media.mkdir()
    path = media / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (200, 120))
    assert writer.isOpened()
    for t in range(N_FRAMES):
        frame = np.full((120, 200, 3), (40, 90, 40), np.uint8)
        cv2.rectangle(frame, (0, 80), (200, 120), (120, 120, 120), -1)
        for k, (x1, y1, x2, y2) in enumerate(_boxes(t)):
            color = (60, 60, 230) if k == 0 else (230, 160, 60)
            cv2.circle(frame, ((x1 + x2) // 2, y1 + 12), 10, color, -1)
            cv2.rectangle(frame, (x1 + 8, y1 + 24), (x2 - 8, y2), color, -1)
        writer.write(frame)
    writer.release()
    cv2.imwrite(str(media / "still.jpg"), np.full((120, 200, 3), 128, np.uint8))
    (media / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    (media / "zero.avi").write_bytes(b"")
    rows = [
        {"source": "media/clip.mp4", "frame": t, "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3]}
        for t in range(N_FRAMES)
        for b in _boxes(t)
    ]
    rows.append({"source": "media/still.jpg", "x1": 10, "y1": 10, "x2": 90, "y2": 110})
    boxes = root / "boxes.jsonl"
    boxes.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"root": root, "media": media, "video": path, "boxes": boxes}


def _run(clip, tiny_model_path, out, *extra, source=None):
    argv = [
        "predict",
        str(source or clip["video"]),
        "--model",
        str(tiny_model_path),
        "--boxes",
        str(clip["boxes"]),
    ]
    assert (
        main([*argv, "--out", str(out), "--no-progress", "--workers", "0", "--batch-size", "8", *extra]) == 0
    )
    return read_prediction_table(out)


def test_read_frames_and_stride(clip):
    frames = list(read_frames(clip["video"]))
    assert [i for i, _ in frames] == list(range(N_FRAMES)) and frames[0][1].shape == (120, 200, 3)
    assert [i for i, _ in read_frames(clip["video"], stride=4)] == [0, 4, 8]


def test_tracks_keep_their_id_and_smoothing_off_gives_per_frame_values(clip, tiny_model_path, tmp_path):
    raw = _run(clip, tiny_model_path, tmp_path / "raw.jsonl", "--smooth", "off")
    assert len(raw) == 2 * N_FRAMES and raw["error"].isna().all()
    assert raw["frame"].tolist() == [t for t in range(N_FRAMES) for _ in range(2)]
    # the left figure is track 1 in every frame, the right one track 2; person is the track id
    assert raw["track_id"].tolist() == [1, 2] * N_FRAMES and (raw["person"] == raw["track_id"]).all()
    np.testing.assert_allclose(
        raw[["x1", "y1", "x2", "y2"]].to_numpy(), [b for t in range(N_FRAMES) for b in _boxes(t)]
    )
    assert (raw["width"].eq(200) & raw["height"].eq(120)).all()
    # per-frame values equal a prediction on each frame on its own
    frames = dict(read_frames(clip["video"]))
    predictor = Predictor(tiny_model_path, num_workers=0)
    single = predictor.predict_images([frames[5]], boxes=[_boxes(5)])[0]
    got = raw[raw["frame"] == 5][PROB_COLUMNS].to_numpy()
    np.testing.assert_allclose(got, np.stack([p.probabilities for p in single.persons]), atol=1e-5)

    smooth = _run(clip, tiny_model_path, tmp_path / "smooth.csv", "--smooth", "0.3")
    for track in (1, 2):
        x = raw[raw["track_id"] == track][[*PROB_COLUMNS, *labels.VAD_NAMES]].to_numpy()
        s = smooth[smooth["track_id"] == track][[*PROB_COLUMNS, *labels.VAD_NAMES]].to_numpy()
        expected = [x[0]]
        for t in range(1, len(x)):
            expected.append(0.3 * x[t] + 0.7 * expected[-1])
        np.testing.assert_allclose(s, np.stack(expected), atol=2e-5)
        assert np.abs(s - x).max() > 1e-4  # smoothing changed something
    for _, row in smooth.iterrows():  # categories follow the smoothed probabilities
        assert row["categories"] == [
            c for c, s in zip(labels.CATEGORIES, labels.SLUGS, strict=True) if row[f"p_{s}"] >= 0.5
        ]


def test_the_predictor_gives_each_video_frame_its_time(clip, tiny_model_path):
    """time_s comes from the Python API (the frame rate read once per video), not only from 'emoctx predict'."""
    predictor = Predictor(
        tiny_model_path, detector=BoxFileDetector(clip["boxes"]), num_workers=0, video_stride=3
    )
    results = list(predictor.predict_sources([str(clip["video"]), str(clip["media"] / "still.jpg")]))
    video = [r for r in results if r.frame >= 0]
    assert [r.frame for r in video] == [0, 3, 6, 9] and all(r.persons for r in video)
    assert [r.time_s for r in video] == pytest.approx([0.0, 0.3, 0.6, 0.9])
    assert [r.to_rows()[0]["time_s"] for r in video] == pytest.approx([0.0, 0.3, 0.6, 0.9])
    [still] = [r for r in results if r.frame < 0]
    assert still.time_s is None and still.to_rows()[0]["time_s"] is None


def test_stride_no_track_and_annotated_video(clip, tiny_model_path, tmp_path):
    ann = tmp_path / "annotated"
    df = _run(
        clip,
        tiny_model_path,
        tmp_path / "s.parquet",
        "--video-stride",
        "3",
        "--no-track",
        "--annotate",
        str(ann),
    )
    assert sorted(set(df["frame"])) == [0, 3, 6, 9]
    assert df["track_id"].isna().all() and df["person"].tolist() == [0, 1] * 4
    # Seconds beside frames: the clip runs at 10 frames per second.
    assert df["time_s"].tolist() == pytest.approx([f / 10 for f in df["frame"]])
    written = ann / "clip.mp4"
    assert written.is_file() and not list(ann.glob(".*partial*"))
    cap = cv2.VideoCapture(str(written))
    n, first = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        first = frame if first is None else first
        n += 1
    cap.release()
    k = draw_scale((200, 120))  # a small video is drawn enlarged, so that its labels stay legible
    assert k > 1 and n == 4 and first.shape == (120 * k, 200 * k, 3)
    original = cv2.resize(next(read_frames(clip["video"]))[1][:, :, ::-1], (200 * k, 120 * k))
    assert np.abs(first.astype(int) - original.astype(int)).mean() > 2  # boxes and labels were drawn
    # Written with the codec chosen for this OpenCV (H.264 where it can, else mp4v), and it reads back as such.
    assert _codec_family(video_fourcc(written)) == _codec_family(mp4_fourcc())


def test_box_file_track_ids_are_used(clip, tiny_model_path, tmp_path):
    boxes = tmp_path / "tracked.csv"
    pd.DataFrame(
        [
            {
                "source": str(clip["video"]),
                "frame": t,
                "x1": b[0],
                "y1": b[1],
                "x2": b[2],
                "y2": b[3],
                "track_id": 40 + k,
            }
            for t in range(N_FRAMES)
            for k, b in enumerate(_boxes(t))
        ]
    ).to_csv(boxes, index=False)
    argv = ["predict", str(clip["video"]), "--model", str(tiny_model_path), "--boxes", str(boxes), "--out"]
    assert main([*argv, str(tmp_path / "t.jsonl"), "--no-progress", "--smooth", "off"]) == 0
    df = read_prediction_table(tmp_path / "t.jsonl")
    assert df["track_id"].tolist() == [40, 41] * N_FRAMES


def test_folder_with_photos_and_videos_and_bad_videos(clip, tiny_model_path, tmp_path):
    df = _run(clip, tiny_model_path, tmp_path / "mixed.jsonl", source=clip["media"])
    names = df["source"].map(lambda s: s.rsplit("/", 1)[-1])
    assert names.drop_duplicates().tolist() == [
        "broken.mp4",
        "clip.mp4",
        "still.jpg",
        "zero.avi",
    ]  # sorted order
    errors = df[df["error"].notna()].set_index(names[df["error"].notna()])
    assert "broken.mp4: cannot read video" in errors.loc["broken.mp4", "error"]
    assert "zero.avi: cannot read video: the file is empty" in errors.loc["zero.avi", "error"]
    still = df[names == "still.jpg"]
    assert len(still) == 1 and still["frame"].iloc[0] == -1 and pd.isna(still["track_id"].iloc[0])
    assert (df[names == "clip.mp4"]["frame"] >= 0).all() and len(df[names == "clip.mp4"]) == 2 * N_FRAMES


def test_ultralytics_tracking_code_path(clip, tiny_model_path):
    detector = UltralyticsDetector("yolo11n.yaml", conf=0.25, imgsz=160)
    with torch.no_grad():  # random weights find nothing: force person scores up so that tracks form
        for branch in detector.model.model.model[-1].cv3:
            branch[-1].bias[0] = 6.0
    predictor = Predictor(tiny_model_path, detector, num_workers=0, min_box=0, smoothing=0.5)
    results = list(predictor.predict_sources([clip["video"], clip["video"].with_name("still.jpg")]))
    video = [r for r in results if r.frame >= 0]
    assert [r.frame for r in video] == list(range(N_FRAMES)) and [r.source_done for r in video][-2:] == [
        False,
        True,
    ]
    ids = [p.track_id for r in video for p in r.persons]
    assert ids and all(isinstance(i, int) and i >= 1 for i in ids)
    assert all(p.person == p.track_id for r in video for p in r.persons)
    still = results[-1]
    assert still.frame == -1 and all(p.track_id is None for p in still.persons)


def test_iou_tracker_and_smoother_units():
    tracker = IoUTracker(iou_threshold=0.3, max_age=1)
    assert tracker.assign(np.array([[0, 0, 10, 10], [50, 50, 60, 60]])) == [1, 2]
    assert tracker.assign(np.array([[51, 50, 61, 60], [1, 0, 11, 10]])) == [
        2,
        1,
    ]  # order in the frame does not matter
    assert tracker.assign(np.array([[100, 100, 110, 110]])) == [3]  # a new person
    tracker.assign(np.zeros((0, 4)))
    assert tracker.assign(np.array([[0, 0, 10, 10]])) == [4]  # track 1 unseen for 2 frames > max_age: closed
    smoother = TrackSmoother(0.25)
    p, v = smoother.update(1, np.array([1.0, 0.0]), np.array([2.0, 4.0, 6.0]))
    p, v = smoother.update(1, np.array([0.0, 1.0]), np.array([6.0, 4.0, 2.0]))
    np.testing.assert_allclose(p, [0.75, 0.25])
    np.testing.assert_allclose(v, [3.0, 4.0, 5.0])
    with pytest.raises(ValueError):
        TrackSmoother(0.0)


def _codec_family(fourcc):
    """``h264`` for the names H.264 goes by, ``mp4v`` for MPEG-4 Part 2 (read back as ``FMP4``)."""
    if fourcc.lower() in ("avc1", "h264", "x264"):
        return "h264"
    return "mp4v" if fourcc.lower() in ("mp4v", "fmp4") else fourcc


def test_video_codec_is_h264_where_opencv_can_and_mp4v_otherwise(tmp_path, monkeypatch, caplog):
    # The choice: the first candidate that works, else mp4v.
    assert choose_fourcc(["avc1", "H264"], lambda c: c == "H264") == "H264"
    assert choose_fourcc(["avc1", "H264"], lambda c: False) == FALLBACK_FOURCC
    # This OpenCV: what the writer picks is what a reader finds in the file, and every frame decodes.
    chosen = mp4_fourcc()
    writer = VideoWriter(tmp_path / "a.mp4", fps=5)
    for k in range(4):
        writer.write(np.full((48, 64, 3), 50 * k, np.uint8))
    written = writer.close()
    assert _codec_family(video_fourcc(written)) == _codec_family(chosen) in ("h264", "mp4v")
    assert sum(1 for _ in read_frames(written)) == 4
    # Without H.264 the writer falls back to mp4v and says so (once per process).
    mp4_fourcc.cache_clear()
    monkeypatch.setattr(video, "writes_h264", lambda fourcc: False)
    try:
        with caplog.at_level("WARNING", logger="emoctx.inference.video"):
            assert mp4_fourcc() == "mp4v"
        assert "cannot write H.264" in caplog.text and "browsers" in caplog.text
    finally:
        mp4_fourcc.cache_clear()
    monkeypatch.setattr(video, "writes_h264", lambda fourcc: fourcc == "H264")
    try:
        assert mp4_fourcc() == "H264"
    finally:
        mp4_fourcc.cache_clear()
