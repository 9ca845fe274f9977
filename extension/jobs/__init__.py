"""Training jobs: the spec, the records in the store, and the two backends (local, SageMaker).

Kept import-light (no boto3 at import time) so the local runner and the CLI start fast.
"""
