"""Training jobs, in three groups:

- the lifecycle, at this level: spec.py (JobSpec), records.py (the records in the store), service.py (the one public
  face: create_job, get_job, list_jobs, stop_job, resume_job, delete_record, pull_job, follow_logs, wait, ...), with
  actions.py, follow.py, status.py and job_store.py below it, and continue_from.py, flux.py;
- one subpackage per backend: local_backend/ (this machine) and sagemaker_backend/ (boto3), each with a backend.py
  that the lifecycle reaches only through backends.of(name) (the interface: backend_interface.py);
- results/: the readers of what a job produced (events, outputs, phases, progress, best epoch, estimate, failures).

Kept import-light (no boto3 at import time) so the local runner and the CLI start fast.
"""
