"""The downloader against a local server: verified and atomic, resumable, refusing corrupt
files and web pages, offline at once, one download for two concurrent fetches, mirrors."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile

import pytest

from cortexalign.errors import InputError
from cortexalign.fetch import Fetcher, FetchError, OfflineError, RemoteFile
from cortexalign.fetch._download import PARTIAL_DIR
from cortexalign.fetch._env import apply_mirror, parse_mirrors

BODY = bytes(range(256)) * 1200  # 307,200 bytes: several 1 MiB-or-less reads


def _git_sha1(body: bytes) -> str:
    return hashlib.sha1(f"blob {len(body)}\0".encode() + body).hexdigest()


def _fetcher(root, **kw) -> Fetcher:
    return Fetcher(root, "cortexalign fetch test-entry", **kw)


@pytest.mark.parametrize("digest", ["sha256", "md5", "git_sha1", "s3-etag", "hf-sha256", "none"])
def test_download_is_checked_then_visible(server, home, digest):
    srv, base = server
    srv.add("w/model.pt", BODY, hub=digest == "hf-sha256")
    published = {"sha256": hashlib.sha256(BODY).hexdigest(), "md5": hashlib.md5(BODY).hexdigest(),
                 "git_sha1": _git_sha1(BODY)}
    kw = {digest: published[digest]} if digest in published else \
        {"server_digest": digest} if digest != "none" else {}
    rf = RemoteFile("sub/model.pt", f"{base}/w/model.pt", **kw)
    got = _fetcher(home).fetch([rf])[0]
    assert got.path == home / "sub/model.pt" and got.path.read_bytes() == BODY
    assert got.status == "downloaded" and got.transferred == len(BODY)
    expected = {"sha256": "sha256", "md5": "md5", "git_sha1": "git-sha1",
                "s3-etag": "S3 ETag md5", "hf-sha256": "hub sha256", "none": "size"}
    assert got.checked == expected[digest]
    assert not list((home / PARTIAL_DIR).rglob("*.part"))
    again = _fetcher(home).fetch([rf])[0]  # present: no second request
    assert again.status == "present" and len(srv.gets("w/model.pt")) == 1


def test_resume_after_a_cut_connection(server, home):
    srv, base = server
    srv.add("w/big.bin", BODY, cut=100_000, cut_times=1)
    rf = RemoteFile("big.bin", f"{base}/w/big.bin", md5=hashlib.md5(BODY).hexdigest())
    got = _fetcher(home).fetch([rf])[0]
    assert got.path.read_bytes() == BODY
    gets = srv.gets("w/big.bin")
    assert [g.range for g in gets] == [None, "bytes=100000-"]  # resumed, not restarted
    assert got.transferred == len(BODY) and got.status == "resumed"


def test_resume_by_a_later_command_after_repeated_cuts(server, home):
    srv, base = server
    served = srv.add("w/big.bin", BODY, cut=50_000, cut_times=10)
    rf = RemoteFile("big.bin", f"{base}/w/big.bin", sha256=hashlib.sha256(BODY).hexdigest())
    with pytest.raises(FetchError, match="broke 2 times.*rerun the same command"):
        _fetcher(home, retries=1).fetch([rf])
    assert not (home / "big.bin").exists()
    kept = home / PARTIAL_DIR / "big.bin.part"
    assert kept.stat().st_size == 100_000
    served.cut = None  # the server recovers; the same command resumes
    got = _fetcher(home).fetch([rf])[0]
    assert got.status == "resumed" and got.path.read_bytes() == BODY
    assert srv.gets("w/big.bin")[-1].range == "bytes=100000-"


def test_a_server_ignoring_ranges_restarts_the_file(server, home):
    srv, base = server
    srv.add("w/big.bin", BODY, cut=100_000, cut_times=1, no_range=True)
    rf = RemoteFile("big.bin", f"{base}/w/big.bin", md5=hashlib.md5(BODY).hexdigest())
    got = _fetcher(home).fetch([rf])[0]
    assert got.path.read_bytes() == BODY  # the 200 answer replaced the partial file
    assert [g.range for g in srv.gets("w/big.bin")] == [None, "bytes=100000-"]


@pytest.mark.parametrize("kind", ["md5", "s3-etag", "size"])
def test_a_corrupted_file_is_refused_and_never_visible(server, home, kind):
    srv, base = server
    srv.add("w/x.bin", BODY, corrupt=True)
    kw = {"md5": {"md5": hashlib.md5(BODY).hexdigest()}, "s3-etag": {"server_digest": "s3-etag"},
          "size": {"size": len(BODY) + 1}}[kind]
    rf = RemoteFile("x.bin", f"{base}/w/x.bin", **kw)
    with pytest.raises(FetchError, match="does not match.*deleted and nothing was made visible"):
        _fetcher(home).fetch([rf])
    assert not (home / "x.bin").exists()
    assert not (home / PARTIAL_DIR / "x.bin.part").exists()


def test_an_html_page_is_refused(server, home):
    srv, base = server
    srv.add("w/weights.pth", BODY, html=True)
    rf = RemoteFile("weights.pth", f"{base}/w/weights.pth")
    with pytest.raises(FetchError) as err:
        _fetcher(home).fetch([rf])
    assert f"{base}/w/weights.pth" in str(err.value) and "web page" in str(err.value)
    assert "Fix:" in str(err.value) and not (home / "weights.pth").exists()


@pytest.mark.parametrize("code,words", [(403, "refused access"), (404, "not at this URL"),
                                        (503, "server failed")])
def test_a_refusing_server_names_the_url_and_the_fix(server, home, code, words):
    srv, base = server
    srv.add("w/gone.bin", BODY, status=code)
    with pytest.raises(FetchError, match=f"HTTP {code}.*{words}") as err:
        _fetcher(home).fetch([RemoteFile("gone.bin", f"{base}/w/gone.bin")])
    assert str(err.value).startswith(f"{base}/w/gone.bin: ")


def test_a_silent_server_times_out_with_the_fix(server, home):
    srv, base = server
    srv.add("w/slow.bin", BODY, delay_s=1.0)
    with pytest.raises(FetchError, match=r"stopped sending \(timeout\) 1 times.*--timeout"):
        _fetcher(home, timeout=0.2, retries=0).fetch([RemoteFile("s.bin", f"{base}/w/slow.bin")])
    assert not (home / "s.bin").exists()


@pytest.mark.parametrize("var", ["CORTEXALIGN_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_fails_before_any_connection(home, monkeypatch, no_network, var):
    monkeypatch.setenv(var, "1")
    rf = RemoteFile("m.pt", "https://dl.fbaipublicfiles.com/m.pt")
    with pytest.raises(OfflineError, match=f"{var}=1 is set.*run `cortexalign fetch test-entry`"):
        _fetcher(home).fetch([rf])
    (home / "m.pt").parent.mkdir(parents=True)
    (home / "m.pt").write_bytes(b"done")  # what is there is served offline
    assert _fetcher(home).fetch([rf])[0].status == "present"


def test_an_unreachable_host_counts_as_offline(home, monkeypatch):
    import cortexalign.fetch._env as env

    monkeypatch.setitem(env._reachable, "no-such-host.invalid:443", False)
    with pytest.raises(OfflineError, match="no-such-host.invalid cannot be reached"):
        _fetcher(home).fetch([RemoteFile("a", "https://no-such-host.invalid/a")])


def test_two_fetches_of_one_file_download_it_once(server, home):
    srv, base = server
    srv.add("w/shared.bin", BODY, delay_s=0.3)
    rf = RemoteFile("shared.bin", f"{base}/w/shared.bin", md5=hashlib.md5(BODY).hexdigest())
    results, errors = [], []

    def run():
        try:
            results.append(_fetcher(home).fetch_one(rf))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(r.status for r in results) == ["downloaded", "present"]
    assert len(srv.gets("w/shared.bin")) == 1
    assert (home / "shared.bin").read_bytes() == BODY


def test_parallel_downloads_and_the_polite_limit(server, home):
    srv, base = server
    files = []
    for k in range(6):
        body = bytes([k]) * 5000
        srv.add(f"w/f{k}.bin", body)
        files.append(RemoteFile(f"d/f{k}.bin", f"{base}/w/f{k}.bin",
                                md5=hashlib.md5(body).hexdigest()))
    got = _fetcher(home, jobs=3).fetch(files)
    assert [g.path.name for g in got] == [f"f{k}.bin" for k in range(6)]
    with pytest.raises(InputError, match="jobs"):
        _fetcher(home, jobs=9)


def test_a_zip_is_checked_then_unpacked(server, home):
    srv, base = server
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("weights/model.pt", BODY)
    srv.add("w/model.pt.zip", buf.getvalue())
    rf = RemoteFile("model.pt", f"{base}/w/model.pt.zip", git_sha1=_git_sha1(buf.getvalue()),
                    unpack="zip", unpack_member="model.pt")
    got = _fetcher(home).fetch([rf])[0]
    assert got.path.read_bytes() == BODY and got.checked == "git-sha1"
    assert not list(home.rglob("*.zip")) and not list(home.rglob("*.part"))


def test_mirrors_replace_the_official_host(server, home, monkeypatch):
    assert parse_mirrors("https://m.org/a/") == {"*": "https://m.org/a"}
    assert parse_mirrors(["dl.x.com=http://10.0.0.5/x", "https://all.org"]) == \
        {"dl.x.com": "http://10.0.0.5/x", "*": "https://all.org"}
    assert apply_mirror("https://dl.x.com/p/f.pt?v=1", {"dl.x.com": "http://h/x"}) == \
        "http://h/x/p/f.pt?v=1"
    assert apply_mirror("https://other.org/f", {"dl.x.com": "http://h/x"}) == "https://other.org/f"
    with pytest.raises(InputError, match="mirror"):
        parse_mirrors("ftp://nope")
    srv, base = server
    srv.add("segment_anything/f.pt", BODY)
    rf = RemoteFile("f.pt", "https://dl.fbaipublicfiles.com/segment_anything/f.pt")
    monkeypatch.setenv("CORTEXALIGN_MIRROR", f"dl.fbaipublicfiles.com={base}")
    got = _fetcher(home, mirrors=parse_mirrors(None)).fetch([rf])[0]
    assert got.path.read_bytes() == BODY and len(srv.gets("segment_anything/f.pt")) == 1


def test_a_file_mirror_serves_offline(home, tmp_path, monkeypatch):
    """A mirror on a shared disk (``file://``) is used even with CORTEXALIGN_OFFLINE=1."""
    copy = tmp_path / "mirror/segment_anything/f.pt"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(BODY)
    monkeypatch.setenv("CORTEXALIGN_OFFLINE", "1")
    rf = RemoteFile("f.pt", "https://dl.fbaipublicfiles.com/segment_anything/f.pt",
                    md5=hashlib.md5(BODY).hexdigest())
    got = _fetcher(home, mirrors=parse_mirrors(f"file://{tmp_path}/mirror")).fetch([rf])[0]
    assert got.path.read_bytes() == BODY and got.checked == "md5"
