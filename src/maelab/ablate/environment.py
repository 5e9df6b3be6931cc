"""What produced an ablation: the commands, package versions and the machine (CPU model or GPU name)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from maelab.atomic import write_text_atomic

ENVIRONMENT_NAME = "environment.json"
PACKAGES = ("maelab", "torch", "numpy", "scipy", "omegaconf")


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else platform.processor())."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The machine an ablation runs on."""
    info: dict[str, Any] = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def record_invocation(out: Path, command: str) -> dict[str, Any]:
    """Append this invocation (command, time, versions, machine) to OUT/environment.json; returns the record.
    The caller records once per invocation (``maelab ablate`` does, before its stages and workers start)."""
    path = Path(out) / ENVIRONMENT_NAME
    history = json.loads(path.read_text()) if path.is_file() else []
    record = {"command": command, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "versions": versions(),
              "machine": machine()}
    history.append(record)
    write_text_atomic(path, json.dumps(history, indent=2))
    return record


def read_invocations(out: Path) -> list[dict[str, Any]]:
    path = Path(out) / ENVIRONMENT_NAME
    return json.loads(path.read_text()) if path.is_file() else []
