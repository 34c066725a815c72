"""`lakehouse ui`: the Dagster webserver and daemon on the project's instance, loopback by default."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from lakehouse.app.runner import dagster_home, instance_for
from lakehouse.delta.storage import is_remote
from lakehouse.settings import Settings


def ui_command(settings: Settings, host: str, port: int) -> list[str]:
    # The module, not workspace.yaml: an installed CLI has no checkout to find the file in.
    dagster = str(Path(sys.executable).with_name("dagster"))
    return [dagster, "dev", "-m", "lakehouse.definitions", "-h", host, "-p", str(port)]


def ui_env(settings: Settings) -> dict[str, str]:
    # The webserver, daemon and code server must agree whatever their cwd; an object-store URI is absolute already.
    root = settings.root if is_remote(settings.root) else str(Path(settings.root).absolute())
    return {**os.environ, "LAKEHOUSE_ROOT": root, "DAGSTER_HOME": str(dagster_home(settings))}


def serve(settings: Settings, host: str, port: int) -> int:
    """Initialise the instance (shipped config, schema) once under its lock, then run webserver + daemon until Ctrl-C."""
    instance_for(settings).dispose()  # a new SQLite instance's schema is created here, before two processes race on it
    env = ui_env(settings)
    print(f"Dagster UI on http://{host}:{port} (DAGSTER_HOME={env['DAGSTER_HOME']}, LAKEHOUSE_ROOT={env['LAKEHOUSE_ROOT']})")
    child = subprocess.Popen(ui_command(settings, host, port), env=env)
    # SIGTERM (a service manager, a test's teardown) stops as Ctrl-C does: `dagster dev` shuts its children down on SIGINT.
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGINT))
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            # Ctrl-C reached `dagster dev` too (same process group); wait while it stops the webserver and daemon.
            try:
                return child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                return child.wait()
