"""detplug's command line (also installed as the ``detplug`` console script).

    python run.py train --plan kitti_simple [--set KEY=VALUE ...] [--workdir DIR] [--data-root DIR]
    python run.py check | list | prepare | evaluate | predict | export | anchors | kitti-eval ...
    python run.py COMMAND --help          # the options of one command

The older flag forms keep working as they always did:

    python run.py --list [KIND] [--json [FILE]] [--verbose]
    python run.py --plan kitti_simple [--check] [--set KEY=VALUE ...] [--workdir DIR] [--data-root DIR]
                  [--strategy default|mirrored|multi_worker|tpu]
    python run.py --plan P --evaluate [--checkpoint latest|best|ep10] [--json FILE]
    python run.py --plan P --predict IMAGE_OR_FOLDER... [--checkpoint C] [--out DIR]
    python run.py --plan P --export DIR [--checkpoint C]
    python run.py --plan P --prepare [--data-root DIR] [--skip-bad] [--verify]
    python run.py --plan P --anchors [--write]
    python run.py --kitti-eval LABEL_DIR RESULT_DIR [--json FILE]

The commands live in :mod:`detplug.core.cli.main`. Everything up to the static
check runs without TensorFlow.
"""

from __future__ import annotations

import sys

from detplug.core.cli.main import main, parse_args

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(main())
