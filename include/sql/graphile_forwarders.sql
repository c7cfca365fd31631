-- Replaces graphile-worker's enqueueing functions with ones of the same signatures that forward to
-- schema worker, so the application's SQL triggers and functions keep working unchanged. Applied by
-- `python -m jobqueue.graphile_import`, after the jobs have moved. The return type becomes
-- worker.jobs: a caller that reads columns of the returned row finds the same names, `key` excepted
-- (`job_key` here).

drop function graphile_worker.add_job(text, json, text, timestamptz, integer, text, integer, text[], text);
create function graphile_worker.add_job(
    identifier text,
    payload json default null,
    queue_name text default null,
    run_at timestamptz default null,
    max_attempts integer default null,
    job_key text default null,
    priority integer default null,
    flags text[] default null,
    job_key_mode text default 'replace'
) returns worker.jobs
language sql as $$
    select * from worker.add_job(identifier, coalesce(payload, '{}')::jsonb, queue_name, run_at,
                                 max_attempts, job_key, priority, flags, job_key_mode);
$$;

drop function graphile_worker.add_jobs(graphile_worker.job_spec[], boolean);
create function graphile_worker.add_jobs(
    specs graphile_worker.job_spec[],
    job_key_preserve_run_at boolean default false
) returns setof worker.jobs
language sql as $$
    select * from worker.add_jobs(coalesce((
        select jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
            'identifier', s.identifier,
            'payload', s.payload::jsonb,
            'queue_name', s.queue_name,
            'run_at', s.run_at,
            'max_attempts', s.max_attempts,
            'job_key', s.job_key,
            'priority', s.priority,
            'flags', to_jsonb(s.flags),
            'job_key_mode', case when job_key_preserve_run_at then 'preserve_run_at' else 'replace' end
        )) order by s.n)
        from unnest(specs) with ordinality s(identifier, payload, queue_name, run_at, max_attempts,
                                             job_key, priority, flags, n)
    ), '[]'::jsonb));
$$;

drop function graphile_worker.remove_job(text);
create function graphile_worker.remove_job(job_key text) returns worker.jobs
language sql as $$
    select * from worker.remove_job(job_key);
$$;

comment on function graphile_worker.add_job is 'Forwards to worker.add_job (moved by jobqueue).';
comment on function graphile_worker.add_jobs is 'Forwards to worker.add_jobs (moved by jobqueue).';
comment on function graphile_worker.remove_job is 'Forwards to worker.remove_job (moved by jobqueue).';
