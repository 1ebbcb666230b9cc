"""Inputs: checkpoints.yaml, checkpoint series (Hub, local), data sets, ledgers, canaries and the
passes over sample text (POS tags, identifiers, zlib sizes)."""
