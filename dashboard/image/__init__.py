"""The image page: inputs, the explanation run, its views and results."""
