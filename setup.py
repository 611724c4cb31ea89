"""Only for the C extension; everything else about the project is in pyproject.toml.

`pip install -e .` compiles services/scanner/_walk*.c next to walk.py. The extension is
optional: where it cannot be built (no compiler or Python headers) the install still
succeeds and walk.py falls back to its pure-Python loop.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "services.scanner._walkc",
            sources=[
                "services/scanner/_walkc.c",
                "services/scanner/_walkinoset.c",
                "services/scanner/_walkpool.c",
                "services/scanner/_walktree.c",
            ],
            depends=[
                "services/scanner/_walkinoset.h",
                "services/scanner/_walkpool.h",
                "services/scanner/_walktree.h",
            ],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-pthread"],
            extra_link_args=["-pthread"],
            optional=True,
        )
    ]
)
