#!/usr/bin/env python
"""Train a model on a task and track it in MLflow.

    python train.py model=gru task=ner
    python train.py -m model=rnn,lstm,gru task=sentiment      # a sweep

See README.md; every config key can be overridden on the command line.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("RNNLAB_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT / "src"))  # runnable from a checkout without installing

from rnnlab.run.train import main  # noqa: E402

if __name__ == "__main__":
    main()
