"""Cloud asset management: checkpoints and datasets into the store (S3 or local), validated, deduplicated, resumable."""
