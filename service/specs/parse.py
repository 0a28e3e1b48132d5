"""Spec text to a spec, with the work bounded: the parsers are the first thing a client's bytes
reach, so they must not let a small body cost much.

- YAML aliases are refused: ``*a`` repeats a node without repeating its bytes, so 450 bytes of
  nested aliases became a 78 MB error message and +370 MB in the controller. A spec never
  needs them.
- Nesting deeper than ``MAX_DEPTH`` is refused (a spec is a few levels deep): deep documents
  drive recursive code (the JSON decoder, validation, merging) into ``RecursionError``.
- A JSON body (``as_json``, from its content type) is read as JSON, not as YAML 1.1, which
  refuses tabs and keys over 1024 characters that JSON allows.
- Every failure of the parsers, ``RecursionError`` and ``ValueError`` included (an integer of
  over 4300 digits), is a ``SpecError`` on ``<body>``: a 4xx, never a 500.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic import ValidationError

from service.specs.schema import AblationSpec, SpecError
from trainer.config import describe_validation_error

MAX_DEPTH = 32
"""Nested mappings/lists a spec may have (the root counts as one); real specs use under 10."""

_BODY = "<body>"

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _SpecLoader(_Loader):  # type: ignore[valid-type,misc]
    """The safe loader (libyaml's when built with it), refusing aliases and deep nesting after
    composing and before constructing: libyaml composes an alias as a second reference to one
    node, which costs nothing until something walks the tree."""

    def get_single_node(self) -> yaml.Node | None:
        node: yaml.Node | None = super().get_single_node()
        if node is not None:
            _check_nodes(node)
        return node


def _check_nodes(root: yaml.Node) -> None:
    """Refuse a node reached twice (an alias) or nested past MAX_DEPTH; iterative, so a deep
    tree cannot overflow the stack here."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if id(node) in seen:
            raise SpecError.one(_BODY, "YAML aliases (*name) are not accepted: write the "
                                "value out where it is used")
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            children: list[yaml.Node] = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            continue
        if depth > MAX_DEPTH:
            raise _too_deep()
        stack.extend((c, depth + 1) for c in children)


def _too_deep() -> SpecError:
    return SpecError.one(_BODY, f"nested deeper than {MAX_DEPTH} levels")


def _check_depth(data: Any) -> None:
    """JSON's decoder has no depth option: measure what it returned, iteratively."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise _too_deep()
        children = value.values() if isinstance(value, dict) else value
        stack.extend((c, depth + 1) for c in children)


def load_document(body: bytes | str, *, as_json: bool = False) -> Any:
    """The body's data (JSON if ``as_json``, else YAML); raises SpecError on ``<body>``."""
    kind = "JSON" if as_json else "YAML or JSON"
    try:
        if as_json:
            data = json.loads(body)
            _check_depth(data)
            return data
        return yaml.load(body, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
    except SpecError:
        raise
    except RecursionError:
        raise _too_deep() from None
    except (yaml.YAMLError, ValueError) as err:  # JSONDecodeError, UnicodeDecodeError, big ints
        raise SpecError.one(_BODY, f"not valid {kind}: {_short(err)}") from None


def _short(err: Exception, limit: int = 500) -> str:
    """The parser's message, cut: it may quote the input."""
    text = str(err)
    return text if len(text) <= limit else text[:limit] + " ..."


def parse_spec(data: dict[str, Any] | str | bytes, *, as_json: bool = False) -> AblationSpec:
    """A spec from a mapping or YAML/JSON text; raises SpecError naming each bad field."""
    if isinstance(data, bytes | str):
        data = load_document(data, as_json=as_json)
    if not isinstance(data, dict):
        raise SpecError.one(_BODY, "a spec must be a mapping")
    try:
        return AblationSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError([_untagged(e) for e in describe_validation_error(err)]) from err


def _untagged(error: dict[str, str]) -> dict[str, str]:
    """``seeds.adaptive.max`` -> ``seeds.max``: the union's branch tag is not a field."""
    field = error["field"]
    for tag in ("seeds.adaptive", "seeds.fixed"):
        if field == tag or field.startswith(tag + "."):
            field = "seeds" + field[len(tag):]
    return {**error, "field": field}
