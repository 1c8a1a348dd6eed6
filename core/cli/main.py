"""detplug's command line: one subcommand per job, each declaring only its own options.

    detplug train --plan kitti_simple [--set KEY=VALUE ...] [--workdir DIR] [--data-root DIR] [--restart]
    detplug train --data PATH [--model small|yolov3|yolov4] [--epochs N] [--image-size H W] [--batch B]
    detplug check --plan P [--static]
    detplug list [KIND|plans] [--json [FILE]] [--verbose]
    detplug prepare --plan P [--data-root DIR] [--skip-bad] [--verify] [--force]
    detplug evaluate --plan P [--checkpoint latest|best|ep10] [--json FILE]
    detplug predict --plan P IMAGE_OR_FOLDER... [--checkpoint C] [--out DIR]
    detplug export --plan P DIR [--checkpoint C] [--format saved_model|tflite] [--quantize none|float16|int8]
                   [--calibration-images N]
    detplug anchors --plan P [--write]
    detplug show-data --plan P [--out DIR] [--images N] [--period K]
    detplug import-weights --plan P FILE.weights --out OUT.weights.h5
    detplug kitti-eval LABEL_DIR RESULT_DIR [--json FILE]

``python run.py`` is the same program. The older flag forms (``run.py --plan P`` to
train, ``--list``, ``--check``, ``--evaluate``, ...) keep working: core/cli/older_form.py
turns them into the subcommand argv they mean, which the one parser (core/cli/parser.py)
reads; the commands themselves are core/cli/commands.py. Everything up to the static
check runs without TensorFlow.
"""

from __future__ import annotations

import argparse
import logging
import sys

from detplug.core.cli.commands import HANDLERS
from detplug.core.cli.older_form import is_older_form, translate
from detplug.core.cli.parser import QUANTIZATIONS, SUBCOMMANDS, command_parser
from detplug.core.console import ON_STDERR, console
from detplug.core.errors import DetplugError
from detplug.core.train.preemption import Stopped

log = logging.getLogger(__name__)

__all__ = ["QUANTIZATIONS", "SUBCOMMANDS", "main", "parse_args", "parse_commands"]


def parse_commands(argv: list[str] | None = None) -> list[argparse.Namespace]:
    """The namespace of each command to run, in order: one for ``detplug COMMAND ...``; one
    per job of the older flag form (``--evaluate --predict --export`` together give three)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = command_parser()
    if not argv:
        parser.print_help(sys.stderr)
        raise SystemExit(2)
    if not is_older_form(argv):
        commands = [parser.parse_args(argv)]
    else:
        commands = [parser.parse_args(command) for command in translate(parser, argv)]
    if commands[0].quiet and commands[0].verbose:
        parser.error("--quiet and --verbose cannot be combined; give one of them")
    return commands


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The namespace of the one command ``argv`` gives (see :func:`parse_commands` for several)."""
    commands = parse_commands(argv)
    if len(commands) != 1:
        raise ValueError(f"{argv} gives {len(commands)} commands; parse_commands returns each of them")
    return commands[0]


def verbosity(args: argparse.Namespace) -> int:
    """The level ``--quiet`` (warnings and errors) or ``--verbose`` (debug too) asks for; info
    without them. ``list --verbose`` is both: its params, defaults and factories, and debug lines."""
    if args.quiet:
        return logging.WARNING
    return logging.DEBUG if args.verbose else logging.INFO


def main(argv: list[str] | None = None) -> int:
    commands = parse_commands(argv)
    # The console is attached for this call only: a program that calls main() twice, or
    # embeds detplug around it, gets each line once and its own logging back afterwards.
    with console(verbosity(commands[0])):
        return _run(commands)


def _run(commands: list[argparse.Namespace]) -> int:
    try:
        for args in commands:
            HANDLERS[args.command](args)
        return 0
    except Stopped as stop:  # SIGTERM or SIGINT, after the checkpoint: 143 or 130
        log.warning(str(stop), extra=ON_STDERR)
        return stop.exit_code
    except DetplugError as error:
        log.error(f"error: {error}")
        return 2
    except BrokenPipeError:  # e.g. `run.py list | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        log.warning("\ninterrupted: the latest checkpoint is kept; run the same command again to resume",
                    extra=ON_STDERR)
        return 130
