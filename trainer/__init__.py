"""trainer: see README; built in later issues."""
