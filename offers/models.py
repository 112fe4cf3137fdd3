"""offers models arrive with their issue."""
