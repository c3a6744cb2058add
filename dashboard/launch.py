"""``ig-dashboard``: start the installed dashboard with the project's server settings.

``streamlit run`` reads ``.streamlit/config.toml`` from the working directory, which an
installed package cannot rely on; the launcher passes the same settings (a copy shipped as
``streamlit_config.toml``, kept identical by a test) as command-line flags. ``ADDRESS`` and
``PORT`` work as for ``scripts/start.sh``; further arguments go to ``streamlit run``.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "streamlit_config.toml"


def streamlit_arguments(argv: Sequence[str] = ()) -> list[str]:
    """The ``streamlit run`` command line: the app, the settings as flags, then ``argv``."""
    settings = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    flags = [f"--{section}.{key}={_flag(value)}" for section, values in settings.items()
             for key, value in values.items() if (section, key) != ("server", "address")]
    flags.append(f"--server.address={os.environ.get('ADDRESS', settings['server']['address'])}")
    flags.append(f"--server.port={os.environ.get('PORT', '8501')}")
    return ["streamlit", "run", str(HERE / "app.py"), *flags, *argv]


def _flag(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def main(argv: Sequence[str] | None = None) -> None:
    from streamlit.web import cli

    sys.argv = streamlit_arguments(sys.argv[1:] if argv is None else argv)
    sys.exit(cli.main())
