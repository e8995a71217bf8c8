"""Copies, edits and bursts told apart: `signature` (a tiny picture of each image, made at
index time), `grouping` (pairs found and judged, groups formed) and `groups` (kept in the
catalog and read back for `duplicates`, `search --collapse` and the Duplicates page)."""
