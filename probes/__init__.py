"""The standard probes. Collected from files like tests (not imported as a package API); installed
with the wheel as `memaudit.probes` so that they work without a checkout."""
