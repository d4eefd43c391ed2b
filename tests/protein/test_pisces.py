"""PISCES lists: the real 2019 pc40 list (15,139 chains) read whole, known rows, the filters, and malformed lines.

The expected counts were taken from the file with awk, independently of the reader
(e.g. `awk 'NR>1 && $4<=1.5 && $5<=0.2' FILE | wc -l` -> 4378).
"""

from __future__ import annotations

import re

import pytest

from pipelines.protein.sources.pisces import PiscesChain, PiscesError, filter_pisces, pisces_entries, read_pisces

LIST_NAME = "cullpdb_pc40_res2.0_R0.25_d190801_chains15139"
HEADER = "IDs         length Exptl.  resolution  R-factor FreeRvalue\n"


@pytest.fixture(scope="module")
def chains(shared_data):
    return read_pisces(shared_data / "protein" / LIST_NAME)


def test_real_list_is_read_whole(chains):
    assert len(chains) == 15139
    assert len(pisces_entries(chains)) == 14449  # entries with several chains in the list are pulled once
    assert {c.method for c in chains} == {"XRAY"}
    assert max(c.resolution for c in chains) <= 2.0 and max(c.r_factor for c in chains) <= 0.25


def test_known_rows(chains):
    assert chains[0] == PiscesChain("1A12", "A", 413, "XRAY", 1.7, 0.19, 0.22)
    assert chains[0].id == "1A12A"
    by_id = {c.id: c for c in chains}
    assert by_id["1A1XA"].length == 108 and by_id["1A1XA"].resolution == 2.0
    # a three-character chain id: split after the 4-character PDB id, not at a fixed width
    assert by_id["6QSWAAA"] == PiscesChain("6QSW", "AAA", 291, "XRAY", 1.64, 0.16, 0.19)
    # R-free 1.00 is PISCES's "none reported" (139 chains of this list)
    assert by_id["7FD1A"].free_r is None and by_id["7FD1A"].r_factor == 0.16
    assert sum(c.free_r is None for c in chains) == 139
    assert by_id["1HW6A"].free_r == 0.42  # a real, large free R is kept


def test_filters(chains):
    assert len(filter_pisces(chains, max_resolution=1.5, max_r_factor=0.2)) == 4378
    assert len(filter_pisces(chains, min_length=51)) == 15139 - 567  # 567 chains of <= 50 residues
    assert filter_pisces(chains) == chains
    short = filter_pisces(chains, min_length=20, max_length=20)
    assert short and all(c.length == 20 for c in short)  # both bounds inclusive
    sharp = filter_pisces(chains, max_resolution=0.48)
    assert [c.id for c in sharp] == ["3NIRA", "5D8VA"]  # the two 0.48 Å structures


def test_na_values_and_the_current_header(tmp_path):
    path = tmp_path / "list"
    path.write_text("PDBchain len method resol rfac freerfac\n1ABCA 50 NMR NA NA NA\n2XYZb 120 XRAY 1.9 0.2 0.24\n\n")
    nmr, xray = read_pisces(path)
    assert (nmr.resolution, nmr.r_factor, nmr.free_r, nmr.method) == (None, None, None, "NMR")
    assert xray.chain_id == "b"  # chain ids are case-sensitive
    assert filter_pisces([nmr, xray], max_resolution=2.0) == [xray]  # unknown resolution fails a limit
    assert filter_pisces([nmr, xray], min_length=10) == [nmr, xray]


@pytest.mark.parametrize(
    "line, reason",
    [
        ("1A1XA       108  XRAY        2.000    0.21\n", "expected 6 columns"),
        ("1A1XA       1O8  XRAY        2.000    0.21    0.25\n", "length '1O8' is not a number"),
        ("1A1XA       108  XRAY        2.0O0    0.21    0.25\n", "resolution '2.0O0' is not a number"),
        ("A1XA        108  XRAY        2.000    0.21    0.25\n", "'A1XA' is not a PDB id"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, reason):
    path = tmp_path / "cullpdb"
    path.write_text(HEADER + "1A12A       413  XRAY        1.700    0.19    0.22\n" + line)
    with pytest.raises(PiscesError, match=rf"{re.escape(str(path))}:3: .*{re.escape(reason)}"):
        read_pisces(path)


def test_not_a_pisces_file(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("1A12\n1A1X\n")
    with pytest.raises(PiscesError, match=rf"{re.escape(str(path))}:1: not a PISCES header"):
        read_pisces(path)
    (tmp_path / "empty").write_text("")
    with pytest.raises(PiscesError, match="empty file"):
        read_pisces(tmp_path / "empty")
