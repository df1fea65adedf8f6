"""Quality benchmark on volumes: VesselMNIST3D (../shared/data/vesselmnist3d.npz, brain MRA, 28^3)
written as MR series by medflow's own writer (an MR window, a random isotropic spacing per series)
-> ``medflow ingest --volumes --image-size 28`` -> train with the defaults -> evaluate -> predict on
the test series; test AUC and ACC beside every row of MedMNIST v2's VesselMNIST3D table.

The same run as ``benchmarks/quality.py --only vesselmnist3d``: every choice is made on validation.

Usage: python benchmarks/quality3d.py [--vessel-data PATH] [--work DIR] [--config FILE] [--members N] [--epochs N]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import quality  # noqa: E402

if __name__ == "__main__":
    sys.argv[1:1] = ["--only", "vesselmnist3d"]
    quality.main()
