"""The Evaluate page: cases and settings, the run and its state, figures, results."""
