"""Everything that exists for CPU speed: maelab's C++ attention kernel (``csrc/``, built by :mod:`.build`), its ops
(:mod:`.ops`), the fast paths as drop-in layers (:mod:`.layers`) and their choice by measurement (:mod:`.choice`,
:mod:`.kernels`). The model code in ``models/vit.py`` and ``models/mae.py`` does not depend on any of it: a run
builds the plain model and calls ``use_kernels(model, kernels_for(...))`` once."""

from maelab.models.cpu.kernels import kernels_for
from maelab.models.cpu.layers import kernels_in, use_kernels

__all__ = ["kernels_for", "kernels_in", "use_kernels"]
