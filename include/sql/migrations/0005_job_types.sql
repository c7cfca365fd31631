-- What the job-type runtime keeps beside the jobs.
--
-- What a job's step hands to the next step of its chain (`render` to `send`), kept beside the job
-- rather than in Airflow's XCom: XCom travels through the API server and stays in Airflow's
-- metadata, with every recipient and message body in it.
--
-- A row belongs to one attempt of its job: `attempt` is the job's attempts when the step ran, so a
-- job released and claimed again starts its chain over instead of reading what an earlier attempt
-- left. The runtime deletes a job's rows when it records the job's outcome; the cascade covers a job
-- removed or purged meanwhile. Private to the worker side: applications never see it.

create table worker._job_steps (
    job_id bigint not null references worker._jobs (id) on delete cascade,
    step text not null,
    attempt integer not null,
    value jsonb not null,
    primary key (job_id, step)
);

revoke all on worker._job_steps from public;

-- Who consumes which identifiers: each job type's trigger, in Airflow's triggerer, says so every
-- half minute. A job whose identifier no trigger watches would wait in silence: the maintenance DAG
-- and the Jobs page name it (worker.unconsumed_identifiers in queries.sql).
create table worker._consumers (
    identifier text primary key,
    seen_at timestamptz not null
);

revoke all on worker._consumers from public;

insert into worker.migrations (name) values ('0005_job_types');
