"""The recurrent ``model=`` presets in ``conf/model``, read once, so that no list of cell
names has to be kept by hand (test parameters, bench choices, sweeps).

A preset is recurrent when it resolves (through its ``defaults``) to a ``cell`` in the
registry. Each registered cell has a preset of its own name; the others are variants
(``bilstm``, ``bigru``, ``irnn``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from rnnlab.core.paths import config_dir
from rnnlab.models.cells import cell_names


def _resolve(folder: Path, name: str) -> dict[str, Any]:
    raw = yaml.safe_load((folder / f"{name}.yaml").read_text(encoding="utf-8")) or {}
    merged: dict[str, Any] = {}
    for base in raw.pop("defaults", []) or []:
        # another preset of this folder; not _self_, nor the schema (/schema/model/...)
        if isinstance(base, str) and base != "_self_" and not base.startswith("/"):
            merged.update(_resolve(folder, base))
    merged.update(raw)
    return merged


def recurrent_presets(bidirectional: bool | None = None,
                      folder: Path | None = None) -> dict[str, dict[str, Any]]:
    """Preset name -> its resolved settings, for presets of a registered cell, sorted by
    name; ``bidirectional`` keeps only those that read both ways (True) or one (False)."""
    folder = folder or config_dir() / "model"
    cells = set(cell_names())
    out = {}
    for path in sorted(folder.glob("*.yaml")):
        preset = _resolve(folder, path.stem)
        if preset.get("cell") not in cells:
            continue
        if bidirectional is None or bool(preset.get("bidirectional")) == bidirectional:
            out[path.stem] = preset
    return out
