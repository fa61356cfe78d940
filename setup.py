"""Build and install edgert: the cffi shim from native/, the static init from init/.

``pip install .`` compiles ``edgert._native`` (cffi API mode) and runs
``make -C init`` (musl static, falling back to static glibc), then ships the
init binary inside the package as ``edgert/edgert-init``.
"""

import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    with open(os.path.join(HERE, "edgert", "__init__.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=")[1].strip().strip('"')
    raise RuntimeError("no __version__ in edgert/__init__.py")


class BuildWithInit(build_py):
    """build_py that also builds init/edgert-init and ships it in the package."""

    def run(self):
        super().run()
        subprocess.check_call(["make", "-C", os.path.join(HERE, "init")])
        dest = os.path.join(self.build_lib, "edgert", "edgert-init")
        shutil.copyfile(os.path.join(HERE, "init", "edgert-init"), dest)
        os.chmod(dest, 0o755)


setup(
    name="edgert",
    version=read_version(),
    description="Lightweight OCI container runtime for routers and edge devices",
    packages=["edgert", "edgert.oci", "edgert.runtime"],
    python_requires=">=3.11",
    setup_requires=["cffi>=1.15"],
    install_requires=["cffi>=1.15"],
    cffi_modules=["native/build.py:ffibuilder"],
    # Fixed shebangs with -I: the device interpreter is Debian's python3, and
    # the scripts skip the generic entry-point wrapper (it imports re) to
    # start fast on slow router CPUs.
    scripts=["bin/edgert", "bin/edgert-oci"],
    cmdclass={"build_py": BuildWithInit},
    zip_safe=False,
)
