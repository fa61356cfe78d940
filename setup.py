"""Build and install edgert: the cffi shim from native/, the static init from init/.

``pip install .`` compiles ``edgert._native`` (cffi API mode) and runs
``make -C init`` (musl static, falling back to static glibc), then ships the
init binary inside the package as ``edgert/edgert-init``.
"""

import os
import shutil
import subprocess
import sys

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from distutils.command.build_scripts import build_scripts

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


class CopyScripts(build_scripts):
    """Keeps the scripts' own `#!PYTHON -IS` line: setuptools would rewrite it to `#!python`,
    which pip then turns into a bare interpreter path, dropping the flags."""

    def run(self):
        self.mkpath(self.build_dir)
        for script in self.scripts:
            dest = os.path.join(self.build_dir, os.path.basename(script))
            with open(script) as f:
                lines = f.read().split("\n", 1)
            with open(dest, "w") as f:
                f.write("#!%s -IS\n%s" % (sys.executable, lines[1]))
            os.chmod(dest, 0o755)


setup(
    name="edgert",
    version=read_version(),
    description="Lightweight OCI container runtime for routers and edge devices",
    packages=find_packages(include=["edgert", "edgert.*"]),
    python_requires=">=3.11",
    setup_requires=["cffi>=1.15"],
    install_requires=["cffi>=1.15"],
    cffi_modules=["native/build.py:ffibuilder"],
    # Our own launchers instead of entry points: the generic wrapper imports re, and they run
    # with -I -S to start fast on slow router CPUs (see bin/edgert-oci).
    scripts=["bin/edgert", "bin/edgert-oci", "bin/edgertd"],
    cmdclass={"build_py": BuildWithInit, "build_scripts": CopyScripts},
    zip_safe=False,
)
