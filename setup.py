"""Build the optional C accelerators; metadata lives in pyproject.toml.

``crema.checkpoint._mcrs``: the snapshot codec's inner loops. ``crema.cache._entries``:
store entries the cyclic garbage collector never tracks. ``crema.server._getrun``:
runs of plain GET requests served from the input bytes. All are optional: where
no C compiler is available the build goes on without them and crema uses its
pure-Python code (same results, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "crema.checkpoint._mcrs",
            sources=["src/crema/checkpoint/_mcrs.c"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
        Extension(
            "crema.cache._entries",
            sources=["src/crema/cache/_entries.c"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
        Extension(
            "crema.server._getrun",
            sources=["src/crema/server/_getrun.c"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
    ]
)
