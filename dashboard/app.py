"""Entry point: routes between the pages; layout lives in pages/, logic in components and core."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

st.set_page_config(page_title="IG / IG2 explanations", page_icon="🔍", layout="wide")
navigation = st.navigation([st.Page(str(ROOT / "pages" / "home.py"), title="Home", default=True)])
navigation.run()
