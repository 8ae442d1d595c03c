"""Markers for tests that need more than Python and torch."""

import os
import shutil

import pytest

# inductor compiles C++ on a CPU (vardiu_pyro/compiled.py); it reads the compiler from CXX, else looks for g++ and others
needs_cxx = pytest.mark.skipif(not any(shutil.which(c) for c in (os.environ.get("CXX") or "g++", "c++", "clang++")),
                               reason="inductor needs a C++ compiler to compile the step")
