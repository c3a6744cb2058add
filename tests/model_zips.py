"""Small Hugging Face text classifiers built in the test, zipped as a user would upload them.

Nothing downloads: the tokenizer is a WordPiece vocabulary written here, the model a randomly
initialised BERT or DistilBERT from a config (seeded). Shared by the unit, app and browser tests.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import torch

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "was", "good", "bad",
         "plot", "film", "really", "not", "boring", "great", "##s", "."]
LABELS = {0: "negative", 1: "positive"}
REFERENCE_TEXTS = ("the movie was good .", "the film was great .", "the plot was bad .",
                   "the movie was boring .", "the film was really good .",
                   "the plot was not good .", "the movie was really bad .",
                   "the film was not boring .", "the plot was great .", "the film was bad .")
REFERENCE_LABELS = (1, 1, 0, 0, 1, 0, 0, 1, 1, 0)  # 1: positive


def save_tiny_classifier(folder: Path, kind: str = "bert", seed: int = 0,
                         head_bias: tuple[float, float] | None = None,
                         trained: bool = False) -> Path:
    """A one-layer BERT (or DistilBERT) sequence classifier and its tokenizer in ``folder``;
    ``head_bias`` overrides the classifier's bias (a large gap: one class for every text);
    ``trained``: fitted to the reference texts' sentiment (a few seconds on a CPU)."""
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertTokenizer,
        DistilBertConfig,
        DistilBertForSequenceClassification,
    )

    folder.mkdir(parents=True, exist_ok=True)
    BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)}).save_pretrained(str(folder))
    torch.manual_seed(seed)
    label2id = {name: index for index, name in LABELS.items()}
    if kind == "distilbert":
        config = DistilBertConfig(vocab_size=len(WORDS), dim=16, n_layers=1, n_heads=2,
                                  hidden_dim=32, max_position_embeddings=64, num_labels=2,
                                  id2label=LABELS, label2id=label2id, dropout=0.0,
                                  attention_dropout=0.0, seq_classif_dropout=0.0)
        model = DistilBertForSequenceClassification(config)
    else:
        config = BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=1,
                            num_attention_heads=2, intermediate_size=32, num_labels=2,
                            max_position_embeddings=64, id2label=LABELS, label2id=label2id,
                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        model = BertForSequenceClassification(config)
    if trained:
        _fit(model, BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)}))
    if head_bias is not None:
        with torch.no_grad():
            model.classifier.bias.copy_(torch.tensor(head_bias))
    model.save_pretrained(str(folder))
    return folder


def _fit(model: torch.nn.Module, tokenizer: object, steps: int = 80) -> None:
    batch = tokenizer(list(REFERENCE_TEXTS), return_tensors="pt", padding=True)  # type: ignore
    labels = torch.tensor(REFERENCE_LABELS)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(steps):
        optimiser.zero_grad()
        model(**batch, labels=labels).loss.backward()
        optimiser.step()
    model.eval()


def zip_folder(folder: Path, top: str | None = "tiny_classifier",
               extra: dict[str, bytes] | None = None) -> bytes:
    """The folder's files as a zip (inside one folder ``top``, as zipping a folder does), plus
    ``extra`` members {path in the zip: bytes}."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, f"{top}/{path.name}" if top else path.name)
        for name, content in (extra or {}).items():
            archive.writestr(name, content)
    return buffer.getvalue()


def with_config(folder: Path, **changes: object) -> bytes:
    """The folder zipped with ``config.json`` changed (keys set, or removed when None)."""
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            content = json.dumps(config).encode() if path.name == "config.json" else \
                path.read_bytes()
            archive.writestr(path.name, content)
    return buffer.getvalue()


def reference_csv(texts: tuple[str, ...] = REFERENCE_TEXTS) -> bytes:
    return ("text\n" + "\n".join(texts) + "\n").encode()
