# An ordinary setuptools project (the README's "unchanged setup.py"): the tracing comes
# from CFLAGS and LDFLAGS, as the README's setuptools line sets them.
from setuptools import Extension, setup

setup(name="myext", version="1.0", ext_modules=[Extension("myext", ["myext.c"])])
