"""messaging models arrive with their issue."""
