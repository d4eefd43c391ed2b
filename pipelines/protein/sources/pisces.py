"""PISCES culled chain lists (Wang & Dunbrack 2003): which PDB chains to train on.

A PISCES list is the standard way to pick a non-redundant protein set: chains culled to a maximum mutual
sequence identity, resolution and R-factor. It is a whitespace table, one chain a row:

    IDs         length Exptl.  resolution  R-factor FreeRvalue
    1A12A       413  XRAY        1.700    0.19    0.22
    6QSWAAA     291  XRAY        1.640    0.16    0.19

`IDs` is the 4-character PDB id followed by the chain id, which is not always one character (`6QSWAAA` is
chain `AAA` of 6QSW), so the id is split after 4 characters, never at a fixed width. `Exptl.` is the method
in PISCES's spelling (XRAY, NMR, EM). Lists that include NMR entries write `NA` for a resolution or R-factor
they do not have; those become None. The R-free column holds 1.00 where the entry reports no free R (139
chains of the 2019 pc40 list, all entries from before R-free was routine): a free R of 1 would mean a model
that explains nothing, so it is read as None, not as a number to filter on. Newer lists name the columns
`PDBchain len method resol rfac freerfac`; both headers are read.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

HEADERS = (
    ("IDs", "length", "Exptl.", "resolution", "R-factor", "FreeRvalue"),  # the lists up to ~2020
    ("PDBchain", "len", "method", "resol", "rfac", "freerfac"),  # the current server's lists
)
CHAIN = re.compile(r"(?P<pdb>[0-9][A-Za-z0-9]{3})(?P<chain>[A-Za-z0-9]{1,4})")  # PDB id + 1-4 character chain id
NO_FREE_R = 1.0  # PISCES's placeholder for "no free R reported"


class PiscesError(ValueError):
    """A PISCES list line that cannot be read; the message starts with file:line."""


@dataclass(frozen=True)
class PiscesChain:
    pdb_id: str  # upper case, e.g. "1A12"
    chain_id: str  # as written (chain ids are case-sensitive), e.g. "A", "AAA"
    length: int  # residues in the SEQRES sequence
    method: str  # PISCES's spelling: XRAY, NMR, EM
    resolution: float | None  # Å; None where the list says NA
    r_factor: float | None
    free_r: float | None  # None for NA and for PISCES's 1.00 placeholder

    @property
    def id(self) -> str:
        """The list's own spelling, PDB id + chain id (1A12A)."""
        return self.pdb_id + self.chain_id


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="ascii") if path.suffix == ".gz" else open(path, encoding="ascii")


def _number(value: str, kind: type, where: str, column: str) -> float | int | None:
    if value.upper() == "NA":
        return None
    try:
        return kind(value)
    except ValueError:
        raise PiscesError(f"{where}: {column} {value!r} is not a number") from None


def _parse_row(fields: list[str], where: str) -> PiscesChain:
    if len(fields) != 6:
        raise PiscesError(
            f"{where}: expected 6 columns (IDs length Exptl. resolution R-factor FreeRvalue), got {fields}"
        )
    match = CHAIN.fullmatch(fields[0])
    if not match:
        raise PiscesError(f"{where}: {fields[0]!r} is not a PDB id (digit + 3 letters/digits) followed by a chain id")
    length = _number(fields[1], int, where, "length")
    if length is None or length < 1:
        raise PiscesError(f"{where}: length {fields[1]!r} must be a positive number of residues")
    free_r = _number(fields[5], float, where, "FreeRvalue")
    return PiscesChain(
        pdb_id=match["pdb"].upper(),
        chain_id=match["chain"],
        length=length,
        method=fields[2],
        resolution=_number(fields[3], float, where, "resolution"),
        r_factor=_number(fields[4], float, where, "R-factor"),
        free_r=None if free_r is not None and free_r >= NO_FREE_R else free_r,
    )


def read_pisces(path: str | Path) -> list[PiscesChain]:
    """Every chain of a PISCES list (plain or .gz), in file order; a malformed line raises PiscesError."""
    path = Path(path)
    chains: list[PiscesChain] = []
    with _open_text(path) as f:
        header_seen = False
        for number, line in enumerate(f, start=1):
            fields, where = line.split(), f"{path}:{number}"
            if not fields:
                continue
            if not header_seen:
                if tuple(fields) not in HEADERS:
                    raise PiscesError(
                        f"{where}: not a PISCES header (expected {' '.join(HEADERS[0])}): {line.strip()!r}"
                    )
                header_seen = True
                continue
            chains.append(_parse_row(fields, where))
    if not header_seen:
        raise PiscesError(f"{path}: empty file, not a PISCES list")
    return chains


def _within(value: float | None, limit: float | None) -> bool:
    # an unknown value (NA) cannot be shown to meet a limit, so it fails one
    return limit is None or (value is not None and value <= limit)


def filter_pisces(
    chains: Iterable[PiscesChain],
    max_resolution: float | None = None,  # Å, inclusive
    max_r_factor: float | None = None,  # inclusive
    min_length: int | None = None,  # residues, inclusive
    max_length: int | None = None,
) -> list[PiscesChain]:
    """The chains within every limit given (None: no limit); a chain with NA for a limited column is dropped."""
    return [
        c
        for c in chains
        if _within(c.resolution, max_resolution)
        and _within(c.r_factor, max_r_factor)
        and (min_length is None or c.length >= min_length)
        and (max_length is None or c.length <= max_length)
    ]


def pisces_entries(chains: Iterable[PiscesChain]) -> list[str]:
    """The PDB ids of the chains, each once, in list order (several chains of one entry share a download)."""
    return list(dict.fromkeys(c.pdb_id for c in chains))
