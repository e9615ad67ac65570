# An ordinary setuptools project: nothing in it knows about pyref. The tracing comes from
# the environment: CFLAGS="$(pyref-config --cflags)" LDFLAGS="$(pyref-config --libs)".
from setuptools import Extension, setup

setup(name="routesext", version="1.0",
      ext_modules=[Extension("routesext", ["src/routesext.c"])])
