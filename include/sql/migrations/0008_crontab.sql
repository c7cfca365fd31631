-- The ticks of graphile-worker's crontab lines that were enqueued (jobqueue.crontab), as
-- graphile-worker's _private_known_crontabs keeps each line's last execution: a tick's job is
-- enqueued once, however often its DAG run or task is run again, and a line with ?fill= knows from
-- which tick it missed the others.

create table worker._cron_ticks (
    cron_id text not null,
    tick timestamptz not null,
    job_id bigint,
    enqueued_at timestamptz not null default now(),
    primary key (cron_id, tick)
);

revoke all on worker._cron_ticks from public;

create function worker.add_cron_job(cron_id text, tick timestamptz, spec jsonb) returns setof worker.jobs
language plpgsql
security definer set search_path = pg_catalog, worker, pg_temp
as $$
declare
    v_job worker.jobs;
begin
    perform worker._check_name('cron_id', cron_id, 'WK006');
    insert into worker._cron_ticks as t (cron_id, tick) values (add_cron_job.cron_id, add_cron_job.tick)
    on conflict do nothing;
    if not found then
        return;  -- enqueued already: a rerun of the tick
    end if;
    select * into v_job from worker.add_jobs(jsonb_build_array(spec));
    update worker._cron_ticks t set job_id = v_job.id
    where t.cron_id = add_cron_job.cron_id and t.tick = add_cron_job.tick;
    -- A month of ticks is kept per line: enough for any rerun of a recent run to find its tick.
    delete from worker._cron_ticks t
    where t.cron_id = add_cron_job.cron_id and t.tick < add_cron_job.tick - interval '31 days';
    return next v_job;
end;
$$;

comment on function worker.add_cron_job is
    'Enqueues the job of one tick of a crontab line (spec as one element of add_jobs), once: a tick '
    'enqueued already returns nothing. Example: select * from worker.add_cron_job(''digest'', '
    '''2026-12-01T08:00:00Z'', ''{"identifier": "digest", "payload": {"_cron": {"ts": "..."}}}'')';

revoke execute on function worker.add_cron_job(text, timestamptz, jsonb) from public;

insert into worker.migrations (name) values ('0008_crontab');
