"""The start / spin / shutdown sequence every executable of the package shares."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import rclpy
import yaml
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.task import Future

#: Exit code of a command-line / parameter mistake (argparse's convention).
USAGE_EXIT_CODE = 2


def _init_error_line(exc: Exception) -> str:
    """rcl's init error as one line: for ``--params-file`` problems, which file and why."""
    text = str(exc)
    if "params file" in text:
        # rcl: "... Couldn't parse params file: '--params-file F'. Error: WHY, at parser.c:NN, ..."
        where, _, why = text.partition("Couldn't parse params file: ")[2].partition(". Error: ")
        reason = why.split(", at ")[0]
        return (
            f"cannot read the parameters file {where.replace('--params-file ', '')}: "
            f"{reason} (a missing file or invalid YAML)"
        )
    return f"cannot start ROS 2: {text.split(', at ')[0]}"


def params_file_error(args: Sequence[str]) -> str | None:
    """Why a ``--params-file`` among ROS ``args`` cannot be loaded, or None when all can.

    Checked before ``rclpy.init`` so that the user gets one line naming the file and the YAML
    problem (rcl would log a generic error first, then fail).
    """
    args = list(args)
    for i, arg in enumerate(args[:-1]):
        if arg != "--params-file":
            continue
        path = Path(args[i + 1])
        if not path.is_file():
            return f"parameters file {path} does not exist"
        try:
            list(yaml.compose_all(path.read_text()))  # syntax only: rcl accepts any tags
        except (OSError, UnicodeDecodeError) as exc:
            return f"cannot read parameters file {path}: {exc}"
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            return f"parameters file {path} is not valid YAML{where}: {problem}"
    return None


def _ignore_further_interrupts() -> None:
    """Let the clean-up run to its end: Ctrl-C in a terminal reaches the node *and* the launch
    process, which forwards one more SIGINT. A KeyboardInterrupt raised inside the clean-up
    (e.g. while joining the worker that is finishing a frame inside torch) would leave that
    thread running at interpreter exit, and the process would abort ("terminate called without
    an active exception", exit -6). SIGTERM still ends the process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_node(
    make_node: Callable[[], Node],
    *,
    args: list[str] | None = None,
    startup_errors: tuple[type[Exception], ...] = (),
    startup_exit_code: int = 1,
) -> int:
    """Create a node, spin it until Ctrl-C / shutdown (or its ``finished`` future), clean up.

    A ``--params-file`` that is missing or not valid YAML is one line and exit 2.
    ``startup_errors`` raised while the node is created (a bad parameter, a missing file) are
    logged as one line and end the process with ``startup_exit_code``; a Ctrl-C that arrives
    while the node is still being built (e.g. loading a model) exits 0 without a traceback.
    """
    logger = rclpy.logging.get_logger("uhr_seg_ros")
    problem = params_file_error(sys.argv if args is None else args)
    if problem is not None:
        logger.fatal(problem)
        return USAGE_EXIT_CODE
    try:
        rclpy.init(args=args)
    except RuntimeError as exc:  # RCLError: rcl refused the arguments (e.g. the params file)
        logger.fatal(_init_error_line(exc))
        return USAGE_EXIT_CODE
    try:
        node = make_node()
    except startup_errors as exc:
        logger.fatal(f"{type(exc).__name__}: {exc}")
        rclpy.try_shutdown()
        return startup_exit_code
    except KeyboardInterrupt:
        rclpy.try_shutdown()
        return 0
    except Exception:
        if rclpy.ok():
            raise
        return 0  # a launch shutdown arrived while the node was being created
    try:
        finished = getattr(node, "finished", None)
        if isinstance(finished, Future):
            rclpy.spin_until_future_complete(node, finished)
        else:
            rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # Ctrl-C shut the context down while the executor was taking a message: rclpy then
        # raises a bare RuntimeError ("Unable to convert call argument"). Not an error.
        if rclpy.ok():
            raise
    finally:
        _ignore_further_interrupts()
        try:
            node.destroy_node()
        except KeyboardInterrupt:  # delivered before the handler was replaced: finish anyway
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def exit_now(code: int) -> None:
    """End the process with ``code`` once everything is cleaned up, skipping the interpreter's
    teardown of torch and rclpy: measured at about 4 s on a loaded 2-core machine, which
    alone nearly uses up the 5 s launch grants a node after SIGINT before it sends SIGTERM."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)
