"""The Home page's explained example."""
