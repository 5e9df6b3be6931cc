"""A resolved config as commented YAML (``maelab config show``): every key with its value and its documentation.

The documentation of a key is the comment written beside or above its dataclass field in ``config/*.py`` (the
single source of truth for the settings). Those comments exist only in the source, so they are read from it, once
per section, with ``tokenize`` (the comments and their line numbers) and ``ast`` (which line each field is on):
moving them into ``field(metadata=...)`` would turn every config file into call syntax, and a separate table of
help texts would drift from the fields. Without the source (a zipped install) the YAML comes without comments.
"""

from __future__ import annotations

import ast
import functools
import inspect
import io
import textwrap
import tokenize
from dataclasses import fields, is_dataclass
from typing import Any, Optional

import yaml

from maelab.config.loading import Config
from maelab.presets import ModelSpec, resolve_spec

HEADER = ("# the resolved config (defaults < -c FILE < key=value overrides), as `maelab pretrain` would run with it;\n"
          "# each key's comment is its documentation (the field's comment in src/maelab/config/)")


@functools.cache
def field_comments(section: type) -> dict[str, tuple[list[str], list[str]]]:
    """{field name: (the comment lines right above it, the comments at the end of its line or lines)} of the
    dataclass ``section``, read from its source; {} when the source cannot be read."""
    try:
        source = textwrap.dedent(inspect.getsource(section))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    comments = {token.start[0]: token.string.lstrip("#").strip()
                for token in tokenize.generate_tokens(io.StringIO(source).readline) if token.type == tokenize.COMMENT}
    found: dict[str, tuple[list[str], list[str]]] = {}
    body = ast.parse(source).body[0]
    for node in body.body if isinstance(body, ast.ClassDef) else []:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above, line = [], node.lineno - 1
        while line in comments and lines[line - 1].lstrip().startswith("#"):  # a comment line, not a field's end
            above.insert(0, comments[line])
            line -= 1
        end = node.end_lineno or node.lineno
        found[node.target.id] = above, [comments[n] for n in range(node.lineno, end + 1) if n in comments]
    return found


def summary(section: type) -> str:
    """The first paragraph of the class docstring of ``section``, on one line."""
    doc = inspect.getdoc(section) or ""
    return " ".join(doc.split("\n\n")[0].split())


def scalar(value: Any) -> str:
    """``value`` as one line of YAML (flow style for a list or mapping)."""
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump({"_": value}, default_flow_style=True, width=float("inf"), sort_keys=False)
    return text.strip()[len("{_: "):-1]


def show_config(cfg: Config) -> str:
    """``cfg`` as YAML (what RUN_DIR/config.yaml would hold, and ``-c`` reads back), each key under or beside its
    documentation (the field's comment lines above it, its end-of-line comment beside it); a model size left null
    says the preset's value. Raises ConfigError for a model the preset
    cannot resolve (as pretraining would)."""
    spec = resolve_spec(cfg.model)
    return "\n".join([HEADER, *_section(cfg, 0, spec)]) + "\n"


def _section(section: Any, depth: int, spec: Optional[ModelSpec]) -> list[str]:
    """The lines of one dataclass instance at ``depth`` (two spaces each)."""
    pad, lines = "  " * depth, []
    comments = field_comments(type(section))
    for f in fields(section):
        value, (above, beside) = getattr(section, f.name), comments.get(f.name, ([], []))
        lines += ([""] if depth == 0 and is_dataclass(value) else []) + [f"{pad}# {n}" for n in above]
        if is_dataclass(value):
            lines.append(f"{pad}{f.name}:  # {' '.join(beside) or summary(type(value))}")
            lines += _section(value, depth + 1, spec if f.name == "model" else None)
            continue
        if spec is not None and value is None and hasattr(spec, f.name):
            beside = [*beside, f"null: the preset's {scalar(getattr(spec, f.name))}"]
        lines.append(f"{pad}{f.name}: {scalar(value)}" + (f"  # {'; '.join(beside)}" if beside else ""))
    return lines
