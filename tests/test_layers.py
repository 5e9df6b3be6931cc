"""The layers of docs/architecture.md hold: a lower layer imports nothing of a higher one."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module,forbidden", [
    ("maelab.config", ["maelab.models", "maelab.engine", "maelab.eval"]),
    ("maelab.models", ["maelab.config", "maelab.engine", "maelab.eval"]),
    ("maelab.engine.pretrain", ["maelab.eval", "maelab.ablate", "maelab.viz"]),
])
def test_a_layer_loads_without_the_layers_above_it(module, forbidden):
    code = f"import sys, {module}; print(sorted({{m.split('.')[0] + '.' + m.split('.')[1] for m in sys.modules "
    code += "if m.startswith('maelab.') and m.count('.') >= 1}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert not [f for f in forbidden if f"'{f}'" in loaded], loaded
