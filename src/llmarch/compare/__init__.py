"""`llmarch compare`: the "choosing an architecture" table, measured. Every architecture (entries.py) is sized
for the same training compute (sizing.py), trained on the same corpus and scored (quality.py), timed in turns
against the others (speed.py), and the table, CSV, JSON and plots are generated from the numbers (report.py,
plots.py); run.py puts it together and resumes a stopped run."""
from .entries import ENTRIES, Entry, select
from .run import CompareConfig, compare

__all__ = ["ENTRIES", "CompareConfig", "Entry", "compare", "select"]
