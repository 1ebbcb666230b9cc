"""The data model of a run: the report and its schema (`schema`), the per-sample schema (`samples`), what a value
is (`values`), checks and the baseline gate (`checks`), seed replicates (`replicates`), and the report as rows and
frames (`tables`). It imports neither the engine nor any renderer: the engine writes it, the renderers in
memaudit.report read it."""
