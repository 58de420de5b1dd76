"""crossmodal-har: out-of-distribution wearable HAR via IMU-video cross-modal representation learning.

Implements Cheshmi et al., "Improving Out-of-distribution Human Activity Recognition via IMU-Video
Cross-modal Representation Learning" (MLHC 2025, arXiv:2507.13482).

Importing this package does no work: no torch import, no file or network access.
"""

__version__ = "0.1.0"
