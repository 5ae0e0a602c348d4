"""Size presets: size-dependent settings picked from the prepared image size (issue 17, docs/sizes.md).

The tables live in the YAML only (``presets:`` in ``conf/model/ddpm.yaml`` and ``conf/model/cgan.yaml``,
``evaluate.classifier.presets`` in ``conf/evaluate/default.yaml``), keyed by image side in pixels (28, 64, 128,
256). A key of the section that is ``null`` takes the preset's value; an explicit value always wins
(``model.batch_size=32`` on the command line overrides the preset's batch size). This module only chooses:

* the preset of the **smallest key >= the image side** (a 100 px cohort gets the 128 px preset, 16 px gets 28);
* an image side above the largest key is a :class:`~synthgen.errors.ConfigError` (exit 2), naming the key, since
  no recipe was sized for it: add a row to the table or set the null keys yourself.

The image side is ``max(H, W)`` of the prepared images (``max(D, H, W)`` for volumes), read from the arrays, so
``data.image_size=null`` (the source's own size) works too.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from .errors import ConfigError

#: the key that holds a section's preset table.
PRESETS = "presets"


def image_side(image_shape: Sequence[int]) -> int:
    """The side that selects a preset: the largest spatial extent of ``image_shape`` ``(C, H, W)`` or
    ``(C, D, H, W)`` (the channel axis first is left out)."""
    spatial = [int(s) for s in list(image_shape)[1:]]
    if not spatial or min(spatial) < 1:
        raise ValueError(f"expected (C, H, W) or (C, D, H, W), got {tuple(image_shape)}")
    return max(spatial)


def preset_for(presets: Mapping[Any, Mapping[str, Any]], side: int, key: str) -> tuple[int, dict[str, Any]]:
    """``(preset side, preset values)``: the row of ``presets`` with the smallest side ``>= side``.

    Args:
        presets: ``{side: {name: value}}`` (sides as ints or digit strings, as YAML/OmegaConf give them).
        side: the image side in pixels.
        key: the config key of the table, for the error message (e.g. ``model.presets``).

    Raises:
        ConfigError: ``side`` is larger than every preset, or the table is empty or has a non-integer side.
    """
    try:
        table = {int(k): dict(v or {}) for k, v in (presets or {}).items()}
    except (TypeError, ValueError):
        raise ConfigError(key, f"preset sides must be integers (pixels), got {sorted(map(str, presets))}") from None
    if not table:
        raise ConfigError(key, "no presets: set the size-dependent keys explicitly")
    fitting = [s for s in table if s >= int(side)]
    if not fitting:
        raise ConfigError(key, f"no preset for {int(side)} px images (largest is {max(table)} px): add a row "
                               f"for {int(side)} or set the size-dependent keys explicitly")
    chosen = min(fitting)
    return chosen, table[chosen]


def apply_presets(section: Mapping[str, Any], side: int | None, key: str) -> dict[str, Any]:
    """A plain copy of ``section`` without its ``presets`` table, every ``null`` key that the chosen preset
    names filled from it (explicit values win). Keys a preset names must exist in the section, so a typo in
    the table is an error rather than a silently ignored value.

    ``side=None`` (image size unknown) or a section without ``presets`` returns the section as it is, minus
    the table.
    """
    values = dict(section)
    presets = values.pop(PRESETS, None)
    if side is None or not presets:
        return values
    chosen, row = preset_for(presets, side, key)
    for name, value in row.items():
        if name not in values:
            raise ConfigError(f"{key}.{chosen}.{name}", f"not a key of {key.rsplit('.', 1)[0] or 'the section'}"
                                                        f" (keys: {', '.join(sorted(values))})")
        if values[name] is None:
            values[name] = value
    return values


def missing_after_presets(values: Mapping[str, Any], names: Sequence[str], key: str, side: int | None) -> None:
    """Raise a :class:`ConfigError` for the first of ``names`` still null in ``values`` after
    :func:`apply_presets` (the preset row leaves it out and the user did not set it)."""
    for name in names:
        if values.get(name) is None:
            where = f"the {side} px preset" if side is not None else "the presets (image size unknown)"
            raise ConfigError(f"{key}.{name}", f"null and not given by {where}: set it explicitly")


def downsampling_stages(side: int, base_side: int = 28, base_stages: int = 3) -> int:
    """Stride-2 stages that bring a ``side`` px image to the map size ``base_stages`` give at ``base_side``
    (28 px, 3 stages -> 4 px): ``base_stages + round(log2(side / base_side))``, at least ``base_stages``.

    28 -> 3, 64 -> 4, 128 -> 5, 256 -> 6 (final maps 4, 4, 4, 4 px). The evaluate classifier presets follow it
    (``tests/test_sizing.py`` checks the YAML table against it); the privacy audit's copy-detection encoder
    sizes itself with :func:`privacy_encoder_stages`.
    """
    if side < 1:
        raise ValueError(f"image side must be >= 1, got {side}")
    return max(int(base_stages), int(base_stages) + int(round(math.log2(side / base_side))))


def privacy_encoder_stages(image_shape: Sequence[int], base_stages: int = 3) -> int:
    """Stride-2 conv blocks for the copy-detection encoder (``synthgen/privacy/embedding.py``, 3 at 28 px) on
    images of ``image_shape`` ``(C, H, W)``: :func:`downsampling_stages` of :func:`image_side`, so the encoder's
    last map stays ~4 px (28 -> 3, 64 -> 4, 128 -> 5, 256 -> 6 blocks)."""
    return downsampling_stages(image_side(image_shape), base_stages=base_stages)
