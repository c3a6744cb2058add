"""A generated sentiment corpus with planted cue words: the ground truth of which words decide.

Each sentence is neutral filler plus exactly one cue word (``good``, ``awful``, ...). With
probability ``NEGATION_RATE`` the cue is preceded by ``not``, which flips its polarity ("not
good" is negative). Filler words never carry sentiment, so the decisive words of a sentence are
its cue and, when present, the ``not`` before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POSITIVE_CUES = ("good", "great", "excellent", "wonderful", "superb", "enjoyable")
NEGATIVE_CUES = ("bad", "awful", "terrible", "boring", "dreadful", "poor")
NEGATION = "not"
SUBJECTS = ("the movie", "this film", "the food", "the service", "our hotel", "the book",
            "the plot", "this phone", "the concert", "the staff", "my trip", "the game")
VERBS = ("was", "is", "seemed", "felt", "looked", "sounded")
FILLERS = ("really", "quite", "today", "overall", "again", "honestly", "also", "here",
           "then", "still", "indeed", "somewhat")
TAILS = ("to me", "for us", "this week", "in the end", "at first", "on the whole", "as usual",
         "last night")
NEGATION_RATE = 0.35
CLASS_NAMES = ("negative", "positive")


@dataclass(frozen=True)
class CueSentence:
    text: str
    label: int  # 1 positive, 0 negative
    decisive_words: tuple[str, ...]  # the cue and, where negated, "not"


def vocabulary_words() -> list[str]:
    words: set[str] = {NEGATION, *POSITIVE_CUES, *NEGATIVE_CUES, *VERBS, *FILLERS}
    for phrase in (*SUBJECTS, *TAILS):
        words.update(phrase.split())
    return [*sorted(words), ".", ","]


def make_sentence(rng: np.random.Generator) -> CueSentence:
    positive_cue = bool(rng.integers(2))
    cue = str(rng.choice(POSITIVE_CUES if positive_cue else NEGATIVE_CUES))
    negated = bool(rng.random() < NEGATION_RATE)
    words = [*str(rng.choice(SUBJECTS)).split(), str(rng.choice(VERBS))]
    words += [str(w) for w in rng.choice(FILLERS, size=int(rng.integers(0, 3)), replace=False)]
    words += ([NEGATION] if negated else []) + [cue]
    if rng.random() < 0.6:
        words += str(rng.choice(TAILS)).split()
    words.append(".")
    label = int(positive_cue != negated)
    decisive = (NEGATION, cue) if negated else (cue,)
    return CueSentence(" ".join(words), label, decisive)


def generate_corpus(n: int, seed: int) -> list[CueSentence]:
    """``n`` sentences from ``np.random.default_rng(seed)`` (same seed, same corpus)."""
    rng = np.random.default_rng(seed)
    return [make_sentence(rng) for _ in range(n)]
