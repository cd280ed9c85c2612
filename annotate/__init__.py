"""annotate: see README; built in later issues."""
