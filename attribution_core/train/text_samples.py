"""Example sentences for the text models (bundled into ``assets/samples/texts.json``).

The MiniLM sets double as the small labelled evaluation sets whose accuracy the zero-shot
models' metadata records (they were written by hand, not drawn from any training data).
"""

from __future__ import annotations

from typing import Any

SENTIMENT_SENTENCES = [
    ("I absolutely loved this film, the acting was wonderful.", "positive"),
    ("What a fantastic meal, we will definitely come back.", "positive"),
    ("The staff were friendly and the room was spotless.", "positive"),
    ("This book is a delight from the first page to the last.", "positive"),
    ("Great battery life and a beautiful screen.", "positive"),
    ("The concert was brilliant and the crowd was happy.", "positive"),
    ("An inspiring, heartwarming story that made my day.", "positive"),
    ("Everything worked perfectly, I am very satisfied.", "positive"),
    ("The movie was boring and far too long.", "negative"),
    ("Terrible service, the food arrived cold.", "negative"),
    ("The hotel room was dirty and the staff were rude.", "negative"),
    ("I regret buying this phone, it broke after a week.", "negative"),
    ("A dull plot with awful dialogue.", "negative"),
    ("The trip was a disaster from start to finish.", "negative"),
    ("This was a waste of money and time.", "negative"),
    ("I was disappointed, it did not work at all.", "negative"),
]
TOPIC_SENTENCES = [
    ("The striker scored twice as the team won the championship final.", "sports"),
    ("She broke the world record in the 100 metres sprint.", "sports"),
    ("The coach praised his players after the tennis match.", "sports"),
    ("The basketball season opens next week with a derby.", "sports"),
    ("Parliament passed the new law after a long debate.", "politics"),
    ("The president announced the election date on Monday.", "politics"),
    ("Voters will choose a new mayor in the city council election.", "politics"),
    ("The minister resigned after criticism from the opposition party.", "politics"),
    ("Shares of the company rose after strong quarterly profits.", "business"),
    ("The central bank raised interest rates to fight inflation.", "business"),
    ("The retailer plans to open forty new stores and hire staff.", "business"),
    ("Investors worry that the merger will hurt the market.", "business"),
    ("Researchers discovered a new protein that helps cells repair DNA.", "science & technology"),
    ("The new laptop has a faster processor and more memory.", "science & technology"),
    ("Engineers released a software update that fixes the security bug.",
     "science & technology"),
    ("Astronomers observed a distant galaxy with the space telescope.", "science & technology"),
]
CUE_SENTENCES = [
    "the movie was really good .",
    "the food was not good to me .",
    "this film seemed terrible in the end .",
    "the service was honestly not bad .",
    "our hotel felt wonderful this week .",
    "the plot is quite boring .",
]


def text_samples() -> dict[str, list[dict[str, Any]]]:
    from attribution_core.datasets.cue_corpus import (
        CLASS_NAMES,
        NEGATION,
        NEGATIVE_CUES,
        POSITIVE_CUES,
    )
    from attribution_core.models.builtin_text import SENTIMENT_LABELS, TOPIC_LABELS

    def labelled(sentences: list[tuple[str, str]], names: list[str]) -> list[dict[str, Any]]:
        return [{"text": text, "label": names.index(label), "label_name": label}
                for text, label in sentences]

    cue_entries = []
    for text in CUE_SENTENCES:
        words = text.split()
        cue = next(w for w in words if w in POSITIVE_CUES or w in NEGATIVE_CUES)
        negated = NEGATION in words
        label = int((cue in POSITIVE_CUES) != negated)
        cue_entries.append({"text": text, "label": label, "label_name": CLASS_NAMES[label],
                            "decisive_words": [NEGATION, cue] if negated else [cue]})
    return {
        "minilm_sentiment": labelled(SENTIMENT_SENTENCES, list(SENTIMENT_LABELS)),
        "minilm_topic": labelled(TOPIC_SENTENCES, list(TOPIC_LABELS)),
        "cue_transformer": cue_entries,
    }
