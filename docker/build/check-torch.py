"""Build time only: fail the image build unless the installed torch is the flavour asked for
(``cpu``, or a CUDA one such as ``cu128``), e.g. a CPU image that pulled PyPI's CUDA build."""

import sys

import torch

flavor = sys.argv[1]
cuda = torch.version.cuda
if (flavor == "cpu") != (cuda is None):
    sys.exit(f"torch {torch.__version__} (CUDA {cuda}) is not a {flavor} build")
print(f"torch {torch.__version__}: {flavor} build")
