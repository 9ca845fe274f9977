"""Auto-captioning: writes a caption file beside each training image before training (issue 23).

The contract, as built (additions to issue 23's, nothing removed):
- `python -m cloudlora_backend.trainer.captions --dataset DIR --with wd14|florence2 --model-dir DIR [--mode
  keep|append|replace] [--threshold 0.35] [--character-threshold 0.85] [--exclude "tag a,tag b"] [--detail
  short|detailed] [--trigger WORD] [--device auto|cpu|cuda]`; --mode defaults to keep.
- stdout, one JSON object per line: {"event":"start","total":N,"captioner":"wd14","device":"cpu"}; per image
  {"event":"image","done":i,"total":N,"image":"10_demo/a.png","caption":"demo, 1girl, ...","written":true,
  "eta_s":12.3} or {"event":"skipped","done":i,"total":N,"image":...,"reason":...} (unreadable image; the run goes
  on); {"event":"summary","images":N,"written":W,"kept":K,"skipped":S,"seconds":T,"tags":{"1girl":5,...}} (tags:
  every comma-separated piece of every caption after the run, trigger words included, most frequent first);
  or {"event":"error","message":...}. "image" is the path relative to --dataset, with "/".
- Exit 0 ok; 1 an input to fix (folder, model files, a bad option: argparse's usage errors are exit 1 with an error
  line too, not 2; --device cuda where there is no CUDA); 4 unexpected (traceback on stderr).
- wd14 runs on onnxruntime's CUDA provider only where onnxruntime-gpu is installed; the lock has the CPU
  onnxruntime, so "device" is "cpu" for wd14 on most machines (florence2 uses torch's GPU when there is one).
- Job: model/captions/<caption file relative to the dataset root> (the config's caption_extension, .txt by
  default) and captions.json {"captioner","mode","files":[...],"written":[the files this run wrote]}.

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
