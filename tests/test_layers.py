"""The layers of docs/architecture.md hold: a lower layer imports nothing of a higher one."""

import ast
import json
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "maelab"

# docs/architecture.md's layers from the bottom: a module may import its own layer's and the layers below it. A name
# is a top-level module or package of maelab; one absent here is refused until it is placed.
LAYERS = [
    ["errors", "undefined", "atomic", "atomic_output", "shard", "seeds", "run_layout", "progress", "export_record"],
    ["presets"],
    ["masking"],
    ["models"],
    ["config"],
    ["schedules"],
    ["data"],
    ["addons", "precision", "update_paths", "state_fit"],  # below the engine and its add-ons alike
    ["gan"],
    ["interop"],
    ["engine"],
    ["viz"],
    ["eval"],
    ["ablate"],
    ["cli", "__main__", "api", "config_command", "export_command", "demo", "export"],
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def maelab_imports(path: Path) -> list[tuple[int, str]]:
    """(line, maelab module) for every import of ``path``, at the top or inside a function (relative ones resolved
    within the package)."""
    package = path.relative_to(SRC.parent).with_suffix("").parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
            found.append((node.lineno, ".".join(p for p in (base, node.module or "") if p)))
    return [(line, name) for line, name in found if name.split(".")[0] == "maelab"]


def component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_import_points_down_the_layers():
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        own = component(".".join(path.relative_to(SRC.parent).with_suffix("").parts))
        if own == "__init__":
            continue
        assert own in RANK, f"{own} is in no layer of LAYERS (docs/architecture.md): place it"
        for line, module in maelab_imports(path):
            target = component(module)
            if target != "__init__" and RANK.get(target, len(LAYERS)) > RANK[own]:
                upward.append(f"{path.relative_to(SRC.parent)}:{line} imports {module}")
    assert not upward, "imports running up the layers:\n" + "\n".join(upward)


LOADS_WITHOUT = {  # a module, and the layers above it that importing it must not load (registries included)
    "maelab.config": ["maelab.models", "maelab.engine", "maelab.eval"],
    "maelab.models": ["maelab.config", "maelab.engine", "maelab.eval"],
    "maelab.addons": ["maelab.gan", "maelab.engine", "maelab.eval", "maelab.ablate", "maelab.viz", "maelab.cli"],
    "maelab.gan.addon": ["maelab.engine", "maelab.eval", "maelab.ablate", "maelab.viz", "maelab.cli"],
    "maelab.engine.pretrain": ["maelab.gan", "maelab.eval", "maelab.ablate", "maelab.viz"],
}
# one process for all of them (torch imported once): each module imported with maelab's own modules unloaded first
LOAD_EACH = """
import importlib, json, sys
loaded = {}
for module in sys.argv[1:]:
    for name in [m for m in sys.modules if m == "maelab" or m.startswith("maelab.")]:
        del sys.modules[name]
    importlib.import_module(module)
    loaded[module] = sorted({".".join(m.split(".")[:2]) for m in sys.modules if m.startswith("maelab.")})
print(json.dumps(loaded))
"""


def test_a_layer_loads_without_the_layers_above_it():
    done = subprocess.run([sys.executable, "-c", LOAD_EACH, *LOADS_WITHOUT], capture_output=True, text=True,
                          check=True)
    loaded = json.loads(done.stdout)
    assert all(".".join(module.split(".")[:2]) in loaded[module] for module in LOADS_WITHOUT)  # each did load
    above = {module: [f for f in forbidden if f in loaded[module]] for module, forbidden in LOADS_WITHOUT.items()}
    assert not any(above.values()), above
