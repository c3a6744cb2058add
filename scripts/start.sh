#!/usr/bin/env bash
# Install the dashboard's needs into .venv and start it on http://localhost:${PORT:-8501}.
# It listens on 127.0.0.1 only; ADDRESS=0.0.0.0 shares it on the network (README, "Sharing the
# dashboard": put authentication in front of it first).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$VENV/bin/python" -m streamlit run dashboard/app.py --server.port "${PORT:-8501}" \
  --server.address "${ADDRESS:-127.0.0.1}" "$@"
