"""Readers of a job's results and forecasts: TensorBoard events, output files and samples, the trainer's phases and
progress, the best epoch, the epoch grid, the estimate with its calibration and config values, and failures
explained. The lifecycle (service, status) and the job panel read them; they do not drive a job themselves.
"""
