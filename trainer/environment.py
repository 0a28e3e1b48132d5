"""The training stack and hardware a run executes on, as MLflow tags.

Two machines that resolve other versions of torch or transformers, or that train on another CPU,
thread count or GPU, give other numbers for the same config and seed; with these tags on every
run, such a difference shows up in MLflow's run table instead of being guessed at. Versions are
read from the installed distributions' metadata (nothing is imported to learn its version), and
no tag holds a path of the machine.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata

VERSION_TAG_PREFIX = "ablate.version."
"""``ablate.version.<package>``: the installed version of one package of the stack."""
STACK_PACKAGES = ("torch", "transformers", "tokenizers", "numpy", "pillow", "mlflow", "ray")
"""The distributions whose versions a run records (their names on PyPI)."""
CPU_TAG = "ablate.cpu"
CPU_COUNT_TAG = "ablate.cpu_count"
TORCH_THREADS_TAG = "ablate.torch_threads"
GPU_TAG = "ablate.gpu"
GPU_COUNT_TAG = "ablate.gpu_count"
CUDA_TAG = "ablate.cuda"
PLATFORM_TAG = "ablate.platform"
NONE = "none"


def stack_tags(torch_threads: int | None = None) -> dict[str, str]:
    """The versions of the training stack and the hardware of this process, as run tags.

    ``torch_threads`` is the intra-op thread count the run will train with when it sets one
    (the loop applies ``runtime.threads`` only after the run is open); by default torch's current
    count. Naming the GPU initialises CUDA, which a run on a GPU machine does anyway.
    """
    import torch  # here, not at the top: importing the tracking module stays torch-free

    tags = {f"{VERSION_TAG_PREFIX}{name}": package_version(name) for name in STACK_PACKAGES}
    tags[f"{VERSION_TAG_PREFIX}python"] = platform.python_version()
    cuda = torch.cuda.is_available()
    tags |= {
        CPU_TAG: cpu_model(),
        CPU_COUNT_TAG: str(os.cpu_count() or 0),
        TORCH_THREADS_TAG: str(torch_threads or torch.get_num_threads()),
        GPU_TAG: torch.cuda.get_device_name(torch.cuda.current_device()) if cuda else NONE,
        GPU_COUNT_TAG: str(torch.cuda.device_count() if cuda else 0),
        CUDA_TAG: torch.version.cuda or NONE,
        PLATFORM_TAG: platform.platform(),
    }
    return tags


def package_version(name: str) -> str:
    """The installed version of distribution ``name``, or ``none`` when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return NONE


def cpu_model() -> str:
    """The CPU's model name: /proc/cpuinfo's ``model name`` on Linux, else what platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
