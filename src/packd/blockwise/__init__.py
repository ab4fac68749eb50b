"""Parallel blockwise distillation (Blakeney et al.): cut a trained teacher into blocks, train a
cheaper replacement for each block on the teacher's own activations, then assemble the student.

Replacement i learns, with MSE, to map the TEACHER's input to block i onto the teacher's output of
block i. It never sees the student's upstream blocks, so every block is an independent job.
A model here is pre -> blocks -> post: pre (input reshaping, stem or embedding) and post (pooling,
head) are copied from the teacher and shared by the student; only the blocks are replaced.

- :mod:`packd.blockwise.cut`: BlockwiseModel, the pre and post parts, cutting a teacher;
- :mod:`packd.blockwise.replacements`: the replacement blocks, the assembled student, its header
  and parameter counts;
- :mod:`packd.blockwise.training`: the teacher's block-boundary activations, block training.
"""

from packd.blockwise.cut import (
    TEACHER_CUTS,
    BlockwiseModel,
    ImageStem,
    LastStepHead,
    LSTMLayers,
    PatchEmbedding,
    PooledHead,
    TokenMeanHead,
    teacher_blocks,
)
from packd.blockwise.replacements import (
    REPLACEMENT_BUILDERS,
    REPLACEMENT_KEYS,
    PaddedShortcut,
    ProjectedLSTM,
    ResidualBlock,
    SeparableConv2d,
    assemble_student,
    blockwise_header,
    blockwise_parameter_counts,
    build_blockwise_student,
    replacement_blocks,
    replacement_settings,
)
from packd.blockwise.training import block_activations, train_block, train_blocks_sequentially

__all__ = [
    "REPLACEMENT_BUILDERS",
    "REPLACEMENT_KEYS",
    "TEACHER_CUTS",
    "BlockwiseModel",
    "ImageStem",
    "LSTMLayers",
    "LastStepHead",
    "PaddedShortcut",
    "PatchEmbedding",
    "PooledHead",
    "ProjectedLSTM",
    "ResidualBlock",
    "SeparableConv2d",
    "TokenMeanHead",
    "assemble_student",
    "block_activations",
    "blockwise_header",
    "blockwise_parameter_counts",
    "build_blockwise_student",
    "replacement_blocks",
    "replacement_settings",
    "teacher_blocks",
    "train_block",
    "train_blocks_sequentially",
]
