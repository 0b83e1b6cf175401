from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emoctx import cli, labels
from emoctx.data import synth
from emoctx.data.records import read_records, validate_records
from emoctx.errors import EmoctxError

ROOT = Path(__file__).resolve().parents[1]


def _cat(slug: str) -> str:
    name = labels.canonical_category(slug)
    assert name is not None
    return name


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "ds"
    frames = synth.generate(out, n_train=10, n_val=6, n_test=6, seed=3, progress=False)
    return out, frames


# --- the rules -------------------------------------------------------------------------------------------------


def test_every_category_has_one_group_and_groups_are_disjoint():
    groups = synth.category_groups()
    assert set(groups) == {"body", "scene", "both"}
    members = [c for cats in groups.values() for c in cats]
    assert len(members) == len(set(members)) == len(synth.used_categories())
    assert all(len(cats) >= 4 for cats in groups.values())
    assert set(members) <= set(labels.CATEGORIES)
    # "most categories appear": at least three quarters of the label space is used
    assert len(members) >= 0.75 * labels.NUM_CATEGORIES


def test_scene_categories_depend_only_on_the_place():
    groups = synth.category_groups()
    for place in synth.PLACES:
        seen = set()
        for pose in synth.POSES:
            for acc in synth.ACCESSORIES:
                for age in labels.AGES:
                    cats = synth.rule_categories(synth.Cues(place, pose, acc, age))
                    seen.add(tuple(c for c in cats if c in groups["scene"]))
        assert len(seen) == 1, place


def test_body_categories_do_not_depend_on_the_place():
    groups = synth.category_groups()
    for pose in synth.POSES:
        for acc in synth.ACCESSORIES:
            seen = {
                tuple(
                    c for c in synth.rule_categories(synth.Cues(p, pose, acc, "Kid")) if c in groups["body"]
                )
                for p in synth.PLACES
            }
            assert len(seen) == 1


def test_both_categories_need_the_person_and_the_place():
    # for every "both" category: some place changes it with the person fixed, and some person cue changes it
    # with the place fixed
    for name in synth.category_groups()["both"]:
        by_place = any(
            len({name in synth.rule_categories(synth.Cues(p, pose)) for p in synth.PLACES}) == 2
            for pose in synth.POSES
        )
        by_pose = any(
            len({name in synth.rule_categories(synth.Cues(place, pose)) for pose in synth.POSES}) == 2
            for place in synth.PLACES
        )
        assert by_place and by_pose, name


def test_rule_examples():
    party_up = synth.rule_categories(synth.Cues(place="party", pose="arms_up"))
    hospital_up = synth.rule_categories(synth.Cues(place="hospital", pose="arms_up"))
    assert _cat("happiness") in party_up and _cat("excitement") in party_up
    assert _cat("fear") in hospital_up and _cat("happiness") not in hospital_up
    assert _cat("disquietment") in hospital_up and _cat("engagement") in party_up
    crossed = synth.rule_categories(synth.Cues(place="beach", pose="arms_crossed", accessory="bag"))
    assert {_cat("disapproval"), _cat("confidence"), _cat("anticipation"), _cat("peace")} <= set(crossed)
    assert _cat("esteem") in synth.rule_categories(synth.Cues("office", "arms_down", "hat", "Adult"))
    assert _cat("esteem") not in synth.rule_categories(synth.Cues("office", "arms_down", "hat", "Kid"))
    # canonical order
    assert list(party_up) == [c for c in labels.CATEGORIES if c in party_up]


def test_rule_vad_follows_the_terms():
    happy = synth.rule_vad(synth.Cues("party", "arms_up", "none", "Adult"))
    sad = synth.rule_vad(synth.Cues("hospital", "slumped", "none", "Kid"))
    assert happy[0] == pytest.approx(5.5 + 2.0 + 1.5)
    assert happy[1] == pytest.approx(5.5 + 1.5 + 2.5)
    assert happy[2] == pytest.approx(5.5 + 1.0 + 0.5)
    assert sad[0] == labels.VAD_MIN  # 5.5 - 2 - 2.5 = 1.0
    assert all(s < h for s, h in zip(sad, happy))
    for cues in (synth.Cues(p, q) for p in synth.PLACES for q in synth.POSES):
        assert all(labels.VAD_MIN <= v <= labels.VAD_MAX for v in synth.rule_vad(cues))


def test_cues_reject_unknown_values():
    with pytest.raises(ValueError, match="pose"):
        synth.Cues(place="party", pose="cartwheel")


def test_annotators_add_noise_and_majority_vote_recovers_truth():
    truth = synth.rule_labels(synth.Cues("party", "arms_up", "bag", "Adult"))
    rng = np.random.default_rng(0)
    anns = [synth.simulate_annotator(truth, rng) for _ in range(400)]
    exact = np.mean([tuple(c) == truth.categories for c, _ in anns])
    assert 0.3 < exact < 0.9  # noisy, but mostly right
    assert all(v == int(v) and labels.VAD_MIN <= v <= labels.VAD_MAX for _, vad in anns for v in vad)
    combined = [synth.combine_annotations(anns[i : i + 3])[0] for i in range(0, 399, 3)]
    assert np.mean([tuple(c) == truth.categories for c in combined]) > exact
    cats, vad = synth.combine_annotations(
        [(["Anger"], [2, 5, 9]), (["Anger", "Fear"], [3, 6, 9]), ([], [3, 6, 9])]
    )
    assert cats == ["Anger"] and vad == [3.0, 6.0, 9.0]  # mean 2.67 -> 3, 5.67 -> 6


def test_doc_mirrors_the_rules():
    doc = (ROOT / "annotations" / "synth.md").read_text(encoding="utf-8")
    assert synth.rules_markdown() in doc
    for dim, cues in synth.VAD_TERMS.items():
        for cue in cues:
            assert f"| {dim} | {cue} |" in doc
    # with faces: the face rules, the expression prior and the expression's V/A terms
    from emoctx.data.synth.rules import EXPRESSION_PRIOR, FACE_VAD_TERMS, P_FACING_AWAY

    assert synth.rules_markdown(faces=True) in doc
    assert f"probability **{P_FACING_AWAY}**" in doc
    prior = " | ".join(f"{p:.2f}" for p in EXPRESSION_PRIOR.values())
    assert f"| {prior} |" in doc
    for dim, terms in FACE_VAD_TERMS.items():
        cells = " | ".join(f"{t:+.1f}" if t else "0" for t in terms.values())
        assert f"| {dim} | {cells} |" in doc


# --- rendering -------------------------------------------------------------------------------------------------


def test_place_is_invisible_inside_person_boxes():
    cues = [synth.Cues("beach", "arms_up", "hat"), synth.Cues("beach", "slumped", "bag", "Kid")]
    images = {}
    for place in ("beach", "party", "hospital"):
        img, boxes = synth.render_image(place, cues, (320, 240), np.random.default_rng(7))
        images[place] = (np.asarray(img), boxes)
    ref, ref_boxes = images["beach"]
    for place, (arr, boxes) in images.items():
        assert boxes == ref_boxes
        for x1, y1, x2, y2 in boxes:
            crop = (slice(int(y1), int(y2)), slice(int(x1), int(x2)))
            np.testing.assert_array_equal(arr[crop], ref[crop])
        if place != "beach":
            assert not np.array_equal(arr[:60], ref[:60])  # the backdrops differ


# --- generated dataset -----------------------------------------------------------------------------------------


def test_generate_writes_valid_records_and_images(small):
    out, frames = small
    assert set(frames) == set(labels.SPLITS)
    for split, n_images in (("train", 10), ("val", 6), ("test", 6)):
        df = read_records(out / "annotations" / f"{split}.parquet")
        validate_records(df)
        assert df["image"].nunique() == n_images
        assert (df["split"] == split).all() and (df["source"] == "synth").all()
        assert df.groupby("image").size().between(1, 4).all()
        assert df.groupby("image")["person"].apply(lambda s: sorted(s) == list(range(len(s)))).all()
        assert df["age"].isin(labels.AGES).all() and df["gender"].isin(labels.GENDERS).all()
        assert len(df) == len(frames[split])
        for row in df.itertuples():
            path = out / row.image
            assert path.is_file() and not Path(row.image).is_absolute()
            with Image.open(path) as im:
                assert im.size == (row.width, row.height) == (320, 240)
            assert 0 <= row.x1 < row.x2 <= row.width and 0 <= row.y1 < row.y2 <= row.height
            assert row.image.split("/")[1] == row.synth_place
    manifest = json.loads((out / synth.MANIFEST).read_text())
    assert manifest["seed"] == 3 and manifest["images"] == {"train": 10, "val": 6, "test": 6}


def test_annotators_per_split(small):
    _, frames = small
    assert all(len(a) == 0 for a in frames["train"]["annotator_categories"])
    assert all(len(a) == 0 for a in frames["train"]["annotator_vad"])
    for split in ("val", "test"):
        for row in frames[split].itertuples():
            assert len(row.annotator_categories) == len(row.annotator_vad) == synth.N_ANNOTATORS
            cats, vad = synth.combine_annotations(list(zip(row.annotator_categories, row.annotator_vad)))
            assert cats == row.categories
            assert vad == [row.valence, row.arousal, row.dominance]


def test_labels_follow_the_rules_up_to_noise(small):
    _, frames = small
    df = frames["val"]
    agree = []
    for row in df.itertuples():
        truth = synth.rule_categories(
            synth.Cues(row.synth_place, row.synth_pose, row.synth_accessory, row.age)
        )
        agree.append(set(row.categories) == set(truth))
    assert np.mean(agree) > 0.6


def test_same_seed_gives_identical_files_and_other_seed_differs(small, tmp_path):
    out, _ = small
    again = tmp_path / "again"
    synth.generate(again, n_train=10, n_val=6, n_test=6, seed=3, progress=False, workers=2)
    for split in labels.SPLITS:
        name = f"annotations/{split}.parquet"
        assert (again / name).read_bytes() == (out / name).read_bytes()
    images = sorted(p.relative_to(out) for p in (out / "images").rglob("*.jpg"))
    assert images == sorted(p.relative_to(again) for p in (again / "images").rglob("*.jpg"))
    assert all((again / p).read_bytes() == (out / p).read_bytes() for p in images)

    other = tmp_path / "other"
    synth.generate(other, n_train=10, n_val=0, n_test=0, seed=4, progress=False)
    assert (other / "annotations/train.parquet").read_bytes() != (
        out / "annotations/train.parquet"
    ).read_bytes()


def test_refuses_foreign_or_existing_output(tmp_path, small):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(EmoctxError, match="not an EMOTIC-synth output"):
        synth.generate(foreign, n_train=1, n_val=0, n_test=0, progress=False)
    out = tmp_path / "ds"
    synth.generate(out, n_train=2, n_val=0, n_test=0, progress=False)
    with pytest.raises(EmoctxError, match="--overwrite"):
        synth.generate(out, n_train=1, n_val=0, n_test=0, progress=False)
    frames = synth.generate(out, n_train=1, n_val=0, n_test=0, progress=False, overwrite=True)
    assert frames["train"]["image"].nunique() == 1
    assert len(list((out / "images").rglob("*.jpg"))) == 1
    with pytest.raises(EmoctxError, match="too small"):
        synth.generate(tmp_path / "tiny", image_size=(32, 32), progress=False)


def test_category_counts_table(small):
    _, frames = small
    table = synth.category_counts(frames)
    assert list(table.index) == list(synth.used_categories())
    assert list(table.columns) == ["group", *labels.SPLITS]
    assert table["train"].sum() == sum(len(c) for c in frames["train"]["categories"])


# --- command line ----------------------------------------------------------------------------------------------


def test_cli_synth_writes_files_and_prints_summary(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["synth", "--out", str(out), "--train", "4", "--val", "2", "--test", "2", "--size", "160x120"]
    rc = cli.main([*argv, "--seed", "1", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    df = read_records(out / "annotations" / "train.parquet")
    assert (df["width"] == 160).all() and (df["height"] == 120).all()
    assert f"train:     4 images, {len(df):5d} persons" in text
    assert _cat("engagement") in text and str(out) in text
    # a second run without --overwrite is refused with a message, not a traceback
    assert cli.main([*argv, "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
