"""The Dash dashboard for labkit runs; ``dashboards.figures`` holds its pure figure functions."""
