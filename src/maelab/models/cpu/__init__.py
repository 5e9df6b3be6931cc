"""Everything that exists for CPU speed: maelab's C++ attention kernel (``csrc/``, built by :mod:`.build`), its ops
(:mod:`.ops`) and the fast paths behind the model's kernel interface (:mod:`.kernels`). The model code in
``models/vit.py`` and ``models/mae.py`` does not depend on any of it: :func:`kernels_for` is chosen once, when a
run builds its model."""

from maelab.models.cpu.kernels import CPUKernels, kernels_for

__all__ = ["CPUKernels", "kernels_for"]
