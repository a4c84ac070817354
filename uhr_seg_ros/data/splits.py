"""Published benchmark splits, as tile ids.

Inria Aerial: the 180 labelled training tiles (austin, chicago, kitsap, tyrol-w, vienna; 1..36
each) split 126/27/27 as in FCtL (Li et al., ICCV 2021; lists ``txt_1/crossvali.txt`` and
``txt_1/test.txt`` of github.com/liqiokkk/FCtL), the split SGHRQ and ISDNet report on. The
validation and test tiles are an explicit, random-looking pick across cities, not a range of
city indices; training is every other labelled tile.
"""

from __future__ import annotations

INRIA_FCTL_VAL: frozenset[str] = frozenset((
    "chicago24", "austin27", "kitsap22", "chicago28", "tyrol-w6", "austin8", "kitsap5",
    "vienna28", "kitsap30", "austin15", "kitsap13", "austin19", "chicago6", "austin9",
    "chicago12", "vienna7", "kitsap18", "tyrol-w24", "vienna36", "austin29", "tyrol-w19",
    "vienna29", "chicago1", "tyrol-w12", "tyrol-w22", "austin17", "tyrol-w10"
))

INRIA_FCTL_TEST: frozenset[str] = frozenset((
    "vienna3", "chicago10", "vienna20", "austin1", "tyrol-w25", "vienna9", "chicago14",
    "vienna18", "kitsap36", "kitsap35", "austin22", "kitsap34", "austin7", "vienna11", "kitsap14",
    "kitsap25", "austin12", "vienna15", "kitsap9", "austin36", "vienna6", "chicago23", "tyrol-w3",
    "chicago26", "austin24", "tyrol-w1", "tyrol-w36"
))


def inria_fctl_split(tile_id: str) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for an Inria tile id such as ``"austin29"``."""
    if tile_id in INRIA_FCTL_VAL:
        return "val"
    if tile_id in INRIA_FCTL_TEST:
        return "test"
    return "train"
