"""Which Hugging Face model sources a shared server may load: the source policy.

A user of the dashboard types a hub id or a folder. On a server that strangers share, that box
must not become a way to probe or read the server's files. So a source is accepted only when it
is

- a folder under one of the operator's model roots (``IG_DASHBOARD_MODEL_DIRS``, separated by
  ``os.pathsep``; none by default), after resolving ``..`` and symbolic links, or
- a hub id (``name`` or ``owner/name``) whose files are already in the local Hugging Face cache.

Every refusal, whatever its cause (missing, outside the roots, a system file, a symlink out of a
root), raises :class:`ModelSourceRefused` with the same message, so the answer says nothing about
what exists on the server. A path outside every root is refused on its text alone (the
filesystem is never touched for it), so the time to answer does not depend on what is there
either.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from attribution_core.models.spec import ModelLoadError

MODEL_DIRS_VARIABLE = "IG_DASHBOARD_MODEL_DIRS"
# Hugging Face repo ids: letters, digits, '-', '_', '.'; one optional owner; no '..' or '--'
# at the ends (the hub refuses those too).
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_CONFIG_FILE = "config.json"


class ModelSourceRefused(ModelLoadError):
    """The source is not one this server offers (never says whether it exists)."""


def refusal_message() -> str:
    """The one message every refused source gets (it does not even echo the source, so two
    refusals read exactly alike)."""
    return ("Could not load that model: this server offers hub ids already in its Hugging Face "
            "cache and folders under the model folders its operator shared, nothing else.")


@dataclass(frozen=True)
class ResolvedSource:
    """An accepted source: what to show the user, and what to hand to ``from_pretrained``."""

    display_name: str  # what the user typed (no server path they did not type themselves)
    load_path: str  # an absolute folder: the real path under a root or a hub cache snapshot
    kind: str  # "folder" or "hub cache"


def model_roots(value: str | None = None) -> tuple[Path, ...]:
    """The operator's model roots (real paths), from ``value`` or ``IG_DASHBOARD_MODEL_DIRS``."""
    text = os.environ.get(MODEL_DIRS_VARIABLE, "") if value is None else value
    roots = []
    for part in text.split(os.pathsep):
        if part.strip():
            roots.append(Path(os.path.realpath(os.path.expanduser(part.strip()))))
    return tuple(roots)


def _is_under(path: str, root: Path) -> bool:
    return path == str(root) or path.startswith(str(root).rstrip(os.sep) + os.sep)


def _folder_under_roots(source: str, roots: Sequence[Path]) -> str | None:
    """The real folder for ``source`` when it lies under a root (relative names are looked up
    in each root in turn); None otherwise."""
    for root in roots:
        candidate = source if os.path.isabs(source) else os.path.join(root, source)
        # Checked on the text first: a path outside every root never reaches the filesystem.
        if not _is_under(os.path.normpath(candidate), root):
            continue
        real = os.path.realpath(candidate)  # '..' and symlinks resolved
        if _is_under(real, root) and os.path.isdir(real):
            return real
    return None


def _hub_cache_snapshot(source: str, cache_dir: str | Path | None) -> str | None:
    """The cached snapshot folder of hub id ``source``, or None when it is not in the cache."""
    if not _HUB_ID.match(source) or ".." in source or "--" in source:
        return None
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(source, _CONFIG_FILE, cache_dir=cache_dir)
    except Exception:  # a malformed id or cache: treated like "not cached"
        return None
    if not isinstance(found, str) or not os.path.isfile(found):
        return None
    return os.path.dirname(found)


def resolve_model_source(source: str, roots: Sequence[Path] | None = None,
                         hub_cache: str | Path | None = None) -> ResolvedSource:
    """Accept ``source`` under the policy above, or raise :class:`ModelSourceRefused`.

    ``roots`` defaults to :func:`model_roots`; ``hub_cache`` to Hugging Face's own cache folder.
    """
    text = source.strip()
    allowed_roots = model_roots() if roots is None else tuple(
        Path(os.path.realpath(root)) for root in roots)
    if text and "\x00" not in text:
        folder = _folder_under_roots(text, allowed_roots)
        if folder is not None:
            return ResolvedSource(display_name=text, load_path=folder, kind="folder")
        snapshot = _hub_cache_snapshot(text, hub_cache)
        if snapshot is not None:
            return ResolvedSource(display_name=text, load_path=snapshot, kind="hub cache")
    raise ModelSourceRefused(refusal_message())
