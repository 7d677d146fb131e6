#!/usr/bin/env python
"""Cross-task comparison report from the MLflow store: python compare.py [--tasks ...]."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("RNNLAB_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from rnnlab.report.compare import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
