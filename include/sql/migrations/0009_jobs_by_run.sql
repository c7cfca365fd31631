-- Two lookups that read every job kept without an index:
-- the jobs a DAG run worked on last (last_worker = '<dag_id>/<run_id>'), which the run's Jobs tab in
-- Airflow's UI lists and its last step counts the failed ones of; and the failed jobs of an
-- identifier, which each job type's trigger counts for the metrics (jobqueue.metrics).

create index _jobs_last_worker_idx on worker._jobs (last_worker) where last_worker is not null;
create index _jobs_failed_idx on worker._jobs (identifier) where state = 'failed';

insert into worker.migrations (name) values ('0009_jobs_by_run');
