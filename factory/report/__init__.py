"""What a person reads about a run: the dataset card (README.md) and the HTML report.

Both are rendered from the run directory alone, after the build (never imported by it).
"""

from __future__ import annotations

import logging
from pathlib import Path

from factory.embeddings import Embedder
from factory.errors import MissingExtraError

log = logging.getLogger(__name__)


def write_documents(run_dir: Path, embedder: Embedder | None = None) -> None:
    """The dataset card and the HTML report, from what the run directory holds."""
    from factory.report.card import write_card
    from factory.report.html import write_report

    write_card(run_dir)
    try:
        write_report(run_dir, embedder or Embedder(cache=Path(run_dir) / "embeddings.sqlite"))
    except MissingExtraError as exc:  # the report is optional; say what would make it
        log.warning("report.html skipped: %s", exc)
