"""Fixtures of the fetch tests: a local file server and an empty cache with the network allowed
(only to 127.0.0.1: nothing here reaches the internet)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import FileServer  # noqa: E402


@pytest.fixture
def server():
    """``(FileServer, base_url)``; files are added with ``srv.add(path, body, **faults)``."""
    srv = FileServer()
    base = srv.start()
    yield srv, base
    srv.stop()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty ``CORTEXALIGN_HOME``; offline switches and mirrors cleared."""
    root = tmp_path / "home"
    monkeypatch.setenv("CORTEXALIGN_HOME", str(root))
    for var in ("CORTEXALIGN_OFFLINE", "HF_HUB_OFFLINE", "CORTEXALIGN_MIRROR"):
        monkeypatch.delenv(var, raising=False)
    return root


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test: offline errors must come before the network."""
    import socket
    import urllib.request

    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr("cortexalign.fetch._http.urlopen", refuse)
    monkeypatch.setattr(urllib.request.OpenerDirector, "open", refuse)


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "neural"))
from allen_nwb_files import write_ecephys  # noqa: E402, F401  (the Neuropixels session writer)
