"""The older flag form (``run.py --plan P --check``, ``run.py --list``), read as the subcommand it means.

A job flag picks the subcommand and its values become the subcommand's positional
arguments (``--predict a.png b/`` -> ``predict a.png b/``); without one the form trains.
Every other option goes to the subcommand whose parser declares it (core/cli/parser.py),
so an option added to a subcommand works in the older form too. What comes out is a
subcommand argv, parsed by the one parser.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence

from detplug.core.cli.parser import PROG, SUBCOMMANDS

#: The older form's job flags and the subcommands they mean.
JOB_FLAGS = {
    "--list": "list", "--check": "check", "--prepare": "prepare", "--evaluate": "evaluate", "--predict": "predict",
    "--export": "export", "--anchors": "anchors", "--show-data": "show-data", "--import-weights": "import-weights",
    "--kitti-eval": "kitti-eval",
}
#: What the older form does without a job flag.
DEFAULT_JOB = "train"
#: Jobs that may be given together; they run one after the other, as they always did.
CHAINED = ("evaluate", "predict", "export")
HELP_FLAGS = ("-h", "--help")
# A value such as -1 (argparse reads it as a value too: no option looks like a number).
_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


def is_older_form(argv: Sequence[str]) -> bool:
    """Does ``argv`` start with a flag (the older form) rather than a subcommand's name?"""
    return bool(argv) and argv[0].startswith("-") and not _NUMBER.match(argv[0])


def _items(argv: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``argv`` as (flag, its values): in the older form every value follows its flag."""
    items: list[tuple[str, list[str]]] = []
    for token in argv:
        if token.startswith("-") and not _NUMBER.match(token):
            flag, equals, value = token.partition("=")
            items.append((flag, [value] if equals else []))
        else:
            items[-1][1].append(token)
    return items


def _job_words(jobs: Sequence[str], separator: str = ", ") -> str:
    """The jobs as the older form names them: ``--check``, ``training``."""
    flags = {command: flag for flag, command in JOB_FLAGS.items()}
    return separator.join(flags.get(job, "training") for job in jobs)


def translate(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[list[str]]:
    """The subcommand argvs an older-form ``argv`` (:func:`is_older_form`) means, one per job
    in the order they run; a combination that means nothing is ``parser.error``, one sentence."""
    items = _items(argv)
    if all(flag in HELP_FLAGS for flag, _ in items):
        return [["--help"]]
    unknown = [flag for flag, _ in items if flag not in (*JOB_FLAGS, *HELP_FLAGS)
               and not any(subcommand.takes(flag) for subcommand in SUBCOMMANDS.values())]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    commands = _jobs(parser, items)
    for flag, values in items:
        if flag not in JOB_FLAGS:
            for job in _carriers(parser, flag, values, list(commands)):
                commands[job] += [flag, *values]
    return list(commands.values())


def _jobs(parser: argparse.ArgumentParser, items: list[tuple[str, list[str]]]) -> dict[str, list[str]]:
    """Each job's subcommand argv so far: its name and its job flag's values."""
    job_items = [(JOB_FLAGS[flag], flag, values) for flag, values in items if flag in JOB_FLAGS]
    jobs = [job for job, _, _ in job_items]
    if len(jobs) > 1 and (len(set(jobs)) < len(jobs) or not set(jobs) <= set(CHAINED)):
        parser.error(f"{' and '.join(flag for _, flag, _ in job_items)} cannot be combined; give one of them (or "
                     f"use the subcommands: {PROG} {jobs[0]} ...)")
    if not jobs and not {flag for flag, _ in items} & {"--plan", "--data", *HELP_FLAGS}:
        parser.error("give --plan NAME (to train or --check), --data PATH (to train a dataset folder), --list or "
                     "--kitti-eval")
    return {job: [job, *values] for job, _, values in job_items} or {DEFAULT_JOB: [DEFAULT_JOB]}


def _carriers(parser: argparse.ArgumentParser, flag: str, values: list[str], jobs: list[str]) -> list[str]:
    """The jobs that take the option ``flag`` with ``values``: those whose sub-parser declares it."""
    if flag in HELP_FLAGS:  # every sub-parser has them: the first job's help is shown
        return jobs[:1]
    knowing = [name for name, subcommand in SUBCOMMANDS.items() if subcommand.takes(flag)]
    # --format coco is predict's, --format tflite export's: a value among one's choices picks it.
    taking = [name for name in knowing if SUBCOMMANDS[name].takes(flag, values)] or knowing
    carriers = [job for job in jobs if job in taking]
    if not carriers:
        shown = " ".join([flag, *values]) if any(SUBCOMMANDS[job].takes(flag) for job in jobs) else flag
        parser.error(f"{shown} means nothing with {_job_words(jobs, ' ')}; it goes with {_job_words(taking)}")
    return carriers
