"""The first hour of a new user (issue 25): the README's edit-this-config path, the stimulus-id
mismatch error, a whole request checked before anything is written, start-up without torch,
tables a terminal can show, the ``config`` commands, help texts and the README itself."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from cortexalign.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "80"}


def _python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=ENV, timeout=timeout)


# 1. --show-config > my.yaml ---------------------------------------------------------------

def test_show_config_piped_is_the_shipped_yaml_verbatim():
    """Piped (not a terminal), the config came out hard-wrapped at 80 columns: invalid YAML."""
    from cortexalign.bench import load_config, quickstart_config_path

    res = runner.invoke(app, ["quickstart", "--show-config"])
    assert res.exit_code == 0
    assert res.output == quickstart_config_path().read_text()
    assert load_config(res.output).name == "quickstart"


def test_show_config_edited_then_run_as_the_readme_says(tmp_path):
    """`--show-config > my.yaml`, edit it (one model, fewer resamples), `run my.yaml`."""
    text = runner.invoke(app, ["quickstart", "--show-config"]).output
    data = yaml.safe_load(text)
    data["models"] = [m for m in data["models"] if m["name"] == "gabor_v1"]
    data["models"][0]["kwargs"] = {"image_size": 32, "image_deg": None,
                                   "frequencies": [0.1, 0.25]}
    data["n_bootstrap"] = 20
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "results" / "my-run"
    res = runner.invoke(app, ["run", str(tmp_path / "my.yaml"), "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "4 scores computed" in res.output
    listed = runner.invoke(app, ["results", str(out), "--format", "csv"])
    rows = list(filter(None, listed.output.splitlines()))
    assert len(rows) == 5 and rows[0].startswith("model,layer,target")


# 2. the stimulus-id mismatch names each side right -----------------------------------------

def _folder(tmp_path: Path, ids: list[str]) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ids:
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / name)
    return folder


def test_stimulus_id_mismatch_names_the_side_that_lacks_each_id(tmp_path):
    """15 images against a neural file of 16 ids: img06.jpg is missing from the stimulus set
    (the message used to say 'missing from the neural target' and swap the counts)."""
    from cortexalign.bench._config import NeuralSpec
    from cortexalign.bench._targets import load_targets
    from cortexalign.errors import InputError
    from cortexalign.stimuli import load_folder

    all_ids = [f"img{i:02d}.jpg" for i in range(16)]
    stimuli = load_folder(_folder(tmp_path, [i for i in all_ids if i != "img06.jpg"]))
    neural = tmp_path / "v1.npz"
    np.savez(neural, responses=np.random.default_rng(1).normal(size=(16, 5)),
             stimulus_ids=np.array(all_ids))
    with pytest.raises(InputError) as err:
        load_targets(NeuralSpec(source=str(neural), label="V1"), stimuli)
    msg = str(err.value)
    assert "15 ids in the stimulus set and 16 in the neural target 'V1'" in msg
    assert re.search(r"missing from the stimulus set \(only in the neural target 'V1'\): "
                     r"\['img06.jpg'\]", msg)
    assert re.search(r"missing from the neural target 'V1' \(only in the stimulus set\): \[\]",
                     msg)


def test_responses_are_put_in_the_stimulus_sets_order(tmp_path):
    from cortexalign.bench._config import NeuralSpec
    from cortexalign.bench._targets import load_targets
    from cortexalign.stimuli import load_folder

    ids = [f"img{i:02d}.jpg" for i in range(6)]
    stimuli = load_folder(_folder(tmp_path, ids))
    values = np.arange(6.0)[::-1, None] * np.ones((1, 3))
    neural = tmp_path / "v1.npz"
    np.savez(neural, responses=values, stimulus_ids=np.array(ids[::-1]))
    (target,) = load_targets(NeuralSpec(source=str(neural)), stimuli)
    assert list(target.data["stimulus"].values) == ids
    assert np.array_equal(target.data.values[:, 0], np.arange(6.0))


# 3. the whole request is checked before anything is written ---------------------------------

BAD_CONFIG = """\
stimuli: {source: kriegeskorte92}
models:
  - {name: "timm:resnet181"}
  - {name: gabor_v1, layers: [simple, complx]}
  - {name: "timm:resnet10t", untrained: true, pooling: meen, layers: [layer1]}
  - {name: "timm:resnet10t", label: filed, weights: /nonexistent/w.safetensors}
neural: [{source: kriegeskorte92.human_IT}, {source: kriegeskorte92.human_ITT}]
metrics: [{name: rsa, options: {compare: spearmann}}]
"""


@pytest.mark.parametrize("command", [["run"], ["config", "check"]])
def test_every_problem_is_reported_at_once_and_nothing_is_written(tmp_path, command):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(BAD_CONFIG)
    out = tmp_path / "out"
    args = [*command, str(cfg)] + (["--out", str(out)] if command == ["run"] else [])
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    for fragment in ("6 problems", "models[0] (timm:resnet181)", "resnet18", "complx",
                     "models[2] (timm:resnet10t).pooling", "meen", "/nonexistent/w.safetensors",
                     "human_ITT", "spearmann", "cortexalign config keys"):
        assert fragment in text, fragment
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_config_check_passes_a_valid_file_and_writes_nothing(tmp_path):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text(runner.invoke(app, ["config", "template"]).output)
    res = runner.invoke(app, ["config", "check", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "valid" in res.output and "92 stimuli" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.yaml"]


def test_extract_checks_layers_before_any_weights_and_says_the_flags(tmp_path, monkeypatch):
    """`extract timm:resnet18 imgs -l layer9`: the layer is refused before the hub is asked."""
    import cortexalign.models._hub as hub

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was asked before the request was checked")

    monkeypatch.setattr(hub, "hub_reachable", no_hub)
    folder = _folder(tmp_path, ["a.png", "b.png"])
    res = runner.invoke(app, ["extract", "timm:resnet18", str(folder), "-l", "layer9", "-l",
                              "layer4", "--out", str(tmp_path / "f.npz")])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "layer9" in text and "'layer4'" in text and "cortexalign layers timm:resnet18" in text
    assert not (tmp_path / "f.npz").exists()


def test_extract_without_cached_hub_weights_fails_at_once_with_cli_flags(tmp_path, monkeypatch):
    import timm

    import cortexalign.models._hub as hub

    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(hub, "cached_hub_file", lambda repo: None)
    create = timm.create_model

    def create_offline(name, pretrained=False, **kwargs):
        assert not pretrained, "a download was attempted"
        return create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", create_offline)
    folder = _folder(tmp_path, ["a.png", "b.png"])
    res = runner.invoke(app, ["extract", "timm:resnet10t", str(folder), "-l", "layer4",
                              "--out", str(tmp_path / "f.npz")])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "--weights PATH" in text and "--untrained" in text
    assert "weights=PATH" not in text and "untrained=True" not in text


def test_compare_layers_reports_both_models_problems_at_once(tmp_path):
    res = runner.invoke(app, ["compare-layers", "timm:resnet10t", "timm:resnet181",
                              "kriegeskorte92", "-l", "layer9", "--untrained",
                              "--out", str(tmp_path / "sim.csv")])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "2 problems" in text and "layer9" in text and "resnet181" in text
    assert list(tmp_path.iterdir()) == []


# 4. start-up ------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["--help"], ["models"], ["run", "--help"],
                                  ["quickstart", "--show-config"]])
def test_startup_commands_do_not_import_torch(argv):
    res = _python(f"""
        import sys
        from cortexalign.cli import main
        sys.argv = ["cortexalign", *{argv!r}]
        try:
            main()
        except SystemExit as exit:
            assert not exit.code, exit.code
        print("TORCH", "torch" in sys.modules)
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("TORCH False")


def test_ctrl_c_during_startup_prints_one_line_and_no_traceback():
    """SIGINT while the command modules import: exit 130, 'interrupted', no traceback."""
    res = _python("""
        import importlib, os, signal, sys
        real = importlib.import_module
        def interrupt_on_catalog(name, *args):
            if name == "cortexalign.cli.catalog":
                os.kill(os.getpid(), signal.SIGINT)
            return real(name, *args)
        importlib.import_module = interrupt_on_catalog
        from cortexalign.cli import main
        sys.argv = ["cortexalign", "models"]
        main()
    """)
    assert res.returncode == 130, res.stderr
    assert "Traceback" not in res.stderr and "interrupted" in res.stderr


def test_ctrl_c_reaches_the_guard_from_a_real_signal():
    proc = subprocess.Popen([sys.executable, "-c", "from cortexalign.cli import main; "
                             "import sys; sys.argv = ['cortexalign', 'models']; "
                             "import time; time.sleep(0.3); main()"],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
    proc.send_signal(signal.SIGINT)  # during start-up (the interpreter or the sleep)
    _, err = proc.communicate(timeout=60)
    # before main() Python's own handler may print its KeyboardInterrupt: the guard starts at
    # main(); a signal inside it must not
    if "from cortexalign.cli import main" not in err:
        assert "Traceback" not in err


# 5. tables a terminal can show --------------------------------------------------------------

@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    """A results store with long model names, a target without a ceiling, two metrics."""
    from cortexalign.results import ResultsStore, ScoreRecord

    out = tmp_path_factory.mktemp("res")
    store = ResultsStore(out / "results.duckdb")
    run = store.start_run("name: t", "h")
    nan = float("nan")
    for model in ("EfficientNet-Lite0 (untrained)", "EfficientNet-Lite0"):
        for layer in ("blocks.0", "blocks.5", "bn2"):
            for target, ceiling in (("human IT", (0.306, 0.525)), ("monkey IT", (nan, nan))):
                key = f"{model}|{layer}|{target}"
                store.start_job(key, run)
                store.record_job(key, run, [ScoreRecord(
                    model=model, model_id=model, layer=layer, target=target, metric="rsa",
                    value=0.2, ci_low=0.1, ci_high=0.3, ceiling_low=ceiling[0],
                    ceiling_high=ceiling[1], n_stimuli=92,
                    extra={} if ceiling[0] == ceiling[0] else {"ceiling": "no ceiling (one RDM)"}
                    )])
    store.finish_run(run, "finished")
    return out


def test_results_at_80_columns_truncate_nothing_and_print_dashes(store_dir):
    res = runner.invoke(app, ["results", str(store_dir)], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert "\u2026" not in res.output and "nan" not in res.output
    assert max(map(len, res.output.splitlines())) <= 80
    assert "EfficientNet-Lite0 (untrained)" in res.output  # in the legend
    assert "M1" in res.output and " - " in res.output
    for col in ("interval", "ceiling", "normalized"):  # intervals differ in level and unit
        assert col in res.output


def test_results_at_150_columns_show_ceiling_high_and_normalized_in_full(store_dir):
    res = runner.invoke(app, ["results", str(store_dir)], env={"COLUMNS": "150"})
    assert "0.306\u20130.525" in res.output and "0.654" in res.output  # 0.2 / 0.306
    assert "EfficientNet-Lite0 (untrained)  " in res.output  # a column, no legend


@pytest.mark.parametrize("fmt", ["csv", "json", "markdown"])
def test_results_formats_for_pipes(store_dir, fmt):
    res = runner.invoke(app, ["results", str(store_dir), "--format", fmt])
    assert res.exit_code == 0, res.output
    if fmt == "json":
        rows = json.loads(res.output)
        assert len(rows) == 12 and rows[1]["ceiling_low"] is None
        assert set(rows[0]) >= {"ceiling_high", "normalized"}
    else:
        lines = res.output.splitlines()
        assert len(lines) == 13 + (fmt == "markdown")
        assert "ceiling_high" in lines[0] and "normalized" in lines[0]
        assert "nan" not in res.output and ",-," in res.output.replace(" | ", ",")


def test_models_lists_without_truncating_and_names_lite0s_layers():
    res = runner.invoke(app, ["models"], env={"COLUMNS": "80"})
    assert res.exit_code == 0 and "\u2026" not in res.output
    for name in ("torchvision:<name>", "efficientnet_lite0", "edge_sam"):
        assert name in res.output
    rows = {r["name"]: r for r in json.loads(runner.invoke(app, ["models", "-f", "json"]).output)}
    assert {"blocks.3", "blocks.5", "bn2"} <= set(rows["efficientnet_lite0"]["layers"].split(", "))
    layers = runner.invoke(app, ["layers", "efficientnet_lite0"]).output.split()
    assert layers == [f"blocks.{i}" for i in range(7)] + ["bn2", "logits"]


def test_the_shipped_model_rows_are_the_registry():
    from cortexalign.cli.catalog import read_model_rows
    from cortexalign.models import list_models

    assert read_model_rows() == [dict(r) for r in list_models()], (
        "src/cortexalign/cli/models.json is stale: run python -c 'from cortexalign.cli.catalog "
        "import write_model_rows; write_model_rows()'")


def _all_help_pages():
    import typer

    group = typer.main.get_command(app)
    yield []
    for name, cmd in group.commands.items():
        yield [name]
        for sub in getattr(cmd, "commands", {}):
            yield [name, sub]


def test_no_flag_shows_a_bool_metavar():
    for argv in _all_help_pages():
        res = runner.invoke(app, [*argv, "--help"])
        assert res.exit_code == 0, argv
        assert "<bool>" not in res.output, argv


# 7. config keys, template, footer, defaults, README ----------------------------------------

def test_config_keys_lists_every_key_of_every_model():
    from cortexalign.bench._config import ExperimentConfig, ModelSpec, NeuralSelect, RaySpec

    rows = json.loads(runner.invoke(app, ["config", "keys", "--format", "json"]).output)
    paths = {r["path"] for r in rows}
    assert {f"models[].{k}" for k in ModelSpec.model_fields} <= paths
    assert {f"neural[].select.{k}" for k in NeuralSelect.model_fields} <= paths
    assert {f"ray.{k}" for k in RaySpec.model_fields} <= paths
    assert set(ExperimentConfig.model_fields) <= paths
    assert "partitions[].sets.<label>.layer" in paths
    by_path = {r["path"]: r for r in rows}
    assert by_path["n_bootstrap"]["default"] == "1000" and by_path["stimuli"]["default"] == \
        "required"
    assert all(r["description"] for r in rows)


def test_config_template_is_valid_yaml_with_every_key_commented():
    from cortexalign.bench import load_config
    from cortexalign.bench._config_docs import config_keys

    text = runner.invoke(app, ["config", "template"]).output
    load_config(yaml.safe_load(text))
    lines = text.splitlines()
    for key in config_keys():
        name = key.path.rsplit(".", 1)[-1].removesuffix("[]")
        key = rf"(# )?(- )?('{re.escape(name)}'|{re.escape(name)}):"
        hits = [i for i, ln in enumerate(lines) if re.match(key, ln.strip())]
        assert hits, key.path
        assert any(lines[i - 1].lstrip().startswith("#") for i in hits), key.path


def test_a_config_error_points_at_config_keys(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stimuli: {source: kriegeskorte92}\nmodels: [{name: gabor_v1, layer: [x]}]\n"
                   "neural: [{source: kriegeskorte92.human_IT}]\nmetrics: [{name: rsa}]\n")
    res = runner.invoke(app, ["config", "check", str(cfg)])
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert "cortexalign config keys" in text and "run --help" not in text


def test_help_says_why_weight_defaults_differ_between_commands():
    for command in ("layers", "profile", "extract", "compare-layers"):
        text = " ".join(runner.invoke(app, [command, "--help"]).output.split())
        other = "extract" if command in ("layers", "profile") else "`layers`"
        assert "unlike" in text and other in text, command


def test_readme_counts_the_examples_and_gives_the_cpu_route():
    readme = (ROOT / "README.md").read_text()
    n = len(list((ROOT / "examples").glob("[0-9][0-9]_*.py")))
    words = {5: "Five", 6: "Six", 7: "Seven", 8: "Eight", 9: "Nine"}
    assert f"{words[n]} short worked analyses" in readme
    assert "download.pytorch.org/whl/cpu" in readme and "6.5 GB" in readme
    assert "cortexalign quickstart --show-config > my.yaml" in readme


def test_study_command_line_problems_come_together(tmp_path):
    afile = tmp_path / "out.txt"
    afile.write_text("")
    res = runner.invoke(app, ["study", "alignment_training", "--out", str(afile), "--data",
                              str(tmp_path / "missing"), "--subset", "gpu", "--device", "tpu"])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "4 problems" in text
    for fragment in ("subset of study 'alignment_training'", "--data", "--out", "--device"):
        assert fragment in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_run_without_cached_hub_weights_fails_before_writing_in_config_spelling(tmp_path,
                                                                              monkeypatch):
    import cortexalign.models._hub as hub

    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(hub, "cached_hub_file", lambda repo: None)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stimuli: {source: kriegeskorte92}\n"
                   "models: [{name: 'timm:resnet10t', layers: [layer1]}]\n"
                   "neural: [{source: kriegeskorte92.human_IT}]\nmetrics: [{name: rsa}]\n")
    res = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "models[0] (timm:resnet10t)" in text and "untrained: true" in text
    assert "weights: PATH" in text and "weights=PATH" not in text
    assert not (tmp_path / "out").exists()


def test_a_missing_ceiling_is_a_dash_with_its_reason_below(store_dir):
    res = runner.invoke(app, ["results", str(store_dir)], env={"COLUMNS": "80"})
    lines = res.output.splitlines()
    monkey = [ln for ln in lines if "monkey IT" in ln and "M" in ln[:3]]
    assert monkey and all(ln.split()[-2:] == ["-", "-"] for ln in monkey)  # ceiling, normalized
    assert "ceiling - for monkey IT: no ceiling (one RDM)" in lines


def test_the_readmes_and_docs_commands_parse(tmp_path, monkeypatch):
    """Every `cortexalign ...` command the README and the docs pages show in backticks or a code
    block gets past argument parsing (a command that lacked a required flag failed as written)."""
    import shlex

    import typer

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    readme = "\n".join(p.read_text() for p in pages if "_generated" not in p.parts)
    commands = {" ".join(c.split()) for c in re.findall(r"`(cortexalign [^`]+)`", readme)}
    commands |= {ln.split("#")[0].strip() for ln in readme.splitlines()
                 if ln.startswith("cortexalign ")}
    group = typer.main.get_command(app)
    checked, failures = 0, []
    for command in sorted(commands):
        argv = shlex.split(command.replace(">", " > ").split(" > ")[0])[1:]
        if not argv or argv[0] not in group.commands or "MODEL" in argv or "OUT" in argv:
            continue
        cmd = group.commands[argv[0]]
        sub = argv[1:]
        if hasattr(cmd, "commands") and sub:  # a group: config keys / template / check
            cmd, sub = cmd.commands[sub[0]], sub[1:]
        if not sub or (len(sub) == 1 and sub[0].startswith("--")) or "[" in command:
            continue  # prose naming a command or an option, or [optional] notation
        try:
            ctx = cmd.make_context(argv[0], list(sub), resilient_parsing=False)
        except Exception as err:  # noqa: BLE001 - the parser's error, reported with the command
            failures.append(f"{command}: {err}")
            continue
        if argv[0] == "compare-layers" and not (ctx.params["all_layers"] or ctx.params["layers"]):
            failures.append(f"{command}: no layers")
        checked += 1
    assert not failures, failures
    assert checked >= 20
