-- Each failed attempt of a job, kept with the job: a job's row keeps only its last error, and a
-- handler's traceback was only in the Airflow task log, which nothing linked to. A row says which
-- attempt failed, how (retry: it runs again; failed: for good), its error and traceback, and the
-- task that ran it: the DAG run (`worker_id`, `<dag_id>/<run_id>`), the task (the step) and the
-- task's try, which together name that attempt's task log in Airflow's UI. Written by the runtime
-- in the transaction that records the failure; deleted with its job (the retention purge). Private
-- to the worker side: the job queue's page and REST API show it.

create table worker._job_attempts (
    job_id bigint not null references worker._jobs (id) on delete cascade,
    attempt integer not null,
    outcome text not null check (outcome in ('retry', 'failed')),
    error text not null,
    traceback text,
    worker_id text not null,
    task_id text,
    try_number integer,
    at timestamptz not null default now()
);

create index _job_attempts_job_idx on worker._job_attempts (job_id, attempt);

revoke all on worker._job_attempts from public;

insert into worker.migrations (name) values ('0010_failed_attempts');
