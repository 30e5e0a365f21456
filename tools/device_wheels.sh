#!/usr/bin/env bash
# Download, here, the wheels that lenslib needs and the GPU machine's image lacks (its Python is 3.12 and it
# cannot reach a package index), into .whl/ (kept out of git by .git/info/exclude). Then tools/gpu_check.sh runs
# there with `.whl` carried (see the README's "GPU checks"). About 35 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
# lenslib's imports that the image lacks (its package list: the device tool's KINDS.md), with what they need
pkgs=(astropy pyerfa astropy-iers-data astropy-healpix umap-learn pynndescent boto3 botocore s3transfer jmespath
      dask distributed tblib zict locket partd tornado nbformat fastjsonschema jsonschema jsonschema-specifications
      referencing rpds-py traitlets jupyter-core platformdirs)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl "${pkgs[@]}"
du -sh .whl
