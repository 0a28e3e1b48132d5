"""Override helpers shared by configs and specs: merge trees, set and flatten dotted paths.

One place for them, so a spec's ``set: {a.b: 1}`` and ``--set a.b=1`` on the command line mean
the same thing."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from trainer.config.errors import ConfigError


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(item: str) -> tuple[str, Any]:
    """``a.b=c`` -> ("a.b", c) with c parsed as YAML (so true/3/0.5/[1,2] get their types)."""
    if "=" not in item:
        raise ConfigError(item, "an override must look like section.key=value")
    path, raw = item.split("=", 1)
    path = path.strip()
    if not path:
        raise ConfigError(item, "an override needs a key before '='")
    return path, yaml.safe_load(raw) if raw.strip() else ""


def set_path(tree: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Return a copy of ``tree`` with the dotted ``path`` set to ``value``."""
    out = copy.deepcopy(tree)
    node = out
    keys = path.split(".")
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value
    return out


def nest(dotted: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1, "a.c": 2}`` -> ``{"a": {"b": 1, "c": 2}}`` (mapping values merge)."""
    tree: dict[str, Any] = {}
    for path, value in dotted.items():
        node: Any = value
        for key in reversed(path.split(".")):
            node = {key: node}
        tree = deep_merge(tree, node)
    return tree


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out
