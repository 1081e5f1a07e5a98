#!/usr/bin/env python3
"""Writes the .npy masks that tests/unit/test_mask_io.cpp reads, with real NumPy.

Each value follows a formula the test recomputes, so the files need no companion data:
  mask_numpy_u8.npy   uint8 [heads=3, q_blocks=5, k_blocks=70], value (7h + 3i + j) % 5 < 2
  mask_numpy_bool.npy bool  [steps=2, layers=1, heads=2, q_blocks=3, k_blocks=65],
                      value (s + 2l + 5h + 3i + j) % 4 == 0
"""
from pathlib import Path

import numpy as np

here = Path(__file__).resolve().parent
h, i, j = np.indices((3, 5, 70))
np.save(here / "mask_numpy_u8.npy", ((7 * h + 3 * i + j) % 5 < 2).astype(np.uint8))
s, l, h, i, j = np.indices((2, 1, 2, 3, 65))
np.save(here / "mask_numpy_bool.npy", (s + 2 * l + 5 * h + 3 * i + j) % 4 == 0)
