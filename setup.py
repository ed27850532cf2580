"""Compiles every cython_ext/NAME.pyx into effdl_lib._NAME (-O2, portable: no -march=native)."""
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(f"effdl_lib._{pyx.stem}", [str(pyx)], include_dirs=[np.get_include(), "cython_ext"],
              extra_compile_args=["-O2"],
              define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")])
    for pyx in sorted(Path("cython_ext").glob("*.pyx"))
]

setup(ext_modules=cythonize(extensions, compiler_directives={"language_level": "3"},
                            include_path=["cython_ext", "."]))  # ".": effdl_lib/*.pxd
