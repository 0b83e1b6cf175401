"""Scale-out prediction from records with Trainer.predict: 2 DDP processes, shards, merge, exactly-once output."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from emoctx import labels
from emoctx.checkpoint import describe, load_model, save_model
from emoctx.data.dataset import collate
from emoctx.data.records import read_records, write_records
from emoctx.data.synth import generate
from emoctx.errors import EmoctxError
from emoctx.inference.distributed import datamodule_for, merge_shards, predict_records, shard_path
from emoctx.inference.results import COLUMNS, PROB_COLUMNS
from emoctx.models.backbones import StreamConfig
from emoctx.models.network import EmotionNet
from emoctx.models.outputs import ScoringNet

REPO = Path(__file__).resolve().parents[1]
COMMAND = "predict-records"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny model and an odd number of records (7), one of whose images is corrupt."""
    d = tmp_path_factory.mktemp("scale")
    generate(d / "synth", n_train=1, n_val=1, n_test=5, image_size=(160, 120), seed=0, progress=False)
    df = read_records(d / "synth" / "annotations" / "test.parquet").iloc[:7].reset_index(drop=True)
    assert len(df) == 7 and df["image"].nunique() >= 2
    broken = df["image"].iloc[-1]
    (d / "synth" / broken).write_bytes(b"\xff\xd8 this is no longer a JPEG")
    records = write_records(df, d / "records.parquet")
    net = EmotionNet(
        {
            "body": StreamConfig("test_resnet", input_size=64),
            "scene": StreamConfig("test_resnet", input_size=96),
        },
        hidden=32,
    )
    model = save_model(d / "model.safetensors", net, describe(net))
    return {"dir": d, "root": d / "synth", "records": records, "model": model, "df": df, "broken": broken}


def _check_table(out: pd.DataFrame, s) -> None:
    df = s["df"]
    assert list(out.columns) == ["record", *COLUMNS]
    assert list(out["record"]) == list(range(len(df))), "every record exactly once, in records order"
    assert list(out["source"]) == list(df["image"]) and list(out["person"]) == list(df["person"])
    assert (out["frame"] == -1).all()
    np.testing.assert_allclose(out["x1"], df["x1"])
    bad = out["source"] == s["broken"]
    assert out.loc[bad, "error"].str.contains("cannot read image").all()
    assert out.loc[bad, list(PROB_COLUMNS)].isna().all().all()
    good = out.loc[~bad]
    assert len(good) >= 4 and good["error"].isna().all()
    probs = good[list(PROB_COLUMNS)].to_numpy()
    assert ((probs >= 0) & (probs <= 1)).all()
    assert good["valence"].between(labels.VAD_MIN, labels.VAD_MAX).all()
    # Categories are those at or above the model's thresholds (0.5 when none were calibrated).
    for row_probs, cats in zip(probs, good["categories"]):
        assert list(cats) == [c for c, p in zip(labels.CATEGORIES, row_probs) if p >= 0.5]
    assert good["model"].str.startswith("model.safetensors@").all()


@pytest.fixture(scope="module")
def single(setup):
    out = setup["dir"] / "single.parquet"
    result = predict_records(
        setup["model"], setup["records"], setup["root"], out,
        accelerator="cpu", devices=1, batch_size=3, num_workers=0, progress=False,
    )  # fmt: skip
    assert result is not None and result.rows == 7 and result.world_size == 1
    assert result.errors == int((setup["df"]["image"] == setup["broken"]).sum())
    return pd.read_parquet(out)


def test_single_process_writes_every_record(setup, single):
    _check_table(single, setup)
    assert not list(setup["dir"].glob("single.shard-*")), "shards are removed after the merge"
    # The values are the network's own on the model's preprocessing of the same people.
    net, info = load_model(setup["model"])
    dataset = datamodule_for(info, setup["root"], setup["records"], num_workers=0).dataset("predict")
    good = np.flatnonzero(single["error"].isna().to_numpy())
    batch = collate([dataset[int(i)] for i in good])
    with torch.no_grad():
        scores, vad = ScoringNet(net, info.score_activation)(batch["body"], batch["scene"])
    np.testing.assert_allclose(single.loc[good, list(PROB_COLUMNS)].to_numpy(), scores.numpy(), atol=1e-5)
    np.testing.assert_allclose(single.loc[good, list(labels.VAD_NAMES)].to_numpy(), vad.numpy(), atol=1e-4)
    # The dominant category is the most probable of those listed in 'categories', as 'emoctx predict' gives it.
    for _, row in single.loc[good].iterrows():
        listed = list(row["categories"])
        probs = {c: row[f"p_{s}"] for c, s in zip(labels.CATEGORIES, labels.SLUGS, strict=True)}
        assert row["dominant_category"] == (max(listed, key=probs.get) if listed else None)


def test_two_ddp_processes_give_every_record_once_and_the_same_values(setup, single):
    out = setup["dir"] / "ddp.parquet"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [
        sys.executable, "-m", "emoctx", COMMAND,
        "--model", str(setup["model"]), "--records", str(setup["records"]), "--root", str(setup["root"]),
        "--out", str(out), "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
        "--batch-size", "2", "--workers", "0", "--no-progress",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "by 2 process(es)" in proc.stdout
    # Both processes wrote a shard (the log names them), then rank 0 merged them and removed them.
    assert "rank 0:" in proc.stderr and "rank 1:" in proc.stderr
    assert not list(setup["dir"].glob("ddp.shard-*"))
    ddp = pd.read_parquet(out)
    _check_table(ddp, setup)
    pd.testing.assert_series_equal(ddp["error"].isna(), single["error"].isna())
    cols = [*PROB_COLUMNS, *labels.VAD_NAMES]
    np.testing.assert_allclose(ddp[cols].to_numpy(), single[cols].to_numpy(), atol=1e-5, equal_nan=True)
    assert [list(c) for c in ddp["categories"].dropna()] == [list(c) for c in single["categories"].dropna()]


def _shard(path, records, value):
    n = len(records)
    cols = {"record": pa.array(records, pa.int64())}
    cols.update({c: pa.array(np.full(n, value, np.float32)) for c in PROB_COLUMNS})
    cols.update({d: pa.array(np.full(n, 5.0, np.float32)) for d in labels.VAD_NAMES})
    pq.write_table(pa.table(cols), path)


def test_merge_drops_padding_duplicates_and_needs_every_shard(setup, tmp_path):
    out = tmp_path / "out.parquet"
    # Padded distributed sampling: 7 records over 2 processes, record 0 repeated to give both 4.
    _shard(shard_path(out, 0), [0, 2, 4, 6], 0.7)
    _shard(shard_path(out, 1), [1, 3, 5, 0], 0.2)
    _, info = load_model(setup["model"])
    table, duplicates = merge_shards(out, 2, setup["df"], setup["root"], info, "m@0")
    merged = table.to_pandas()
    assert duplicates == 1 and list(merged["record"]) == list(range(7))
    assert merged.loc[0, "p_happiness"] == pytest.approx(0.7)  # the first prediction of record 0 is kept
    assert list(merged.loc[0, "categories"]) == list(labels.CATEGORIES)
    assert len(merged.loc[1, "categories"]) == 0
    with pytest.raises(EmoctxError, match="shard of process 2 is missing"):
        merge_shards(out, 3, setup["df"], setup["root"], info, "m@0")


def test_output_must_be_parquet(setup, tmp_path):
    with pytest.raises(EmoctxError, match=r"\*\.parquet"):
        predict_records(setup["model"], setup["records"], setup["root"], tmp_path / "out.csv")
