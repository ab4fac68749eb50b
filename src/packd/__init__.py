"""packd: the logic of packd-workflow (traces, PaCKD distillation, evaluation, figures)."""

__version__ = "0.1.0"
