"""The text page: inputs, the explanation run, its views and results."""
