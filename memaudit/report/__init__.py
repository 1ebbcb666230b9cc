"""Renderers and writers of a saved report, each a pure function of the data model in memaudit.results: the
terminal, HTML, figures, JUnit XML, CSV tables, and the registry of output media (`media`)."""
