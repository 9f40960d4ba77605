"""Leaderboards built from result rows: tables, plots, predictions and one static HTML page.

The flow: ``cells`` (rows -> one primary-metric cell each) -> ``tables`` -> ``sections`` (fits,
predictions, emergence, via ``evalsuite.scaling``) -> ``plots`` and ``render`` -> ``build``
(the folder, written whole and swapped in); ``diff`` compares a build with a committed folder.
"""

from .build import (MANIFEST_FILE, build_leaderboard, check_output_folder, prepare_leaderboard,
                    read_leaderboard_manifest, render_leaderboard)
from .cells import ScoreCell, normalise_score, primary_cells, rows_digest
from .parallel import default_jobs
from .tables import LeaderboardData, Table

__all__ = ["ScoreCell", "LeaderboardData", "Table", "prepare_leaderboard", "render_leaderboard",
           "build_leaderboard", "rows_digest", "primary_cells", "normalise_score",
           "read_leaderboard_manifest", "default_jobs", "check_output_folder", "MANIFEST_FILE"]
