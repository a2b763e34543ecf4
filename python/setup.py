# SPDX-License-Identifier: MIT
"""pip install ./python: the psyne package, with psyne's C sources compiled
into its extension (no installed libpsyne needed).

On Debian 12 (no PyPI here, and pip will not touch the system's packages):
    python3 -m venv --system-site-packages venv
    venv/bin/pip install --no-build-isolation ./python
CMake builds the same package into build/python without pip (README)."""
import glob
import os
import re

from setuptools import Extension, setup

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)


def version():
    text = open(os.path.join(root, "include", "psyne.h")).read()
    parts = [re.search(rf"#define PSYNE_VERSION_{p} +(\d+)", text).group(1) for p in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(parts)


# Absolute paths: the objects then land inside the build directory.
library = sorted(glob.glob(os.path.join(root, "src", "**", "*.c"), recursive=True))

setup(
    name="psyne",
    version=version(),
    description="Zero-copy messaging between threads, processes and machines",
    license="MIT",
    packages=["psyne"],
    package_dir={"psyne": os.path.join(here, "psyne")},
    ext_modules=[
        Extension(
            "psyne._psyne",
            sources=[os.path.join(here, "psyne", "_psyne.c")] + library,
            include_dirs=[os.path.join(root, "include"), os.path.join(root, "src")],
            define_macros=[("_GNU_SOURCE", None)],
            extra_compile_args=["-std=gnu11", "-fvisibility=hidden", "-O2"],
            libraries=["pthread"],
        )
    ],
    python_requires=">=3.8",
)
