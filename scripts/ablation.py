"""The miniature of the EMOTIC paper's main result on EMOTIC-synth: body + scene beats either stream alone.

Trains configs/synth_tiny.yaml three times in one run with the same budget (epochs, batch, optimiser, data):
both streams, body only, scene only. Prints test mAP overall and per category group of EMOTIC-synth
(categories that depend on the person only, on the place only, or on both; see annotations/synth.md).

    python scripts/ablation.py --data runs/demo/synth --out runs/ablation [--epochs N]

Writes ablation.json and ablation.md in --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from emoctx import labels
from emoctx.commands.train import train
from emoctx.data.synth import category_groups, generate
from emoctx.io import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"body + scene": ("body", "scene"), "body only": ("body",), "scene only": ("scene",)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="runs/demo/synth", help="EMOTIC-synth folder (generated if missing)")
    ap.add_argument("--out", default="runs/ablation", help="output folder")
    ap.add_argument("--config", default=str(REPO / "configs" / "synth_tiny.yaml"))
    ap.add_argument("--epochs", type=int, default=None, help="override the config's max_epochs")
    args = ap.parse_args()

    data, out = Path(args.data), Path(args.out)
    if not (data / "annotations" / "train.parquet").exists():
        generate(data, seed=0)
    base = yaml.safe_load(Path(args.config).read_text())
    groups = category_groups()
    rows = {}
    for name, streams in VARIANTS.items():
        cfg = json.loads(json.dumps(base))
        net_args = cfg["model"]["net"]["init_args"]
        net_args["streams"] = {s: net_args["streams"][s] for s in streams}
        run = out / name.replace(" + ", "_").replace(" ", "_")
        cfg["trainer"]["default_root_dir"] = str(run)
        cfg["trainer"]["logger"] = False
        cfg["data"]["root"] = str(data)
        if args.epochs:
            cfg["trainer"]["max_epochs"] = args.epochs
        config = run / "ablation_config.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump(cfg))
        start = time.perf_counter()
        res = train(["--config", str(config)])
        seconds = time.perf_counter() - start
        ap_by_cat = {c: res.get(f"test/ap/{s}") for c, s in zip(labels.CATEGORIES, labels.SLUGS)}
        row = {"mAP": res["test/mAP"], "vad_mae": res["test/vad_mae"], "seconds": seconds}
        for g, cats in groups.items():
            vals = [ap_by_cat[c] for c in cats if ap_by_cat[c] is not None]
            row[f"mAP/{g}"] = sum(vals) / len(vals) if vals else float("nan")
        rows[name] = row

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
