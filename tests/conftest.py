"""Shared fixtures: the shared data folder (skips cleanly when absent), small random data and an
S3 server on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared data folder {SHARED_DATA} is absent (it ships beside the repo "
                    "on the project's machines, not in a clone)")
    return SHARED_DATA


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread per test: pytest-xdist runs one worker per core, and tiny tensors
    on extra threads only contend (several-fold slower on the 2-core CI machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


#: The bucket the ``s3`` fixture creates.
S3_BUCKET = "cortexalign-test"


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on 127.0.0.1 with the bucket ``S3_BUCKET``; yields the storage options
    (fsspec / s3fs) that reach it. The bucket is shared by the modules of one process: tests
    write under a prefix of their own. Skips when moto or s3fs is not installed."""
    server_mod = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    options = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "testing", "secret": "testing"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")  # moto's default; child processes inherit it
        # moto's buckets live in the process, not the server: a second module finds the bucket;
        # and a port handed out again must not reach an earlier server's cached s3fs instance
        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem(**options).makedirs(S3_BUCKET, exist_ok=True)
        try:
            yield options
        finally:
            server.stop()
            s3fs.S3FileSystem.clear_instance_cache()
