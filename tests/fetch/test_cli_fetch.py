"""``cortexalign fetch`` as a user runs it, against the local server: --list, --dry-run, a fetch
through --mirror, the offline error, a refused filter, the NSD agreement, two processes at once."""

from __future__ import annotations

import hashlib
import subprocess
import sys

from typer.testing import CliRunner

from cortexalign.cli import app
from cortexalign.fetch import SOURCES

runner = CliRunner()
SAM2_T = "/segment_anything_2/072824/sam2_hiera_tiny.pt"
BODY = b"sam2 tiny stand-in " * 5000


def test_list_shows_every_entry_with_weight_and_terms():
    res = runner.invoke(app, ["fetch", "--list"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    for name in SOURCES.names():
        assert name in res.output
    assert "Apache-2.0" in res.output and "NSD Terms and Conditions" in res.output
    assert "~375 MB" in res.output  # sam-vit-b


def test_dry_run_then_fetch_through_a_mirror(server, home):
    srv, base = server
    srv.add(SAM2_T, BODY)
    res = runner.invoke(app, ["fetch", "sam2-hiera-t", "--dry-run", "--mirror", base],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert f"would fetch 1 of 1 files, {len(BODY) / 1e3:,.1f} kB into {home}" in res.output
    assert not srv.gets(SAM2_T)
    res = runner.invoke(app, ["fetch", "sam2-hiera-t", "--mirror", base, "-q"],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "sam2-hiera-t: 1 fetched" in res.output and "checked by size" in res.output
    assert (home / "sam2-hiera-t/sam2_hiera_tiny.pt").read_bytes() == BODY
    res = runner.invoke(app, ["fetch", "sam2-hiera-t", "--mirror", base, "-q"])
    assert "0 fetched" in res.output and "1 already present" in res.output


def test_offline_refused_filter_and_agreement_fail_with_the_fix(home, no_network):
    res = runner.invoke(app, ["fetch", "sam-vit-b"], env={"CORTEXALIGN_OFFLINE": "1",
                                                         "COLUMNS": "300"})
    assert res.exit_code == 2 and "run `cortexalign fetch sam-vit-b`" in res.output
    res = runner.invoke(app, ["fetch", "nsd", "subjct=1"], env={"COLUMNS": "300"})
    assert res.exit_code == 2 and "Did you mean 'subject'" in res.output
    res = runner.invoke(app, ["fetch", "nsd", "subject=1"], env={"COLUMNS": "300"})
    assert res.exit_code == 2 and "--agree-terms" in res.output
    res = runner.invoke(app, ["fetch", "sam-vit-b", "--jobs", "20"], env={"COLUMNS": "300"})
    assert res.exit_code == 2 and "jobs" in res.output


def test_two_commands_fetching_one_file_download_it_once(server, home, monkeypatch):
    srv, base = server
    srv.add(SAM2_T, BODY, delay_s=1.5)
    cmd = [sys.executable, "-c", "from cortexalign.cli import main; main()", "fetch",
           "sam2-hiera-t", "--mirror", base, "-q"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sorted("1 fetched" in o for o in outs) == [False, True], outs
    assert len(srv.gets(SAM2_T)) == 1
    got = (home / "sam2-hiera-t/sam2_hiera_tiny.pt").read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(BODY).digest()


def test_run_offline_fails_before_torch_loads(home, tmp_path):
    """``cortexalign run`` with a config naming catalogue data it lacks, offline: exit 2 with the
    fetch commands, before the run imports torch (so it answers at once)."""
    import json

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({
        "stimuli": {"source": "allen-ophys"},
        "models": [{"name": "sam_vit_b", "weights": "sam-vit-b"}],
        "neural": [{"source": "allen-ophys", "options": {"area": ["VISp"], "cre_line": "Cux2"}}],
        "metrics": [{"name": "rsa"}]}))
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom cortexalign.cli import app\n"
            f"r = CliRunner().invoke(app, ['run', {str(cfg)!r}, '--out', {str(tmp_path / 'o')!r}],"
            " env={'COLUMNS': '300'})\nprint(r.exit_code, 'torch' in sys.modules)\nprint(r.output)")
    env = {**__import__("os").environ, "CORTEXALIGN_OFFLINE": "1", "COLUMNS": "300"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120).stdout
    out = " ".join(out.split())  # rich wraps long lines
    assert out.startswith("2 False"), out
    assert "`cortexalign fetch allen-ophys area=VISp cre_line=Cux2` (neural[0], stimuli)" in out
    assert "`cortexalign fetch sam-vit-b` (models[0].weights)" in out
    assert not (tmp_path / "o").exists()
