"""Data for frontier's experiments: generated tasks and text from installed packages (nothing is downloaded)."""
