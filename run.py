"""detplug's command line (also installed as the ``detplug`` console script).

    python run.py --list [KIND] [--json [FILE]] [--verbose]
    python run.py --plan kitti_simple [--check] [--set KEY=VALUE ...] [--workdir DIR] [--data-root DIR]
                  [--strategy default|mirrored|multi_worker|tpu]
    python run.py --plan P --evaluate [--checkpoint latest|best|ep10] [--json FILE]
    python run.py --plan P --predict IMAGE_OR_FOLDER... [--checkpoint C] [--out DIR]
    python run.py --plan P --export DIR [--checkpoint C]
    python run.py --plan P --prepare [--data-root DIR] [--skip-bad] [--verify]
    python run.py --plan P --anchors [--write]
    python run.py --kitti-eval LABEL_DIR RESULT_DIR [--json FILE]

Everything up to the static check runs without TensorFlow.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from detplug.core.errors import DetplugError
from detplug.core.plan.settings import STRATEGIES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="detplug", description="Train YOLOv3-style detectors from a plan of pluggable components."
    )
    parser.add_argument("--list", nargs="?", const="", metavar="KIND",
                        help="list the registered components (of one kind if given) and exit")
    parser.add_argument("--json", nargs="?", const=True, metavar="FILE",
                        help="with --list: print JSON (or write it to FILE); with --evaluate or --kitti-eval: "
                             "write the results as JSON to FILE")
    parser.add_argument("--verbose", action="store_true", help="with --list: params, defaults and factory module")
    parser.add_argument("--strict-plugins", action="store_true",
                        help="fail if any plugin failed to load (default: report and skip it)")
    parser.add_argument("--plan", metavar="NAME_OR_PATH", help="plan name (plans/NAME.toml) or a .toml file")
    parser.add_argument("--check", action="store_true",
                        help="check that the plan's parts fit (spec chain, then the symbolic Keras model) and exit")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one plan value, e.g. --set model.backbone.width=0.5 (repeatable)")
    parser.add_argument("--workdir", type=Path, help="run folder (default: runs/<plan name>)")
    parser.add_argument("--strategy", choices=STRATEGIES,
                        help="where training runs (plan: [train] strategy): default = one device; mirrored = all "
                             "local GPUs, or DETPLUG_CPU_REPLICAS CPU devices; multi_worker = the TF_CONFIG "
                             "cluster; tpu = TPU_NAME or the local TPU")
    parser.add_argument("--restart", action="store_true",
                        help="start the plan over: move the run folder's checkpoints and logs to replaced-<time>/")
    parser.add_argument("--data-root", type=Path, help="dataset folder (for KITTI: the folder holding training/)")
    data = parser.add_argument_group("data")
    data.add_argument("--prepare", action="store_true",
                      help="convert and validate every dataset the plan names into TFRecords + manifest.json, and exit")
    data.add_argument("--skip-bad", action="store_true",
                      help="with --prepare (or training): skip bad images, count them and list them in the manifest")
    data.add_argument("--verify", action="store_true", help="with --prepare: re-read every shard against the manifest")
    data.add_argument("--force-prepare", action="store_true", help="with --prepare: convert again even if unchanged")
    parser.add_argument("--cache-dir", type=Path,
                        help="where converted records and the synthetic sample go (default: $DETPLUG_CACHE "
                             "or ~/.cache/detplug)")
    use = parser.add_argument_group("using a trained plan")
    use.add_argument("--evaluate", action="store_true", help="evaluate a checkpoint on the validation split")
    use.add_argument("--predict", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER",
                     help="draw the detections on these images and write KITTI-format result files")
    use.add_argument("--out", type=Path, help="with --predict: output folder (default: <run folder>/predictions)")
    use.add_argument("--export", type=Path, metavar="DIR", help="write a SavedModel serving uint8 images")
    use.add_argument("--checkpoint", default="latest", metavar="NAME",
                     help="with --evaluate/--predict/--export: latest, best, or a snapshot such as ep10")
    use.add_argument("--anchors", action="store_true",
                     help="compute anchors for the plan's dataset by k-means (IoU distance) and compare them")
    use.add_argument("--write", action="store_true", help="with --anchors: write the new anchors into the plan file")
    use.add_argument("--kitti-eval", nargs=2, type=Path, metavar=("LABEL_DIR", "RESULT_DIR"),
                     help="evaluate KITTI result files against KITTI label files, like the devkit; no plan needed")
    args = parser.parse_args(argv)
    if args.list is None and not args.plan and not args.kitti_eval:
        parser.error("give --plan NAME (to train or --check), --list or --kitti-eval")
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

    if args.kitti_eval:
        from detplug.core.cli.kitti_eval import run_kitti_eval

        run_kitti_eval(*args.kitti_eval, json_path=_json_file(args))
        return 0
    registry = Registry.discover()
    if args.strict_plugins:
        registry.raise_for_load_errors()
    if args.list is not None:
        from detplug.core.cli.listing import print_listing

        print_listing(registry, kind=args.list or None, as_json=bool(args.json), verbose=args.verbose,
                      json_path=_json_file(args))
        return 0

    from detplug.core.plan.check import static_check
    from detplug.core.plan.plan_file import find_plan, load_plan, resolve_components

    plan_dirs = [Path(d) for dirs in registry.hook.detplug_plan_dirs() for d in dirs]
    overrides = [*args.set, *([f"train.strategy={args.strategy}"] if args.strategy else [])]
    plan = load_plan(find_plan(args.plan, plan_dirs), overrides=overrides)
    checked = static_check(plan, resolve_components(plan, registry))
    if args.check:
        from detplug.core.cli.listing import print_check

        print_check(checked)
        return 0

    if args.data_root is not None and not args.data_root.is_dir():
        raise DetplugError(f"--data-root {args.data_root} is not a folder; give the folder that holds the dataset")
    workdir = args.workdir or Path("runs") / plan.name
    if args.prepare:
        from detplug.core.data.datasets import describe, prepare_datasets
        from detplug.core.train.training import default_cache_dir

        prepared = prepare_datasets(checked, data_root=args.data_root, cache_dir=args.cache_dir or default_cache_dir(),
                                    skip_bad=args.skip_bad, verify=args.verify, force=args.force_prepare)
        for key, item in prepared.items():
            print(describe(key, item, verified=args.verify))
        return 0
    if args.anchors:
        from detplug.core.cli import use

        use.anchors(checked, write=args.write, data_root=args.data_root, cache_dir=args.cache_dir)
        return 0
    if args.evaluate or args.predict or args.export:
        from detplug.core.cli import use

        if args.evaluate:
            use.evaluate(checked, registry, workdir=workdir, checkpoint=args.checkpoint, json_path=_json_file(args),
                         data_root=args.data_root, cache_dir=args.cache_dir)
        if args.predict:
            use.predict(checked, workdir=workdir, checkpoint=args.checkpoint, images=args.predict,
                        out_dir=args.out or workdir / "predictions")
        if args.export:
            use.export(checked, workdir=workdir, checkpoint=args.checkpoint, directory=args.export)
        return 0
    from detplug.core.train.training import train_plan

    train_plan(checked, registry=registry, workdir=workdir,
               data_root=args.data_root, cache_dir=args.cache_dir, restart=args.restart)
    return 0


def _json_file(args: argparse.Namespace) -> Path | None:
    return Path(args.json) if isinstance(args.json, str) else None


if __name__ == "__main__":
    sys.exit(main())
