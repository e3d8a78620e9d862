"""Typed run configs: YAML files mapped onto nested dataclasses, with dotted overrides.

    cfg = load_config(PretrainConfig, "configs/pretrain_tiny.yaml", ["train.lr=3e-4"])

Every config class is a plain ``@dataclass`` whose fields have defaults, so a YAML
file only states what differs. A class may list keys that moved in ``RENAMED_KEYS``
(``{"old.dotted.key": "new.dotted.key"}``, relative to the class): an old key still
loads, with a warning that names the new one. Loading is strict: an unknown key, a wrong type or a
missing file raises :class:`ConfigError` naming the key and the file. Configs hold
data only (numbers, strings, lists), never live objects, so they round-trip to YAML
and can be saved beside every run's output.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from ophbase.io import atomic_write_text

from .errors import ConfigError

T = TypeVar("T")


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans (true/false only).

    PyYAML follows YAML 1.1, where ``off``, ``on``, ``yes`` and ``no`` are booleans, so
    ``retrieval_mode: off`` would arrive as ``False``."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> Any:
    """Parse YAML text (configs, overrides, prompt files) with YAML 1.2 booleans."""
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


@dataclasses.dataclass
class LogSection:
    """The ``log:`` section shared by every trainer's config (pretraining, SSL)."""

    every: int = 10  # steps between log lines
    tensorboard: bool = True
    jsonl: bool = True


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Build ``cls`` from a YAML file (optional) and ``key.sub=value`` overrides."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (give a path to a YAML file, e.g. configs/)")
        try:
            loaded = load_yaml(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(loaded).__name__}")
        data = loaded
    # Old keys move before the overrides apply, so an override in the new spelling wins over an
    # old-spelled file (e.g. the config.yaml of a run made before a section was renamed).
    data = _move_renamed_keys(cls, data, source, "")
    data = apply_overrides(data, [_renamed_override(cls, item) for item in overrides])
    return from_dict(cls, data, source=source)


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``a.b.c=value`` set; values are parsed as YAML scalars."""
    out = _deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = load_yaml(raw) if raw.strip() != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out


def from_dict(cls: type[T], data: Any, source: str = "<dict>", prefix: str = "") -> T:
    """Strictly convert a nested mapping into dataclass ``cls``."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix or 'top level'} should be a mapping, got {data!r}")
    data = _move_renamed_keys(cls, data, source, prefix)
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"{source}: unknown key {where}{unknown[0]!r} in {cls.__name__}; "
            f"known keys: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(hints[name], value, source, key)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: {prefix or cls.__name__}: {e}") from None


def _renamed_override(cls: type, item: str) -> str:
    """``item`` (``key=value``) with an old key of ``cls.RENAMED_KEYS`` rewritten to its new name."""
    key, sep, value = item.partition("=")
    for old, new in getattr(cls, "RENAMED_KEYS", {}).items():
        if key.strip() == old or key.strip().startswith(old + "."):
            renamed = new + key.strip()[len(old):]
            warnings.warn(f"override {key.strip()} is deprecated; write {renamed}", FutureWarning, stacklevel=4)
            return f"{renamed}{sep}{value}"
    return item


def _move_renamed_keys(cls: type, data: dict[str, Any], source: str, prefix: str) -> dict[str, Any]:
    """``data`` with every old key of ``cls.RENAMED_KEYS`` moved to its new place (sections are merged)."""
    renamed: dict[str, str] = getattr(cls, "RENAMED_KEYS", {})
    if not any(_get(data, old) is not _MISSING for old in renamed):
        return data
    data = _deepcopy(data)
    where = f"{prefix}." if prefix else ""
    for old, new in renamed.items():
        value = _pop(data, old)
        if value is _MISSING or value is None:  # an empty old section moves nothing
            continue
        current = _get(data, new)
        if current is None:
            current = _MISSING
        if isinstance(value, dict) and isinstance(current, dict):
            clash = sorted(k for k in value if k in current and current[k] != value[k])
            merged = {**value, **current}
        else:
            clash = [] if current is _MISSING or current == value else [new]
            merged = value
        if clash:
            raise ConfigError(f"{source}: {where}{old} (the old spelling of {where}{new}) and {where}{new} are both set, "
                              f"differently ({', '.join(clash)}); keep {where}{new} only")
        _set(data, new, merged)
        warnings.warn(f"{source}: config key {where}{old} is deprecated; write {where}{new}", FutureWarning, stacklevel=4)
    return data


_MISSING = object()


def _get(data: dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _pop(data: dict[str, Any], dotted: str) -> Any:
    *parents, last = dotted.split(".")
    node = _get(data, ".".join(parents)) if parents else data
    if not isinstance(node, dict) or last not in node:
        return _MISSING
    value = node.pop(last)
    if parents and not node:  # an emptied section would otherwise stay behind as {}
        _pop(data, ".".join(parents))
    return value


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def to_dict(cfg: Any) -> dict[str, Any]:
    """Dataclass -> plain dict (tuples become lists so the YAML stays plain)."""
    return _plain(dataclasses.asdict(cfg))


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config atomically (a temporary file, then ``os.replace``)."""
    atomic_write_text(path, dump_yaml(cfg))


def _coerce(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, source, key)
            except ConfigError:
                continue
        raise ConfigError(f"{source}: {key} = {value!r} does not match {_name(tp)}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{source}: {key} = {value!r}; expected one of {', '.join(map(repr, choices))}")
        return value
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        return from_dict(tp, value, source, key)
    if origin in (list, Sequence, typing.Sequence) or tp is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key} should be a list, got {value!r}")
        (inner,) = get_args(tp) or (Any,)
        return [_coerce(inner, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key} should be a list, got {value!r}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, source, f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{source}: {key} should have {len(args)} items, got {len(value)}")
        return tuple(_coerce(a, v, source, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} should be a mapping, got {value!r}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_coerce(kt, k, source, key): _coerce(vt, v, source, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {key} = {value!r}; expected true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{source}: {key} = {value!r}; expected an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads "3e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{source}: {key} = {value!r}; expected a number")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{source}: {key} = {value!r}; expected a string")
    return value


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _deepcopy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _deepcopy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deepcopy(v) for v in obj]
    return obj
