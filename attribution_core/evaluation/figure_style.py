"""One figure style for every view of an evaluation: the Evaluate page and the HTML report draw
the same data with the same colour per method, the same reference colour and the same layout."""

from __future__ import annotations

import html
from typing import Any

from attribution_core.evaluation.types import ALL_METHODS

# Plotly's colour-blind-safe qualitative palette ("Safe"), one colour per method in the order
# of ALL_METHODS; methods outside that list take the following colours.
PALETTE: tuple[str, ...] = ("#88CCEE", "#CC6677", "#DDCC77", "#117733", "#332288", "#AA4499",
                            "#44AA99", "#999933", "#882255", "#661100", "#888888")
RANDOM_COLOUR = "#7f7f7f"  # the random-order reference curves
SIGNED_COLOURSCALE = "RdBu_r"  # attribution maps: red for the target class, blue against
MARGIN: dict[str, int] = {"l": 10, "r": 10, "t": 60, "b": 10}


def method_colour(method: str) -> str:
    """The colour of ``method`` on every chart, page and report alike."""
    index = ALL_METHODS.index(method) if method in ALL_METHODS else len(ALL_METHODS)
    return PALETTE[index % len(PALETTE)]


def plotly_text(value: object) -> str:
    """``value`` as text Plotly shows literally. Plotly renders a subset of HTML in axis labels,
    trace names, titles and hover text (``<a href>``, ``<b>``, ``<br>``, ``<span style>``), so a
    feature, class, token or case name from an upload could draw a live link on the page and in
    the HTML report; escaped, it is the text it was (Plotly turns the entities back into the
    characters)."""
    return html.escape(str(value), quote=False)


def base_layout(**overrides: Any) -> dict[str, Any]:
    """The layout every evaluation figure starts from."""
    return {"template": "plotly_white", "margin": dict(MARGIN), **overrides}
