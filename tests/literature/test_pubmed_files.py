"""Baseline/update files: md5 siblings, DeleteCitation across files in order, listing and fetching from a mirror.

The real file is medline16n0902.xml.gz (604 MedlineCitation, one DeleteCitation of 26432306, no .md5 in
../shared). The later update files of the tests are crafted in tmp_path from its own records: one revises
18621939 (a new title) and withdraws 17942999, one restores 17942999. Mirrors are tmp_path folders, served
over HTTP by http.server's directory listing on 127.0.0.1, the way NLM's file server lists its folder.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import re
import shutil
import threading
from pathlib import Path

import pytest

from components.fetch import FetchError
from pipelines.literature.sources.pubmed import (
    fetch_update_files,
    iter_articles,
    list_update_files,
    plan_merge,
    read_files,
    read_md5,
)

DATA = Path(__file__).parents[2].parent / "shared" / "data" / "literature"
MEDLINE_2016 = DATA / "medline_update_2016" / "medline16n0902.xml.gz"
REVISED_TITLE = "A revised title, as an update file would carry it."


@pytest.fixture(scope="module")
def medline_text() -> str:
    if not MEDLINE_2016.is_file():
        pytest.fail(f"sample data not found at {MEDLINE_2016}")
    return gzip.decompress(MEDLINE_2016.read_bytes()).decode()


def citation(text: str, pmid: str) -> str:
    """The real MedlineCitation element of `pmid`, as the file spells it."""
    match = re.search(
        rf'<MedlineCitation [^>]*>\s*<PMID Version="1">{pmid}</PMID>.*?</MedlineCitation>', text, re.DOTALL
    )
    assert match, pmid
    return match.group(0)


def write_update(path: Path, text: str, body: str, md5: bool = True) -> Path:
    """A gzipped MedlineCitationSet with the real file's header around `body`, and its NLM-style .md5."""
    header = text[: text.index("<MedlineCitationSet>") + len("<MedlineCitationSet>")]
    data = gzip.compress(f"{header}\n{body}\n</MedlineCitationSet>\n".encode(), mtime=0)
    path.write_bytes(data)
    if md5:
        path.with_name(path.name + ".md5").write_text(f"MD5({path.name})= {hashlib.md5(data).hexdigest()}\n")
    return path


@pytest.fixture
def mirror(tmp_path, medline_text) -> Path:
    """The real 0902 with its .md5, then 0903 (revises 18621939, deletes 17942999) and 0904 (restores it)."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    real = folder / MEDLINE_2016.name
    shutil.copyfile(MEDLINE_2016, real)  # a test-time copy in tmp_path: the real file needs a sibling .md5
    real.with_name(real.name + ".md5").write_text(f"MD5({real.name})= {hashlib.md5(real.read_bytes()).hexdigest()}\n")
    revised = re.sub(
        r"<ArticleTitle>.*?</ArticleTitle>",
        f"<ArticleTitle>{REVISED_TITLE}</ArticleTitle>",
        citation(medline_text, "18621939"),
    )
    delete = '<DeleteCitation>\n<PMID Version="1">17942999</PMID>\n</DeleteCitation>'
    write_update(folder / "medline16n0903.xml.gz", medline_text, revised + "\n" + delete)
    write_update(folder / "medline16n0904.xml.gz", medline_text, citation(medline_text, "17942999"))
    (folder / "README.txt").write_text("not an update file\n")
    return folder


def names(folder: Path) -> list[Path]:
    return [folder / f"medline16n{n}.xml.gz" for n in ("0902", "0903", "0904")]


# ---- md5 ------------------------------------------------------------------------------------------


def test_real_file_read_with_its_md5_sibling(mirror):
    records = list(read_files([mirror / MEDLINE_2016.name]))
    assert len(records) == 604  # its own DeleteCitation (26432306) names a PMID it does not hold
    assert records[0].pmid == "17942999" and records[-1].pmid == "26109528"


def test_md5_mismatch_is_refused_naming_the_file_before_any_record(mirror, medline_text):
    bad = write_update(mirror / "medline16n0905.xml.gz", medline_text, citation(medline_text, "18621939"), md5=False)
    bad.with_name(bad.name + ".md5").write_text(f"MD5({bad.name})= {'0' * 32}\n")
    reader = read_files([mirror / MEDLINE_2016.name, bad])
    with pytest.raises(FetchError, match=re.escape(str(bad)) + ": checksum mismatch: expected md5:0{32}, got md5:"):
        next(reader)  # the first file is fine, but nothing is read until every file has been checked


def test_missing_md5_is_refused_unless_allowed():
    with pytest.raises(FetchError, match=r"medline16n0902.xml.gz: no medline16n0902.xml.gz.md5 beside it"):
        next(read_files([MEDLINE_2016]))
    assert sum(1 for _ in read_files([MEDLINE_2016], require_md5=False)) == 604  # ../shared has no .md5


def test_md5_file_formats(mirror):
    real = mirror / MEDLINE_2016.name
    digest = hashlib.md5(real.read_bytes()).hexdigest()
    sha256 = hashlib.sha256(real.read_bytes()).hexdigest()  # the copy is the file SOURCE.md describes
    assert sha256 == "23040f3c46ac2ce2b49f3a65d3b874dec8334f398d3b89cc1a84edd60c051598"
    assert read_md5(real) == f"md5:{digest}"  # NLM's "MD5(name)= hex"
    real.with_name(real.name + ".md5").write_text(f"{digest}  {real.name}\n")  # md5sum's "hex  name"
    assert read_md5(real) == f"md5:{digest}"
    real.with_name(real.name + ".md5").write_text(f"MD5(pubmed25n0001.xml.gz)= {digest}\n")
    with pytest.raises(FetchError, match="gives the MD5 of 'pubmed25n0001.xml.gz', not of 'medline16n0902.xml.gz'"):
        read_md5(real)
    real.with_name(real.name + ".md5").write_text("<html><body>404 Not Found</body></html>")
    with pytest.raises(FetchError, match="no MD5 digest in it; it is an HTML page"):
        read_md5(real)


# ---- DeleteCitation and revised records across files ------------------------------------------------


def test_later_file_revises_and_deletes_earlier_records(mirror):
    records = list(read_files(names(mirror)[:2]))
    pmids = [r.pmid for r in records]
    assert len(records) == 603 and "17942999" not in pmids  # withdrawn by 0903's DeleteCitation
    assert pmids.count("18621939") == 1 and pmids[-1] == "18621939"  # yielded where its last version is
    assert records[-1].title == REVISED_TITLE
    plan = plan_merge(names(mirror)[:2])
    assert (plan.replaced, plan.removed, plan.deleted) == (1, 1, {"26432306", "17942999"})


def test_a_deleted_pmid_that_reappears_later_is_back(mirror):
    records = list(read_files(names(mirror)))
    assert len(records) == 604 and records[-1].pmid == "17942999"
    assert records[-1].title.startswith("Neuroplasticity in the processing of pitch dimensions")


def test_order_decides_deletions_apply_only_to_what_came_before(mirror):
    records = list(read_files([names(mirror)[1], names(mirror)[0]]))  # the update read first: wrong order
    by_pmid = {r.pmid: r for r in records}
    assert len(records) == 604 and "17942999" in by_pmid  # the deletion came before the record it names
    assert by_pmid["18621939"].title != REVISED_TITLE  # the older version, read last, wins


# ---- listing and fetching from a mirror ---------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output clean; requests are counted instead
        self.server.paths.append(self.path)


@pytest.fixture
def served(mirror):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(mirror)))
    server.paths = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_list_update_files_from_folder_file_url_and_http(mirror, served):
    expected = ["medline16n0902.xml.gz", "medline16n0903.xml.gz", "medline16n0904.xml.gz"]
    (mirror / "pubmed25n0001.xml.gz").write_bytes(b"")  # a later series sorts after the 2016 one
    assert list_update_files(str(mirror)) == [*expected, "pubmed25n0001.xml.gz"]
    assert list_update_files(mirror.as_uri()) == [*expected, "pubmed25n0001.xml.gz"]
    _, url = served
    assert list_update_files(url) == [*expected, "pubmed25n0001.xml.gz"]  # from http.server's HTML index


def test_fetch_update_files_over_http_verifies_and_skips_what_it_has(tmp_path, mirror, served):
    server, url = served
    dest = tmp_path / "raw"
    paths = fetch_update_files(url, dest)
    assert [p.name for p in paths] == [p.name for p in names(mirror)]
    for path in paths:
        assert path.read_bytes() == (mirror / path.name).read_bytes()
        assert (dest / (path.name + ".md5")).is_file()
    assert len(list(read_files(paths))) == 604
    server.paths.clear()
    fetch_update_files(url, dest)  # everything is there and verified: only the index page is asked for
    assert server.paths == ["/"]


def test_fetch_refuses_a_file_that_does_not_match_its_md5(tmp_path, mirror, served):
    _, url = served
    (mirror / "medline16n0903.xml.gz.md5").write_text(f"MD5(medline16n0903.xml.gz)= {'f' * 32}\n")
    dest = tmp_path / "raw"
    with pytest.raises(FetchError, match=r"medline16n0903.xml.gz: checksum mismatch: expected md5:f{32}"):
        fetch_update_files(url, dest, names=["medline16n0903.xml.gz"])
    assert not (dest / "medline16n0903.xml.gz").exists()  # no unverified file is left behind
    with pytest.raises(ValueError, match="not a PubMed baseline/update file name"):
        fetch_update_files(url, dest, names=["../etc/passwd"])


def test_records_of_a_fetched_file_match_the_source(tmp_path, mirror):
    paths = fetch_update_files(str(mirror), tmp_path / "raw", names=["medline16n0902.xml.gz"])  # a local mirror
    assert [r.pmid for r in iter_articles(paths[0])] == [r.pmid for r in iter_articles(MEDLINE_2016)]
