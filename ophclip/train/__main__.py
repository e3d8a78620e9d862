"""``python -m ophclip.train CONFIG [key=value ...] [--resume latest]``: the entry for torchrun.

Same as ``ophclip pretrain``; torchrun needs a module or script to start on every rank.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..config import load_config
from ..errors import OphclipError
from .config import PretrainConfig
from .trainer import pretrain


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ophclip.train", description=__doc__)
    parser.add_argument("config", help="YAML run config (configs/pretrain_*.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-4")
    parser.add_argument("--resume", default=None, help="'latest', 'best' or a checkpoint path")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = load_config(PretrainConfig, args.config, args.overrides)
        pretrain(cfg, resume=args.resume, progress=not args.no_progress)
    except OphclipError as e:
        logging.getLogger("ophclip.train").error("%s", e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
