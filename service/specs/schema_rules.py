"""The spec's validators as JSON Schema, so the OpenAPI schema says what a POST refuses.

``schema.AblationSpec`` enforces these rules in Python (custom messages, fields named in the
errors); the fragments here only describe them, they change nothing that is accepted or refused.
Rules the schema cannot say (config paths and values, distinct level labels, the controller's
limits) are in the models' descriptions, and a POST answers them with a 422 naming the field.
"""

from __future__ import annotations

from typing import Any

from pydantic import GetJsonSchemaHandler, WithJsonSchema
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from trainer.config.presets import PRESETS
from trainer.metric_names import RETRIEVAL_METRICS

METRIC_NAME = WithJsonSchema({
    "type": "string",
    "description": "a metric every trial reports: a retrieval metric, final_loss or "
                   "final_loss_<objective>",
    "anyOf": [{"enum": [*RETRIEVAL_METRICS, "final_loss"]}, {"pattern": "^final_loss_"}],
})
"""``trainer.metric_names.is_trial_metric``."""

PRESET_NAMES: dict[str, Any] = {"enum": [*PRESETS, None]}
"""``build_config`` refuses any other preset (at the expansion: a 422 on ``base.preset``)."""

LEVEL_VALUE_OR_SET: dict[str, Any] = {"anyOf": [
    {"required": ["value"], "properties": {"set": {"type": "null"}}},
    {"required": ["set"], "not": {"required": ["value"]},
     "properties": {"set": {"type": "object"}}},
]}
"""``Level._value_or_set``: exactly one of ``value`` or a non-null ``set``."""

PLAIN_LEVELS_NEED_PATH: dict[str, Any] = {"anyOf": [
    {"required": ["path"], "properties": {"path": {"type": "string", "minLength": 1}}},
    {"properties": {"levels": {"items": {"type": "object", "not": {"required": ["value"]}}}}},
]}
"""``Factor._consistent``: a level with a value (a plain one or ``{value: ...}``) needs the
factor's ``path``; levels that are all ``{set: ...}`` do not."""


PER_WORKER_NEEDS_WORKERS: dict[str, Any] = {"anyOf": [
    {"required": ["workers"], "properties": {"workers": {"minimum": 2}}},
    {"not": {"anyOf": [{"required": ["cpus_per_worker"]}, {"required": ["gpus_per_worker"]}]}},
]}
"""``Resources._per_worker_only_with_workers``: ``cpus_per_worker``/``gpus_per_worker`` only
with ``workers`` > 1."""


class OrPlainValue:
    """A factor's level: the ``Level`` mapping or any plain (non-mapping) value, which
    ``Factor._wrap_plain_values`` turns into ``{value: ...}``."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core: CoreSchema, handler: GetJsonSchemaHandler
                                     ) -> JsonSchemaValue:
        return {"anyOf": [handler(core), {"not": {"type": "object"}}]}


class _VariantsAsMapping:
    @classmethod
    def __get_pydantic_json_schema__(cls, core: CoreSchema, handler: GetJsonSchemaHandler
                                     ) -> JsonSchemaValue:
        mapping = {"type": "object", "propertyNames": {"minLength": 1}, "additionalProperties": {
            # ``{name: overrides or {}}``: any falsy value means no overrides
            "anyOf": [{"type": "object"}, {"enum": [None, False, 0, "", []]}]}}
        return {"anyOf": [handler(core), mapping]}


VARIANTS_AS_MAPPING = _VariantsAsMapping()
"""``AblationSpec._variants_mapping``: explicit variants as a list or as ``{name: {path: v}}``."""

_SOME = {"anyOf": [{"type": "array", "minItems": 1}, {"type": "object", "minProperties": 1}]}
_NONE = {"anyOf": [{"type": "array", "maxItems": 0}, {"type": "object", "maxProperties": 0}]}


def design_inputs(designs: tuple[str, ...]) -> dict[str, Any]:
    """``AblationSpec._design_inputs``: ``explicit`` takes variants and no factors; the other
    designs (the default among them) take factors and no variants."""
    others = [d for d in designs if d != "explicit"]
    return {"anyOf": [
        {"required": ["design", "variants"], "properties": {
            "design": {"const": "explicit"}, "variants": _SOME, "factors": {"maxProperties": 0}}},
        {"required": ["factors"], "properties": {
            "design": {"enum": others}, "factors": {"minProperties": 1}, "variants": _NONE}},
    ]}


EXAMPLE: dict[str, Any] = {
    "name": "itc-on-off",
    "description": "does ITC help retrieval on the built-in shapes data?",
    "base": {"preset": "tiny", "set": {"schedule.steps": 200}},
    "factors": {"ITC": {"path": "objectives.itc.enabled", "levels": [False, True]}},
    "seeds": 3,
}
"""A spec a POST accepts (shown in /docs)."""
