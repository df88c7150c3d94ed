"""The config file: one TOML file for every setting of every stage, the sections of
`schemas.config.PipelineConfig` (`[crawl]`, `[extract]`, `[filter]`, `[filter.quality]`,
`[dedup]`, `[shard]`, `[tokenize]`, `[train]`, `[engine]`, ...), checked by that model so a
mistake names its key. Command-line flags override it; `corpus config show` prints the result."""

from __future__ import annotations

import json
import tomllib


class ConfigFileError(ValueError):
    pass


def load(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigFileError(f"--config: no such file: {path}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigFileError(f"--config {path}: not valid TOML: {err}") from None


def merge(base: dict, over: dict) -> dict:
    """`over` on top of `base`, table by table."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def to_toml(data: dict, table: str = "") -> str:
    """A config as TOML; a setting whose value is None (unset) is written as a comment."""
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif value is None:
            lines.append(f"# {key} = (not set)")
        else:
            lines.append(f"{key} = {_value(value)}")
    out = ([f"[{table}]"] if table and (lines or not tables) else []) + lines
    text = "\n".join(out)
    for key, value in tables:
        sub = to_toml(value, f"{table}.{key}" if table else key)
        text += ("\n\n" if text else "") + sub
    return text
