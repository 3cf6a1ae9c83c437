"""Start-up stays light: neither `import distributary` nor registering the run-store sink imports SQLAlchemy."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_import_and_sink_registration_do_not_load_sqlalchemy(tmp_path):
    code = ("import sys, distributary, distributary.runstore as rs; assert 'sqlalchemy' not in sys.modules; "
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path),
                              "DISTRIBUTARY_HOME": str(tmp_path)}, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_recording_into_an_existing_sqlite_store_does_not_load_sqlalchemy(tmp_path):
    from distributary.runstore.storage import SqlRunStorage

    SqlRunStorage(url=f"sqlite:///{tmp_path / 'runs.db'}").engine.dispose()  # created and migrated
    here = str(Path(__file__).parent)
    code = (f"import sys; sys.path.insert(0, {here!r}); from events import flow_with_tasks; "
            "from distributary.runstore import ensure_sink; from distributary.engine import transitions; "
            "sink = ensure_sink(); fr, trs, ev = flow_with_tasks(100); sink.handle(ev); "
            "assert transitions.flush(30); assert 'sqlalchemy' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path),
                              "DISTRIBUTARY_HOME": str(tmp_path)}, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
    st = SqlRunStorage(url=f"sqlite:///{tmp_path / 'runs.db'}")
    assert st.count_task_runs() == 100 and st.count_states() == 303
