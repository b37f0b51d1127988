"""Progress bars for long runs, with tqdm when it is installed (the `progress` extra)."""

from __future__ import annotations


def progress_bar(iterable, enabled: bool, description: str):
    """`iterable` wrapped in a tqdm bar when `enabled` and tqdm is installed, else unchanged."""
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:  # optional: no bar without tqdm
        return iterable
    return tqdm(iterable, desc=description, unit="batch")
