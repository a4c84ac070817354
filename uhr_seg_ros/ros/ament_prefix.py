"""Make a venv with an editable install of this checkout a ROS 2 prefix for the package.

``ros2 launch`` and ``ros2 run`` find a package through the ament index of every prefix on
``AMENT_PREFIX_PATH`` and run executables from ``<prefix>/lib/<package>/`` only. A non-editable
``pip install .`` and ``colcon build`` install those files (setup.py's ``data_files``); an
editable install (``pip install -e .``, what ``make setup`` does so that edits take effect at
once) installs none of them. This module writes them into the venv as symlinks to the checkout's
files, so edited launch files, configs and models are seen without reinstalling (a new file needs
a new run: ``make setup`` does it when one appears):

    <venv>/share/ament_index/resource_index/packages/uhr_seg_ros     (the marker)
    <venv>/share/uhr_seg_ros/{package.xml,launch/*,config/**,models/*} -> checkout files
    <venv>/lib/uhr_seg_ros/{seg_node,demo_source} -> <venv>/bin/... (pip's console scripts)

Folders are real and files are links because ``ros2 launch`` looks for a launch file with
``os.walk``, which does not descend into linked folders.

and, with ``--activate-hook``, makes ``source <venv>/bin/activate`` put the venv on
``AMENT_PREFIX_PATH``. Usage: ``python -m uhr_seg_ros.ros.ament_prefix [VENV] [--activate-hook]``.
Plain Python, no ROS import: it runs before ROS tools are installed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from uhr_seg_ros.paths import PACKAGE, REPO_ROOT

#: Executables ``ros2 run uhr_seg_ros NAME`` offers; one launcher each in resource/lib/ (the
#: non-editable and colcon installs ship those) and a console script of the same name.
EXECUTABLES: tuple[str, ...] = ("seg_node", "demo_source")
#: Checkout entries exposed under ``share/uhr_seg_ros`` (what setup.py's data_files install).
SHARED: tuple[str, ...] = ("package.xml", "launch", "config", "models")
#: Marks the lines appended to bin/activate, so a second run does not append them again.
HOOK_MARK = "# uhr_seg_ros: ament prefix"
ACTIVATE_HOOK = f"""
{HOOK_MARK} (ros2 launch/run find packages through AMENT_PREFIX_PATH)
case ":${{AMENT_PREFIX_PATH:-}}:" in
  *":$VIRTUAL_ENV:"*) ;;
  *) export AMENT_PREFIX_PATH="$VIRTUAL_ENV${{AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}}" ;;
esac
"""


def marker_path(prefix: Path) -> Path:
    return prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE


def _symlink(link: Path, target: Path) -> None:
    """``link`` -> ``target``, replacing an older link or file."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def _shared_files(checkout: Path) -> list[Path]:
    """Files under :data:`SHARED` relative to ``checkout`` (no caches, no hidden files)."""
    files = []
    for name in SHARED:
        root = checkout / name
        candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        files += [
            p.relative_to(checkout)
            for p in candidates
            if not any(
                part.startswith(".") or part == "__pycache__"
                for part in p.relative_to(checkout).parts
            )
        ]
    return files


def link_checkout(prefix: Path, checkout: Path = REPO_ROOT) -> list[Path]:
    """Write the ament index marker, share/ and lib/ entries of the package into ``prefix``.

    Returns the paths written. Raises FileNotFoundError when the console scripts are missing
    from ``prefix/bin`` (the package is not pip-installed there).
    """
    prefix, checkout = prefix.absolute(), checkout.resolve()
    missing = [name for name in EXECUTABLES if not (prefix / "bin" / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{', '.join(missing)} not in {prefix / 'bin'}: pip install "
            f"-e {checkout} into that venv first"
        )
    marker = marker_path(prefix)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    written = [marker]
    share = prefix / "share" / PACKAGE
    if share.is_symlink() or share.is_file():
        share.unlink()
    elif share.is_dir():  # only links are kept there: rebuild so removed files disappear
        if any(p.is_file() and not p.is_symlink() for p in share.rglob("*")):
            raise FileExistsError(
                f"{share} holds installed files (a non-editable install?): "
                "pip uninstall uhr_seg_ros, remove it, and run this again"
            )
        shutil.rmtree(share)
    for relative in _shared_files(checkout):
        _symlink(share / relative, checkout / relative)
        written.append(share / relative)
    for name in EXECUTABLES:
        link = prefix / "lib" / PACKAGE / name
        _symlink(link, Path("..") / ".." / "bin" / name)  # relative: the venv may move
        written.append(link)
    return written


def add_activate_hook(prefix: Path) -> bool:
    """Append :data:`ACTIVATE_HOOK` to ``prefix/bin/activate`` once; True when appended."""
    activate = prefix / "bin" / "activate"
    text = activate.read_text()
    if HOOK_MARK in text:
        return False
    activate.write_text(text + ACTIVATE_HOOK)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m uhr_seg_ros.ros.ament_prefix",
        description="Register this checkout (editable install) in a venv's ament index.",
    )
    parser.add_argument(
        "prefix",
        nargs="?",
        type=Path,
        default=Path(sys.prefix),
        help="the venv (default: the running Python's)",
    )
    parser.add_argument(
        "--activate-hook",
        action="store_true",
        help="make `source VENV/bin/activate` set AMENT_PREFIX_PATH",
    )
    args = parser.parse_args(argv)
    try:
        link_checkout(args.prefix)
        hooked = args.activate_hook and add_activate_hook(args.prefix)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"ament prefix {args.prefix.absolute()}: package {PACKAGE} -> {REPO_ROOT}"
        + ("; bin/activate now sets AMENT_PREFIX_PATH" if hooked else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
