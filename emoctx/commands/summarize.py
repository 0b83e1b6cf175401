"""Summarise a prediction table (from 'emoctx predict') with tables and plots people can look at.

For still images: summary.md with the files, images, people per image and errors; per category how many people
are predicted to show it and its mean probability; V/A/D statistics (mean, std, quantiles); the same tables
as CSV (overview, categories, vad, people_per_image, errors) and the plots categories.png (category
frequencies) and vad.png (V/A/D distributions). For videos (rows with frame >= 0): per video a
timeline_<name>.png with each track's valence, arousal and dominance and its top categories over frames, with
a second axis in seconds (from the table's time_s, or the video file's frame rate when the file is there),
each track in the colour the annotated video gives it; tracks.csv (per track: its id, frames and seconds,
mean V/A/D, top categories) and video_summary.md. Rows describing failed files are left out of the statistics
and listed.

Examples:
  emoctx summarize runs/photos/predictions.jsonl --out runs/photos/summary
  emoctx summarize predictions.parquet --out summary --threshold 0.5
"""

from __future__ import annotations

import argparse

HELP = "summarise a prediction table: category and V/A/D tables and plots, video timelines"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``summarize`` options to ``parser``."""
    parser.add_argument(
        "predictions", metavar="PREDICTIONS", help="prediction table (.jsonl, .csv or .parquet)"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the tables and plots")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="count a category for a person at this probability or more (default: the model's thresholds, "
        "i.e. the table's 'categories' column)",
    )
    parser.add_argument(
        "--top-k", type=int, default=5, help="categories per track in video timelines (default 5)"
    )
    parser.add_argument(
        "--max-tracks", type=int, default=6, help="tracks drawn per video timeline, the longest (default 6)"
    )


SUMMARY_FILES = (
    *(f"{name}.csv" for name in ("overview", "categories", "vad", "people_per_image", "errors", "tracks")),
    "categories.png",
    "vad.png",
    "summary.md",
    "video_summary.md",
)
"""Files a summary writes besides the video timelines (``timeline_<video>.png``)."""


def run(args: argparse.Namespace) -> int:
    """Read the table, write the summaries, and print where they are."""
    from emoctx.inference.summary import read_summary_table, summarize
    from emoctx.io import check_output_dir

    check_output_dir(args.out, [args.predictions], SUMMARY_FILES)
    df = read_summary_table(args.predictions)
    results = summarize(df, args.out, threshold=args.threshold, top_k=args.top_k, max_tracks=args.max_tracks)
    folder = results.get("folder")
    if folder is not None:
        ov = dict(zip(folder.overview["metric"], folder.overview["value"]))
        print(
            f"{ov['people']} people in {ov['images']} images; {ov['files with errors']} file(s) with errors"
        )
        top = folder.categories.sort_values("people", ascending=False).head(5)
        print(
            "most frequent categories: "
            + ", ".join(f"{c} ({p})" for c, p in zip(top["category"], top["people"]))
        )
        print(
            f"summary: {folder.files['markdown']}; plots: {folder.files['categories_plot']}, {folder.files['vad_plot']}"
        )
    video = results.get("video")
    if video is not None:
        print(f"{len(video.tracks)} track(s) in {len(video.timelines)} video(s); errors: {len(video.errors)}")
        for source, png in video.timelines.items():
            print(f"  {source}: {png}")
        print(f"tracks: {video.files['tracks']}; summary: {video.files['markdown']}")
    return 0
