"""The Evaluate page's session state: finished runs, the run in progress, and stop / continue.

Streamlit stops a running script by raising inside it at its next ``st`` call whenever the user
touches any widget (the Stop button included), so ``evaluate`` never returns in that case. Every
case is therefore recorded here the moment it finishes (``on_case``); the next script run finds
the run still marked as running, knows it was interrupted, and offers to continue from the
cases already done. Nothing here draws anything: it works on any mutable mapping, so the tests
drive it directly with a plain dict as well as through ``st.session_state``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from attribution_core.evaluation import CaseOutcome, EvalCase, EvaluationResult, EvaluationSettings
from attribution_core.fingerprints import tensor_digest
from dashboard.evaluate import keys
from dashboard.widgets import digests

MAX_RESULTS = 6


def cases_digest(cases: Sequence[EvalCase]) -> str:
    """A content hash of a case set: what each case feeds the model and what it expects.

    Built from the tensors (not from where the cases came from), so the same pictures uploaded
    twice, or bundled twice, share a stored result, and any change of baseline is a new set.
    """
    hasher = hashlib.sha256()
    for case in cases:
        hasher.update(case.case_id.encode())
        hasher.update(str(case.target).encode())
        for tensor in (case.inputs, case.baseline, case.expected, case.units, case.removal):
            _feed(tensor, hasher)
        for name in sorted(case.forward_kwargs):
            hasher.update(name.encode())
            _feed(case.forward_kwargs[name], hasher)
    return hasher.hexdigest()[:24]


def _feed(value: torch.Tensor | None, hasher: Any) -> None:
    """A tensor by the result cache's own digest (dtype, shape, bytes); "-" for none."""
    if value is None:
        hasher.update(b"-")
    else:
        tensor_digest(value, hasher)


def result_key(model_name: str, weights_hash: str, case_digest: str,
               settings: EvaluationSettings) -> str:
    """Everything that changes an evaluation's numbers, in one string."""
    settings_digest = digests.json_hex(settings.record(), 16)
    return f"{model_name}|{weights_hash[:16]}|{case_digest}|{settings_digest}"


@dataclass
class PartialRun:
    """A run that has started and not (yet) finished. Mutable on purpose: it grows case by case.

    It keeps its own cases and settings, so Continue finishes exactly the run that was stopped
    even after the inputs on screen were edited.
    """

    key: str
    model_name: str
    cases: tuple[EvalCase, ...]
    settings: EvaluationSettings
    outcomes: list[CaseOutcome] = field(default_factory=list)
    running: bool = True
    result: EvaluationResult | None = None  # the partial result shown after a stop

    @property
    def n_total(self) -> int:
        return len(self.cases)

    @property
    def n_done(self) -> int:
        return len(self.outcomes)


class EvaluationStore:
    """Finished results (newest last, keyed by ``result_key``) and at most one partial run."""

    def __init__(self, state: MutableMapping[str, Any]) -> None:
        self._state = state

    @property
    def results(self) -> OrderedDict[str, EvaluationResult]:
        return self._state.setdefault(keys.RESULTS, OrderedDict())

    @property
    def partial(self) -> PartialRun | None:
        return self._state.get(keys.PARTIAL)

    @property
    def current_key(self) -> str | None:
        return self._state.get(keys.CURRENT)

    def show(self, key: str) -> bool:
        """Put the stored result ``key`` on screen; False when there is none."""
        if key not in self.results:
            return False
        self.results.move_to_end(key)
        self._state[keys.CURRENT] = key
        return True

    def begin(self, key: str, model_name: str, cases: Sequence[EvalCase],
              settings: EvaluationSettings) -> PartialRun:
        """Start a fresh run (any earlier partial run is dropped)."""
        partial = PartialRun(key, model_name, tuple(cases), settings)
        self._state[keys.PARTIAL] = partial
        return partial

    def resume(self) -> PartialRun:
        """Mark the stopped run as running again (Continue)."""
        partial = self.partial
        if partial is None:
            raise LookupError("There is no stopped evaluation to continue.")
        partial.running = True
        return partial

    def record(self, outcome: CaseOutcome) -> None:
        """Keep one finished case (``evaluate``'s ``on_case``); repeats are ignored."""
        partial = self.partial
        if partial is not None and all(o.case_id != outcome.case_id for o in partial.outcomes):
            partial.outcomes.append(outcome)

    def should_stop(self) -> Callable[[], bool]:
        """``evaluate``'s ``should_stop``: true once the stop-after hook's count is reached."""
        limit = self._state.get(keys.STOP_AFTER_CASES)

        def stop() -> bool:
            partial = self.partial
            return limit is not None and partial is not None and partial.n_done >= int(limit)

        return stop

    def finish(self, result: EvaluationResult) -> None:
        """A run returned: a complete one becomes a stored result, a cancelled one stays partial."""
        partial = self.partial
        if result.cancelled and partial is not None:
            partial.running = False
            partial.result = result
            self._state[keys.CURRENT] = partial.key
            return
        key = partial.key if partial is not None else self.current_key
        if key is None:
            raise LookupError("A finished evaluation has no key to be stored under.")
        self.results[key] = result
        self.results.move_to_end(key)
        while len(self.results) > MAX_RESULTS:
            self.results.popitem(last=False)
        self._state[keys.CURRENT] = key
        self._state.pop(keys.PARTIAL, None)

    def abandon(self) -> None:
        """Forget the run in progress (it failed); the previous result comes back on screen."""
        partial = self._state.pop(keys.PARTIAL, None)
        if partial is not None and self._state.get(keys.CURRENT) == partial.key:
            self._state.pop(keys.CURRENT, None)

    def interrupted(self) -> PartialRun | None:
        """The run an earlier script run left half done (the script was stopped under it).

        Called at the start of every script run: a partial still marked running cannot be
        running any more (one script runs at a time per session), so it is marked stopped.
        """
        partial = self.partial
        if partial is None:
            return None
        if partial.running:
            partial.running = False
            partial.result = None  # rebuilt from the outcomes recorded so far
            if partial.n_done:  # with nothing finished, the earlier result stays on screen
                self._state[keys.CURRENT] = partial.key
        return partial

    def on_screen(self) -> tuple[str, EvaluationResult | None, PartialRun | None] | None:
        """What the results section shows: the current key, its finished result or the partial."""
        key = self.current_key
        partial = self.partial
        if partial is not None and key == partial.key:
            return key, partial.result, partial
        if key is not None and key in self.results:
            return key, self.results[key], None
        if self.results:
            last = next(reversed(self.results))
            return last, self.results[last], None
        return None
