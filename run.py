"""detplug's command line (also installed as the ``detplug`` console script).

    python run.py train --plan kitti_simple [--set KEY=VALUE ...] [--workdir DIR] [--data-root DIR]
    python run.py check | list | prepare | evaluate | predict | export | anchors | show-data ...
    python run.py COMMAND --help          # the options of one command

The older flag forms keep working and mean the same subcommands:

    python run.py --list [KIND] [--json [FILE]] [--verbose]            # = list ...
    python run.py --plan kitti_simple [--set KEY=VALUE ...]             # = train --plan kitti_simple ...
    python run.py --plan P --check | --prepare | --anchors | --show-data  # = check --plan P, ...
    python run.py --plan P --evaluate [--predict IMAGE...] [--export DIR] # each in turn
    python run.py --plan P --import-weights FILE.weights --out OUT.weights.h5
    python run.py --kitti-eval LABEL_DIR RESULT_DIR [--json FILE]

The commands live in :mod:`detplug.core.cli`. Everything up to the static check runs
without TensorFlow.
"""

from __future__ import annotations

import sys

from detplug.core.cli.main import main, parse_args, parse_commands

__all__ = ["main", "parse_args", "parse_commands"]

if __name__ == "__main__":
    sys.exit(main())
