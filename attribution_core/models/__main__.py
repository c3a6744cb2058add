"""``python -m attribution_core.models``: list every registered model and whether it is ready."""

from __future__ import annotations

import sys

from attribution_core.models.registry import list_specs


def main() -> int:
    specs = list_specs()
    width = max(len(spec.name) for spec in specs)
    print(f"{'model':<{width}}  {'modality':<8}  {'source':<11}  status")
    for spec in specs:
        status = spec.status()
        flag = "ready" if status.ready else "NOT READY"
        detail = "" if status.message == "ready" else f" - {status.message}"
        print(f"{spec.name:<{width}}  {spec.modality:<8}  {spec.source:<11}  {flag}{detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
