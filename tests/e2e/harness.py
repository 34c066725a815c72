"""Running the real `lakehouse` command in subprocesses, as a user or a second operator would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

LAKEHOUSE = str(Path(sys.executable).with_name("lakehouse"))
CRASH_ENV = "LAKEHOUSE_TEST_CRASH_AT"


def lakehouse_env(**extra: str) -> dict[str, str]:
    """The caller's environment minus anything that would point runs elsewhere; each root keeps its own Dagster instance."""
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "LAKEHOUSE_ROOT", CRASH_ENV)}
    if env.pop("PYTHONDONTWRITEBYTECODE", None):
        # Otherwise every subprocess recompiles Dagster (~3 s of its ~7); cache bytecode outside the repository instead.
        env.setdefault("PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "lakehouse-e2e-pycache"))
    return {**env, **extra}


def lakehouse(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LAKEHOUSE, *args], env=lakehouse_env(**env), capture_output=True, text=True, timeout=300)


def start_lakehouse(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [LAKEHOUSE, *args], env=lakehouse_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args} exited {result.returncode}\n{result.stdout}\n{result.stderr[-4000:]}"
    return result


def fresh_root(source: Path, destination: Path) -> Path:
    """A copy of a root's landing files and tables; the Dagster instance is not copied, each root gets its own."""
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("dagster_home"))
    return destination


# Fault points a plain run of a publishable date never reaches: they need a gated batch or its acceptance.
GATED_PATH_POINTS = ("after_incident_record", "after_gated_batch_record", "after_incident_resolve")
