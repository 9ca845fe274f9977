"""models_path: the test sets it (A1111 derives it from --models-dir / --data-dir)."""
models_path = "models"
