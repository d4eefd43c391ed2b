"""MIMIC-CXR-JPG (PhysioNet, credentialed access): its readers, and `pull_mimic` to download it.

MIMIC-CXR-JPG 2.1.0 (Johnson et al., PhysioNet): 377,110 JPEGs of ~228,000 studies of 65,379
patients, with CheXpert labels mined from each study's report (1 / 0 / -1 uncertain / blank), the
official patient-wise split and DICOM metadata, in three gzipped CSVs. The free-text reports are
a separate PhysioNet project, MIMIC-CXR. Both need a credentialed PhysioNet account that has
signed the data use agreement; PhysioNet serves them over HTTPS with HTTP Basic authentication.

Layout on PhysioNet (and in a local copy of it):

    mimic-cxr-2.0.0-{metadata,chexpert,split}.csv.gz       (the 2.1.0 release keeps these names)
    files/p<first 2 digits>/p<subject_id>/s<study_id>/<dicom_id>.jpg      images
    files/p<first 2 digits>/p<subject_id>/s<study_id>.txt                 reports (MIMIC-CXR)

`pull_mimic` keeps the CSVs as published and stores the images (and reports) as tar shards
(shards.py) whose member names are those relative paths, so `read_mimic`'s `image` column names
a shard member directly. Labels are mapped onto NIH's FINDINGS where both name the same finding.
Credentials come only from the environment (PHYSIONET_USERNAME / PHYSIONET_PASSWORD) and are
never written to params, logs, MLflow or error messages.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import re
import shutil
import urllib.parse
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.medical.sources.nih import FINDINGS
from pipelines.medical.sources.shards import INDEX, ShardReader, write_shards

log = logging.getLogger("scifolio.medical.mimic")

# ---- layout and labels -----------------------------------------------------------------------

# CheXpert label -> NIH finding, only where both name the same radiological finding.
# Not mapped (and why): Lung Lesion (Mass and Nodule together), Lung Opacity (covers
# Infiltration, Consolidation, Pneumonia, Edema...), Pleural Other (thickening among other
# things), Enlarged Cardiomediastinum (mediastinum too), Fracture, Support Devices, No Finding.
# NIH findings with no CheXpert match (Infiltration, Mass, Nodule, Emphysema, Fibrosis,
# Pleural_Thickening, Hernia) are NaN for every MIMIC image: unknown, masked from the loss.
CHEXPERT_TO_NIH = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Pleural Effusion": "Effusion",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
}
CHEXPERT_LABELS = (  # the 14 label columns of mimic-cxr-2.0.0-chexpert.csv
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)
MIMIC_FILES = {  # role -> file stem; each may be plain or gzipped (PhysioNet ships .csv.gz)
    "metadata": "mimic-cxr-2.0.0-metadata",
    "chexpert": "mimic-cxr-2.0.0-chexpert",
    "split": "mimic-cxr-2.0.0-split",
}
MIMIC_SPLITS = {"train": "train", "validate": "val", "test": "test"}  # theirs -> ours
UNCERTAIN_POLICIES = ("mask", "positive", "negative")  # U-Ignore, U-Ones, U-Zeros (Irvin 2019)
SUMS_FILE = "SHA256SUMS.txt"  # every PhysioNet project lists "<sha256> <path>" for all its files
REPORTS_ZIP = "mimic-cxr-reports.zip"  # MIMIC-CXR's reports in one file: files/pXX/pYYY/sZZZ.txt
IMAGES_DIR, REPORTS_DIR = "images", "reports"  # shard folders that pull_mimic writes
_REPORT_NAME = re.compile(r"files/p\d{2}/p\d+/s\d+\.txt")


def image_path(subject_id: int, study_id: int, dicom_id: str) -> str:
    """PhysioNet's relative path of one image (also its shard member name)."""
    return f"files/p{str(subject_id)[:2]}/p{subject_id}/s{study_id}/{dicom_id}.jpg"


def report_path(subject_id: int, study_id: int) -> str:
    """PhysioNet's relative path of one study's report in MIMIC-CXR (also its shard member name)."""
    return f"files/p{str(subject_id)[:2]}/p{subject_id}/s{study_id}.txt"


# ---- readers ---------------------------------------------------------------------------------


def _mimic_table(root: Path, role: str, columns: tuple[str, ...]) -> pd.DataFrame:
    stem = MIMIC_FILES[role]
    for path in (root / f"{stem}.csv.gz", root / f"{stem}.csv"):
        if path.is_file():
            break
    else:
        raise FileNotFoundError(f"{root}: neither {stem}.csv.gz nor {stem}.csv found")
    try:
        table = pd.read_csv(path, dtype={"dicom_id": str})
    except (OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError, gzip.BadGzipFile) as e:
        raise ValueError(f"{path}: cannot read: {e}") from None
    if missing := [c for c in columns if c not in table.columns]:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(table.columns)}")
    table.attrs["path"] = path
    return table


def read_mimic(root: Path, uncertain: str = "mask") -> pd.DataFrame:
    """MIMIC-CXR-JPG metadata + CheXpert labels + official split -> one row per image.

    Columns: image (relative path files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.jpg), dicom_id,
    subject_id, study_id, patient_id (= subject_id, for assert_no_patient_leak), view
    (ViewPosition), split (train/val/test; their "validate" is our "val"), then FINDINGS as float32.

    Labels are per study (a report), so every image of a study gets its study's labels. CheXpert
    values: 1 positive, 0 negative, -1 uncertain, blank = not mentioned in the report. Blank -> 0
    (the CheXpert convention: a finding the radiologist did not mention is taken as absent).
    Uncertain, by `uncertain`: "mask" -> NaN (excluded from the loss), "positive" -> 1,
    "negative" -> 0. Findings without a CheXpert counterpart (see CHEXPERT_TO_NIH) are NaN.
    Images whose study has no CheXpert row (a report with no labelled section) are dropped, logged.
    In a folder written by pull_mimic (images/ is a shard folder) only the images it holds are
    kept: a subset pull keeps the CSVs whole, as published and checksummed, but fetches fewer images.
    """
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain policy {uncertain!r} is not one of {UNCERTAIN_POLICIES}")
    root = Path(root)
    keys = ("subject_id", "study_id")
    meta = _mimic_table(root, "metadata", ("dicom_id", *keys, "ViewPosition"))
    labels = _mimic_table(root, "chexpert", (*keys, *CHEXPERT_TO_NIH))
    split = _mimic_table(root, "split", ("dicom_id", *keys, "split"))

    for name in CHEXPERT_TO_NIH:
        values = pd.to_numeric(labels[name], errors="coerce")
        bad = ~(values.isin([1, 0, -1]) | labels[name].isna())
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(
                f"{labels.attrs['path']}, line {row + 2}: "
                f"{name} = {labels[name].iloc[row]} (expected 1, 0, -1 or blank)"
            )
    if unknown := set(split["split"]) - set(MIMIC_SPLITS):
        raise ValueError(f"{split.attrs['path']}: unknown split value(s) {sorted(unknown)}")
    if labels.duplicated(list(keys)).any():
        raise ValueError(f"{labels.attrs['path']}: more than one row for a study")

    table = meta[["dicom_id", *keys, "ViewPosition"]].merge(
        split[["dicom_id", *keys, "split"]], on=["dicom_id", *keys], how="left", validate="one_to_one"
    )
    if (nosplit := table["split"].isna()).any():
        raise ValueError(
            f"{split.attrs['path']}: {int(nosplit.sum())} image(s) of the metadata "
            f"have no split, e.g. {table.loc[nosplit, 'dicom_id'].iloc[0]}"
        )
    table = table.merge(labels[[*keys, *CHEXPERT_TO_NIH]], on=list(keys), how="inner", validate="many_to_one")
    if dropped := len(meta) - len(table):
        log.info("MIMIC-CXR: %d image(s) without CheXpert labels dropped (%d kept)", dropped, len(table))

    subject, study = table["subject_id"].astype("int64"), table["study_id"].astype("int64")
    paths = [image_path(p, s, d) for p, s, d in zip(subject, study, table["dicom_id"])]
    out = pd.DataFrame(
        {
            "image": paths,
            "dicom_id": table["dicom_id"],
            "subject_id": subject,
            "study_id": study,
            "patient_id": subject,
            "view": table["ViewPosition"].fillna(""),
            "split": table["split"].map(MIMIC_SPLITS),
        }
    )
    uncertain_value = {"mask": np.nan, "positive": 1.0, "negative": 0.0}[uncertain]
    nih = {v: k for k, v in CHEXPERT_TO_NIH.items()}
    for finding in FINDINGS:
        if finding not in nih:
            out[finding] = np.float32(np.nan)
            continue
        v = pd.to_numeric(table[nih[finding]], errors="coerce").fillna(0.0)  # blank: unmentioned -> 0
        out[finding] = v.replace(-1.0, uncertain_value).astype(np.float32)
    if (root / IMAGES_DIR / INDEX).is_file():
        with ShardReader(root / IMAGES_DIR) as reader:
            pulled = out["image"].isin(set(reader.names()))
        if not pulled.all():
            log.info(
                "MIMIC-CXR: %d labelled image(s) not pulled into %s (%d kept)",
                int((~pulled).sum()),
                root / IMAGES_DIR,
                int(pulled.sum()),
            )
        out = out[pulled]
    return out.reset_index(drop=True)


# Section headings of a MIMIC-CXR report written before the image is read (why it was ordered),
# matched by prefix: INDICATION(S), HISTORY, CLINICAL HISTORY / INFORMATION / INDICATION,
# "CLINICAL INFORMATION & QUESTIONS TO BE ANSWERED", REASON FOR EXAM(INATION)...
INDICATION_SECTIONS = ("INDICATION", "HISTORY", "CLINICAL", "REASON FOR")
_SECTION = re.compile(r"^[ \t]*([A-Z][A-Z /&()-]{1,60}?)[ \t]*:", re.MULTILINE)  # "HEADING:" opens a line
# the radiologist's reading, cut even when it follows on the same line as the indication
_READING = re.compile(
    r"\b(?:FINDINGS?|IMPRESSIONS?|CONCLUSIONS?|RECOMMENDATIONS?|WET READ|"
    r"TECHNIQUE|COMPARISONS?|NOTIFICATION)\s*:"
)


def read_indication(report_text: str) -> str:
    """The INDICATION / HISTORY / CLINICAL INFORMATION text of a MIMIC-CXR report, or ''.

    Only what the clinician knew before the image was read: FINDINGS and IMPRESSION restate the
    labels (CheXpert mined them from there), so feeding them to a model would leak the answer.
    Several indication-like sections are joined with a space; whitespace is collapsed.
    """
    heads = list(_SECTION.finditer(report_text))
    parts = []
    for i, m in enumerate(heads):
        heading = " ".join(m.group(1).split())
        if not heading.startswith(INDICATION_SECTIONS) or _READING.search(heading + ":"):
            continue
        end = heads[i + 1].start() if i + 1 < len(heads) else len(report_text)
        body = report_text[m.end() : end]
        if cut := _READING.search(body):
            body = body[: cut.start()]
        if body := " ".join(body.split()):
            parts.append(body)
    return " ".join(parts)


def read_sha256sums(path: Path) -> dict[str, str]:
    """PhysioNet's SHA256SUMS.txt -> {relative path: "sha256:<hex>"}; a malformed line is an error."""
    path = Path(path)
    sums = {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            m = re.fullmatch(r"([0-9a-fA-F]{64}) [ *]?(.+)", line.rstrip("\r\n"))  # sha256sum's format
            if not m:
                raise ValueError(f"{path}, line {i}: not '<sha256> <file>': {line[:80]!r}")
            sums[m.group(2).removeprefix("./")] = "sha256:" + m.group(1).lower()
    return sums


# ---- credentials ------------------------------------------------------------------------------


class PhysioNetAuth(tuple):
    """(username, password) for requests' `auth=`; repr/str never show either value."""

    def __new__(cls, username: str, password: str) -> PhysioNetAuth:
        return super().__new__(cls, (username, password))

    def __getnewargs__(self) -> tuple[str, str]:  # pickle rebuilds it through __new__
        return tuple(self)

    def __repr__(self) -> str:
        return "PhysioNetAuth(username=<set>, password=<redacted>)"

    __str__ = __repr__


USER_VAR, PASSWORD_VAR = "PHYSIONET_USERNAME", "PHYSIONET_PASSWORD"


class PhysioNetError(RuntimeError):
    """Credentials missing or refused; the message names the variable or the URL, never a secret."""


def mimic_auth_from_env() -> PhysioNetAuth:
    """Credentials from PHYSIONET_USERNAME / PHYSIONET_PASSWORD; PhysioNetError naming any unset one.

    The environment is the only source on purpose: params.yaml is committed and logged to MLflow.
    """
    missing = [var for var in (USER_VAR, PASSWORD_VAR) if not os.environ.get(var)]
    if missing:
        raise PhysioNetError(
            f"{' and '.join(missing)} not set: MIMIC-CXR is credentialed PhysioNet data; export your "
            f"PhysioNet user name in {USER_VAR} and password in {PASSWORD_VAR}"
        )
    return PhysioNetAuth(os.environ[USER_VAR], os.environ[PASSWORD_VAR])


# ---- download ---------------------------------------------------------------------------------

DOWNLOAD_WORKERS = 4  # parallel image requests: ~377k small files, but PhysioNet is a shared server
_LOOKAHEAD = 8  # per worker: downloaded images held in memory (~1.5 MB each) while shards are written


def _check_base_url(url: str, key: str) -> None:
    """A base URL must not carry credentials (user:password@host): they would end up in logs."""
    parts = urllib.parse.urlsplit(url)
    if "@" in parts.netloc:  # the URL itself is deliberately left out of the message
        raise PhysioNetError(
            f"medical.data.{key}: the URL contains credentials; remove them and set {USER_VAR} / {PASSWORD_VAR} instead"
        )


def _needs_auth(*urls: str) -> bool:
    return any(urllib.parse.urlsplit(u).scheme.lower() in ("http", "https") for u in urls if u)


def _fetch(url: str, dest: Path, checksum: str | None, auth, progress: bool | None = False) -> Path:
    """components.fetch.fetch with PhysioNet's refusals turned into one clear sentence."""
    from components.fetch import FetchError, fetch

    try:
        return fetch(url, dest, checksum=checksum, auth=auth, progress=progress)
    except FetchError as e:
        if e.status == 401:
            raise PhysioNetError(
                f"PhysioNet refused the credentials for {url} (HTTP 401): check {USER_VAR} / {PASSWORD_VAR}"
            ) from None
        if e.status == 403:
            raise PhysioNetError(
                f"PhysioNet denied access to {url} (HTTP 403): the account must be "
                "credentialed and have signed this project's data use agreement"
            ) from None
        raise


def _select_studies(root: Path, max_studies: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(images, studies) to pull: every image of the metadata, or with max_studies > 0 the images
    of the first max_studies *labelled* studies in (subject_id, study_id) order: deterministic,
    independent of the CSV's row order, and never spending downloads on studies read_mimic drops."""
    keys = ["subject_id", "study_id"]
    meta = _mimic_table(root, "metadata", ("dicom_id", *keys))
    if max_studies > 0:
        labelled = _mimic_table(root, "chexpert", tuple(keys))[keys].drop_duplicates()
        chosen = meta[keys].drop_duplicates().merge(labelled, on=keys).sort_values(keys).head(max_studies)
        meta = meta.merge(chosen, on=keys)
    images = meta[["dicom_id", *keys]].sort_values([*keys, "dicom_id"]).reset_index(drop=True)
    return images, images[keys].drop_duplicates().reset_index(drop=True)


def _parallel(items: list, get, workers: int) -> Iterator:
    """get(item) for each item, in order, at most workers * _LOOKAHEAD results held at once."""
    if workers <= 1:
        yield from map(get, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        step = workers * _LOOKAHEAD
        for start in range(0, len(items), step):
            yield from pool.map(get, items[start : start + step])


def _member_stream(
    base: str, names: list[str], sums: dict[str, str], scratch: Path, auth, workers: int, counts: dict
) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each relative path under `base`, fetched and verified one file at a time
    into `scratch`, read back and deleted: shards get the bytes, nothing loose stays on disk."""
    from components.fetch import resolve

    counts["unverified"] += sum(name not in sums for name in names)

    def get(name: str) -> tuple[str, bytes]:
        path = _fetch(resolve(base, name), scratch / name, sums.get(name), auth)
        data = path.read_bytes()
        path.unlink()
        return name, data

    for i, item in enumerate(_parallel(names, get, workers), start=1):
        if i % 1000 == 0:
            log.info("%s: %d of %d files", base, i, len(names))
        yield item


def _zip_reports(
    archive: Path, max_bytes: int | None = None, max_ratio: float | None = None
) -> Iterator[tuple[str, bytes]]:
    """(files/pXX/pYYY/sZZZ.txt, text bytes) of every report in MIMIC-CXR's reports zip.

    The zip is held to components.fetch's expansion caps (defaults: 16 GiB, 100 times its size;
    the real one is ~140 MB of text), counted on the bytes read, not on the entries' declared sizes.
    """
    from components.fetch import MAX_EXPANDED_BYTES, MAX_RATIO, Expansion

    budget = Expansion(
        archive,
        MAX_EXPANDED_BYTES if max_bytes is None else max_bytes,
        MAX_RATIO if max_ratio is None else max_ratio,
        error=ValueError,
    )
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                name = info.filename.replace("\\", "/")
                at = name.find("files/")  # tolerate a top-level folder in front of files/
                if info.is_dir() or at < 0 or not _REPORT_NAME.fullmatch(name[at:]):
                    continue
                budget.declare(info.file_size, info.filename)
                data = io.BytesIO()
                with zf.open(info) as f:
                    budget.copy(f, data, info.filename)
                yield name[at:], data.getvalue()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"{archive}: cannot read the reports zip: {e}") from None


def pull_mimic(
    jpg_url: str,
    out_dir: Path,
    reports_url: str = "",
    max_studies: int = 0,
    *,
    shard_size: int | None = None,  # images per shard; None: shards.SHARD_SIZE
    workers: int = DOWNLOAD_WORKERS,
) -> dict:
    """Fetch MIMIC-CXR-JPG from `jpg_url` (and its reports from `reports_url`) into out_dir.

    Both bases are PhysioNet project roots (https://physionet.org/files/mimic-cxr-jpg/2.1.0/ and
    .../mimic-cxr/2.1.0/), a local copy of one, or a file:// URL. out_dir gets the three CSVs as
    published, `images/` (tar shards named files/pXX/pYYY/sZZZ/<dicom_id>.jpg) and, with a
    reports_url, `reports/` (shards named files/pXX/pYYY/sZZZ.txt). Every file that the project's
    SHA256SUMS.txt lists is verified against it; the rest are fetched unverified and counted.
    max_studies > 0 pulls the images (and reports) of that many labelled studies (_select_studies)
    and each report on its own; 0 pulls everything (over 500 GB) and the reports as one zip.

    http(s) bases need PHYSIONET_USERNAME / PHYSIONET_PASSWORD (HTTP Basic, PhysioNet's scheme),
    checked before any request. Downloads go through a hidden sibling folder that is removed at
    the end, so nothing but verified data lands in out_dir.
    """
    from components.fetch import resolve
    from pipelines.medical.sources.shards import SHARD_SIZE

    if not jpg_url:
        raise ValueError("medical.data.mimic_jpg_url is empty: set the MIMIC-CXR-JPG project URL or folder")
    _check_base_url(jpg_url, "mimic_jpg_url")
    _check_base_url(reports_url, "mimic_reports_url")
    if max_studies < 0:
        raise ValueError(f"medical.data.mimic_max_studies must be >= 0 (0 = all), got {max_studies}")
    auth = mimic_auth_from_env() if _needs_auth(jpg_url, reports_url) else None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = out_dir.parent / f".{out_dir.name}-downloads"
    counts = {"unverified": 0}
    try:
        sums = read_sha256sums(
            _fetch(resolve(jpg_url, SUMS_FILE), scratch / "jpg" / SUMS_FILE, None, auth, progress=None)
        )
        for stem in MIMIC_FILES.values():
            name = f"{stem}.csv.gz"
            if name not in sums:
                counts["unverified"] += 1
                log.warning("%s: not listed in %s; fetched unverified", name, SUMS_FILE)
            _fetch(resolve(jpg_url, name), out_dir / name, sums.get(name), auth, progress=None)
        images, studies = _select_studies(out_dir, max_studies)
        names = [image_path(p, s, d) for d, p, s in images.itertuples(index=False)]
        log.info("MIMIC-CXR-JPG: pulling %d image(s) of %d studies", len(names), len(studies))
        shards = write_shards(
            _member_stream(jpg_url, names, sums, scratch / "jpg", auth, workers, counts),
            out_dir / IMAGES_DIR,
            shard_size or SHARD_SIZE,
        )

        n_reports = 0
        if reports_url:
            report_sums = read_sha256sums(
                _fetch(resolve(reports_url, SUMS_FILE), scratch / "reports" / SUMS_FILE, None, auth, progress=None)
            )
            if max_studies > 0:
                wanted = [report_path(p, s) for p, s in studies.itertuples(index=False)]
                reports = _member_stream(reports_url, wanted, report_sums, scratch / "reports", auth, workers, counts)
            else:
                if REPORTS_ZIP not in report_sums:
                    counts["unverified"] += 1
                archive = _fetch(
                    resolve(reports_url, REPORTS_ZIP),
                    scratch / "reports" / REPORTS_ZIP,
                    report_sums.get(REPORTS_ZIP),
                    auth,
                    progress=None,
                )
                reports = _zip_reports(archive)
            write_shards(reports, out_dir / REPORTS_DIR, shard_size or SHARD_SIZE)
            with ShardReader(out_dir / REPORTS_DIR) as reader:
                n_reports = len(reader)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    if counts["unverified"]:
        log.warning("MIMIC-CXR: %d file(s) not listed in %s were fetched unverified", counts["unverified"], SUMS_FILE)
    summary = {
        "images": len(names),
        "studies": len(studies),
        "reports": n_reports,
        "shards": len(shards),
        "unverified": counts["unverified"],
    }
    log.info("MIMIC-CXR-JPG pulled into %s: %s", out_dir, summary)
    return summary
