"""Which streams a model needs, on EMOTIC-synth: the EMOTIC paper's main result in miniature, and the face's share.

Without ``--faces``: trains configs/synth_tiny.yaml three times in one run with the same budget (epochs, batch,
optimiser, data): both streams, body only, scene only, on EMOTIC-synth (generated if missing).

With ``--faces``: trains configs/synth_faces.yaml five times on EMOTIC-synth with faces (``emoctx synth --faces``,
generated if missing): body + scene + face, every pair (body + scene, body + face, scene + face), and face only.
Every variant keeps the same fusion, losses, tasks and budget; only the streams differ (and the face-derived
V/A head goes with the face stream).

Prints test mAP overall and per category group of EMOTIC-synth (categories that depend on the person's body
only, on the place only, on the face only, or on a combination; see annotations/synth.md) and the V/A/D error.

    python scripts/ablation.py --data runs/demo/synth --out runs/ablation [--epochs N]
    python scripts/ablation.py --faces --data runs/synth_faces/data --out runs/ablation_faces [--epochs N]
        [--variants "body + scene + face" "body + scene" "face only"]

Writes ablation.json and ablation.md in --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import yaml

from emoctx import labels
from emoctx.commands.train import train
from emoctx.data.synth import category_groups, generate
from emoctx.io import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"body + scene": ("body", "scene"), "body only": ("body",), "scene only": ("scene",)}
FACE_VARIANTS = {
    "body + scene + face": ("body", "scene", "face"),
    "body + scene": ("body", "scene"),
    "body + face": ("body", "face"),
    "scene + face": ("scene", "face"),
    "face only": ("face",),
}
FACE_COLUMNS = {
    "face": ("face",),
    "body": ("body",),
    "scene": ("scene",),
    "comb.": ("both", "face+scene", "face+body"),
}
"""With faces: the table's group columns (combinations: every category that needs two kinds of cues)."""


def variant_config(base: dict[str, Any], streams: tuple[str, ...]) -> dict[str, Any]:
    """The config of one variant: the base config with only ``streams`` (face options only with a face)."""
    cfg = json.loads(json.dumps(base))
    net_args = cfg["model"]["net"]["init_args"]
    net_args["streams"] = {s: net_args["streams"][s] for s in streams}
    if "face" not in streams:
        for key in ("face", "face_va"):
            net_args.pop(key, None)
        cfg["model"].pop("face_va_weight", None)
    dropout = {s: p for s, p in (net_args.get("modality_dropout") or {}).items() if s in streams}
    if "modality_dropout" in net_args:
        net_args["modality_dropout"] = dropout or None
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--faces", action="store_true", help="the face stream's ablation on EMOTIC-synth with faces"
    )
    ap.add_argument("--data", default=None, help="EMOTIC-synth folder (generated if missing)")
    ap.add_argument("--out", default=None, help="output folder")
    ap.add_argument("--config", default=None, help="the base config (default synth_tiny, or synth_faces)")
    ap.add_argument("--epochs", type=int, default=None, help="override the config's max_epochs")
    ap.add_argument("--train-images", type=int, default=None, help="generate this many training images")
    ap.add_argument(
        "--variants",
        nargs="+",
        default=None,
        metavar="NAME",
        help="train only these variants, by name (e.g. 'body + scene + face' 'face only'); default all",
    )
    args = ap.parse_args()

    faces = args.faces
    data = Path(args.data or ("runs/synth_faces/data" if faces else "runs/demo/synth"))
    out = Path(args.out or ("runs/ablation_faces" if faces else "runs/ablation"))
    config_path = args.config or str(REPO / "configs" / ("synth_faces.yaml" if faces else "synth_tiny.yaml"))
    if not (data / "annotations" / "train.parquet").exists():
        extra = {} if args.train_images is None else {"n_train": args.train_images}
        generate(data, seed=0, faces=faces, workers=2, **extra)
    else:  # data made before: it must be what was asked for, or the table would describe other data
        made = json.loads((data / "synth.json").read_text()) if (data / "synth.json").is_file() else {}
        if bool(made.get("faces")) != faces:
            ap.error(
                f"--data {data}: made {'with' if made.get('faces') else 'without'} faces; pass another --data"
            )
        trained = made.get("images", {}).get("train")
        if args.train_images is not None and trained != args.train_images:
            ap.error(
                f"--data {data}: has {trained} training images, not {args.train_images}; pass another --data"
            )
    base = yaml.safe_load(Path(config_path).read_text())
    groups = category_groups(faces)
    variants = FACE_VARIANTS if faces else VARIANTS
    if args.variants:
        unknown = [v for v in args.variants if v not in variants]
        if unknown:
            ap.error(f"--variants: unknown {unknown}; choose from {list(variants)}")
        variants = {name: variants[name] for name in args.variants}
    rows = {}
    for name, streams in variants.items():
        cfg = variant_config(base, streams)
        run = out / name.replace(" + ", "_").replace(" ", "_")
        cfg["trainer"]["default_root_dir"] = str(run)
        cfg["trainer"]["logger"] = False
        cfg["data"]["root"] = str(data)
        if args.epochs:
            cfg["trainer"]["max_epochs"] = args.epochs
        config = run / "ablation_config.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        start = time.perf_counter()
        res = train(["--config", str(config)])
        seconds = time.perf_counter() - start
        ap_by_cat = {c: res.get(f"test/ap/{s}") for c, s in zip(labels.CATEGORIES, labels.SLUGS)}
        row = {"mAP": res["test/mAP"], "vad_mae": res["test/vad_mae"], "seconds": seconds}
        for d in labels.VAD_NAMES:
            row[f"vad_mae/{d}"] = res.get(f"test/vad_mae/{d}")
        for g, cats in groups.items():
            vals = [ap_by_cat[c] for c in cats if ap_by_cat[c] is not None]
            row[f"mAP/{g}"] = sum(vals) / len(vals) if vals else float("nan")
        if faces:
            for column, parts in FACE_COLUMNS.items():
                cats = [c for g in parts for c in groups[g]]
                vals = [ap_by_cat[c] for c in cats if ap_by_cat[c] is not None]
                row[f"mAP/{column}"] = sum(vals) / len(vals) if vals else float("nan")
        rows[name] = row
        print(f"{name}: {json.dumps(row)}", flush=True)

    if faces:
        header = (
            "| model | test mAP | mAP face cats | mAP body cats | mAP scene cats | mAP comb. cats | V MAE | A MAE "
            "| D MAE | V/A/D MAE | train+test s |"
        )
        lines = [header, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for name, r in rows.items():
            lines.append(
                f"| {name} | {100 * r['mAP']:.1f} | {100 * r['mAP/face']:.1f} | {100 * r['mAP/body']:.1f} | "
                f"{100 * r['mAP/scene']:.1f} | {100 * r['mAP/comb.']:.1f} | {r['vad_mae/valence']:.2f} | "
                f"{r['vad_mae/arousal']:.2f} | {r['vad_mae/dominance']:.2f} | {r['vad_mae']:.2f} | "
                f"{r['seconds']:.0f} |"
            )
        counts = ", ".join(f"{c}: {sum(len(groups[g]) for g in parts)}" for c, parts in FACE_COLUMNS.items())
    else:
        header = (
            "| model | test mAP | mAP body cats | mAP scene cats | mAP both cats | V/A/D MAE | train+test s |"
        )
        lines = [header, "|---|--:|--:|--:|--:|--:|--:|"]
        for name, r in rows.items():
            lines.append(
                f"| {name} | {100 * r['mAP']:.1f} | {100 * r['mAP/body']:.1f} | {100 * r['mAP/scene']:.1f} | "
                f"{100 * r['mAP/both']:.1f} | {r['vad_mae']:.2f} | {r['seconds']:.0f} |"
            )
        counts = ", ".join(f"{g}: {len(c)}" for g, c in groups.items())
    table = (
        "\n".join(lines)
        + f"\n\nCategory groups of EMOTIC-synth ({counts}); mAP in percent on the test split.\n"
    )
    atomic_write_text(out / "ablation.md", table)
    atomic_write_text(out / "ablation.json", json.dumps(rows, indent=2))
    print(table)


if __name__ == "__main__":
    main()
