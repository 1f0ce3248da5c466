"""Reads a run's metrics.jsonl (docs/training.md, "Metrics"): the one reader that
scripts/report.py, scripts/stats.py and scripts/summarize.py share.

A run that is still writing (or was killed mid-write) may leave its last line torn: that line is
skipped. A line before it that is not a JSON object means the file is damaged: MetricsError, whose
message names the file and the line.
"""
import json


class MetricsError(ValueError):
    pass


def records(path):
    """Yields (line number, record dict) for every complete record of the file at `path`."""
    with open(path, "rb") as f:  # bytes: a torn last line may end inside a UTF-8 character
        lines = f.read().split(b"\n")
    last = max((i for i, line in enumerate(lines, 1) if line.strip()), default=0)
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            if lineno == last:  # a run still writing: its last record may be incomplete
                continue
            raise MetricsError(f"{path}:{lineno}: not valid JSON ({getattr(e, 'msg', e)})") from None
        if not isinstance(r, dict):
            raise MetricsError(f"{path}:{lineno}: a record must be a JSON object")
        yield lineno, r
