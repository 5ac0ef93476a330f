"""A study: its runs planned, swept, placed and estimated, and the break-even sweep."""
