"""The prefetchers' input and output shapes: plain numbers the models and the plan share.

No torch here: the plan sizes block jobs from these before any model is built.
"""

from __future__ import annotations

HISTORY = 10  # accesses per sample (time steps / image rows)
CHUNKS = 10  # 6-bit chunks per block address (features per step / image columns)
OUTPUTS = 256  # delta bits

# Output channels of a ResNet block per input plane, by block kind.
RESNET_EXPANSION = {"basic": 1, "bottleneck": 4}
