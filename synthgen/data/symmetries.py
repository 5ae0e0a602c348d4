"""Label-preserving symmetries of a data source (``data.symmetries``) and random elements of their group.

A symmetry is declared per data source because it is a fact about the images, not about a model: a
horizontal flip turns a left kidney into a right one, so on CT, radiographs and most medical images a flip
changes the label (a classifier trained with flips cannot learn laterality). The default is therefore
``[]`` (none); a source whose images have no orientation (e.g. blood-cell smears, BloodMNIST) may declare
``[hflip, vflip, rot90]``. Every stage that augments images for a label-dependent task reads this one
setting (the evaluate classifier and its feature extractor, ``synthgen/metrics/classifier.py``).

Names (each an exact pixel permutation of a square ``(..., H, W)`` image; nothing is interpolated):

* ``hflip`` -- mirror left-right: pixel ``(i, j)`` -> ``(i, W-1-j)`` (``torch.flip(x, [-1])``).
* ``vflip`` -- mirror top-bottom: pixel ``(i, j)`` -> ``(H-1-i, j)`` (``torch.flip(x, [-2])``).
* ``rot90`` -- the 4 right-angle rotations by 0, 90, 180 and 270 degrees (``torch.rot90(x, k, (-2, -1))``);
  needs square images.

The declared names generate a group, and :func:`random_matrices` draws its elements uniformly: ``[hflip]``
-> {identity, mirror}; ``[hflip, vflip]`` -> those two, and their product (180-degree rotation); ``[rot90]``
-> the 4 rotations; ``rot90`` with either flip -> the dihedral group of the square (8 elements: 4 rotations,
4 mirrors).
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

from ..errors import ConfigError

KEY = "data.symmetries"
SYMMETRIES: dict[str, str] = {
    "hflip": "mirror left-right",
    "vflip": "mirror top-bottom",
    "rot90": "the 4 right-angle rotations",
}
# Linear parts of the (normalized-coordinate) affine maps: x is the column axis, y the row axis.
_HFLIP = torch.tensor([[-1.0, 0.0], [0.0, 1.0]])
_VFLIP = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
_ROT90 = torch.tensor([[0.0, -1.0], [1.0, 0.0]])


def parse_symmetries(value: Any, key: str = KEY) -> tuple[str, ...]:
    """Validate a declared list of symmetry names; returns them deduplicated, in the order of :data:`SYMMETRIES`.

    Args:
        value: a list of names (``None`` or ``[]``: no symmetry).
        key: the config key named in the error.

    Raises:
        ConfigError: ``value`` is not a list of names, or a name is unknown (the message lists the allowed ones).
    """
    allowed = ", ".join(f"{n} ({d})" for n, d in SYMMETRIES.items())
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError(key, f"expected a list such as [hflip, vflip], got {value!r}; allowed: {allowed}")
    names = [str(v) for v in value]
    unknown = [n for n in names if n not in SYMMETRIES]
    if unknown:
        raise ConfigError(key, f"unknown symmetry {unknown}; allowed: {allowed} (or [] for none)")
    return tuple(n for n in SYMMETRIES if n in names)


def random_matrices(n: int, symmetries: Iterable[str], gen: torch.Generator) -> torch.Tensor:
    """``n`` random elements of the group the declared ``symmetries`` generate, as ``(n, 2, 2)`` float32 matrices.

    Each matrix is ``R**k @ V**v @ H**h`` with ``h``, ``v`` in {0, 1} (drawn only for declared flips) and
    ``k`` in {0, 1, 2, 3} (drawn only with ``rot90``), independent and uniform: the result is uniform over the
    group. The matrices act on normalized ``(x, y)`` coordinates, as the linear part of ``F.affine_grid``'s
    ``theta``; every entry is -1, 0 or 1. No symmetry: ``n`` identities, and nothing is drawn from ``gen``.
    """
    names = parse_symmetries(list(symmetries))
    m = torch.eye(2).repeat(n, 1, 1)
    if "hflip" in names:
        m = torch.where((torch.rand(n, generator=gen) < 0.5)[:, None, None], _HFLIP @ m, m)
    if "vflip" in names:
        m = torch.where((torch.rand(n, generator=gen) < 0.5)[:, None, None], _VFLIP @ m, m)
    if "rot90" in names:
        k = torch.randint(0, 4, (n,), generator=gen)
        rots = torch.stack([torch.linalg.matrix_power(_ROT90, i) for i in range(4)])
        m = rots[k] @ m
    return m


def check_shape(symmetries: Iterable[str], height: int, width: int) -> None:
    """``rot90`` needs square images (a right-angle rotation of a non-square image changes its shape)."""
    if "rot90" in tuple(symmetries) and height != width:
        raise ValueError(f"rot90 needs square images, got {height}x{width}")


__all__ = ["KEY", "SYMMETRIES", "check_shape", "parse_symmetries", "random_matrices"]
