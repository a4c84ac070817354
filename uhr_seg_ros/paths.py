"""Where the package's data (config/, launch/, models/) lives, in every install mode.

Order: the source tree (editable installs and running from a checkout, so edited files are
seen), a colcon/ament install (``ament_index_python``), then a pip install
(``<sys.prefix>/share``); the first that holds config/ and models/ wins.
"""

from __future__ import annotations

import contextlib
import os
import sys
from functools import lru_cache
from pathlib import Path

PACKAGE = "uhr_seg_ros"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_NAME = "sghrq_deepglobe_lite.pt"


@lru_cache(maxsize=1)
def share_dir() -> Path:
    """Return the directory holding config/, launch/ and models/."""
    candidates: list[Path] = []
    # A source checkout wins: an editable install must see the files being edited.
    candidates.append(REPO_ROOT)
    if os.environ.get("AMENT_PREFIX_PATH"):
        # ament_index_python absent (ImportError) or the package not registered (LookupError)
        with contextlib.suppress(ImportError, LookupError, OSError):
            from ament_index_python.packages import get_package_share_directory

            candidates.append(Path(get_package_share_directory(PACKAGE)))
    candidates.append(Path(sys.prefix) / "share" / PACKAGE)
    for cand in candidates:
        if (cand / "config").is_dir() and (cand / "models").is_dir():
            return cand
    raise FileNotFoundError(
        f"cannot find the {PACKAGE} share directory (config/, models/); looked in "
        + ", ".join(str(c) for c in candidates)
    )


def config_dir() -> Path:
    return share_dir() / "config"


def models_dir() -> Path:
    return share_dir() / "models"


def default_model_path() -> Path:
    """The bundled default model (DeepGlobe land cover, see models/MODEL_CARD.md)."""
    return models_dir() / DEFAULT_MODEL_NAME


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout (real imagery for tests/demos), or None.

    ``UHR_SEG_SHARED_DATA`` overrides the location.
    """
    env = os.environ.get("UHR_SEG_SHARED_DATA")
    cands = [Path(env)] if env else []
    cands.append(REPO_ROOT.parent / "shared" / "data")
    for cand in cands:
        if cand.is_dir():
            return cand
    return None
