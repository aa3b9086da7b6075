"""Build the Cython scheduler core; everything else is declared in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("batchops._scheduler", ["ext/batchops/_scheduler.pyx"])],
        include_path=["ext"],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    ),
)
