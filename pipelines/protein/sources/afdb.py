"""AlphaFold DB predicted models by UniProt accession, kept only where the prediction is confident.

    models = pull_models(["P00720", "P69905"], Path("data/raw/protein/afdb"), min_mean_plddt=70.0)
    confident = [m.path for m in models if m.kept]

A model is https://alphafold.ebi.ac.uk/files/AF-{ACCESSION}-F1-model_v{VERSION}.cif (`version` follows AFDB's
releases; v4 since 2022), or the same name in a mirror (folder, file:// or http(s) URL). Remote requests go
through components.http.PoliteClient (a few requests/s, retries with backoff on 429/5xx).

Why filter: a predicted structure is only as good as its confidence. AlphaFold writes its per-residue
confidence, pLDDT (0-100), into the B-factor column of every atom; residues below 70 are often disordered
or wrong, and training on them teaches noise. After download each model's CA pLDDTs are read with gemmi:
the mean and the fraction of residues >= 70. A model whose mean is below `min_mean_plddt` stays on disk
and in the manifest (kept: false), so that a later pull with another threshold needs no download, but is
returned with `kept=False`.

The manifest (pipelines.protein.sources.Manifest) records per model its accession, version, size, sha256,
URL and the pLDDT numbers; a pull resumes by skipping models that still match it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.http import PoliteClient
from components.io import atomic_write
from pipelines.protein.sources import Manifest, Mirror, PullError

log = logging.getLogger("scifolio.protein.afdb")

AFDB_FILES = "https://alphafold.ebi.ac.uk/files/"
AFDB_RATE = 4.0  # requests/s: EBI asks for moderation, not a number; the same pace as RCSB
CONFIDENT = 70.0  # pLDDT at and above which AlphaFold calls a residue confident (its own colour bands)
# UniProt's accession format (https://www.uniprot.org/help/accession_numbers)
ACCESSION = re.compile(r"[OPQ][0-9][A-Z0-9]{3}[0-9]|[A-NR-Z][0-9]([A-Z][A-Z0-9]{2}[0-9]){1,2}")
SAVE_EVERY = 50  # models between manifest saves


class AfdbError(PullError):
    """An AlphaFold DB model that cannot be pulled or read; the message names the accession or file."""


@dataclass(frozen=True)
class AfdbModel:
    accession: str
    path: Path
    mean_plddt: float  # over residues (CA atoms)
    fraction_confident: float  # of residues with pLDDT >= 70
    n_residues: int
    kept: bool  # mean_plddt >= the pull's min_mean_plddt


def check_accession(value: str) -> str:
    """`value` as a UniProt accession (upper case), else ValueError."""
    accession = str(value).strip().upper()
    if not ACCESSION.fullmatch(accession):
        raise ValueError(f"{value!r} is not a UniProt accession (e.g. P00720, A0A023GPI8): see {ACCESSION.pattern}")
    return accession


def model_filename(accession: str, version: int = 4) -> str:
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"AFDB model version must be a positive integer (4 for the 2022 release), got {version!r}")
    return f"AF-{check_accession(accession)}-F1-model_v{version}.cif"


def read_plddt(path: str | Path) -> np.ndarray:
    """The pLDDT of each residue of the first model: the B-factor of its CA atom (AlphaFold writes pLDDT there)."""
    import gemmi

    path = Path(path)
    try:
        structure = gemmi.read_structure(str(path))
    except (RuntimeError, ValueError, OSError) as err:
        raise AfdbError(f"{path}: not a readable structure: {err}") from None
    if len(structure) == 0:
        raise AfdbError(f"{path}: no model in the file")
    values = []
    for chain in structure[0]:
        for residue in chain:
            ca = residue.find_atom("CA", "*")
            if ca is not None and ca.element.name == "C":  # not a calcium ion named CA
                values.append(ca.b_iso)
    plddt = np.asarray(values, dtype=float)
    if plddt.size == 0:
        raise AfdbError(f"{path}: no CA atoms, so no per-residue pLDDT")
    if plddt.min() < 0 or plddt.max() > 100:
        raise AfdbError(
            f"{path}: CA B-factors span {plddt.min():g}..{plddt.max():g}, outside pLDDT's 0-100: "
            "not an AlphaFold model (an experimental structure's B-factors are not confidences)"
        )
    return plddt


def _scores(path: Path) -> dict:
    plddt = read_plddt(path)
    return {
        "mean_plddt": round(float(plddt.mean()), 4),  # rounded: the manifest's bytes stay stable across platforms
        "fraction_confident": round(float((plddt >= CONFIDENT).mean()), 4),
        "n_residues": int(plddt.size),
    }


def _model(accession: str, path: Path, record: dict, min_mean_plddt: float) -> AfdbModel:
    return AfdbModel(
        accession=accession,
        path=path,
        mean_plddt=record["mean_plddt"],
        fraction_confident=record["fraction_confident"],
        n_residues=record["n_residues"],
        kept=record["mean_plddt"] >= min_mean_plddt,
    )


def _download(source: Mirror, out: Path, accession: str, name: str, skip_missing: bool, manifest: Manifest) -> bool:
    """Fetch, write and score one model into the manifest; False when the server has none (and skip_missing)."""
    url = source.url(name)
    body = source.get(name)
    if body is None:
        if not skip_missing:
            raise AfdbError(f"AlphaFold DB model of {accession}: not on the server ({url}: HTTP 404 or no such file)")
        log.warning("AlphaFold DB model of %s: not on the server (%s); recorded as missing", accession, url)
        manifest.record_missing(accession, url)
        return False
    path = atomic_write(out / name, body)
    try:
        scores = _scores(path)
    except AfdbError as err:  # an error page or a cut-off file must not stay where a model is expected
        path.unlink()
        raise AfdbError(f"AlphaFold DB model of {accession} ({url}): {err}") from None
    manifest.record(name, accession, body, url, accession=accession, **scores)
    return True


def pull_models(
    accessions: Iterable[str],
    out: Path,
    *,
    mirror: str = AFDB_FILES,  # an http(s) URL, file:// URL or folder holding AF-{ACC}-F1-model_v{N}.cif
    version: int = 4,
    min_mean_plddt: float = CONFIDENT,  # models with a lower mean pLDDT are recorded but not kept
    skip_missing: bool = False,  # record accessions without a model instead of failing
    refresh: bool = False,  # download models that still match the manifest too
    rate: float = AFDB_RATE,
    client: PoliteClient | None = None,
) -> list[AfdbModel]:
    """Download the models into `out` (resuming) and score them; every model is returned, `kept` says which pass."""
    if isinstance(accessions, str | bytes | Path):  # iterating a string would pull one "accession" per letter
        raise TypeError(f"accessions must be a list, not {type(accessions).__name__} {accessions!r}")
    names = {a: model_filename(a, version) for a in dict.fromkeys(check_accession(a) for a in accessions)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    source = Mirror(mirror, "AlphaFold DB", rate, client)
    manifest = Manifest(out, "afdb")
    models, fetched = [], 0
    try:
        for accession, name in names.items():
            if refresh or not manifest.is_current(name):
                if not _download(source, out, accession, name, skip_missing, manifest):
                    continue
                fetched += 1
                if fetched % SAVE_EVERY == 0:
                    manifest.save()
            record = manifest.files[name]
            if "mean_plddt" not in record:  # a record without scores (hand-edited manifest): score the file
                record.update(_scores(out / name))
            record["kept"] = record["mean_plddt"] >= min_mean_plddt  # this pull's threshold decides
            record["min_mean_plddt"] = min_mean_plddt
            models.append(_model(accession, out / name, record, min_mean_plddt))
    finally:
        manifest.save()
    kept = sum(m.kept for m in models)
    log.info(
        "AlphaFold DB: %d models in %s (%d downloaded), %d kept at mean pLDDT >= %g",
        len(models),
        out,
        fetched,
        kept,
        min_mean_plddt,
    )
    return models
