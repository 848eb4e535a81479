"""Loading an experiment config: a YAML file, YAML text or a dict, model sets expanded, checked
against ``ExperimentConfig`` with every error located and the close matches named."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from cortexalign.bench._config import CONFIG_HELP, ConfigError, ExperimentConfig
from cortexalign.bench._model_sets import expand_model_sets
from cortexalign.bench._partition_spec import check_partitions
from cortexalign.errors import close_matches

__all__ = ["load_config", "quickstart_config_path"]


def _fields_at(loc: tuple) -> list[str]:
    """The valid field names of the model at a location in ExperimentConfig."""
    model: type[BaseModel] = ExperimentConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        ann = model.model_fields[part].annotation
        inner = getattr(ann, "__args__", (ann,))
        nxt = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nxt is None:
            return []
        model = nxt
    return list(model.model_fields)


def _format(err: ValidationError, source: str) -> str:
    lines = [f"{source} is not a valid experiment config:"]
    for e in err.errors():
        loc = e["loc"]
        where = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p))
                        for i, p in enumerate(loc)) or "(top level)"
        if e["type"] == "extra_forbidden":
            valid = _fields_at(loc)
            hint = close_matches(str(loc[-1]), valid)
            lines.append(f"  - {where}: unknown key." + (f" Did you mean {hint[0]!r}?" if hint else "")
                         + f" Valid keys here: {', '.join(valid)}.")
        elif e["type"] == "missing":
            lines.append(f"  - {where}: required key is missing.")
        else:
            lines.append(f"  - {where}: {e['msg']} (received {e.get('input')!r}).")
    lines.append(CONFIG_HELP)
    return "\n".join(lines)


def quickstart_config_path() -> Path:
    """The quickstart config that ships inside the package."""
    return Path(str(resources.files("cortexalign").joinpath("configs", "quickstart.yaml")))


def load_config(source: str | Path | dict,
                report: Callable[[str], None] | None = None) -> ExperimentConfig:
    """Validate a YAML file (path), a YAML string, or a dict into an ``ExperimentConfig``.

    ``models:`` entries with ``select:`` (model sets for sweeps, ``bench._model_sets``) are
    expanded first; ``report`` receives one line per expanded set (what it matched and what its
    filters dropped), so a sweep's size is printed before anything runs.
    """
    if isinstance(source, dict):
        data, where = source, "config"
    else:
        p = Path(source)
        # YAML text (several lines) is never a path: stat() of it may fail (name too long)
        if not (isinstance(source, str) and "\n" in source) and (
                p.suffix in (".yaml", ".yml") or p.exists()):
            if not p.is_file():
                raise ConfigError(f"config: expected a YAML file, received {str(p)!r} which does "
                                  "not exist. Fix: check the path.")
            text, where = p.read_text(), str(p)
        else:
            text, where = str(source), "config"
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"{where}: not valid YAML ({err}). Fix: check indentation and "
                              "quoting.") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping of keys (stimuli, models, neural, "
                              f"metrics), received {type(data).__name__}. Fix: see "
                              "`cortexalign quickstart --show-config` for an example.")
    if isinstance(data.get("models"), list) and any(
            isinstance(m, dict) and "select" in m for m in data["models"]):
        models, notes = expand_model_sets(data["models"])
        data = {**data, "models": models}
        for note in notes:
            if report is not None:
                report(f"model set {note.describe()}")
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format(err, where)) from None
    check_partitions(cfg)  # cross-references and options of partitions: (InputError)
    return cfg
