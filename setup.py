"""Build the optional C accelerator of the snapshot codec; metadata lives in pyproject.toml.

The extension is optional: where no C compiler is available the build goes on
without it and crema uses its pure-Python codec (same results, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "crema.checkpoint._mcrs",
            sources=["src/crema/checkpoint/_mcrs.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
