"""Stage 1, the config: the Kohya TOML's option table (schema, flux_options, option), the check/parse/format of a
config (train_config, with features and values), sample-prompt lines (prompt_lines) and network_args (network_spec).

Pure Python, no torch: the WebUI imports these. Imports nothing else of the trainer.
"""
