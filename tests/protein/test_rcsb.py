"""RCSB pulls from a mirror of real PDB entries served on 127.0.0.1, and the Search API against a local handler.

The mirror holds real shared entries under RCSB's names ({ID}.pdb.gz) and an mmCIF version of 107L written
with gemmi ({ID}.cif.gz). Covered: pulls by list, id file and PISCES subset; manifest hashes (107L's equals
the sha256 SOURCE.md publishes); a second pull downloads nothing; a changed entry is reported and recorded;
a locally damaged file is fetched again; 404 fails naming id and URL, or is recorded with skip_missing;
invalid ids; a broken body refused. Search: every page asked with the right start/rows, and a 204.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import logging
import shutil
import threading

import pytest

from components.http import PoliteClient
from pipelines.protein.sources.rcsb import (
    RcsbError,
    check_pdb_id,
    ids_from_pisces,
    pull_entries,
    read_id_file,
    search,
)

SHA_107L = "1f23a5363c61ea23213598f254a0d4c31e48873f74ff2be2dc2b2492f085aa9f"  # SOURCE.md's sha256 of 107L.pdb.gz
ENTRIES = {"107L": "107L.pdb.gz", "1IFC": "1IFC.pdb.gz", "1W99": "1W99.pdb.gz", "1A8D": "1a8d.pdb.gz"}
FAST = 50.0  # requests/s against the loopback


@pytest.fixture(scope="module")
def mirror_dir(shared_data, tmp_path_factory):
    import gemmi

    folder = tmp_path_factory.mktemp("rcsb-mirror")
    for pdb_id, name in ENTRIES.items():
        shutil.copyfile(shared_data / "protein" / name, folder / f"{pdb_id}.pdb.gz")
    structure = gemmi.read_structure(str(shared_data / "protein" / "107L.pdb.gz"))
    structure.setup_entities()
    cif = structure.make_mmcif_document().as_string().encode()
    (folder / "107L.cif.gz").write_bytes(gzip.compress(cif, mtime=0))
    return folder


@pytest.fixture
def mirror(mirror_dir, tmp_path, loopback):
    """A fresh copy per test (some tests change files on the server), served over HTTP."""
    folder = tmp_path / "mirror"
    shutil.copytree(mirror_dir, folder)
    return folder, loopback(folder)


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(out):
    return json.loads((out / "manifest.json").read_text())


def test_pull_by_list_records_hashes(mirror, tmp_path):
    folder, url = mirror
    out = tmp_path / "pdb"
    paths = pull_entries(["107l", "1IFC"], out, mirror=url, fmt="pdb", rate=FAST)
    assert paths == [out / "107L.pdb.gz", out / "1IFC.pdb.gz"]
    assert (out / "107L.pdb.gz").read_bytes() == (folder / "107L.pdb.gz").read_bytes()
    records = {f["name"]: f for f in manifest(out)["files"]}
    assert records["107L.pdb.gz"] == {
        "name": "107L.pdb.gz",
        "pdb_id": "107L",
        "format": "pdb",
        "size": (folder / "107L.pdb.gz").stat().st_size,
        "sha256": SHA_107L,
        "url": f"{url}/107L.pdb.gz",
    }
    assert records["1IFC.pdb.gz"]["sha256"] == sha(out / "1IFC.pdb.gz")
    assert manifest(out)["missing"] == []


def test_mmcif_is_the_default(mirror, tmp_path):
    folder, url = mirror
    [path] = pull_entries(["107L"], tmp_path / "cif", mirror=url, rate=FAST)
    assert path.name == "107L.cif.gz" and gzip.decompress(path.read_bytes()).startswith(b"data_107L")
    assert manifest(tmp_path / "cif")["files"][0]["format"] == "cif"


def test_pull_from_a_folder_mirror(mirror, tmp_path):
    folder, _ = mirror
    paths = pull_entries(["1W99"], tmp_path / "pdb", mirror=str(folder), fmt="pdb")
    assert sha(paths[0]) == sha(folder / "1W99.pdb.gz")


def test_pull_by_id_file(mirror, tmp_path):
    _, url = mirror
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("# lysozyme and a fatty-acid binding protein\n107L\n\n1ifc  # lower case is fine\n107L\n")
    ids = read_id_file(ids_file)
    assert ids == ["107L", "1IFC", "107L"]
    paths = pull_entries(ids, tmp_path / "pdb", mirror=url, fmt="pdb", rate=FAST)
    assert [p.name for p in paths] == ["107L.pdb.gz", "1IFC.pdb.gz"]  # duplicates pulled once


def test_pull_a_pisces_subset(mirror, tmp_path, shared_data):
    from pipelines.protein.sources.pisces import read_pisces

    _, url = mirror
    chains = read_pisces(shared_data / "protein" / "cullpdb_pc40_res2.0_R0.25_d190801_chains15139")
    subset = [c for c in chains if c.pdb_id in ENTRIES]  # the shared entries that are in the real list
    assert sorted(c.id for c in subset) == ["1A8DA", "1IFCA", "1W99A"]
    ids = ids_from_pisces(subset, max_resolution=1.9)
    assert set(ids) == {c.pdb_id for c in subset if c.resolution <= 1.9}
    paths = pull_entries(ids, tmp_path / "pdb", mirror=url, fmt="pdb", rate=FAST)
    assert [p.name[:4] for p in paths] == ids


def test_second_pull_downloads_nothing(mirror, tmp_path):
    _, url = mirror
    out = tmp_path / "pdb"
    client = PoliteClient(rate=FAST, name="test")
    pull_entries(["107L", "1IFC"], out, mirror=url, fmt="pdb", client=client)
    assert client.requests == 2
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    pull_entries(["107L", "1IFC"], out, mirror=url, fmt="pdb", client=client)
    assert client.requests == 2
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes  # manifest untouched in content too
    pull_entries(["107L", "1IFC", "1W99"], out, mirror=url, fmt="pdb", client=client)  # only the new one
    assert client.requests == 3


def test_damaged_local_file_is_fetched_again(mirror, tmp_path):
    _, url = mirror
    out = tmp_path / "pdb"
    pull_entries(["107L"], out, mirror=url, fmt="pdb", rate=FAST)
    (out / "107L.pdb.gz").write_bytes(b"truncated")
    pull_entries(["107L"], out, mirror=url, fmt="pdb", rate=FAST)
    assert sha(out / "107L.pdb.gz") == SHA_107L


def test_changed_entry_is_reported(mirror, tmp_path, caplog, shared_data):
    folder, url = mirror
    out = tmp_path / "pdb"
    pull_entries(["107L", "1IFC"], out, mirror=url, fmt="pdb", rate=FAST)
    remediated = gzip.compress(gzip.decompress((folder / "107L.pdb.gz").read_bytes()) + b"REMARK 999 remediated\n")
    (folder / "107L.pdb.gz").write_bytes(remediated)
    with caplog.at_level(logging.WARNING, logger="scifolio.protein.sources"):
        pull_entries(["107L", "1IFC"], out, mirror=url, fmt="pdb", rate=FAST, refresh=True)
    changed = [r.getMessage() for r in caplog.records if "changed on the server" in r.getMessage()]
    assert len(changed) == 1 and changed[0].startswith("107L: ") and SHA_107L in changed[0]
    new = hashlib.sha256(remediated).hexdigest()
    assert {f["pdb_id"]: f["sha256"] for f in manifest(out)["files"]}["107L"] == new
    assert sha(out / "107L.pdb.gz") == new


def test_missing_entry_fails_or_is_recorded(mirror, tmp_path):
    _, url = mirror
    out = tmp_path / "pdb"
    with pytest.raises(RcsbError, match=rf"PDB entry 9XYZ: not on the server \({url}/9XYZ.pdb.gz.*fmt='cif'"):
        pull_entries(["107L", "9XYZ", "1IFC"], out, mirror=url, fmt="pdb", rate=FAST)
    assert [f["pdb_id"] for f in manifest(out)["files"]] == ["107L"]  # pulled before the error, kept and recorded
    paths = pull_entries(["107L", "9XYZ", "1IFC"], out, mirror=url, fmt="pdb", rate=FAST, skip_missing=True)
    assert [p.name for p in paths] == ["107L.pdb.gz", "1IFC.pdb.gz"]
    assert manifest(out)["missing"] == [{"id": "9XYZ", "url": f"{url}/9XYZ.pdb.gz"}]


def test_a_body_that_is_not_the_entry_is_refused(mirror, tmp_path):
    folder, url = mirror
    (folder / "2LZM.cif.gz").write_bytes(b"<html>Service unavailable</html>")
    with pytest.raises(RcsbError, match=r"2LZM: .*2LZM.cif.gz is not a complete gzip file"):
        pull_entries(["2LZM"], tmp_path / "cif", mirror=url, rate=FAST)
    (folder / "2LZM.cif.gz").write_bytes(gzip.compress(b"<html>not mmCIF</html>"))
    with pytest.raises(RcsbError, match=r"2LZM: .* is not mmCIF"):
        pull_entries(["2LZM"], tmp_path / "cif", mirror=url, rate=FAST)
    assert not (tmp_path / "cif" / "2LZM.cif.gz").exists()


@pytest.mark.parametrize("bad", ["1AB", "ABCD", "1AB_", "12345", ""])
def test_invalid_ids(bad, tmp_path):
    with pytest.raises(ValueError, match="is not a PDB id: 4 letters or digits, the first a digit"):
        pull_entries(["107L", bad], tmp_path, mirror="http://127.0.0.1:9/")  # refused before any network
    assert not (tmp_path / "manifest.json").exists()


def test_id_file_error_names_the_line(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("107L\n# comment\n1 ABC\n")
    with pytest.raises(ValueError, match=r"ids.txt:3: '1 ABC' is not a PDB id"):
        read_id_file(path)


def test_a_string_is_not_an_id_list(tmp_path):
    with pytest.raises(TypeError, match="read_id_file"):
        pull_entries("107L", tmp_path)
    with pytest.raises(ValueError, match="format 'mmtf'"):
        pull_entries(["107L"], tmp_path, fmt="mmtf")
    assert check_pdb_id(" 1a8d ") == "1A8D"


# ---- Search API ---------------------------------------------------------------------------------


class SearchServer:
    """POST /query: the v2 answer shape, paginated over `ids` (204 when there are none); records each body."""

    def __init__(self, ids):
        self.ids, self.bodies = ids, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.bodies.append(body)
                if not server.ids:
                    self.send_response(204)
                    self.end_headers()
                    return
                page = body["request_options"]["paginate"]
                chunk = server.ids[page["start"] : page["start"] + page["rows"]]
                answer = {
                    "query_id": "5f0d8c4e-test",
                    "result_type": "entry",
                    "total_count": len(server.ids),
                    "result_set": [{"identifier": i, "score": 1.0 - k / 100} for k, i in enumerate(chunk)],
                }
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/rcsbsearch/v2/query"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


QUERY = {
    "type": "terminal",
    "service": "text",
    "parameters": {"attribute": "rcsb_entry_info.resolution_combined", "operator": "less_or_equal", "value": 1.5},
}


@pytest.fixture
def search_server():
    servers = []

    def start(ids):
        servers.append(SearchServer(ids))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def test_search_asks_every_page(search_server):
    server = search_server(["107L", "1IFC", "1W99", "1A8D", "2LZM"])
    ids = search(QUERY, url=server.url, rows=2, rate=FAST)
    assert ids == ["107L", "1IFC", "1W99", "1A8D", "2LZM"]
    assert [b["request_options"]["paginate"] for b in server.bodies] == [
        {"start": 0, "rows": 2},
        {"start": 2, "rows": 2},
        {"start": 4, "rows": 2},
    ]
    assert all(b["query"] == QUERY and b["return_type"] == "entry" for b in server.bodies)


def test_search_with_a_full_request_and_max_results(search_server):
    server = search_server([f"{n}ABC" for n in range(1, 10)])
    request = {"query": QUERY, "return_type": "entry", "request_options": {"sort": [{"sort_by": "score"}]}}
    assert search(request, url=server.url, rows=4, rate=FAST, max_results=5) == ["1ABC", "2ABC", "3ABC", "4ABC", "5ABC"]
    assert len(server.bodies) == 2 and server.bodies[0]["request_options"]["sort"] == [{"sort_by": "score"}]


def test_search_without_hits(search_server):
    server = search_server([])
    assert search(QUERY, url=server.url, rate=FAST) == []
    assert len(server.bodies) == 1
