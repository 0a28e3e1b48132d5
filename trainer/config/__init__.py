"""A trial's configuration, importable without torch.

``sections`` (data, model, init, optim, schedule, eval, runtime), ``objectives`` (each
objective's settings and the config-only registry), ``presets`` (data), ``overrides`` (merge and
dotted paths), ``errors``, and ``train`` (TrainConfig, build_config, load_config). The service
validates specs with these without loading PyTorch or any model.
"""

from trainer.config.errors import ConfigError, describe_validation_error
from trainer.config.objectives import (
    OBJECTIVE_CONFIGS,
    OBJECTIVE_NAMES,
    ObjectiveConfig,
    ObjectivesConfig,
)
from trainer.config.overrides import deep_merge, flatten, nest, parse_override, set_path
from trainer.config.presets import PRESETS
from trainer.config.sections import (
    DataConfig,
    EvalConfig,
    InitConfig,
    ModelConfig,
    MoMEConfig,
    OptimConfig,
    RuntimeConfig,
    ScheduleConfig,
    TextConfig,
    VisionConfig,
)
from trainer.config.train import RESULT_NEUTRAL_FIELDS, TrainConfig, build_config, load_config

__all__ = [
    "OBJECTIVE_CONFIGS",
    "OBJECTIVE_NAMES",
    "PRESETS",
    "RESULT_NEUTRAL_FIELDS",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "InitConfig",
    "ModelConfig",
    "MoMEConfig",
    "ObjectiveConfig",
    "ObjectivesConfig",
    "OptimConfig",
    "RuntimeConfig",
    "ScheduleConfig",
    "TextConfig",
    "TrainConfig",
    "VisionConfig",
    "build_config",
    "deep_merge",
    "describe_validation_error",
    "flatten",
    "load_config",
    "nest",
    "parse_override",
    "set_path",
]
