"""Fuzzing the annotation readers with mutated sources written here (fixed seeds, so every run is the same).

Every mutated file must either convert into valid records, with every report entry naming the file, or fail
with an EmoctxError whose message names the file: never another exception, never a crash of this process.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import random
from pathlib import Path

import pytest
from test_readers import shared_content, write_coco, write_kaggle, write_mat

from emoctx.data.readers import ConversionReport, read_coco, read_kaggle, read_mat
from emoctx.data.records import validate_records
from emoctx.errors import EmoctxError


def _deep(n: int) -> list:
    value: list = []
    for _ in range(n):
        value = [value]
    return value


# Values a damaged or hostile file may hold where a reader expects something else.
HOSTILE = [
    None,
    True,
    False,
    0,
    -1,
    2.5,
    1e308,
    -1e308,
    float("nan"),
    float("inf"),
    2**80,
    "",
    "None",
    "1234",
    "x" * 5000,
    "../../../../etc/passwd",
    "a\x00b",
    "\x1b[2J",
    [],
    [0],
    [1, 2, 3, 4, 5],
    ["Peace", 3, None],
    {},
    {"a": 1},
    _deep(300),
]


def _outcome(read, file: Path) -> str:
    """``converted`` or ``error``; anything else (another exception type) propagates to the caller."""
    report = ConversionReport()
    try:
        frames = read(file, report)
    except EmoctxError as e:
        assert str(file) in str(e), f"the error does not name the file: {e}"
        return "error"
    for split, df in frames.items():
        validate_records(df, source=f"{file} ({split})")
    for entry in report:
        assert entry.file == str(file) and len(entry.reason) < 2000, entry
    return "converted"


def _run(cases, read) -> dict[str, int]:
    counts = {"converted": 0, "error": 0}
    failures = []
    for file, what in cases:
        try:
            counts[_outcome(read, file)] += 1
        except Exception as e:  # collected, so that one run names every failing mutation
            failures.append(f"{file.name} ({what}): {type(e).__name__}: {str(e)[:300]}")
    assert not failures, "\n".join(failures)
    return counts


# -- COCO-style JSON -----------------------------------------------------------------------------------------


def _nodes(value, path=()):
    """Every (path, value) of a JSON tree, the root included."""
    yield path, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield from _nodes(child, (*path, key))


def _get(doc, path):
    for key in path:
        doc = doc[key]
    return doc


def _mutate_coco(doc, rng: random.Random) -> tuple[str, str]:
    """Apply one to three mutations to ``doc``, maybe damage the text; returns (text, description)."""
    done = []
    for _ in range(rng.randint(1, 3)):
        nodes = [(p, v) for p, v in _nodes(doc) if p and not isinstance(_get(doc, p[:-1]), str)]
        path, value = rng.choice(nodes)
        parent = _get(doc, path[:-1])
        kind = rng.choice(["replace", "replace", "replace", "delete", "duplicate"])
        if kind == "replace":
            parent[path[-1]] = copy.deepcopy(rng.choice(HOSTILE))
        elif kind == "delete":
            del parent[path[-1]]
        elif isinstance(
            parent, list
        ):  # duplicate: a second copy of a list item (an image, a person, a box value)
            parent.append(copy.deepcopy(value))
        else:
            continue
        shown = "/".join(map(str, path[:8])) + ("/..." if len(path) > 8 else "")
        done.append(f"{kind} {shown}")
    text = json.dumps(doc)
    damage = rng.random()
    if damage < 0.05:
        at = rng.randrange(len(text))
        text = text[:at] + "[" * 100_000 + text[at:]
        done.append(f"100000 '[' at {at}")
    elif damage < 0.10:
        at = rng.randrange(len(text))
        text = text[:at]
        done.append(f"truncated at {at}")
    elif damage < 0.15:
        at = rng.randrange(len(text))
        text = text[:at] + rng.choice('{}[],:"0a\\') + text[at + 1 :]
        done.append(f"character {at} changed")
    return text, "; ".join(done)


def test_fuzz_coco_json(tmp_path):
    content = shared_content()
    base = write_coco(tmp_path / "base", {"val": content["train"] + content["val"] + content["test"]})
    doc = json.loads((base / "EMOTIC_val_x1y1x2y2.json").read_text())
    rng = random.Random(20240610)
    cases = []
    for i in range(200):
        text, what = _mutate_coco(copy.deepcopy(doc), rng)
        file = tmp_path / f"EMOTIC_val_{i:03d}.json"
        file.write_text(text, encoding="utf-8")
        cases.append((file, what))
    counts = _run(cases, lambda f, r: read_coco(f, report=r))
    print(counts)
    assert counts["converted"] > 50 and counts["error"] > 20, counts  # both outcomes are exercised


# -- Kaggle CSV ----------------------------------------------------------------------------------------------


def test_fuzz_kaggle_csv(tmp_path):
    content = shared_content()
    base = write_kaggle(tmp_path / "base", {"val": content["train"] + content["val"] + content["test"]})
    with open(base / "annot_arrs_val.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    cells = [str(v) for v in HOSTILE[:-1]] + ["[1, 2]", "640x", "(1,2,3,4)", '"', ",", "1e999", "-0"]
    rng = random.Random(7)
    cases = []
    for i in range(100):
        table = copy.deepcopy(rows)
        done = []
        for _ in range(rng.randint(1, 4)):
            r = rng.randrange(len(table))
            kind = rng.choice(["cell", "cell", "cell", "drop cell", "extra cell", "duplicate row"])
            if kind == "cell" and table[r]:
                c = rng.randrange(len(table[r]))
                table[r][c] = rng.choice(cells)
            elif kind == "drop cell" and table[r]:
                del table[r][rng.randrange(len(table[r]))]
            elif kind == "extra cell":
                table[r].append(rng.choice(cells))
            elif kind == "duplicate row" and r > 0:
                table.append(list(table[r]))
            done.append(f"{kind} row {r}")
        buf = io.StringIO()
        csv.writer(buf).writerows(table)
        data = buf.getvalue().encode("utf-8")
        if rng.random() < 0.15:  # damage the bytes as well
            data = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data)
            done.append("bytes changed")
        file = tmp_path / f"annot_arrs_val_{i:03d}.csv"
        file.write_bytes(data)
        cases.append((file, "; ".join(done)))
    counts = _run(cases, lambda f, r: read_kaggle(f, splits=["val"], report=r))
    print(counts)
    assert counts["converted"] > 20 and counts["error"] > 10, counts


# -- Annotations.mat -----------------------------------------------------------------------------------------


def _mat_cases(tmp_path, n: int, seed: int):
    good = write_mat(tmp_path / "good.mat", shared_content()).read_bytes()
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        data = bytearray(good)
        changed = []
        for _ in range(rng.choice([1, 2, 4, 8])):
            at = rng.randrange(128, len(data))  # past the 128-byte text header
            data[at] = rng.randrange(256)
            changed.append(at)
        if rng.random() < 0.1:
            data = data[: rng.randrange(128, len(data))]
            changed.append("truncated")
        file = tmp_path / f"Annotations_{i:03d}.mat"
        file.write_bytes(bytes(data))
        cases.append((file, f"bytes {changed}"))
    return cases


def test_fuzz_mat(tmp_path):
    """A few mutated files (each is read in a child process, about half a second); the slow variant has 200."""
    from test_readers import crashing_mat

    cases = _mat_cases(tmp_path, 10, seed=3)
    cases.append((crashing_mat(tmp_path / "crashes_scipy.mat"), "complex flag on a double"))
    counts = _run(cases, lambda f, r: read_mat(f, report=r))
    print(counts)
    assert counts["error"] >= 1 and sum(counts.values()) == 11, counts


@pytest.mark.slow
def test_fuzz_mat_many(tmp_path):
    counts = _run(_mat_cases(tmp_path, 200, seed=0), lambda f, r: read_mat(f, report=r))
    assert counts["converted"] > 10 and counts["error"] > 100, counts
