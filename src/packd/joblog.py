"""Logging for workflow jobs: progress lines and any failure's traceback go to the job's log."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def logged_job(log_path: str | Path, name: str) -> Iterator[logging.Logger]:
    """Log to the job's log file and stderr; record an exception's traceback, then re-raise."""
    logger = logging.getLogger(f"packd.{name}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    handlers: list[logging.Handler] = [
        logging.FileHandler(log_path, mode="w"),
        logging.StreamHandler(sys.stderr),
    ]
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    try:
        yield logger
    except BaseException:
        logger.exception("%s failed", name)
        raise
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
