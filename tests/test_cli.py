"""The `distributary` console script."""
from __future__ import annotations

import os
import subprocess
import sys

import distributary


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distributary.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_version():
    out = run_cli("version")
    assert out.returncode == 0
    assert f"distributary {distributary.__version__}" in out.stdout


def test_config_view_shows_settings_and_their_source(tmp_path):
    out = run_cli("config", "view", "--show-defaults",
                  env={"DISTRIBUTARY_HOME": str(tmp_path), "DISTRIBUTARY_LOGGING_LEVEL": "debug"})
    assert out.returncode == 0
    assert f"DISTRIBUTARY_HOME='{tmp_path}' (env)" in out.stdout
    assert "DISTRIBUTARY_LOGGING_LEVEL='DEBUG' (env)" in out.stdout
    assert f"DISTRIBUTARY_RESULTS_DEFAULT_STORAGE='{tmp_path / 'storage'}' (default)" in out.stdout
    hidden = run_cli("config", "view", env={"DISTRIBUTARY_HOME": str(tmp_path)})  # Prefect: defaults hidden
    assert "RESULTS_DEFAULT_STORAGE" not in hidden.stdout


def test_bad_setting_value_is_a_clear_error():
    out = run_cli("config", "view", env={"DISTRIBUTARY_RESULTS_PERSIST_BY_DEFAULT": "maybe"})
    assert out.returncode != 0
    assert "DISTRIBUTARY_RESULTS_PERSIST_BY_DEFAULT='maybe' is not valid" in out.stderr


def test_console_script_is_installed():
    exe = os.path.join(os.path.dirname(sys.executable), "distributary")
    out = subprocess.run([exe, "version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "distributary" in out.stdout
