"""caption: see README; built in later issues."""
