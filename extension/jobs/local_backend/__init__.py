"""The local backend: a job runs on this machine, in a job folder under the local store, with the same trainer
entrypoint and SageMaker container contract as in the cloud.

local.py is what the lifecycle calls (prepare, start, status, stop, resume); runner.py is the detached process it
starts (`python -m cloudlora.jobs.local_backend.runner`); trainer_env.py, torch_choice.py and pip_progress.py set up
the trainer's own venv; local_status.py reads a job folder's truth; local_gpu.py, tensorboard_server.py and
trainer_proof.py serve the estimate, the job panel and the doctor. backend.py is its face to the lifecycle (the
interface in ..backends). It imports the lifecycle's records, spec and continue_from, the readers in ..results, and
nothing of the SageMaker backend.
"""
