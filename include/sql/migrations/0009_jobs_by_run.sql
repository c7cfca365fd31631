-- The jobs a DAG run worked on last (last_worker = '<dag_id>/<run_id>'), found by an index: the
-- run's Jobs tab in Airflow's UI lists them, and a run's last step counts those it failed for good.
-- Without it each lookup reads every job kept, completed ones included.

create index _jobs_last_worker_idx on worker._jobs (last_worker) where last_worker is not null;

insert into worker.migrations (name) values ('0009_jobs_by_run');
