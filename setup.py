"""Maps the folders to unique import names: extension/ -> cloudlora, cloud_backend/ -> cloudlora_backend.

A1111 loads every extension into one process, so generic names like `extension` would collide. A bare clone needs
no install: extension/bootstrap.py makes the same mapping at run time.
"""
from setuptools import find_namespace_packages, setup

MAPPING = {"cloudlora": "extension", "cloudlora_backend": "cloud_backend"}

packages = []
for name, folder in MAPPING.items():
    # Namespace discovery: data folders (trainer/model/arch/..., trainer/data/vocab) are packages of the distribution too.
    packages += [name] + [f"{name}.{sub}" for sub in find_namespace_packages(folder, exclude=["*__pycache__*"])]

setup(
    packages=packages,
    package_dir=MAPPING,
    package_data={
        "cloudlora": ["**/*.json", "**/*.js", "**/*.css", "**/*.toml", "**/*.md"],
        "cloudlora_backend": ["**/*.json", "**/*.yaml", "**/*.toml", "**/*.txt", "**/*.gz", "**/LICENSE*",
                              "container/Dockerfile", "**/*.png"],
    },
)
