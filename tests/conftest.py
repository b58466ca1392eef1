"""Shared setup of the harness's own tests.

The tests run many tiny forward passes; on a 2-core machine, torch's default of one OpenMP
thread per core makes each tiny op wait on thread hand-offs (measured: ~16 ms instead of a few
microseconds per linear layer under load), so the test process uses one thread. Set before
torch is imported; if a plugin imported it already, the setting is applied directly.
"""

import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
if "torch" in sys.modules:
    sys.modules["torch"].set_num_threads(1)

pytest_plugins = ["pytester"]
