"""Learning curves of denoising runs (kept name): see ``scripts/learning_curve.py``.

``learning_curve.py`` plots denoising runs (BM3D as the line) and super-resolution runs
(bicubic as the line) alike; this name runs it unchanged::

    python scripts/denoise_learning_curve.py RUN_DIR[=LABEL] ... --out docs/img/denoise_curve.png
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from learning_curve import main

if __name__ == "__main__":
    raise SystemExit(main())
