"""Start-up stays light: neither `import distributary` nor registering the run-store sink imports SQLAlchemy."""
from __future__ import annotations

import subprocess
import sys


def test_import_and_sink_registration_do_not_load_sqlalchemy(tmp_path):
    code = ("import sys, distributary, distributary.runstore as rs; assert 'sqlalchemy' not in sys.modules; "
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path),
                              "DISTRIBUTARY_HOME": str(tmp_path)}, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
