"""``python -m attribution_core COMMAND``: dispatches to the command-line tools.

``explain`` evaluates explanation methods over many cases (``attribution_core.evaluation.cli``);
``models`` lists the registered models (as ``python -m attribution_core.models`` does).
"""

from __future__ import annotations

import sys

from attribution_core.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
