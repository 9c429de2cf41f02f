"""`resnext-bench`: img/s and peak memory of every build, beside the frameworks' own models."""

from .measure import MODES, Spec, measure
from .run import markdown_table, plot, read_json, run_bench, write_json

__all__ = ["MODES", "Spec", "markdown_table", "measure", "plot", "read_json", "run_bench", "write_json"]
