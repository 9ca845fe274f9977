"""Maps the folders to unique import names: extension/ -> cloudlora, cloud_backend/ -> cloudlora_backend.

A1111 loads every extension into one process, so generic names like `extension` would collide.
"""
from setuptools import find_packages, setup

MAPPING = {"cloudlora": "extension", "cloudlora_backend": "cloud_backend"}

packages = []
for name, folder in MAPPING.items():
    packages += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]

setup(
    packages=packages,
    package_dir=MAPPING,
    package_data={
        "cloudlora": ["**/*.json", "**/*.js", "**/*.css", "**/*.toml", "**/*.md"],
        "cloudlora_backend": ["**/*.json", "**/*.yaml", "**/*.toml", "**/*.txt", "container/Dockerfile", "**/*.png"],
    },
)
