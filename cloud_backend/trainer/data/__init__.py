"""Stage 2, the data: the dataset folder's layout and captions (layout, dataset), aspect-ratio buckets, masks,
the CLIP tokenizers and their bundled vocab/, and the latent / text-encoder caches (encode).

May import config/. layout is pure Python (the WebUI checks datasets with it).
"""
