"""Auto-captioning: writes a caption file beside each training image before training (issue 23).

Two captioners: Tags (wd14.py: a WD14 tagger, SmilingWolf's wd-*-tagger-v3, run by onnxruntime) and Sentences
(florence2.py: Florence-2 through transformers). write.py merges a new caption with the old one (mode keep | append |
replace, the trigger word first) and writes it atomically; run.py walks a dataset and reports progress as JSON lines;
__main__.py is `python -m cloudlora_backend.trainer.captions` (the extension's local runs); stage.py is the training
job's first phase (caption = "wd14" | "florence2" in the TOML, the captioner channel input/data/captioner/); tiny.py
builds tiny test captioners.

A stage between data/ and model/: may import config/ and data/, nothing after them (model/, network/, loop/);
the trainer's __main__ calls stage.py.
Importing this package imports neither torch nor onnxruntime (each captioner loads its own runtime when used).
"""
