"""workflows: see README; built in later issues."""
