-- Completions recorded in groups, each job with its own result, in one statement.
--
-- The runtime's outcome writer completes a few hundred jobs at a time. Calling complete_jobs once
-- per job (a plpgsql call, a notification query and a read of worker.jobs each) cost PostgreSQL
-- about a third of a millisecond per job, more than the rest of the job's SQL together; this is one
-- UPDATE over the group, and with `forget_steps` the DELETE of what the jobs' steps handed on, which
-- was a statement of its own. Same meaning as complete_jobs: a job completed already stays as it is.
-- The group comes as one JSON object, not arrays: a client's driver encodes an array element by
-- element, one JSON document at once.

create function worker.complete_jobs_each(results jsonb, forget_steps boolean)
returns integer
language plpgsql
security definer set search_path = pg_catalog, worker, pg_temp
as $$
declare
    v_queues text[];
    v_count integer;
begin
    if jsonb_typeof(results) is distinct from 'object' then
        raise exception 'complete_jobs_each: results must be an object {"<job id>": result}, got %',
            coalesce(jsonb_typeof(results), 'null') using errcode = 'WK008';
    end if;
    with done as (
        update worker._jobs j
        set state = 'completed', completed_at = now(), updated_at = now(),
            locked_by = null, locked_at = null,
            result = coalesce(nullif(u.value, 'null'::jsonb), j.result)
        from jsonb_each(results) as u(key, value)
        where j.id = u.key::bigint and j.state <> 'completed'
        returning j.id, j.queue_name
    )
    select count(*), array_agg(distinct queue_name) filter (where queue_name is not null)
    into v_count, v_queues
    from done;
    perform worker._notify_queues(v_queues);
    if forget_steps then
        delete from worker._job_steps
        where job_id = any(array(select key::bigint from jsonb_each_text(results)));
    end if;
    return v_count;
end;
$$;

comment on function worker.complete_jobs_each is
    'Marks jobs completed, each with its own result ({"<job id>": result, ...}; null keeps the '
    'job''s result as it is), in one statement; with forget_steps, drops what their steps handed '
    'on. Returns how many were completed now.';

revoke execute on function worker.complete_jobs_each(jsonb, boolean) from public;

insert into worker.migrations (name) values ('0006_outcomes_in_groups');
