"""Named points where a test can hold a job, to kill it at that exact moment.

`BATCHOPS_FAILPOINT=name[,name...]` in the environment of the process that runs a job
makes it, on reaching that point, create `<job folder>/failpoint.<name>` (holding its
pid) and wait until that file is removed. A test waits for the file, then kills the
process (or removes the file to let it go on). Without the variable this costs one
environment lookup per point, and a point is only ever met a few times per job.
"""

from __future__ import annotations

import os
import time


def failpoint(job_dir: str, name: str) -> None:
    """Hold here while `BATCHOPS_FAILPOINT` names `name` (see the module docstring)."""
    names = os.environ.get("BATCHOPS_FAILPOINT")
    if not names or name not in names.split(","):
        return
    path = os.path.join(job_dir, f"failpoint.{name}")
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    while os.path.exists(path):
        time.sleep(0.02)
