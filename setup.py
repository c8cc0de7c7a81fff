"""Installs ``tissuegraph-tf-local.pth`` into site-packages next to the package (wheels and editable installs).

The .pth makes TensorFlow load its native libraries RTLD_LOCAL at interpreter start-up, so TensorFlow
(StarDist) and triton (torch) work in one process in any import order; see tissuegraph/_compat.py and
docs/architecture.md. Everything else about the build is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH = Path(__file__).resolve().parent / "tissuegraph-tf-local.pth"


class build_py_with_pth(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:
            shutil.copy(PTH, Path(self.build_lib) / PTH.name)


class editable_wheel_with_pth(editable_wheel):
    def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):
        out = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
        shutil.copy(PTH, Path(unpacked_wheel) / PTH.name)
        return out


setup(cmdclass={"build_py": build_py_with_pth, "editable_wheel": editable_wheel_with_pth})
