"""The report: its versioned schema, threshold checks, and renderers (terminal, HTML, figures, JUnit)
that are pure functions of a saved report."""
