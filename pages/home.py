"""Home: an explained example first, links into the pages, then what IG and IG2 are, how to
read the completeness error, and the models."""

import streamlit as st

from dashboard.home import example as home_example
from dashboard.widgets import catalog
from dashboard.widgets.figures import AMBER_BELOW, GREEN_BELOW
from dashboard.widgets.navigation import PAGES_DIR, existing_pages

st.title("Why did the model say that?")
home_example.show_example()
st.subheader("Explain your own input")
for page in existing_pages():
    if page.url_path != "home":
        st.page_link(str(PAGES_DIR / page.file), label=f"{page.title}: {page.summary}",
                     icon=page.icon)

st.subheader("What IG and IG2 are")
st.markdown(
    "**Integrated Gradients (IG)** walks in a straight line from a *baseline* (an input that "
    "means 'nothing', such as a black image) to your input and adds up the model's gradients on "
    "the way, so each feature gets its share of the change in the model's score. "
    "**IG2** replaces the baseline with a *counterfactual* (GradCF): it walks the input towards "
    "real samples of other classes along the model's own gradients and integrates along that "
    "path instead of a straight line. Neither is more faithful everywhere: against ground "
    "truth, IG2 came closer on curved tabular functions, IG from a well-chosen baseline on "
    "a linear one, on images and on texts (see the README's \"Which method when\"). "
    "Both promise *completeness*: the attributions add up to the score change they explain."
)

st.subheader("How to read the completeness error")
st.markdown(
    "The **delta** is *sum of attributions − (f(input) − f(baseline))* in the model's score "
    "units (pre-softmax logit of the class explained); the **relative** error divides |delta| "
    "by |f(input) − f(baseline)|. It measures how well the numerical integration worked, not "
    "whether the explanation is *right*.\n\n"
    f"- :green[**green**] below {100 * GREEN_BELOW:g} %: the map accounts for the score change.\n"
    f"- :orange[**amber**] below {100 * AMBER_BELOW:g} %: usable; more steps will sharpen it.\n"
    f"- :red[**red**] otherwise: too few steps (or, for IG2, a step size too small): "
    "do not read the map yet. The delta-vs-steps curve shows how many steps are needed."
)

st.subheader("Models")
entries = catalog.list_entries()
problem = catalog.registry_problem()
if problem:
    st.warning(problem)
if not entries:
    st.info("No model is registered yet.")
else:
    # Whether each model is ready, not where its files live: paths and set-up hints are for
    # the operator (server log, `python -m attribution_core.models`).
    st.dataframe(
        [{"model": e.spec.title, "name": e.spec.name, "modality": e.spec.modality,
          "ready": e.status.ready, "status": catalog.public_status(e.status)}
         for e in entries],
        hide_index=True, width="stretch", height=35 * (len(entries) + 1) + 3,
        column_config={"model": st.column_config.TextColumn(width="medium"),
                       "ready": st.column_config.CheckboxColumn(width="small"),
                       "status": st.column_config.TextColumn(width="medium")},
    )
