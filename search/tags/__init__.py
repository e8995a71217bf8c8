"""Tags: zero-shot from descriptions, or taught from a few examples (search.tags.tagger)."""
