"""detplug's command line (also installed as the ``detplug`` console script).

    python run.py --list [KIND] [--json] [--verbose]
    python run.py --plan kitti_simple [--check] [--set KEY=VALUE ...] [--workdir DIR] [--data-root DIR]

Everything up to the static check runs without TensorFlow.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from detplug.core.errors import DetplugError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="detplug", description="Train YOLOv3-style detectors from a plan of pluggable components."
    )
    parser.add_argument("--list", nargs="?", const="", metavar="KIND",
                        help="list the registered components (of one kind if given) and exit")
    parser.add_argument("--json", action="store_true", help="with --list: print JSON")
    parser.add_argument("--verbose", action="store_true", help="with --list: params, defaults and factory module")
    parser.add_argument("--strict-plugins", action="store_true",
                        help="fail if any plugin failed to load (default: report and skip it)")
    parser.add_argument("--plan", metavar="NAME_OR_PATH", help="plan name (plans/NAME.toml) or a .toml file")
    parser.add_argument("--check", action="store_true",
                        help="check that the plan's parts fit (spec chain, then the symbolic Keras model) and exit")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one plan value, e.g. --set model.backbone.width=0.5 (repeatable)")
    parser.add_argument("--workdir", type=Path, help="run folder (default: runs/<plan name>)")
    parser.add_argument("--restart", action="store_true",
                        help="start the plan over: move the run folder's checkpoints and logs to replaced-<time>/")
    parser.add_argument("--data-root", type=Path, help="dataset folder (for KITTI: the folder holding training/)")
    parser.add_argument("--cache-dir", type=Path,
                        help="where converted records and the synthetic sample go (default: $DETPLUG_CACHE "
                             "or ~/.cache/detplug)")
    args = parser.parse_args(argv)
    if args.list is None and not args.plan:
        parser.error("give --plan NAME (to train or --check) or --list")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except DetplugError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `run.py --list | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted: the latest checkpoint is kept; run the same command again to resume",
              file=sys.stderr)
        return 130


def run(args: argparse.Namespace) -> int:
    from detplug.registry import Registry

    registry = Registry.discover()
    if args.strict_plugins:
        registry.raise_for_load_errors()
    if args.list is not None:
        from detplug.core.listing import print_listing

        print_listing(registry, kind=args.list or None, as_json=args.json, verbose=args.verbose)
        return 0

    from detplug.core.check import static_check
    from detplug.core.plan import find_plan, load_plan, resolve_components

    plan_dirs = [Path(d) for dirs in registry.hook.detplug_plan_dirs() for d in dirs]
    plan = load_plan(find_plan(args.plan, plan_dirs), overrides=args.set)
    checked = static_check(plan, resolve_components(plan, registry))
    if args.check:
        from detplug.core.listing import print_check

        print_check(checked)
        return 0

    if args.data_root is not None and not args.data_root.is_dir():
        raise DetplugError(f"--data-root {args.data_root} is not a folder; give the folder that holds the dataset")
    from detplug.core.training import train_plan

    train_plan(checked, registry=registry, workdir=args.workdir or Path("runs") / plan.name,
               data_root=args.data_root, cache_dir=args.cache_dir, restart=args.restart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
