#!/usr/bin/env python
"""Joint-task evolutionary architecture search: ``python -m automtl search`` as a script.

Examples:
  python tools/search.py configs/search/toy_exact.py
  python tools/search.py configs/search/toy_synthetic.py --workers 2 --storage journal:work_dirs/s.log
  python tools/search.py CONFIG --study mystudy --resume          # continue a killed search

See ``python -m automtl search --help`` for every option.
"""
from __future__ import annotations

import sys

from automtl.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["search", *sys.argv[1:]]))
