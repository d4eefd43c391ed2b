"""components.fetch against a real local HTTP server with injected faults, and hostile archives."""

from __future__ import annotations

import hashlib
import http.server
import io
import logging
import re
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import pytest

from components.fetch import MAX_EXPANDED_BYTES, MAX_RATIO, Expansion, FetchError, extract, fetch, resolve, verify

DATA = Path(__file__).parents[2].parent / "shared" / "data" / "energy" / "ETTh1.csv"
NIH_IMAGES = Path(__file__).parents[2].parent / "shared" / "data" / "medical" / "nih_chestxray14" / "images"
NAME = "ETTh1.csv"
FAST = dict(backoff=0.01, timeout=5.0, progress=False)  # keep retries quick


@pytest.fixture(scope="module")
def payload() -> bytes:
    if not DATA.is_file():
        pytest.fail(f"sample data not found at {DATA}")
    return DATA.read_bytes()


def sha256(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def md5(b: bytes) -> str:
    return "md5:" + hashlib.md5(b).hexdigest()


# ---- a threaded HTTP server serving `payload` at /ETTh1.csv, with a queue of faults -------------


class Server:
    """Faults are consumed one per request, in order; then requests are served normally.

    A fault is an int (answer with that status), ("drop", n) (send the headers of the full answer,
    then only n bytes of body, then close), or ("stall", n, s) (n bytes, then s seconds of silence).
    """

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.faults: list = []
        self.ignore_range = False
        self.basic: str | None = None  # when set, requests must carry `Authorization: <basic>`
        self.requests: list[dict] = []  # {"path", "range", "status", "auth"} per request
        self.lock = threading.Lock()

    def url(self, name: str = NAME) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


def _handler(server: Server) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like a real server

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            with server.lock:
                fault = server.faults.pop(0) if server.faults else None
                record = {
                    "path": self.path,
                    "range": self.headers.get("Range"),
                    "status": None,
                    "auth": self.headers.get("Authorization"),
                }
                server.requests.append(record)
            if self.path != "/" + NAME:
                fault = 404
            elif server.basic and record["auth"] != server.basic:
                fault = 401
            if isinstance(fault, int):
                record["status"] = fault
                self.send_response(fault)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return

            body, status = server.payload, 200
            m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if m and not server.ignore_range:
                start = int(m.group(1))
                body, status = body[start:], 206
            record["status"] = status
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            if status == 206:
                total = len(server.payload)
                self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
            self.end_headers()
            if fault is None:
                self.wfile.write(body)
                return
            self.wfile.write(body[: fault[1]])
            self.wfile.flush()
            if fault[0] == "stall":
                time.sleep(fault[2])
            self.close_connection = True  # drop: the body is cut short

    return Handler


@pytest.fixture
def server(payload: bytes):
    srv = Server(payload)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(srv))
    httpd.daemon_threads = True
    httpd.handle_error = lambda request, address: None  # writes to dropped clients: expected
    srv.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    httpd.shutdown()
    httpd.server_close()
    thread.join()


# ---- downloads --------------------------------------------------------------------------------


@pytest.mark.parametrize("digest", [sha256, md5])
def test_download_verified(server, payload, tmp_path, digest):
    dest = tmp_path / "raw" / "deep" / NAME  # parent folders are created
    out = fetch(server.url(), dest, checksum=digest(payload), **FAST)
    assert out == dest
    assert dest.read_bytes() == payload
    assert not dest.with_name(NAME + ".part").exists()
    assert [r["status"] for r in server.requests] == [200]


@pytest.mark.parametrize("chunk", [1 << 16, 1 << 20])
def test_dropped_connection_resumes_with_range(server, payload, tmp_path, caplog, chunk):
    cut = 1_500_000
    server.faults = [("drop", cut)]
    dest = tmp_path / NAME
    with caplog.at_level(logging.WARNING, logger="scifolio.fetch"):
        fetch(server.url(), dest, checksum=sha256(payload), chunk_size=chunk, **FAST)
    assert dest.read_bytes() == payload
    assert len(server.requests) == 2
    assert server.requests[0]["range"] is None
    n = int(re.fullmatch(r"bytes=(\d+)-", server.requests[1]["range"]).group(1))
    assert cut - chunk < n <= cut  # resumed from what arrived (less at most one partial chunk)
    assert server.requests[1]["status"] == 206
    assert any("retry 1/4" in r.getMessage() and f"from byte {n}" in r.getMessage() for r in caplog.records)


def test_stalled_body_times_out_and_resumes(server, payload, tmp_path):
    server.faults = [("stall", 1_500_000, 2.0)]
    dest = tmp_path / NAME
    fetch(server.url(), dest, checksum=sha256(payload), backoff=0.01, timeout=0.3, progress=False)
    assert dest.read_bytes() == payload
    assert len(server.requests) == 2
    assert server.requests[1]["range"] is not None and server.requests[1]["status"] == 206


def test_server_errors_are_retried(server, payload, tmp_path, caplog):
    server.faults = [500, 503]
    dest = tmp_path / NAME
    with caplog.at_level(logging.WARNING, logger="scifolio.fetch"):
        fetch(server.url(), dest, checksum=sha256(payload), **FAST)
    assert dest.read_bytes() == payload
    assert [r["status"] for r in server.requests] == [500, 503, 200]
    reasons = [r.getMessage() for r in caplog.records]
    assert len(reasons) == 2 and "HTTP 500" in reasons[0] and "HTTP 503" in reasons[1]


@pytest.mark.parametrize("status", [408, 429])
def test_transient_4xx_are_retried(server, payload, tmp_path, status):
    server.faults = [status]
    fetch(server.url(), tmp_path / NAME, **FAST)
    assert [r["status"] for r in server.requests] == [status, 200]


def test_gives_up_after_retries(server, tmp_path):
    server.faults = [500] * 10
    dest = tmp_path / NAME
    with pytest.raises(FetchError) as e:
        fetch(server.url(), dest, retries=2, **FAST)
    assert server.url() in str(e.value) and "HTTP 500" in str(e.value) and "3 attempts" in str(e.value)
    assert len(server.requests) == 3
    assert not dest.exists() and not dest.with_name(NAME + ".part").exists()


def test_basic_auth_sent_on_every_attempt_and_refusal_not_retried(server, payload, tmp_path):
    import base64

    server.basic = "Basic " + base64.b64encode(b"reader:right-pw").decode()
    dest = tmp_path / NAME
    for auth in (None, ("reader", "wrong-pw")):
        with pytest.raises(FetchError, match="HTTP 401") as e:
            fetch(server.url(), dest, auth=auth, **FAST)
        assert e.value.status == 401 and "wrong-pw" not in str(e.value)
        assert not dest.exists() and not dest.with_name(NAME + ".part").exists()
    assert [r["status"] for r in server.requests] == [401, 401]  # a refusal is final
    server.requests.clear()
    server.faults = [("drop", 1_500_000)]
    fetch(server.url(), dest, checksum=sha256(payload), auth=("reader", "right-pw"), **FAST)
    assert dest.read_bytes() == payload
    assert [(r["status"], r["auth"]) for r in server.requests] == [(200, server.basic), (206, server.basic)]


def test_server_ignoring_range_restarts_from_zero(server, payload, tmp_path):
    server.ignore_range = True
    server.faults = [("drop", 1_500_000)]
    dest = tmp_path / NAME
    fetch(server.url(), dest, checksum=sha256(payload), **FAST)
    assert dest.read_bytes() == payload  # not 1 MiB followed by the whole file
    assert server.requests[1]["range"] is not None and server.requests[1]["status"] == 200


def test_wrong_checksum_leaves_nothing(server, payload, tmp_path):
    dest = tmp_path / NAME
    wrong = hashlib.sha256(b"not the file").hexdigest()
    with pytest.raises(FetchError) as e:
        fetch(server.url(), dest, checksum=f"sha256:{wrong}", **FAST)
    msg = str(e.value)
    assert server.url() in msg and wrong in msg and hashlib.sha256(payload).hexdigest() in msg
    assert not dest.exists() and not dest.with_name(NAME + ".part").exists()
    assert len(server.requests) == 1  # a mismatch is not a transient failure


def test_malformed_checksum_fails_before_network(server, tmp_path):
    for bad in ["sha1:" + "0" * 40, "sha256:xyz", "md5:" + "0" * 31, "deadbeef"]:
        with pytest.raises(ValueError, match="malformed checksum"):
            fetch(server.url(), tmp_path / NAME, checksum=bad, **FAST)
    assert server.requests == []


def test_404_fails_at_once(server, tmp_path):
    url = server.url("missing.csv")
    dest = tmp_path / "missing.csv"
    with pytest.raises(FetchError) as e:
        fetch(url, dest, backoff=10.0, timeout=5.0, progress=False)  # a retry would take 10 s
    assert url in str(e.value) and "404" in str(e.value)
    assert len(server.requests) == 1
    assert not dest.exists() and not dest.with_name("missing.csv.part").exists()


def test_existing_verified_dest_makes_no_request(server, payload, tmp_path):
    dest = tmp_path / NAME
    dest.write_bytes(payload)
    assert fetch(server.url(), dest, checksum=md5(payload), **FAST) == dest
    assert server.requests == []


def test_existing_corrupt_dest_is_replaced(server, payload, tmp_path):
    dest = tmp_path / NAME
    dest.write_bytes(payload[:1000])
    fetch(server.url(), dest, checksum=sha256(payload), **FAST)
    assert dest.read_bytes() == payload
    assert len(server.requests) == 1


def test_progress_bar_on_stderr(server, payload, tmp_path, capsys):
    fetch(server.url(), tmp_path / NAME, backoff=0.01, progress=True)
    assert NAME in capsys.readouterr().err


# ---- local mirrors ----------------------------------------------------------------------------


def test_resolve():
    assert resolve("https://mirror.example/data/", NAME) == "https://mirror.example/data/" + NAME
    assert resolve("https://mirror.example/data", "a b.csv") == "https://mirror.example/data/a%20b.csv"
    assert resolve("/srv/mirror", NAME) == f"/srv/mirror/{NAME}"


def test_local_folder_mirror(payload, tmp_path):
    src = resolve(str(DATA.parent), NAME)
    assert src == str(DATA)
    dest = fetch(src, tmp_path / "a" / NAME, checksum=sha256(payload), progress=False)
    assert dest.read_bytes() == payload


def test_file_url_mirror(payload, tmp_path):
    src = resolve(DATA.parent.as_uri(), NAME)
    assert src.startswith("file://") and src.endswith("/" + NAME)
    dest = fetch(src, tmp_path / NAME, checksum=md5(payload), progress=False)
    assert dest.read_bytes() == payload


def test_local_mirror_missing_and_mismatch(payload, tmp_path):
    src = resolve(DATA.parent.as_uri(), "nope.csv")
    with pytest.raises(FetchError, match=re.escape(src)):
        fetch(src, tmp_path / "nope.csv", progress=False)
    with pytest.raises(FetchError, match="checksum mismatch"):
        fetch(str(DATA), tmp_path / NAME, checksum=md5(b"other"), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_verify(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    verify(f, sha256(b"abc"))
    with pytest.raises(FetchError, match="expected sha256:"):
        verify(f, sha256(b"abd"))


# ---- archives ---------------------------------------------------------------------------------


def make_tar(path: Path, members: list[tuple], mode: str = "w:gz") -> Path:
    """members: (name, bytes) files, (name, "dir"), (name, "sym", target), (name, "lnk", target),
    (name, "fifo")."""
    with tarfile.open(path, mode) as tar:
        for name, *rest in members:
            info = tarfile.TarInfo(name)
            data = None
            if isinstance(rest[0], bytes):
                data = rest[0]
                info.size = len(data)
            elif rest[0] == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif rest[0] == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, rest[1]
            elif rest[0] == "lnk":
                info.type, info.linkname = tarfile.LNKTYPE, rest[1]
            elif rest[0] == "fifo":
                info.type = tarfile.FIFOTYPE
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


@pytest.fixture
def dirs(tmp_path):
    """An archives folder apart from `out`, the parent of the target: `out` must stay empty."""
    (tmp_path / "archives").mkdir()
    (tmp_path / "out").mkdir()
    return tmp_path / "archives", tmp_path / "out"


def test_good_tar_gz(dirs):
    archives, out = dirs
    arc = make_tar(
        archives / "good.tar.gz",
        [
            ("data", "dir"),
            ("data/a.csv", b"a,b\n1,2\n"),
            ("data/sub/b.txt", b"hello"),
            ("data/latest.csv", "sym", "a.csv"),
            ("data/copy.csv", "lnk", "data/a.csv"),
        ],
    )
    target = out / "target"
    files = extract(arc, target)
    assert sorted(files) == sorted(
        target / p for p in ["data/a.csv", "data/sub/b.txt", "data/latest.csv", "data/copy.csv"]
    )
    assert (target / "data/a.csv").read_bytes() == b"a,b\n1,2\n"
    assert (target / "data/sub/b.txt").read_bytes() == b"hello"
    assert (target / "data/latest.csv").is_symlink()
    assert (target / "data/latest.csv").read_bytes() == b"a,b\n1,2\n"
    assert (target / "data/copy.csv").read_bytes() == b"a,b\n1,2\n"
    assert [p.name for p in out.iterdir()] == ["target"]  # no staging folder left


@pytest.mark.parametrize("mode", ["w", "w:bz2", "w:xz"])
def test_other_tar_compressions(dirs, mode):
    archives, out = dirs
    arc = make_tar(archives / "x.tar", [("x.txt", b"x" * 100)], mode=mode)
    assert extract(arc, out / "t") == [out / "t" / "x.txt"]
    assert (out / "t" / "x.txt").read_bytes() == b"x" * 100


def test_good_zip(dirs):
    archives, out = dirs
    arc = archives / "good.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zf.writestr("d/one.txt", b"1")
        zf.writestr("two.txt", b"22")
    assert sorted(extract(arc, out / "z")) == [out / "z" / "d" / "one.txt", out / "z" / "two.txt"]
    assert (out / "z" / "two.txt").read_bytes() == b"22"


def _hostile_tars(tmp_path: Path) -> dict[str, list[tuple]]:
    return {
        "dotdot": [("ok.txt", b"fine"), ("../evil", b"pwned")],
        "nested-dotdot": [("ok.txt", b"fine"), ("a/../../evil", b"pwned")],
        "absolute": [("ok.txt", b"fine"), (str(tmp_path / "out" / "evil"), b"pwned")],
        "symlink-relative": [("ok.txt", b"fine"), ("link", "sym", "../"), ("link/evil", b"pwned")],
        "symlink-absolute": [("ok.txt", b"fine"), ("link", "sym", str(tmp_path / "out"))],
        "hardlink-outside": [("ok.txt", b"fine"), ("evil", "lnk", "../secret")],
        "fifo": [("ok.txt", b"fine"), ("evil", "fifo")],
    }


@pytest.mark.parametrize("kind", list(_hostile_tars(Path("/x"))))
@pytest.mark.parametrize("existing", [False, True], ids=["new-target", "existing-target"])
def test_hostile_tar_refused(dirs, tmp_path, kind, existing):
    archives, out = dirs
    members = _hostile_tars(tmp_path)[kind]
    arc = make_tar(archives / f"{kind}.tar.gz", members)
    target = out / "target"
    if existing:
        target.mkdir()
        (target / "keep.txt").write_bytes(b"keep")
    with pytest.raises(FetchError) as e:
        extract(arc, target)
    bad = members[-1][0] if kind != "symlink-relative" else "link"
    assert str(arc) in str(e.value) and repr(bad) in str(e.value)
    # nothing escaped, nothing half-written: out holds the untouched target or nothing at all
    assert not list(tmp_path.rglob("evil")) and not (tmp_path / "secret").exists()
    if existing:
        assert [p.name for p in out.iterdir()] == ["target"]
        assert [p.name for p in target.iterdir()] == ["keep.txt"]
    else:
        assert list(out.iterdir()) == []


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "/evil", "..\\evil"])
def test_hostile_zip_refused(dirs, name):
    archives, out = dirs
    arc = archives / "bad.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        zf.writestr(zipfile.ZipInfo(name), b"pwned")
    with pytest.raises(FetchError) as e:
        extract(arc, out / "target")
    assert str(arc) in str(e.value) and repr(name) in str(e.value)
    assert list(out.iterdir()) == []
    assert not list(out.parent.rglob("evil")) and not Path("/evil").exists()


def test_merge_into_existing_target(dirs):
    archives, out = dirs
    target = out / "target"
    (target / "sub").mkdir(parents=True)
    (target / "keep.txt").write_bytes(b"keep")
    (target / "sub" / "old.txt").write_bytes(b"old")
    arc = make_tar(archives / "m.tar.gz", [("sub/old.txt", b"new"), ("sub/new.txt", b"n")])
    assert sorted(extract(arc, target)) == [target / "sub" / "new.txt", target / "sub" / "old.txt"]
    assert (target / "keep.txt").read_bytes() == b"keep"
    assert (target / "sub" / "old.txt").read_bytes() == b"new"
    assert (target / "sub" / "new.txt").read_bytes() == b"n"
    assert [p.name for p in out.iterdir()] == ["target"]


def test_merge_conflict_leaves_target_untouched(dirs):
    archives, out = dirs
    target = out / "target"
    target.mkdir()
    (target / "a.txt").write_bytes(b"old")
    (target / "clash").write_bytes(b"a file")
    arc = make_tar(archives / "c.tar.gz", [("a.txt", b"new"), ("clash/x.txt", b"x")])
    with pytest.raises(FetchError, match="'clash'"):
        extract(arc, target)
    assert (target / "a.txt").read_bytes() == b"old"
    assert sorted(p.name for p in target.iterdir()) == ["a.txt", "clash"]
    assert [p.name for p in out.iterdir()] == ["target"]


def test_corrupt_archive(dirs, payload):
    archives, out = dirs
    good = make_tar(archives / "g.tar.gz", [("big.csv", payload)])
    bad = archives / "truncated.tar.gz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(FetchError, match=re.escape(str(bad))):
        extract(bad, out / "t")
    not_archive = archives / "plain.csv"
    not_archive.write_bytes(payload[:1000])
    with pytest.raises(FetchError, match="not a tar or zip"):
        extract(not_archive, out / "t")
    assert list(out.iterdir()) == []


# ---- decompression bombs: a 51 kB archive of zeros that would write 52 MB ------------------------

BOMB = 52 * 10**6  # bytes of zeros: gzip/deflate squeeze them to about 51 kB


def _zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_bomb_refused_by_ratio(dirs, kind):
    archives, out = dirs
    members = [("ok.txt", b"fine"), ("data/zeros.bin", bytes(BOMB))]
    make = make_tar if kind == "tar.gz" else _zip
    archive = make(archives / f"bomb.{kind}", members)
    assert archive.stat().st_size < 120_000  # the bomb: ~51 kB that would write 52 MB
    with pytest.raises(FetchError) as err:
        extract(archive, out / "target")
    message = str(err.value)
    assert message.startswith(f"{archive}: refusing member 'data/zeros.bin'")
    assert "max_ratio=100" in message and "decompression bomb" in message
    assert list(out.iterdir()) == []  # no target, no staging folder


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_total_cap_refused(dirs, kind):
    archives, out = dirs
    make = make_tar if kind == "tar.gz" else _zip
    archive = make(archives / f"big.{kind}", [("a.bin", bytes(600_000)), ("b.bin", bytes(600_000))])
    with pytest.raises(FetchError, match=r"refusing member 'b\.bin'.*max_bytes=1,000,000 bytes"):
        extract(archive, out / "target", max_bytes=1_000_000, max_ratio=10**6)
    assert list(out.iterdir()) == []
    # the same archive under a larger cap: the members expand as they should
    files = extract(archive, out / "target", max_bytes=2_000_000, max_ratio=10**6)
    assert sorted(p.name for p in files) == ["a.bin", "b.bin"]


def test_existing_target_untouched_when_refused(dirs):
    archives, out = dirs
    target = out / "target"
    target.mkdir()
    (target / "keep.txt").write_bytes(b"keep")
    archive = make_tar(archives / "bomb.tar.gz", [("keep.txt", b"overwritten"), ("zeros", bytes(BOMB))])
    with pytest.raises(FetchError, match="refusing member 'zeros'"):
        extract(archive, target)
    assert (target / "keep.txt").read_bytes() == b"keep"
    assert [p.name for p in out.iterdir()] == ["target"]


def test_bytes_are_counted_as_they_stream_not_taken_from_headers(tmp_path):
    """A header that understates its member (declared 10 bytes) is caught by the byte count."""
    archive = tmp_path / "a.bin"
    archive.write_bytes(b"x" * 1000)
    budget = Expansion(archive, max_bytes=5 * 2**20, max_ratio=10**9)
    budget.declare(10, "liar.bin")  # what the header says: fine
    sink = io.BytesIO()
    with pytest.raises(FetchError, match=r"refusing member 'liar\.bin': unpacked 6,291,456 bytes so far"):
        budget.copy(io.BytesIO(bytes(64 * 2**20)), sink, "liar.bin")
    assert sink.tell() <= 5 * 2**20  # the chunk past the cap was never written


def test_ratio_needs_more_than_a_megabyte(tmp_path):
    """A tar.gz of a few tiny files has a large ratio (512-byte blocks) and is no bomb."""
    archive = make_tar(tmp_path / "tiny.tar.gz", [(f"f{i}.txt", b"x" * 300) for i in range(50)])
    assert extract(archive, tmp_path / "t")


def test_bad_caps_are_a_value_error(tmp_path):
    archive = make_tar(tmp_path / "a.tar.gz", [("a", b"a")])
    with pytest.raises(ValueError, match="must be positive"):
        extract(archive, tmp_path / "t", max_ratio=0)


def test_real_data_passes_the_default_caps(tmp_path):
    if not DATA.is_file() or not NIH_IMAGES.is_dir():
        pytest.fail(f"real samples not found at {DATA} and {NIH_IMAGES}")
    assert MAX_RATIO == 100 and MAX_EXPANDED_BYTES >= 8 * 2**30  # NIH: ~4.5 GB from each ~4 GB archive
    pngs = sorted(NIH_IMAGES.glob("*.png"))[:10]
    members = [(DATA.name, DATA.read_bytes())] + [(f"images/{p.name}", p.read_bytes()) for p in pngs]
    for make, name in ((make_tar, "real.tar.gz"), (_zip, "real.zip")):
        archive = make(tmp_path / name, members)
        files = extract(archive, tmp_path / name.replace(".", "_"))
        assert len(files) == 11
        assert (tmp_path / name.replace(".", "_") / DATA.name).read_bytes() == DATA.read_bytes()
