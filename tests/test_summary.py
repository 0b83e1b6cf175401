"""Summaries of prediction tables: folder tables and plots, video timelines, error rows, every table format."""

import numpy as np
import pandas as pd
import pytest

from emoctx import labels
from emoctx.cli import main
from emoctx.errors import EmoctxError
from emoctx.inference.colours import track_colour, track_colour_float
from emoctx.inference.results import COLUMNS, PROB_COLUMNS
from emoctx.inference.summary import read_summary_table, summarize, summarize_folder, summarize_video
from emoctx.inference.summary import videos as summary_module
from emoctx.inference.writers import write_predictions

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _person(source, frame, person, rng, track_id=None, strong=(), vad=None):
    """A person row: probabilities 0.9 for the ``strong`` categories (listed in ``categories``), else < 0.4."""
    probs = rng.uniform(0.0, 0.4, labels.NUM_CATEGORIES)
    for c in strong:
        probs[labels.CATEGORY_INDEX[c]] = 0.9
    row = dict.fromkeys(COLUMNS)
    row.update(source=source, frame=frame, person=person, track_id=track_id)
    row.update(x1=10.0, y1=20.0, x2=110.0, y2=220.0, det_score=0.8, width=640, height=480, model="m@0")
    row.update({f"p_{s}": float(p) for s, p in zip(labels.SLUGS, probs)})
    row["categories"] = list(strong)
    v = vad if vad is not None else rng.uniform(1, 10, 3)
    row.update(dict(zip(labels.VAD_NAMES, map(float, v))))
    return row


def _error(source, message):
    row = dict.fromkeys(COLUMNS)
    row.update(source=source, error=message)
    return row


@pytest.fixture
def folder_table():
    rng = np.random.default_rng(0)
    rows = [
        _person("a.jpg", -1, 0, rng, strong=["Happiness", "Engagement"], vad=(8, 6, 7)),
        _person("a.jpg", -1, 1, rng, strong=["Happiness"], vad=(7, 5, 6)),
        _person("a.jpg", -1, 2, rng, strong=[], vad=(6, 4, 5)),
        _person("b.jpg", -1, 0, rng, strong=["Sadness"], vad=(2, 3, 3)),
        _person("c.png", -1, 0, rng, strong=["Happiness", "Peace"], vad=(9, 2, 6)),
        _error("broken.jpg", "broken.jpg: cannot read image: truncated file"),
        _error("notes.txt", "notes.txt: not an image or video"),
    ]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _video_rows(source, rng, frames=range(0, 40, 2)):
    rows = []
    for f in frames:
        rows.append(_person(source, f, 1, rng, track_id=1, strong=["Engagement"], vad=(6, 5, 5)))
        if f >= 10:
            rows.append(
                _person(source, f, 2, rng, track_id=2, strong=["Anger"] if f > 20 else [], vad=(3, 7, 6))
            )
    return rows


def test_folder_summary_counts_tables_and_plots(folder_table, tmp_path):
    s = summarize_folder(folder_table, tmp_path)
    overview = dict(zip(s.overview["metric"], s.overview["value"]))
    assert overview["people"] == 5 and overview["images"] == 3 and overview["files"] == 5
    assert overview["files with errors"] == 2 and overview["error rows"] == 2
    assert overview["people per image (max)"] == 3
    assert overview["people per image (mean)"] == pytest.approx(5 / 3, abs=1e-3)

    cats = s.categories.set_index("category")
    assert list(s.categories["category"]) == list(labels.CATEGORIES)
    assert cats.loc["Happiness", "people"] == 3 and cats.loc["Happiness", "share"] == pytest.approx(0.6)
    assert cats.loc["Sadness", "people"] == 1 and cats.loc["Fear", "people"] == 0
    assert cats.loc["Happiness", "mean_probability"] > 0.5 > cats.loc["Fear", "mean_probability"]
    vad = s.vad.set_index("dimension")
    assert vad.loc["valence", "count"] == 5
    assert vad.loc["valence", "mean"] == pytest.approx(np.mean([8, 7, 6, 2, 9]), abs=1e-3)
    assert vad.loc["arousal", "q50"] == pytest.approx(4.0)
    assert dict(zip(s.people_per_image["people"], s.people_per_image["images"])) == {1: 2, 3: 1}
    assert sorted(s.errors["source"]) == ["broken.jpg", "notes.txt"]

    # The CSV files hold the same tables; the plots are real PNGs; the Markdown names the top category.
    on_disk = pd.read_csv(tmp_path / "categories.csv").set_index("category")
    assert on_disk.loc["Happiness", "people"] == 3
    assert pd.read_csv(tmp_path / "overview.csv").set_index("metric").loc["people", "value"] == 5
    for png in ("categories.png", "vad.png"):
        data = (tmp_path / png).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    md = (tmp_path / "summary.md").read_text()
    assert "| Happiness | 3 | 60.0% |" in md and "broken.jpg: cannot read image" in md
    assert not list(tmp_path.glob(".*.tmp")), "no temporary files left behind"


def test_folder_summary_with_a_fixed_threshold(folder_table, tmp_path):
    s = summarize_folder(folder_table, tmp_path, threshold=0.5)
    cats = s.categories.set_index("category")
    # Every listed category has probability 0.9, the others < 0.4: the same counts as the model's thresholds.
    assert cats.loc["Happiness", "people"] == 3 and cats["people"].sum() == 6


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_every_table_format_reads_back_to_the_same_summary(folder_table, tmp_path, suffix):
    path = write_predictions(folder_table, tmp_path / f"predictions{suffix}")
    df = read_summary_table(path)
    assert df.loc[df["source"] == "a.jpg", "categories"].iloc[0] == ["Happiness", "Engagement"]
    s = summarize_folder(df, tmp_path / "summary")
    assert s.categories.set_index("category").loc["Happiness", "people"] == 3
    assert dict(zip(s.overview["metric"], s.overview["value"]))["error rows"] == 2


def test_only_error_rows_give_an_empty_summary(folder_table, tmp_path):
    errors = folder_table[folder_table["error"].notna()]
    s = summarize_folder(errors, tmp_path)
    overview = dict(zip(s.overview["metric"], s.overview["value"]))
    assert overview["people"] == 0 and overview["error rows"] == 2
    assert s.categories["people"].sum() == 0 and (s.vad["count"] == 0).all()
    assert (tmp_path / "categories.png").read_bytes().startswith(PNG_MAGIC)


def test_video_summary_timelines_and_tracks(tmp_path):
    rng = np.random.default_rng(1)
    rows = _video_rows("cam1/clip.mp4", rng) + _video_rows("cam2/clip.mp4", rng, frames=range(5))
    rows.append(_error("cam3/broken.mp4", "cam3/broken.mp4: cannot open as a video"))
    s = summarize_video(pd.DataFrame(rows, columns=list(COLUMNS)), tmp_path)

    # Two sources with the same file name get two timelines.
    assert set(s.timelines) == {"cam1/clip.mp4", "cam2/clip.mp4"}
    assert len({p.name for p in s.timelines.values()}) == 2
    for png in s.timelines.values():
        assert png.read_bytes().startswith(PNG_MAGIC) and png.stat().st_size > 20_000
    assert s.tracks["tracked"].all()
    t = s.tracks.set_index(["source", "track"])
    one, two = t.loc[("cam1/clip.mp4", 1)], t.loc[("cam1/clip.mp4", 2)]
    assert (one["frames"], one["first_frame"], one["last_frame"]) == (20, 0, 38)
    assert (two["frames"], two["first_frame"]) == (15, 10)
    assert one["valence"] == pytest.approx(6.0) and two["arousal"] == pytest.approx(7.0)
    assert one["top_categories"].startswith("Engagement 0.90")
    assert list(s.errors["source"]) == ["cam3/broken.mp4"]
    written = pd.read_csv(tmp_path / "tracks.csv")
    assert written.shape[0] == 3  # cam2 is too short for track 2
    assert written["track"].dtype.kind == "i" and sorted(written["track"]) == [1, 1, 2]  # ids, not "track 1"
    assert "cam3/broken.mp4" in (tmp_path / "video_summary.md").read_text()


def test_untracked_video_uses_person_index(tmp_path):
    rng = np.random.default_rng(2)
    rows = [_person("v.mp4", f, p, rng, strong=["Peace"]) for f in range(3) for p in range(2)]
    s = summarize_video(pd.DataFrame(rows, columns=list(COLUMNS)), tmp_path)
    assert sorted(s.tracks["track"]) == [0, 1] and not s.tracks["tracked"].any()
    assert (s.tracks["frames"] == 3).all()


def test_summarize_command_on_a_mixed_table(folder_table, tmp_path, capsys):
    rng = np.random.default_rng(3)
    table = pd.concat([folder_table, pd.DataFrame(_video_rows("clip.mp4", rng), columns=list(COLUMNS))])
    path = write_predictions(table, tmp_path / "predictions.jsonl")
    assert main(["summarize", str(path), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "5 people in 3 images" in printed and "2 track(s) in 1 video(s)" in printed
    for name in ("summary.md", "categories.png", "vad.png", "tracks.csv", "timeline_clip.png"):
        assert (tmp_path / "out" / name).is_file(), name
    results = summarize(table, tmp_path / "again")
    assert set(results) == {"folder", "video"}


def test_not_a_prediction_table(tmp_path):
    with pytest.raises(EmoctxError, match="missing column"):
        summarize_folder(pd.DataFrame({"source": ["a.jpg"]}), tmp_path)


def test_a_records_file_is_not_a_prediction_table(folder_table, tmp_path):
    people = folder_table[folder_table["error"].isna()].copy()
    people[list(PROB_COLUMNS)] = np.nan  # person rows without probabilities and without an error
    path = write_predictions(people, tmp_path / "not_predictions.parquet")
    with pytest.raises(EmoctxError, match="neither probabilities nor an error"):
        read_summary_table(path)


def _video_file(path, fps, frames=20):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    for k in range(frames):
        writer.write(np.full((48, 64, 3), 10 * k, np.uint8))
    writer.release()
    return path


def test_video_timelines_in_seconds_from_the_table_or_the_video_file(tmp_path):
    rng = np.random.default_rng(4)
    # time_s in the table (as 'emoctx predict' writes it): 12.5 frames per second.
    rows = _video_rows("clip.mp4", rng)
    for r in rows:
        r["time_s"] = r["frame"] / 12.5
    s = summarize_video(pd.DataFrame(rows, columns=list(COLUMNS)), tmp_path / "a")
    one = s.tracks.set_index("track").loc[1]
    assert (one["first_s"], one["last_s"]) == (0.0, pytest.approx(38 / 12.5))
    assert summary_module.frame_rate("clip.mp4", pd.DataFrame(rows)) == pytest.approx(12.5)
    # No time_s (an older table): the frame rate comes from the video file when it is there ...
    video = _video_file(tmp_path / "real.mp4", fps=8)
    rows = _video_rows(str(video), rng)
    s = summarize_video(pd.DataFrame(rows, columns=list(COLUMNS)), tmp_path / "b")
    one = s.tracks.set_index("track").loc[1]
    assert one["last_s"] == pytest.approx(38 / 8)
    # ... and without either, frames only.
    rows = _video_rows(str(tmp_path / "gone.mp4"), rng)
    s = summarize_video(pd.DataFrame(rows, columns=list(COLUMNS)), tmp_path / "c")
    assert s.tracks["first_s"].isna().all() and s.tracks["first_frame"].notna().all()


def test_timeline_colours_are_the_annotated_video_colours(tmp_path):
    rng = np.random.default_rng(5)
    rows = [_person("v.mp4", f, t, rng, track_id=t) for f in range(4) for t in (3, 7, 12)]
    people = summary_module.normalise_predictions(pd.DataFrame(rows, columns=list(COLUMNS)))
    people["track"], people["tracked"] = summary_module._track_ids(people)
    tracks = summary_module._track_stats(people, top_k=3)
    fig = summary_module._timeline_figure("v.mp4", people, tracks, top_k=3, max_tracks=6)
    lines = {line.get_label(): line.get_color() for line in fig.axes[0].get_lines()}
    for t in (3, 7, 12):
        assert tuple(lines[f"track {t}"][:3]) == pytest.approx(track_colour_float(t))
        # the same colour as the annotated video draws for that track id
        assert tuple(round(c * 255) for c in lines[f"track {t}"][:3]) == track_colour(t)


def test_summarize_names_an_unsupported_table_type(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# notes\n")
    assert main(["summarize", str(readme), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "'.md' is not a prediction table type" in err and ".jsonl" in err and "not valid JSON" not in err
