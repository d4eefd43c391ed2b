"""components.fetch with a local mirror (a folder or a file:// URL) that holds symbolic links.

A link in a mirror folder could point anywhere: copying through it once put the bytes of
/etc/passwd into raw/. `resolve` refuses names that resolve outside the mirror folder and
`fetch` refuses to copy a link, so nothing is written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from components.fetch import FetchError, fetch, resolve

ETTH1 = Path(__file__).parents[2].parent / "shared" / "data" / "energy" / "ETTh1.csv"


@pytest.fixture
def mirror(tmp_path) -> Path:
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "real.csv").write_text("a,b\n1,2\n")
    return folder


def test_link_to_passwd_in_a_folder_mirror_is_refused(mirror, tmp_path):
    (mirror / "ETTh1.csv").symlink_to("/etc/passwd")
    dest = tmp_path / "raw" / "ETTh1.csv"
    with pytest.raises(FetchError) as err:
        fetch(resolve(str(mirror), "ETTh1.csv"), dest, progress=False)
    message = str(err.value)
    assert str(mirror / "ETTh1.csv") in message and "outside the mirror folder" in message
    assert "symbolic link to '/etc/passwd'" in message
    assert not dest.exists() and not list((tmp_path / "raw").glob("*"))


def test_link_given_directly_or_as_file_url_is_not_followed(mirror, tmp_path):
    link = mirror / "ETTh1.csv"
    link.symlink_to("/etc/passwd")
    for url in (str(link), link.as_uri()):  # fetch without resolve: the copy itself refuses links
        with pytest.raises(FetchError, match=re.escape(f"{url}: is a symbolic link to '/etc/passwd'")):
            fetch(url, tmp_path / "raw" / "ETTh1.csv", progress=False)
    assert not (tmp_path / "raw" / "ETTh1.csv").exists()
    with pytest.raises(FetchError, match="outside the mirror folder"):
        resolve(mirror.as_uri(), "ETTh1.csv")


def test_link_inside_the_mirror_is_refused_too(mirror, tmp_path):
    (mirror / "alias.csv").symlink_to("real.csv")  # resolves inside, but a mirror holds files, not links
    assert resolve(str(mirror), "alias.csv") == str(mirror / "alias.csv")
    with pytest.raises(FetchError, match="is a symbolic link to 'real.csv'"):
        fetch(resolve(str(mirror), "alias.csv"), tmp_path / "alias.csv", progress=False)
    assert not (tmp_path / "alias.csv").exists()


def test_linked_folder_and_dotdot_names_are_refused(mirror, tmp_path):
    (mirror / "etc").symlink_to("/etc")
    with pytest.raises(FetchError, match=r"etc is a symbolic link to '/etc'"):
        resolve(str(mirror), "etc/passwd")
    (tmp_path / "secret.csv").write_text("secret\n")
    with pytest.raises(FetchError, match="outside the mirror folder"):
        resolve(str(mirror), "../secret.csv")
    with pytest.raises(FetchError, match="outside the mirror folder"):
        resolve(mirror.as_uri(), "../secret.csv")


def test_real_files_and_a_linked_mirror_root_still_work(tmp_path):
    if not ETTH1.is_file():
        pytest.fail(f"sample data not found at {ETTH1}")
    root_link = tmp_path / "mirror-link"
    root_link.symlink_to(ETTH1.parent)  # the mirror folder itself may be reached through a link
    dest = fetch(resolve(str(root_link), ETTH1.name), tmp_path / "raw" / ETTH1.name, progress=False)
    assert dest.read_bytes() == ETTH1.read_bytes() and not os.path.islink(dest)
