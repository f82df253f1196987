"""The one C extension, kernels._host (kernels/_host.c: the triton implementation's host steps); everything else is
in pyproject.toml. Optional: without a C compiler the install goes on and the same steps run in Python
(kernels/triton_postprocess.py); CI requires it (tests/test_host_ext.py). A setup.py rather than pyproject's
ext-modules table, which setuptools still calls experimental."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("kernels._host", ["kernels/_host.c"], optional=True, extra_compile_args=["-O2"])])
