"""Entry point: routes between the pages; layout lives in pages/, logic in components and core."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard.widgets.access import require_login  # noqa: E402
from dashboard.widgets.navigation import PAGES, existing_pages  # noqa: E402
from dashboard.widgets.sidebar import render_sidebar  # noqa: E402
from dashboard.widgets.upload_guard import begin_run  # noqa: E402

st.set_page_config(page_title="IG / IG2 explanations", page_icon=":material/search:", layout="wide")
require_login()  # only when the operator configured [auth] in secrets.toml
begin_run()  # upload boxes drawn from here on set what the server accepts for this session
pages = existing_pages()
# The default page is served at "/" only (its own pathname never resolves), so Home is also
# registered, hidden from the menu, under "/home" for links and bookmarks.
routes = [
    st.Page(str(ROOT / "pages" / page.file), title=page.title, icon=page.icon,
            url_path="start" if page.url_path == "home" else page.url_path,
            default=page.url_path == "home")
    for page in pages
]
routes.append(st.Page(str(ROOT / "pages" / "home.py"), title="Home", url_path="home",
                      visibility="hidden"))
navigation = st.navigation(routes)
current = next((page for page in PAGES if page.title == navigation.title), None)
render_sidebar(current.modality if current else None, current.url_path if current else None)
navigation.run()
