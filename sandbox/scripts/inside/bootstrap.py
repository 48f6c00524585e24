"""Runs the analyst's script inside the sandbox: ``sandbox_io`` importable, then /job/script.py as __main__."""

import runpy
import sys

sys.path.insert(0, "/runtime")
sys.argv = ["script.py"]
runpy.run_path("/job/script.py", run_name="__main__")
