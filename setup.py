"""Build the Cython core (the scheduler, the folder copy and listing, the latency histogram); everything else is declared in
pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("batchops._scheduler", ["ext/batchops/_scheduler.pyx"]),
         Extension("batchops._histogram", ["ext/batchops/_histogram.pyx"]),
         # _GNU_SOURCE: copy_file_range in glibc's unistd.h.
         Extension("batchops._localfs", ["ext/batchops/_localfs.pyx"],
                   define_macros=[("_GNU_SOURCE", "1")]),
         Extension("batchops._listdir", ["ext/batchops/_listdir.pyx"])],
        include_path=["ext"],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    ),
)
