"""pipelines.medical.sources.mimic.pull_mimic against a real HTTP server on 127.0.0.1 that requires HTTP Basic
authentication, as PhysioNet does, serving a tiny copy of both projects in PhysioNet's layout:

    files/mimic-cxr-jpg/2.1.0/   mimic-cxr-2.0.0-{metadata,chexpert,split}.csv.gz, SHA256SUMS.txt,
                                 files/pXX/pYYY/sZZZ/<dicom_id>.jpg
    files/mimic-cxr/2.1.0/       mimic-cxr-reports.zip, SHA256SUMS.txt, files/pXX/pYYY/sZZZ.txt

The images are JPEGs written with PIL, the CSVs carry the real column names, the reports the real
section headings. Credentials only ever come from PHYSIONET_USERNAME / PHYSIONET_PASSWORD.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import http.server
import logging
import os
import threading
import traceback
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.fetch import FetchError
from pipelines.medical.sources import mimic as M
from pipelines.medical.sources.nih import FINDINGS
from pipelines.medical.sources.shards import ShardReader

USER, PASSWORD = "dr-reader-4821", "Pa55-w0rd-never-shown"

# dicom_id -> (subject_id, study_id, ViewPosition, split); rows are written in this (unsorted) order
DICOMS = {
    "68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714": (10000764, 57375967, "AP", "validate"),
    "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962": (10000032, 50414267, "LATERAL", "train"),
    "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014": (10000032, 50414267, "PA", "train"),
    "ffffffff-00000000-11111111-22222222-33333333": (10000898, 50771383, "PA", "train"),  # no labels
    "2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab": (10000032, 53189527, "AP", "train"),
    "9d1e4f8a-11112222-33334444-55556666-77778888": (11000011, 59000001, "PA", "test"),
}
LABELS = {  # study -> non-blank CheXpert values; every other column is blank (not mentioned)
    50414267: {
        "Cardiomegaly": "1.0",
        "Consolidation": "-1.0",
        "Pleural Effusion": "1.0",
        "Pneumothorax": "-1.0",
        "Support Devices": "0.0",
    },
    53189527: {"Atelectasis": "-1.0", "Edema": "0.0", "Lung Lesion": "1.0"},
    57375967: {"No Finding": "1.0"},
    59000001: {"Pneumonia": "1.0", "Edema": "-1.0"},
}
INDICATIONS = {
    50414267: ("INDICATION", "___M with fever and productive cough. // r/o pneumonia"),
    53189527: ("HISTORY", "Fall, on warfarin."),
    57375967: ("INDICATION", "Preop chest."),
    50771383: ("CLINICAL INFORMATION", "Shortness of breath."),
    59000001: ("INDICATION", "___F with chest pain."),
}
SUBSET = 3  # the first three labelled studies by (subject, study): 50414267, 53189527, 57375967
SUBSET_IMAGES = [  # in (subject, study, dicom_id) order
    "files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg",
    "files/p10/p10000032/s50414267/174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962.jpg",
    "files/p10/p10000032/s53189527/2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab.jpg",
    "files/p10/p10000764/s57375967/68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714.jpg",
]
UNLISTED_REPORT = "files/p11/p11000011/s59000001.txt"  # missing from the reports' SHA256SUMS.txt
CSVS = tuple(f"{stem}.csv.gz" for stem in M.MIMIC_FILES.values())


def _report(heading: str, indication: str) -> str:
    return (
        "                                 FINAL REPORT\n"
        " EXAMINATION:  CHEST (PA AND LAT)\n \n"
        f" {heading}:  {indication}\n \n"
        " TECHNIQUE:  Chest PA and lateral\n \n COMPARISON:  None.\n \n"
        " FINDINGS: \n \n Left lower lobe opacity and a small effusion.\n \n"
        " IMPRESSION: \n \n Pneumonia.\n"
    )


def _gz_csv(path: Path, header: list[str], rows: list) -> None:
    with gzip.open(path, "wt", newline="") as f:
        f.write(",".join(header) + "\n")
        for row in rows:
            f.write(",".join(str(c) for c in row) + "\n")


def _sums(root: Path, skip: tuple[str, ...] = ()) -> None:
    lines = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()} {p.relative_to(root).as_posix()}\n"
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() not in skip
    ]
    (root / M.SUMS_FILE).write_text("".join(lines))


@pytest.fixture
def physionet(tmp_path) -> Path:
    """Both projects under <root>/files/<project>/2.1.0/, as on physionet.org."""
    root = tmp_path / "physionet"
    jpg, rep = root / "files" / "mimic-cxr-jpg" / "2.1.0", root / "files" / "mimic-cxr" / "2.1.0"
    jpg.mkdir(parents=True)
    rep.mkdir(parents=True)
    _gz_csv(
        jpg / CSVS[0],
        [
            "dicom_id",
            "subject_id",
            "study_id",
            "PerformedProcedureStepDescription",
            "ViewPosition",
            "Rows",
            "Columns",
            "StudyDate",
            "StudyTime",
            "ProcedureCodeSequence_CodeMeaning",
            "ViewCodeSequence_CodeMeaning",
            "PatientOrientationCodeSequence_CodeMeaning",
        ],
        [
            (
                d,
                p,
                s,
                "CHEST (PA AND LAT)",
                v,
                80,
                64,
                21800506,
                "213014.531",
                "CHEST (PA AND LAT)",
                "postero-anterior",
                "Erect",
            )
            for d, (p, s, v, _) in DICOMS.items()
        ],
    )
    _gz_csv(
        jpg / CSVS[1],
        ["subject_id", "study_id", *M.CHEXPERT_LABELS],
        [
            (p, s, *(LABELS[s].get(c, "") for c in M.CHEXPERT_LABELS))
            for p, s in sorted({(p, s) for p, s, _, _ in DICOMS.values()}, reverse=True)
            if s in LABELS
        ],
    )
    _gz_csv(
        jpg / CSVS[2],
        ["dicom_id", "study_id", "subject_id", "split"],
        [(d, s, p, sp) for d, (p, s, _, sp) in DICOMS.items()],
    )
    rng = np.random.default_rng(0)
    for d, (p, s, _, _) in DICOMS.items():
        path = jpg / M.image_path(p, s, d)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (80, 64), dtype=np.uint8)).save(path, format="JPEG")
    reports = {}
    for p, s in {(p, s) for p, s, _, _ in DICOMS.values()}:
        reports[M.report_path(p, s)] = _report(*INDICATIONS[s])
        (rep / M.report_path(p, s)).parent.mkdir(parents=True, exist_ok=True)
        (rep / M.report_path(p, s)).write_text(reports[M.report_path(p, s)])
    with zipfile.ZipFile(rep / M.REPORTS_ZIP, "w") as zf:
        for name in sorted(reports):
            zf.writestr(name, reports[name])
    _sums(jpg)
    _sums(rep, skip=(UNLISTED_REPORT,))
    return root


class _Server:
    def __init__(self, root: Path):
        self.root = root
        self.expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        self.requests: list[tuple[str, int]] = []  # (path, status)
        self.lock = threading.Lock()

    def url(self, project: str) -> str:
        return f"http://127.0.0.1:{self.port}/files/{project}/2.1.0/"


def _handler(server: _Server):
    class Handler(http.server.SimpleHTTPRequestHandler):
        """PhysioNet's behaviour: 401 with a Basic challenge unless the credentials are right."""

        def log_message(self, *args) -> None:
            pass

        def send_response(self, code, message=None) -> None:
            with server.lock:
                server.requests.append((self.path, code))
            super().send_response(code, message)

        def do_GET(self) -> None:
            if self.headers.get("Authorization") != server.expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="PhysioNet"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            super().do_GET()

    return functools.partial(Handler, directory=str(server.root))


@pytest.fixture
def server(physionet):
    srv = _Server(physionet)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(srv))
    httpd.daemon_threads = True
    srv.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def credentials(monkeypatch):
    monkeypatch.setenv(M.USER_VAR, USER)
    monkeypatch.setenv(M.PASSWORD_VAR, PASSWORD)


def _no_secret_in_files(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in (PASSWORD, USER):
                assert secret.encode() not in data, f"{secret!r} written into {path}"


# ---- pulling ------------------------------------------------------------------------------------


def test_pull_subset_with_credentials(server, physionet, credentials, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "raw"
    summary = M.pull_mimic(server.url("mimic-cxr-jpg"), out, server.url("mimic-cxr"), SUBSET, shard_size=3, workers=2)
    assert summary == {"images": 4, "studies": 3, "reports": 3, "shards": 2, "unverified": 0}
    assert sorted(p.name for p in out.iterdir()) == sorted([*CSVS, M.IMAGES_DIR, M.REPORTS_DIR])
    jpg = physionet / "files" / "mimic-cxr-jpg" / "2.1.0"
    for name in CSVS:  # kept as published (and checksummed)
        assert (out / name).read_bytes() == (jpg / name).read_bytes()
    with ShardReader(out / M.IMAGES_DIR) as images:  # shards, not 377k loose files
        assert images.names() == SUBSET_IMAGES
        assert all(images.read(n) == (jpg / n).read_bytes() for n in SUBSET_IMAGES)
    assert not list(out.rglob("*.jpg")) and not list(out.rglob("*.txt"))
    with ShardReader(out / M.REPORTS_DIR) as reports:
        assert reports.names() == [
            M.report_path(10000032, 50414267),
            M.report_path(10000032, 53189527),
            M.report_path(10000764, 57375967),
        ]
        text = reports.read(M.report_path(10000032, 53189527)).decode()
    assert M.read_indication(text) == "Fall, on warfarin."  # the reading (FINDINGS, IMPRESSION) is cut
    assert not (tmp_path / ".raw-downloads").exists()  # the scratch folder is gone
    fetched = {path for path, status in server.requests if status == 200}
    assert not any("s59000001" in p or "s50771383" in p for p in fetched)  # outside the subset
    assert all(status in (200, 404) for _, status in server.requests)  # every request authenticated
    _no_secret_in_files(tmp_path)
    assert PASSWORD not in caplog.text and USER not in caplog.text


@pytest.mark.parametrize("policy, unsure", [("mask", np.nan), ("positive", 1.0), ("negative", 0.0)])
def test_pulled_labels_under_each_uncertainty_policy(server, credentials, tmp_path, policy, unsure):
    out = tmp_path / "raw"
    M.pull_mimic(server.url("mimic-cxr-jpg"), out, "", SUBSET, workers=1)
    assert not (out / M.REPORTS_DIR).exists()  # no reports URL: no reports
    table = M.read_mimic(out, uncertain=policy).sort_values("image")  # in the metadata's row order
    assert table["image"].tolist() == SUBSET_IMAGES  # only what was pulled (the CSVs list all 6)
    assert table["split"].tolist() == ["train", "train", "train", "val"]
    assert table["view"].tolist() == ["PA", "LATERAL", "AP", "AP"]
    by = table.set_index("study_id")
    first = by.loc[50414267].iloc[0]
    assert first["Cardiomegaly"] == 1.0 and first["Effusion"] == 1.0
    np.testing.assert_equal([first["Consolidation"], first["Pneumothorax"]], [unsure, unsure])
    assert first["Pneumonia"] == 0.0 and first["Atelectasis"] == 0.0  # blank: not mentioned -> 0
    second = by.loc[53189527]
    np.testing.assert_equal(second["Atelectasis"], unsure)
    assert second["Edema"] == 0.0
    assert by.loc[57375967][list(M.CHEXPERT_TO_NIH.values())].eq(0.0).all()  # No Finding study
    for f in set(FINDINGS) - set(M.CHEXPERT_TO_NIH.values()):
        assert table[f].isna().all(), f  # no CheXpert counterpart: masked


def test_full_pull_takes_the_reports_zip_and_counts_unlisted_files(server, credentials, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="scifolio.medical.mimic")
    out = tmp_path / "raw"
    summary = M.pull_mimic(server.url("mimic-cxr-jpg"), out, server.url("mimic-cxr"), 0)
    assert summary["images"] == len(DICOMS) and summary["studies"] == 5 and summary["reports"] == 5
    assert summary["unverified"] == 0  # the zip is listed; its members have no sums of their own
    paths = [path for path, status in server.requests if status == 200]
    assert "/files/mimic-cxr/2.1.0/mimic-cxr-reports.zip" in paths
    assert not any(p.endswith(".txt") and "/files/p" in p for p in paths)  # no per-study requests
    assert len(M.read_mimic(out)) == 5  # the unlabelled study's image is pulled, then dropped
    _no_secret_in_files(tmp_path)
    assert PASSWORD not in caplog.text

    out = tmp_path / "subset"  # per-study reports: one is not in the project's SHA256SUMS.txt
    summary = M.pull_mimic(server.url("mimic-cxr-jpg"), out, server.url("mimic-cxr"), 4)
    assert summary["reports"] == 4 and summary["unverified"] == 1
    assert "1 file(s) not listed in SHA256SUMS.txt were fetched unverified" in caplog.text


def test_local_copy_needs_no_credentials(physionet, monkeypatch, tmp_path):
    monkeypatch.delenv(M.USER_VAR, raising=False)
    monkeypatch.delenv(M.PASSWORD_VAR, raising=False)
    base = physionet / "files"
    summary = M.pull_mimic(
        str(base / "mimic-cxr-jpg" / "2.1.0"), tmp_path / "raw", (base / "mimic-cxr" / "2.1.0").as_uri(), 2
    )
    assert summary["images"] == 3 and summary["reports"] == 2


# ---- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "unset, named",
    [
        ((M.USER_VAR, M.PASSWORD_VAR), "PHYSIONET_USERNAME and PHYSIONET_PASSWORD not set"),
        ((M.PASSWORD_VAR,), "PHYSIONET_PASSWORD not set"),
        ((M.USER_VAR,), "PHYSIONET_USERNAME not set"),
    ],
)
def test_missing_credentials_name_the_variable(server, monkeypatch, tmp_path, unset, named):
    monkeypatch.setenv(M.USER_VAR, USER)
    monkeypatch.setenv(M.PASSWORD_VAR, PASSWORD)
    for var in unset:
        monkeypatch.delenv(var)
    with pytest.raises(M.PhysioNetError, match=f"^{named}: MIMIC-CXR is credentialed") as e:
        M.pull_mimic(server.url("mimic-cxr-jpg"), tmp_path / "raw", server.url("mimic-cxr"), 1)
    assert PASSWORD not in str(e.value) and USER not in str(e.value)
    assert server.requests == []  # refused before any request


def test_wrong_password_is_one_clear_sentence(server, monkeypatch, tmp_path):
    monkeypatch.setenv(M.USER_VAR, USER)
    monkeypatch.setenv(M.PASSWORD_VAR, "not-the-" + PASSWORD)
    with pytest.raises(M.PhysioNetError) as e:
        M.pull_mimic(server.url("mimic-cxr-jpg"), tmp_path / "raw", server.url("mimic-cxr"), 1)
    url = server.url("mimic-cxr-jpg") + M.SUMS_FILE
    assert str(e.value).startswith(f"PhysioNet refused the credentials for {url} (HTTP 401)")
    shown = "".join(traceback.format_exception(e.value))
    assert PASSWORD not in shown and USER not in shown
    assert "FetchError" not in shown  # the library error is not chained into the report
    assert [status for _, status in server.requests] == [401]  # a refusal is not retried
    assert not (tmp_path / ".raw-downloads").exists()
    _no_secret_in_files(tmp_path)


def test_credentials_in_the_url_are_refused(server, credentials, tmp_path):
    url = server.url("mimic-cxr-jpg").replace("//", f"//{USER}:{PASSWORD}@")
    with pytest.raises(M.PhysioNetError, match="mimic_jpg_url: the URL contains credentials") as e:
        M.pull_mimic(url, tmp_path / "raw")
    assert PASSWORD not in str(e.value) and server.requests == []


def test_corrupted_image_fails_its_checksum_and_leaves_no_images(server, physionet, credentials, tmp_path):
    victim = SUBSET_IMAGES[2]
    path = physionet / "files" / "mimic-cxr-jpg" / "2.1.0" / victim
    path.write_bytes(path.read_bytes()[:-100] + b"\0" * 100)  # same size, different bytes
    out = tmp_path / "raw"
    with pytest.raises(FetchError, match=f"{victim}: checksum mismatch: expected sha256:"):
        M.pull_mimic(server.url("mimic-cxr-jpg"), out, server.url("mimic-cxr"), SUBSET, workers=2)
    assert not (out / M.IMAGES_DIR).exists()  # the shard folder appears complete or not at all
    assert not (tmp_path / ".raw-downloads").exists()


def test_corrupted_table_names_the_file(server, physionet, credentials, tmp_path):
    path = physionet / "files" / "mimic-cxr-jpg" / "2.1.0" / CSVS[1]
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()).replace(b"-1.0", b"1.0", 1)))
    with pytest.raises(FetchError, match=f"{CSVS[1]}: checksum mismatch"):
        M.pull_mimic(server.url("mimic-cxr-jpg"), tmp_path / "raw", "", 1)
    assert not (tmp_path / "raw" / CSVS[1]).exists()


# ---- through the stage runner ----------------------------------------------------------------------


def test_cli_pull_then_validate_says_what_is_missing(server, monkeypatch, tmp_path, capsys):
    from pipelines.__main__ import main

    monkeypatch.delenv("SCIFOLIO_DEBUG", raising=False)
    monkeypatch.setenv(M.USER_VAR, USER)
    monkeypatch.setenv(M.PASSWORD_VAR, "wrong")
    sets = [
        "--set",
        "medical.data.source=mimic",
        "--set",
        f"medical.data.mimic_jpg_url={server.url('mimic-cxr-jpg')}",
        "--set",
        f"medical.data.mimic_reports_url={server.url('mimic-cxr')}",
        "--set",
        "medical.data.mimic_max_studies=2",
        "--data-dir",
        str(tmp_path / "data"),
    ]
    assert main(["medical", "pull", *sets]) == 1
    err = capsys.readouterr().err
    assert f"error: medical pull: PhysioNet refused the credentials for {server.url('mimic-cxr-jpg')}" in err
    assert "Traceback" not in err and "wrong" not in err

    monkeypatch.setenv(M.PASSWORD_VAR, PASSWORD)
    assert main(["medical", "pull", *sets]) == 0
    raw = tmp_path / "data" / "medical" / "raw"
    with ShardReader(raw / M.IMAGES_DIR) as images:
        assert images.names() == SUBSET_IMAGES[:3]
    _no_secret_in_files(tmp_path / "data")
    capsys.readouterr()
    assert main(["medical", "validate", *sets]) == 1  # honest: no MIMIC suite downstream yet
    assert "has no validation suite yet" in capsys.readouterr().err
    assert os.environ[M.PASSWORD_VAR] == PASSWORD  # untouched


def test_reports_zip_bomb_is_refused(tmp_path):
    archive = tmp_path / M.REPORTS_ZIP
    bomb = "files/p10/p10000032/s50414267.txt"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("files/p10/p10000032/s50414268.txt", "FINDINGS: clear.\n")
        zf.writestr(bomb, b" " * (52 * 10**6))  # ~51 kB that would expand to 52 MB of "report"
    reports = M._zip_reports(archive)
    assert next(reports)[0] == "files/p10/p10000032/s50414268.txt"
    with pytest.raises(ValueError, match=rf"{archive}: refusing member '{bomb}'.*max_ratio=100"):
        next(reports)
    small = M._zip_reports(archive, max_bytes=1000, max_ratio=10**9)
    with pytest.raises(ValueError, match=r"max_bytes=1,000 bytes"):
        list(small)
