"""``python -m attribution_core.models``: list every registered model, whether it is ready,
where its files live and how to set up a missing one (operator details: the dashboard shows
users only whether a model is ready). Plugins that failed to import are listed with their error.
"""

from __future__ import annotations

import sys

from attribution_core.models.plugin_discovery import PLUGIN_VARIABLE
from attribution_core.models.registry import list_specs, plugin_failures
from attribution_core.models.sources import MODEL_DIRS_VARIABLE, model_roots


def main() -> int:
    specs = list_specs()
    failures = plugin_failures()
    width = max([len(spec.name) for spec in specs] + [len("plugin")])
    print(f"{'model':<{width}}  {'modality':<8}  {'source':<11}  status")
    for spec in specs:
        status = spec.status()
        flag = "ready" if status.ready else "NOT READY"
        detail = "" if status.message == "ready" else f" - {status.message}"
        print(f"{spec.name:<{width}}  {spec.modality:<8}  {spec.source:<11}  {flag}{detail}")
        if spec.weights_path is not None:
            print(f"{'':<{width}}  files: {spec.weights_path}")
        if spec.source == "plugin" and "plugin" in spec.metadata:
            print(f"{'':<{width}}  from: {spec.metadata['plugin']}")
    for source, message in failures:
        print(f"{'plugin':<{width}}  {'?':<8}  {'plugin':<11}  NOT READY - {source} failed to "
              f"import: {message}")
    roots = model_roots()
    shared = ", ".join(str(root) for root in roots) if roots else "none"
    print(f"\nHugging Face folders users may load ({MODEL_DIRS_VARIABLE}): {shared}; "
          "hub ids: those already in the local Hugging Face cache.")
    print(f"Model plugins ({PLUGIN_VARIABLE}, and the entry-point group "
          "attribution_core.models): see the README, 'Your own model'.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
