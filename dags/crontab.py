"""graphile-worker's crontab file, as is: one airflow DAG per line (`crontab_<id>`), on the line's
schedule, whose task enqueues the line's job at each tick (jobqueue.crontab). The file is
WORKER_CRONTAB, `crontab` beside this one by default; its times are UTC unless
WORKER_CRONTAB_TIMEZONE names a zone. A line that does not parse fails this file's import, naming
the line; no file, no DAG.
"""

from __future__ import annotations

from jobqueue import crontab, settings

path, timezone = settings.crontab()
globals().update(crontab.crontab_dags(path, timezone))
