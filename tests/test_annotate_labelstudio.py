"""The annotation workflow against a real Label Studio on 127.0.0.1, and its labelling page in Chromium.

Not part of the default run (marker ``labelstudio``): ``make test-annotate`` runs it, as CI does on every run.
The first run installs Label Studio (the pinned version) into its own virtual environment
($EMOCTX_LABEL_STUDIO_HOME, else the user cache), which needs the package registry; Chromium is Debian's
(``apt-get install chromium``; $EMOCTX_CHROMIUM names another binary), driven by Playwright.

One ``emoctx annotate serve`` process serves the module: tasks made from a prediction table (boxes and
suggestions as pre-annotations), two accounts, two annotators per task. The tests run in file order: the
labelling page first (before anybody has labelled), then two annotators' labels submitted through the API,
exported and converted, then Ctrl-C.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from emoctx import labels
from emoctx.annotate.client import LabelStudioClient
from emoctx.annotate.server import read_accounts
from emoctx.cli import main
from emoctx.data.records import read_records
from emoctx.inference.results import COLUMNS, PROB_COLUMNS
from emoctx.inference.writers import write_predictions
from emoctx.inference.yolo_weights import import_ultralytics
from emoctx.metrics import agreement_from_records

pytestmark = pytest.mark.labelstudio

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("EMOCTX_TEST_ARTIFACTS", REPO / "runs" / "test-artifacts"))
START_TIMEOUT = 900  # a first run installs Label Studio from the registry (about 1-2 minutes here)
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# The prediction table the tasks come from: the model's boxes, categories and V/A/D for two photos.
PREDICTED = {
    ("bus.jpg", 0): ((50, 400, 245, 905), ["Engagement", "Happiness"], (6.6, 4.2, 5.5)),
    ("bus.jpg", 1): ((670, 380, 810, 880), ["Anticipation"], (5.2, 3.9, 5.0)),
    ("sub/zidane.jpg", 0): ((120, 40, 1150, 715), ["Confidence"], (7.1, 5.0, 7.4)),
}
SIZES = {"bus.jpg": (810, 1080), "sub/zidane.jpg": (1280, 720)}

# What each annotator submits per person: categories, V/A/D, gender, age. Annotator 2 gives one valence the
# config forbids (42), which the server stores and the export must catch.
SUBMITTED = {
    ("bus.jpg", 0): (
        (["Engagement", "Happiness"], [7, 4, 6], "Male", "Adult"),
        (["Confidence", "Happiness"], [8, 5, 6], "Male", "Adult"),
    ),
    ("bus.jpg", 1): (
        (["Anticipation"], [5, 4, 5], "Male", "Adult"),
        (["Anticipation", "Disconnection"], [42, 3, 5], "Male", "Teenager"),
    ),
    ("sub/zidane.jpg", 0): (
        (["Confidence", "Engagement"], [7, 6, 8], "Male", "Adult"),
        (["Confidence"], [6, 6, 7], "Female", "Adult"),
    ),
}


def _prediction_table(photos: Path, path: Path) -> Path:
    rows = []
    for (image, person), (box, cats, vad) in PREDICTED.items():
        r = {c: None for c in COLUMNS}
        w, h = SIZES[image]
        r.update(source=str(photos / image), frame=-1, person=person, det_score=0.9 - 0.05 * person, width=w,
                 height=h, categories=cats, model="emoctx-test.safetensors@0123456789ab")  # fmt: skip
        r.update(dict(zip(("x1", "y1", "x2", "y2"), box)))
        r.update({p: 0.05 for p in PROB_COLUMNS})
        r.update({f"p_{labels.SLUGS[labels.CATEGORY_INDEX[c]]}": 0.8 for c in cats})
        r.update(dict(zip(labels.VAD_NAMES, vad)))
        rows.append(r)
    return write_predictions(rows, path)


def _listening(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) with a listening TCP socket on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            address, hex_port = parts[1].rsplit(":", 1)
            if int(hex_port, 16) == port and parts[3] == "0A":  # 0A: LISTEN
                found.add(address)
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("label-studio")
    photos = base / "photos"
    (photos / "sub").mkdir(parents=True)
    assets = import_ultralytics().utils.ASSETS
    shutil.copy(assets / "bus.jpg", photos / "bus.jpg")
    shutil.copy(assets / "zidane.jpg", photos / "sub" / "zidane.jpg")
    table = _prediction_table(photos, base / "table.jsonl")
    tasks = base / "tasks.json"
    assert (
        main(["annotate", "tasks", "--predictions", str(table), "--root", str(photos), "--out", str(tasks)])
        == 0
    )
    data = base / "server"
    log_path = base / "serve.log"
    cmd = [sys.executable, "-m", "emoctx", "annotate", "serve", str(photos), "--tasks", str(tasks)]
    cmd += ["--overlap", "2", "--port", "0", "--data-dir", str(data)]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO)
    deadline = time.monotonic() + START_TIMEOUT
    while "Serving; press Ctrl-C" not in log_path.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"emoctx annotate serve did not come up:\n{log_path.read_text()[-4000:]}")
        time.sleep(1)
    state = json.loads((data / "emoctx-project.json").read_text())
    yield SimpleNamespace(
        proc=proc,
        url=state["url"],
        project=state["project"],
        accounts=read_accounts(data),
        base=base,
        photos=photos,
        tasks=tasks,
        data=data,
        log=log_path,
    )
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def _task_of(client: LabelStudioClient, project: int, image: str) -> dict:
    (task,) = [t for t in client.tasks(project) if t["data"]["emoctx_image"] == image]
    return client.request("GET", f"/api/tasks/{task['id']}")


def test_server_listens_on_loopback_only(served):
    port = int(served.url.rsplit(":", 1)[1])
    assert served.url.startswith("http://127.0.0.1:")
    assert _listening(port) == {"0100007F"}  # 127.0.0.1, and no 0.0.0.0 / :: socket
    assert (
        f"Log in as (one account per annotator):\n  {served.accounts[0].email}  password"
        in served.log.read_text()
    )
    client = LabelStudioClient(served.url, served.accounts[1].token)
    assert client.whoami()["email"] == "annotator2@localhost"  # the second account's token works
    (project,) = [p for p in client.projects() if p["id"] == served.project]
    assert project["maximum_annotations"] == 2 and "perRegion" in project["label_config"]


def test_labelling_page_shows_the_pre_annotated_person_and_controls(served):
    from playwright.sync_api import sync_playwright

    chromium = (
        os.environ.get("EMOCTX_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if chromium is None:
        pytest.fail("no Chromium: install Debian's ('apt-get install -y chromium') or set EMOCTX_CHROMIUM")
    account = served.accounts[0]
    task = _task_of(LabelStudioClient(served.url, account.token), served.project, "bus.jpg")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "label_studio_task.png"
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        browser = p.chromium.launch_persistent_context(
            profile,
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 2300},
        )
        try:
            page = browser.new_page()
            page.goto(f"{served.url}/user/login/")
            page.fill("input[name=email]", account.email)
            page.fill("input[name=password]", account.password)
            page.click("button[type=submit]")
            page.wait_for_url(lambda url: "/user/login" not in url, timeout=60_000)
            page.goto(f"{served.url}/projects/{served.project}/data?task={task['id']}")
            regions = page.locator(".lsf-outliner-item")
            regions.first.wait_for(timeout=120_000)
            assert regions.count() == 2  # the two predicted persons of the photo
            assert "0.90" in regions.first.inner_text()  # with the detector's score
            page.wait_for_function(
                "() => [...document.images].some(i => i.src.includes('local-files') && i.naturalWidth === 810)",
                timeout=60_000,
            )  # the photo itself came from the local-files storage
            regions.first.click()
            page.get_by_text("Valence 1-10", exact=False).first.wait_for(timeout=30_000)

            def box(name: str):
                return page.locator(f"input.ant-checkbox-input[name='{name}']")

            assert box("Happiness").is_checked() and box("Engagement").is_checked()  # the model's suggestion
            assert not box("Anger").is_checked() and box("Yearning").count() == 1  # all 26 offered
            assert (
                page.locator("input[type=number]").first.input_value() == "7"
            )  # 6.6 rounded to a whole point
            for header in ("Arousal 1-10", "Dominance 1-10", "Gender", "Age"):
                assert page.get_by_text(header, exact=False).first.is_visible()
            page.locator("label.lsf-choice__checkbox", has_text="Affection").hover()
            page.get_by_text(labels.CATEGORY_DEFINITIONS["Affection"]).wait_for(timeout=10_000)  # the hint
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 50_000


def _result(task: dict, image: str, annotator: int) -> list[dict]:
    """What the labelling page submits: each predicted box, and the annotator's answers carrying its id."""
    (prediction,) = task["predictions"]
    out = []
    for item in prediction["result"]:
        if item["type"] != "rectanglelabels":
            continue
        rid = item["id"]
        cats, vad, gender, age = SUBMITTED[image, task["data"]["emoctx_regions"][rid]][annotator]
        geometry = {k: item["value"][k] for k in ("x", "y", "width", "height", "rotation")}
        out.append(
            {
                k: item[k]
                for k in ("id", "type", "from_name", "to_name", "original_width", "original_height", "value")
            }
        )
        answers = [("categories", "choices", cats), *zip(labels.VAD_NAMES, ["number"] * 3, vad)]
        answers += [("gender", "choices", [gender]), ("age", "choices", [age])]
        for name, kind, value in answers:
            out.append(
                {
                    "id": rid,
                    "type": kind,
                    "from_name": name,
                    "to_name": "image",
                    "value": {**geometry, kind: value},
                }
            )
    return out


def test_round_trip_two_annotators_export_and_convert(served, tmp_path, capsys):
    clients = [LabelStudioClient(served.url, a.token) for a in served.accounts]
    ids = {}
    for image in SIZES:
        task = _task_of(clients[0], served.project, image)
        ids[image] = task["id"]
        for annotator, client in enumerate(clients):
            client.submit_annotation(task["id"], _result(task, image, annotator), lead_time=3.0)

    out = tmp_path / "photos" / "annotations"
    code = main(["annotate", "export", "--data-dir", str(served.data), "--out", str(out), "--split", "val"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "2 tasks, 4 annotations by 2 annotator(s): annotator1@localhost, annotator2@localhost" in printed
    df = read_records(out / "val.parquet")
    assert sorted(zip(df["image"], df["person"])) == sorted(SUBMITTED)
    for row in df.to_dict("records"):
        key = (row["image"], row["person"])
        first, second = SUBMITTED[key]
        assert list(row["annotators"]) == ["annotator1@localhost", "annotator2@localhost"]
        assert row["annotator_categories"] == [
            sorted(first[0], key=labels.CATEGORY_INDEX.get),
            sorted(second[0], key=labels.CATEGORY_INDEX.get),
        ]
        assert row["annotator_vad"][0] == first[1]
        assert row["annotator_vad"][1] == [
            v if v != 42 else pytest.approx(float("nan"), nan_ok=True) for v in second[1]
        ]
        both = [
            c for c in labels.CATEGORIES if c in first[0] and c in second[0]
        ]  # two annotators: both must agree
        assert row["categories"] == both
        assert (row["width"], row["height"]) == SIZES[row["image"]]
        assert [row[c] for c in ("x1", "y1", "x2", "y2")] == pytest.approx(PREDICTED[key][0], abs=1e-3)
        assert row["ls_task"] == ids[row["image"]] and row["split"] == "val"
    bus1 = df[(df["image"] == "bus.jpg") & (df["person"] == 1)].iloc[0]
    assert bus1["valence"] == 5.0 and bus1["age"] is None  # 42 set to missing; Adult vs Teenager: a tie
    zidane = df[df["image"] == "sub/zidane.jpg"].iloc[0]
    assert (zidane["valence"], zidane["arousal"], zidane["dominance"]) == (
        7.0,
        6.0,
        8.0,
    )  # 6.5 and 7.5 half up
    assert zidane["gender"] is None and zidane["age"] == "Adult"

    report = [json.loads(line) for line in (out / "conversion_report.jsonl").read_text().splitlines()]
    (bad,) = [e for e in report if e["field"] == "valence"]
    assert bad["action"] == "repaired" and bad["image"] == "bus.jpg"
    assert (
        f"task {ids['bus.jpg']}, annotation " in bad["reason"]
        and "(annotator2@localhost), region p1" in bad["reason"]
    )
    assert "valence 42 is not a whole number 1-10" in bad["reason"]
    saved = json.loads((out / "label_studio_export.json").read_text())
    assert len(saved) == 2 and all(len(t["annotations"]) == 2 for t in saved)

    agreement = agreement_from_records(df, min_annotators=2)  # what 'emoctx evaluate' reports
    assert agreement["categories"]["num_persons"] == 3
    assert main(["annotate", "agreement", str(out / "val.parquet")]) == 0
    assert "| annotator1@localhost | 3 |" in capsys.readouterr().out


def test_ctrl_c_stops_the_server_and_a_restart_reopens_the_project(served, capsys):
    port = int(served.url.rsplit(":", 1)[1])
    served.proc.send_signal(signal.SIGINT)
    assert served.proc.wait(60) == 0
    assert "Stopping Label Studio" in served.log.read_text()
    assert not _listening(port)
    code = main(["annotate", "serve", str(served.photos), "--tasks", str(served.tasks), "--overlap", "2",
                 "--port", "0", "--data-dir", str(served.data), "--no-wait"])  # fmt: skip
    assert code == 0
    assert f"Project {served.project} reopened" in capsys.readouterr().out
