"""The dashboard's pages: one table used by the router (app.py) and the home page's links."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PAGES_DIR = Path(__file__).resolve().parents[2] / "pages"


@dataclass(frozen=True)
class PageInfo:
    file: str
    title: str
    icon: str
    url_path: str
    modality: str | None
    summary: str


PAGES = (
    PageInfo("home.py", "Home", ":material/home:", "home", None,
             "What IG and IG2 are and how to read them."),
    PageInfo("image.py", "Image", ":material/image:", "image", "image",
             "Explain an image classifier: heatmaps, ranked regions, completeness, IG2 "
             "counterfactuals."),
    PageInfo("text.py", "Text", ":material/notes:", "text", "text",
             "Explain a text classifier word by word."),
    PageInfo("tabular.py", "Tabular", ":material/table_chart:", "tabular", "tabular",
             "Explain a prediction on a table row, feature by feature."),
    PageInfo("evaluate.py", "Evaluate", ":material/science:", "evaluate", None,
             "Compare methods: completeness, deletion and insertion curves."),
)


def existing_pages() -> list[PageInfo]:
    """Only pages whose file exists (pages land one issue at a time)."""
    return [page for page in PAGES if (PAGES_DIR / page.file).is_file()]
