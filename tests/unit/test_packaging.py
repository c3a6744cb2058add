"""The project installs by the ecosystem's conventions: `pip install .` into a fresh virtual
environment, importable from any folder, with its console scripts and bundled assets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from dashboard.launch import streamlit_arguments

ROOT = Path(__file__).resolve().parents[2]


def test_launcher_settings_are_the_checkout_settings() -> None:
    packaged = (ROOT / "dashboard" / "streamlit_config.toml").read_text(encoding="utf-8")
    checkout = (ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8")
    assert packaged == checkout, \
        "dashboard/streamlit_config.toml must be a copy of .streamlit/config.toml"
    arguments = streamlit_arguments(["--server.runOnSave=false"])
    assert arguments[:2] == ["streamlit", "run"] and arguments[2].endswith("app.py"), arguments
    assert "--server.address=127.0.0.1" in arguments, "local only unless ADDRESS says otherwise"
    assert "--client.showErrorDetails=none" in arguments, "no tracebacks for strangers"
    assert "--server.headless=true" in arguments, "booleans as Streamlit spells them"


@pytest.mark.slow
def test_pip_install_into_a_fresh_environment(tmp_path: Path) -> None:
    # Build from a copy: setuptools writes build/ and *.egg-info beside the sources.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv*", ".git", "build", "*.egg-info", "__pycache__", ".attribution_cache",
        "test-artifacts", ".pytest_cache", ".ruff_cache", ".whl", ".gl"))
    environment = tmp_path / "env"
    venv.EnvBuilder(with_pip=True).create(environment)
    python = environment / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps",
         "--disable-pip-version-check", str(source)],
        capture_output=True, text=True, timeout=600, check=False)
    assert install.returncode == 0, f"pip install . failed: {install.stderr[-2000:]}"
    for script in ("ig-dashboard", "attribution-core"):
        assert (environment / "bin" / script).is_file(), f"console script {script} installed"
    # The heavy dependencies come from the test environment; the project itself must come
    # from the fresh one, imported from a folder that holds no checkout.
    dependencies = sysconfig.get_paths()["purelib"]
    check = subprocess.run(
        [str(python), "-c",
         "import attribution_core, dashboard.launch as l; "
         "from attribution_core.models import list_specs; "
         "print(attribution_core.__file__); print(l.CONFIG.is_file()); "
         "print(sorted(s.name for s in list_specs() if s.status().ready))"],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": dependencies})
    assert check.returncode == 0, f"import from elsewhere failed: {check.stderr[-2000:]}"
    location, has_config, ready = check.stdout.strip().splitlines()
    assert location.startswith(str(environment)), f"imported from {location}, not the install"
    assert has_config == "True", "the launcher's settings are installed"
    assert "digits_cnn" in ready and "wine_mlp" in ready, \
        f"bundled weights are found in the installed package: {ready}"
    help_run = subprocess.run([str(environment / "bin" / "attribution-core"), "--help"],
                              capture_output=True, text=True, timeout=300, check=False,
                              cwd=tmp_path, env={**os.environ, "PYTHONPATH": dependencies})
    assert help_run.returncode == 0 and "explain" in help_run.stdout, help_run.stderr[-1000:]
    assert sys.executable, "the test environment's python provided the dependencies"


def test_project_documents_never_point_outside_the_repository() -> None:
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert (ROOT / "docs" / "ARCHITECTURE.md") in documents, "the architecture is documented"
    for document in documents:
        text = document.read_text(encoding="utf-8")
        assert "../" not in text and "shared/docs" not in text, \
            f"{document.name} points outside the repository"
    assert "docs/ARCHITECTURE.md" in (ROOT / "README.md").read_text(encoding="utf-8"), \
        "README links the architecture document"
