"""Evaluate page, the validity benchmark: methods against ground-truth Shapley values.

A thin view over :func:`attribution_core.validity.tabular_suite.run_tabular` (the same code as
``python -m benchmarks.validity``): pick a benchmark setting, methods and a case count, run it
in the CPU queue with progress, read the table. The result is kept in this session only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
import torch

from attribution_core.validity.report import rows_table
from attribution_core.validity.tabular_methods import tabular_methods
from attribution_core.validity.tabular_suite import TabularSettings, run_tabular
from attribution_core.validity.xai_bench import DATASETS, RHOS
from dashboard.evaluate import keys
from dashboard.widgets import run_gate

DEFAULT_METHODS = ("IG(mean)", "IG2(random)", "ExpectedGradients(data)", "Random")
MAX_CASES = 200


def validity_section() -> None:
    with st.expander("Validity benchmark: IG, IG2 and the others against ground truth"):
        st.caption("The synthetic Gaussian benchmarks of Liu et al. (NeurIPS 2021, xai-bench): "
                   "a 5-64-64-1 MLP is trained on the chosen data set (a few seconds), then "
                   "each method's attributions are compared with the exact Shapley values of "
                   "that model. Higher Shapley correlation, faithfulness and monotonicity are "
                   "better, lower MSE is better; `Random` is the floor. Full tables: "
                   "docs/VALIDITY.md.")
        left, middle, right = st.columns(3)
        dataset = left.selectbox("Data set", DATASETS, key=keys.VALIDITY_DATASET)
        rho = middle.selectbox("Correlation rho", RHOS, key=keys.VALIDITY_RHO)
        n_cases = int(right.number_input("Cases", min_value=10, max_value=MAX_CASES, value=40,
                                         step=10, key=keys.VALIDITY_CASES))
        names = [m.name for m in tabular_methods()]
        methods = st.multiselect("Methods", names, default=list(DEFAULT_METHODS),
                                 key=keys.VALIDITY_METHODS)
        if st.button("Run the validity benchmark", key=keys.VALIDITY_RUN,
                     icon=":material/science:", disabled=not methods):
            _run(TabularSettings(n_cases=n_cases, datasets=(dataset,), rhos=(float(rho),),
                                 methods=tuple(methods)))
        rows = st.session_state.get(keys.VALIDITY_ROWS)
        if rows:
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def _run(settings: TabularSettings) -> None:
    slot = st.empty()
    with slot.container(border=True):
        bar = st.progress(0.0, text="starting")

    def progress(done: int, total: int, message: str) -> None:
        bar.progress(float(np.clip(done / max(total, 1), 0.0, 1.0)), text=message)

    try:
        result = run_gate.run_queued(torch.device("cpu"), "validity", lambda job: run_tabular(
            settings, progress=job.progress(progress)))
    except run_gate.JobCancelled:
        slot.empty()
        st.info("The validity benchmark was cancelled.")
        return
    except ValueError as error:
        slot.empty()
        st.error(f"The validity benchmark cannot run: {error}")
        return
    except Exception as error:  # a message, never a traceback; the previous table stays
        slot.empty()
        st.error(f"The validity benchmark failed ({type(error).__name__}): {error}")
        return
    slot.empty()
    st.session_state[keys.VALIDITY_ROWS] = rows_table([row.as_json() for row in result.rows])
