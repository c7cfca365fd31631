-- 0001_initial: the job queue. Tables are private (leading underscore); the functions and the view
-- worker.jobs are the contract. Errors raised here use the project's SQLSTATE codes WK001..WK009,
-- documented in README.md under "Errors".
--
-- Every migration records itself in worker.migrations, so applying the files in name order with
-- `psql -f` gives exactly what the runner (jobqueue.migrations) gives.

create schema if not exists worker;

create table worker.migrations (
    name text primary key,
    applied_at timestamptz not null default now()
);

-- A job's life: waiting (queued, or scheduled when run_at is in the future) -> running -> completed,
-- or back to waiting for a retry, or failed for good. Invariant: a waiting job has attempts < max_attempts.
create table worker._jobs (
    id bigint generated always as identity primary key,
    identifier text not null,
    payload jsonb not null default '{}',
    queue_name text,
    priority integer not null default 0,
    run_at timestamptz not null default now(),
    attempts integer not null default 0,
    max_attempts integer not null default 25,
    last_error text,
    job_key text,
    flags text[],
    state text not null default 'waiting'
        check (state in ('waiting', 'running', 'completed', 'failed')),
    locked_by text,
    locked_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    completed_at timestamptz,
    -- The worker (for a DAG run, `<dag_id>/<run_id>`) that took the job last; kept after it is done.
    last_worker text,
    -- What the job produced, recorded on completion (an e-mail's Message-ID, a document's path).
    result jsonb,
    check (max_attempts >= 1),
    check ((state = 'running') = (locked_by is not null)),
    check (state <> 'waiting' or attempts < max_attempts)
);

-- Claim order within an identifier: priority, then run_at, then id. Only waiting jobs are indexed, so
-- millions of completed jobs cost the claim nothing.
create index _jobs_claim_idx on worker._jobs (identifier, priority, run_at, id)
    where state = 'waiting';
-- The head of a named queue, and whether the queue has a running job.
create index _jobs_queue_waiting_idx on worker._jobs (queue_name, priority, run_at, id)
    where state = 'waiting' and queue_name is not null;
create index _jobs_queue_running_idx on worker._jobs (queue_name)
    where state = 'running' and queue_name is not null;
create index _jobs_locked_by_idx on worker._jobs (locked_by) where state = 'running';
-- When the next scheduled job of an identifier is due (the trigger sleeps until then).
create index _jobs_due_idx on worker._jobs (identifier, run_at) where state = 'waiting';
-- A completed job counts as gone: it frees its key, yet keeps it for history.
create unique index _jobs_job_key_idx on worker._jobs (job_key)
    where job_key is not null and state <> 'completed';
create index _jobs_completed_at_idx on worker._jobs (completed_at) where state = 'completed';

create view worker.jobs as
select
    id, identifier, payload, queue_name, priority, run_at, attempts, max_attempts, last_error,
    job_key, flags,
    case
        when state = 'waiting' and run_at > now() then 'scheduled'
        when state = 'waiting' then 'queued'
        else state
    end as status,
    locked_by, locked_at, created_at, updated_at, completed_at, last_worker, result
from worker._jobs;

comment on view worker.jobs is
    'Every job, with its status: queued, scheduled, running, completed or failed.';

-- The one channel listeners wait on. The payload is a JSON array of the identifiers concerned, or
-- null when they do not fit in a notification (listeners then look at every identifier).
create function worker._notify(identifiers text[]) returns void
language plpgsql as $$
declare
    v_payload text := to_jsonb(array(select distinct unnest(identifiers) order by 1))::text;
begin
    if coalesce(cardinality(identifiers), 0) = 0 then
        return;
    end if;
    if octet_length(v_payload) > 7900 then
        v_payload := 'null';
    end if;
    perform pg_notify('worker_jobs', v_payload);
end;
$$;

-- Notifies the identifier of each named queue's next job: a job that leaves `running` frees its queue.
create function worker._notify_queues(queue_names text[]) returns void
language sql as $$
    select worker._notify(array(
        select head.identifier
        from unnest(queue_names) q(queue_name)
        cross join lateral (
            select j.identifier from worker._jobs j
            where j.state = 'waiting' and j.queue_name = q.queue_name
            order by j.priority, j.run_at, j.id
            limit 1
        ) head
    ));
$$;

create function worker._check_name(kind text, value text, errcode text) returns void
language plpgsql immutable as $$
begin
    if value is null or length(value) = 0 then
        raise exception '% must not be empty', kind using errcode = errcode;
    end if;
    if length(value) > 128 then
        raise exception '% is longer than 128 characters: %...', kind, left(value, 40)
            using errcode = errcode;
    end if;
end;
$$;

-- Inserts or merges one job without notifying: the shared body of add_job and add_jobs.
create function worker._add_job(
    p_identifier text,
    p_payload jsonb,
    p_queue_name text,
    p_run_at timestamptz,
    p_max_attempts integer,
    p_job_key text,
    p_priority integer,
    p_flags text[],
    p_job_key_mode text
) returns worker._jobs
language plpgsql as $$
declare
    v_job worker._jobs;
    v_payload jsonb := coalesce(p_payload, '{}'::jsonb);
    v_mode text := coalesce(p_job_key_mode, 'replace');
begin
    perform worker._check_name('identifier', p_identifier, 'WK002');
    if p_queue_name is not null then
        perform worker._check_name('queue_name', p_queue_name, 'WK003');
    end if;
    if p_max_attempts is not null and p_max_attempts < 1 then
        raise exception 'max_attempts must be at least 1, got %', p_max_attempts using errcode = 'WK004';
    end if;
    if jsonb_typeof(v_payload) not in ('object', 'array') then
        raise exception 'payload must be a JSON object or array, got a JSON %', jsonb_typeof(v_payload)
            using errcode = 'WK005';
    end if;
    if v_mode not in ('replace', 'preserve_run_at', 'unsafe_dedupe') then
        raise exception 'unknown job_key_mode %: expected replace, preserve_run_at or unsafe_dedupe',
            quote_literal(v_mode) using errcode = 'WK001';
    end if;
    if p_job_key is not null and length(p_job_key) = 0 then
        raise exception 'job_key must not be empty (use NULL for no key)' using errcode = 'WK007';
    end if;

    if p_job_key is not null and v_mode = 'unsafe_dedupe' then
        insert into worker._jobs as j
            (identifier, payload, queue_name, run_at, max_attempts, job_key, priority, flags)
        values (p_identifier, v_payload, p_queue_name, coalesce(p_run_at, now()), coalesce(p_max_attempts, 25),
                p_job_key, coalesce(p_priority, 0), p_flags)
        on conflict (job_key) where job_key is not null and state <> 'completed' do nothing
        returning * into v_job;
        if v_job.id is null then
            select * into v_job from worker._jobs j
            where j.job_key = p_job_key and j.state <> 'completed';
        end if;
        return v_job;
    end if;

    if p_job_key is not null then
        -- Debounce (replace) or throttle (preserve_run_at): a waiting or failed job with this key
        -- is overwritten and runs again from its first attempt.
        insert into worker._jobs as j
            (identifier, payload, queue_name, run_at, max_attempts, job_key, priority, flags)
        values (p_identifier, v_payload, p_queue_name, coalesce(p_run_at, now()), coalesce(p_max_attempts, 25),
                p_job_key, coalesce(p_priority, 0), p_flags)
        on conflict (job_key) where job_key is not null and state <> 'completed' do update set
            identifier = excluded.identifier,
            payload = case
                when jsonb_typeof(j.payload) = 'array' and jsonb_typeof(excluded.payload) = 'array'
                    then j.payload || excluded.payload
                else excluded.payload
            end,
            queue_name = excluded.queue_name,
            run_at = case when v_mode = 'preserve_run_at' then j.run_at else excluded.run_at end,
            max_attempts = excluded.max_attempts,
            priority = excluded.priority,
            flags = excluded.flags,
            attempts = 0,
            last_error = null,
            state = 'waiting',
            completed_at = null,
            updated_at = now()
        where j.state <> 'running'
        returning * into v_job;
        if v_job.id is not null then
            return v_job;
        end if;
        -- The job with this key is running: its world view is out of date, so it keeps running
        -- without its key and without retries, and a new job carries the key.
        update worker._jobs j
        set job_key = null, max_attempts = j.attempts, updated_at = now()
        where j.job_key = p_job_key and j.state = 'running';
    end if;

    insert into worker._jobs
        (identifier, payload, queue_name, run_at, max_attempts, job_key, priority, flags)
    values (p_identifier, v_payload, p_queue_name, coalesce(p_run_at, now()), coalesce(p_max_attempts, 25),
            p_job_key, coalesce(p_priority, 0), p_flags)
    returning * into v_job;
    return v_job;
end;
$$;

create function worker.add_job(
    identifier text,
    payload jsonb default '{}',
    queue_name text default null,
    run_at timestamptz default null,
    max_attempts integer default null,
    job_key text default null,
    priority integer default null,
    flags text[] default null,
    job_key_mode text default 'replace'
) returns worker.jobs
language plpgsql as $$
declare
    v_job worker._jobs;
    v_result worker.jobs;
begin
    v_job := worker._add_job(identifier, payload, queue_name, run_at, max_attempts, job_key, priority,
                             flags, job_key_mode);
    perform worker._notify(array[v_job.identifier]);
    select * into v_result from worker.jobs where id = v_job.id;
    return v_result;
end;
$$;

comment on function worker.add_job is
    'Enqueues one job, with graphile-worker''s options and meanings. Example: '
    'select worker.add_job(''send_email'', ''{"to": "a@example.com", "template": "welcome"}'')';

-- Reads one field of an add_jobs spec as the given type, naming the spec and field on error.
create function worker._spec_field(spec jsonb, spec_number integer, field text, cast_to regtype)
returns text
language plpgsql as $$
declare
    v_value jsonb := spec -> field;
    v_text text;
begin
    if v_value is null or jsonb_typeof(v_value) = 'null' then
        return null;
    end if;
    v_text := case when jsonb_typeof(v_value) = 'string' then v_value #>> '{}' else v_value::text end;
    begin
        execute format('select %L::%s', v_text, cast_to);
    exception when others then
        raise exception 'add_jobs: spec % (counting from 1): field % is not a valid %: %',
            spec_number, field, cast_to, v_value using errcode = 'WK006';
    end;
    return v_text;
end;
$$;

create function worker.add_jobs(specs jsonb) returns setof worker.jobs
language plpgsql as $$
declare
    v_known constant text[] := array['identifier', 'payload', 'queue_name', 'run_at', 'max_attempts',
                                     'job_key', 'priority', 'flags', 'job_key_mode'];
    v_spec jsonb;
    v_position integer := 0;
    v_unknown text[];
    v_job worker._jobs;
    v_ids bigint[] := '{}';
    v_identifiers text[] := '{}';
begin
    if specs is null or jsonb_typeof(specs) <> 'array' then
        raise exception 'add_jobs: specs must be a JSON array of objects, got a JSON %',
            coalesce(jsonb_typeof(specs), 'NULL') using errcode = 'WK006';
    end if;
    for v_spec in select value from jsonb_array_elements(specs) loop
        v_position := v_position + 1;
        if jsonb_typeof(v_spec) <> 'object' then
            raise exception 'add_jobs: spec % (counting from 1) must be a JSON object, got a JSON %',
                v_position, jsonb_typeof(v_spec) using errcode = 'WK006';
        end if;
        v_unknown := array(select k from jsonb_object_keys(v_spec) k where k <> all(v_known) order by k);
        if cardinality(v_unknown) > 0 then
            raise exception 'add_jobs: spec % (counting from 1) has unknown field(s) %; known fields: %',
                v_position, array_to_string(v_unknown, ', '), array_to_string(v_known, ', ')
                using errcode = 'WK006';
        end if;
        if jsonb_typeof(v_spec -> 'identifier') is distinct from 'string' then
            raise exception 'add_jobs: spec % (counting from 1) has no identifier (a string)', v_position
                using errcode = 'WK006';
        end if;
        if v_spec ? 'flags' and jsonb_typeof(v_spec -> 'flags') not in ('array', 'null') then
            raise exception 'add_jobs: spec % (counting from 1): field flags must be an array of strings',
                v_position using errcode = 'WK006';
        end if;
        if v_spec ? 'payload' and jsonb_typeof(v_spec -> 'payload') not in ('object', 'array', 'null') then
            raise exception 'add_jobs: spec % (counting from 1): payload must be a JSON object or array, got a JSON %',
                v_position, jsonb_typeof(v_spec -> 'payload') using errcode = 'WK005';
        end if;
        v_job := worker._add_job(
            v_spec ->> 'identifier',
            v_spec -> 'payload',
            worker._spec_field(v_spec, v_position, 'queue_name', 'text'),
            worker._spec_field(v_spec, v_position, 'run_at', 'timestamptz')::timestamptz,
            worker._spec_field(v_spec, v_position, 'max_attempts', 'integer')::integer,
            worker._spec_field(v_spec, v_position, 'job_key', 'text'),
            worker._spec_field(v_spec, v_position, 'priority', 'integer')::integer,
            case when jsonb_typeof(v_spec -> 'flags') = 'array'
                then array(select jsonb_array_elements_text(v_spec -> 'flags')) end,
            coalesce(worker._spec_field(v_spec, v_position, 'job_key_mode', 'text'), 'replace')
        );
        v_ids := v_ids || v_job.id;
        v_identifiers := v_identifiers || v_job.identifier;
    end loop;
    perform worker._notify(v_identifiers);
    return query select j.* from worker.jobs j join unnest(v_ids) with ordinality u(id, n) using (id)
        order by u.n;
end;
$$;

comment on function worker.add_jobs is
    'Enqueues many jobs in one statement and one notification; one bad spec rejects the whole call. '
    'Example: select * from worker.add_jobs(''[{"identifier": "send_email", "payload": {"to": "a@example.com", "template": "welcome"}}]'')';

create function worker.remove_job(job_key text) returns worker.jobs
language plpgsql as $$
declare
    v_job worker._jobs;
begin
    delete from worker._jobs j
    where j.job_key = remove_job.job_key and j.state in ('waiting', 'failed')
    returning * into v_job;
    if v_job.id is not null then
        return (v_job.id, v_job.identifier, v_job.payload, v_job.queue_name, v_job.priority,
                v_job.run_at, v_job.attempts, v_job.max_attempts, v_job.last_error, v_job.job_key,
                v_job.flags, 'removed', v_job.locked_by, v_job.locked_at, v_job.created_at,
                now(), v_job.completed_at, v_job.last_worker, v_job.result)::worker.jobs;
    end if;
    -- A running job cannot be taken back: it loses its key and will not be retried.
    update worker._jobs j
    set job_key = null, max_attempts = j.attempts, updated_at = now()
    where j.job_key = remove_job.job_key and j.state = 'running'
    returning * into v_job;
    return (select jv from worker.jobs jv where jv.id = v_job.id);
end;
$$;

comment on function worker.remove_job is
    'Removes the waiting or failed job with this key; a running one loses its key and its retries. '
    'Example: select worker.remove_job(''digest:42'')';

create function worker.remove_jobs(job_ids bigint[]) returns setof worker.jobs
language plpgsql as $$
begin
    -- remove_job by id: waiting and failed jobs are deleted; a running one loses its key and retries.
    return query
    with removed as (
        delete from worker._jobs j where j.id = any(job_ids) and j.state in ('waiting', 'failed')
        returning j.*
    )
    select r.id, r.identifier, r.payload, r.queue_name, r.priority, r.run_at, r.attempts, r.max_attempts,
           r.last_error, r.job_key, r.flags, 'removed'::text, r.locked_by, r.locked_at, r.created_at,
           now(), r.completed_at, r.last_worker, r.result
    from removed r order by r.id;
    update worker._jobs j
    set job_key = null, max_attempts = j.attempts, updated_at = now()
    where j.id = any(job_ids) and j.state = 'running';
end;
$$;

comment on function worker.remove_jobs is
    'Removes waiting or failed jobs by id (a running one loses its key and its retries). '
    'Example: select * from worker.remove_jobs(array[7])';

-- Who did what to which job by hand (the Jobs page and its REST API), kept as history.
create table worker._job_actions (
    id bigint generated always as identity primary key,
    job_ids bigint[] not null,
    action text not null,
    actor text not null,
    detail jsonb,
    at timestamptz not null default now()
);

create view worker.job_actions as select id, job_ids, action, actor, detail, at from worker._job_actions;

create function worker.complete_jobs(job_ids bigint[], result jsonb default null)
returns setof worker.jobs
language plpgsql as $$
declare
    v_queues text[];
    v_ids bigint[];
begin
    with done as (
        update worker._jobs j
        set state = 'completed', completed_at = now(), updated_at = now(),
            locked_by = null, locked_at = null, result = coalesce(complete_jobs.result, j.result)
        where j.id = any(job_ids) and j.state <> 'completed'
        returning j.id, j.queue_name
    )
    select array_agg(id), array_agg(distinct queue_name) filter (where queue_name is not null)
    into v_ids, v_queues
    from done;
    perform worker._notify_queues(v_queues);
    return query select * from worker.jobs where id = any(v_ids) order by id;
end;
$$;

comment on function worker.complete_jobs is
    'Marks jobs completed (kept as history), recording result if given; used by workers and operators. '
    'Example: select * from worker.complete_jobs(array[7, 8])';

create function worker.permanently_fail_jobs(job_ids bigint[], reason text default null)
returns setof worker.jobs
language plpgsql as $$
declare
    v_ids bigint[];
begin
    -- A running job is left to its worker, as in graphile-worker.
    with failed as (
        update worker._jobs j
        set state = 'failed', last_error = coalesce(reason, 'Manually marked as failed'),
            updated_at = now()
        where j.id = any(job_ids) and j.state in ('waiting', 'failed')
        returning j.id
    )
    select array_agg(id) into v_ids from failed;
    return query select * from worker.jobs where id = any(v_ids) order by id;
end;
$$;

comment on function worker.permanently_fail_jobs is
    'Fails waiting jobs for good, with a reason. '
    'Example: select * from worker.permanently_fail_jobs(array[7], ''customer left'')';

create function worker.reschedule_jobs(
    job_ids bigint[],
    run_at timestamptz default null,
    priority integer default null,
    attempts integer default null,
    max_attempts integer default null
) returns setof worker.jobs
language plpgsql as $$
declare
    v_ids bigint[];
    v_identifiers text[];
begin
    if max_attempts is not null and max_attempts < 1 then
        raise exception 'max_attempts must be at least 1, got %', max_attempts using errcode = 'WK004';
    end if;
    if attempts is not null and attempts < 0 then
        raise exception 'attempts must not be negative, got %', attempts using errcode = 'WK004';
    end if;
    -- A failed job whose attempts fall below max_attempts waits again; a waiting job whose attempts
    -- reach max_attempts has failed for good, as graphile-worker would never pick it up.
    with changed as (
        update worker._jobs j
        set run_at = coalesce(reschedule_jobs.run_at, j.run_at),
            priority = coalesce(reschedule_jobs.priority, j.priority),
            attempts = coalesce(reschedule_jobs.attempts, j.attempts),
            max_attempts = coalesce(reschedule_jobs.max_attempts, j.max_attempts),
            state = case
                when coalesce(reschedule_jobs.attempts, j.attempts)
                     < coalesce(reschedule_jobs.max_attempts, j.max_attempts) then 'waiting'
                else 'failed'
            end,
            last_error = case
                when coalesce(reschedule_jobs.attempts, j.attempts)
                     < coalesce(reschedule_jobs.max_attempts, j.max_attempts) then j.last_error
                else coalesce(j.last_error, 'Rescheduled with no attempts left')
            end,
            updated_at = now()
        where j.id = any(job_ids) and j.state in ('waiting', 'failed')
        returning j.id, j.identifier, j.state
    )
    select array_agg(id), array_agg(identifier) filter (where state = 'waiting')
    into v_ids, v_identifiers
    from changed;
    perform worker._notify(v_identifiers);
    return query select * from worker.jobs where id = any(v_ids) order by id;
end;
$$;

comment on function worker.reschedule_jobs is
    'Changes when and how waiting or failed jobs run; NULL keeps a value. '
    'Example: select * from worker.reschedule_jobs(array[7], run_at => now(), attempts => 0)';

create function worker.force_unlock_workers(worker_ids text[], reason text default null) returns void
language plpgsql as $$
declare
    v_identifiers text[];
    v_queues text[];
begin
    with released as (
        update worker._jobs j
        set state = case when j.attempts < j.max_attempts then 'waiting' else 'failed' end,
            last_error = case
                when j.attempts < j.max_attempts then coalesce(reason, j.last_error)
                else coalesce(reason || '; that was the last attempt',
                              'Worker ' || j.locked_by || ' was force-unlocked during the last attempt')
            end,
            locked_by = null, locked_at = null, updated_at = now()
        where j.state = 'running' and j.locked_by = any(worker_ids)
        returning j.identifier, j.queue_name, j.state
    )
    select array_agg(identifier) filter (where state = 'waiting'),
           array_agg(distinct queue_name) filter (where queue_name is not null)
    into v_identifiers, v_queues
    from released;
    perform worker._notify(v_identifiers);
    perform worker._notify_queues(v_queues);
end;
$$;

comment on function worker.force_unlock_workers is
    'Releases the jobs of workers known to be dead, so they run again, recording reason if given. '
    'Example: select worker.force_unlock_workers(array[''send_email__manual__2026-11-28'']);';

create function worker.claim_jobs(
    identifiers text[],
    worker_id text,
    max_jobs integer default 1,
    forbidden_flags text[] default null
) returns setof worker.jobs
language plpgsql
-- A claim reads a few rows of a scan planned for every waiting job: plan it for a fast start, and
-- without JIT, whose compilation alone costs ~100 ms.
set jit = off
set cursor_tuple_fraction = 0.001
as $$
declare
    v_candidates refcursor;
    v_row record;
    v_ids bigint[] := '{}';
    v_seen_queues text[] := '{}';
begin
    perform worker._check_name('worker_id', worker_id, 'WK008');
    if max_jobs is null or max_jobs < 1 then
        raise exception 'max_jobs must be at least 1, got %', max_jobs using errcode = 'WK008';
    end if;
    if coalesce(cardinality(identifiers), 0) = 0 then
        return;
    end if;
    -- The scan reads without locking: each row is locked only once accepted, so rows passed over
    -- (jobs of busy queues) stay free for other claimers.
    if cardinality(identifiers) = 1 then
        -- Equality on the identifier lets the claim index deliver rows in claim order.
        open v_candidates for
            select j.id, j.queue_name, j.priority, j.run_at
            from worker._jobs j
            where j.state = 'waiting' and j.identifier = identifiers[1] and j.run_at <= now()
              and (forbidden_flags is null or j.flags is null or not j.flags && forbidden_flags)
            order by j.priority, j.run_at, j.id;
    else
        -- PostgreSQL cannot merge ordered index scans of several identifiers (it would sort every
        -- waiting job), so each identifier contributes its first rows, bounded; a call may then
        -- return fewer jobs than could run, and the next call takes them.
        open v_candidates for
            select c.id, c.queue_name, c.priority, c.run_at
            from unnest(identifiers) i(identifier)
            cross join lateral (
                select j.id, j.queue_name, j.priority, j.run_at
                from worker._jobs j
                where j.state = 'waiting' and j.identifier = i.identifier and j.run_at <= now()
                  and (forbidden_flags is null or j.flags is null or not j.flags && forbidden_flags)
                order by j.priority, j.run_at, j.id
                limit max_jobs * 4 + 100
            ) c
            order by c.priority, c.run_at, c.id;
    end if;
    loop
        exit when cardinality(v_ids) >= max_jobs;
        fetch v_candidates into v_row;
        exit when not found;
        if v_row.queue_name is not null then
            continue when v_row.queue_name = any(v_seen_queues);
            v_seen_queues := v_seen_queues || v_row.queue_name;
            -- Serialises claimers on this queue until commit; a claimer that cannot have the lock
            -- leaves the queue to the one that has it.
            continue when not pg_try_advisory_xact_lock(
                hashtext('worker.queue'), hashtext(v_row.queue_name));
            -- Checked under the lock, so a claim committed meanwhile is seen.
            continue when exists (
                select 1 from worker._jobs r
                where r.queue_name = v_row.queue_name and r.state = 'running');
            -- Only the queue's head may run, even if another claimer holds it locked right now.
            continue when exists (
                select 1 from worker._jobs h
                where h.queue_name = v_row.queue_name and h.state = 'waiting' and h.run_at <= now()
                  and (h.priority, h.run_at, h.id) < (v_row.priority, v_row.run_at, v_row.id));
        end if;
        -- Another claimer may hold the row, or have claimed it since the scan began.
        continue when not exists (
            select 1 from worker._jobs j
            where j.id = v_row.id and j.state = 'waiting'
            for update skip locked);
        v_ids := v_ids || v_row.id;
    end loop;
    close v_candidates;

    update worker._jobs j
    set state = 'running', attempts = j.attempts + 1, locked_by = worker_id, locked_at = now(),
        last_worker = worker_id, updated_at = now()
    where j.id = any(v_ids);
    return query select * from worker.jobs where id = any(v_ids) order by priority, run_at, id;
end;
$$;

comment on function worker.claim_jobs is
    'Claims up to max_jobs runnable jobs for a worker, at most one per named queue. '
    'Example: select * from worker.claim_jobs(array[''send_email''], ''worker-1'', 100)';

-- A job created already claimed: a DAG run triggered by hand (UI or REST) with a payload records its
-- work here, so it shows in worker.jobs with its outcome. No notification: nobody else may take it.
create function worker.add_job_for_worker(
    identifier text,
    payload jsonb,
    worker_id text,
    job_key text default null,
    max_attempts integer default null
) returns worker.jobs
language plpgsql as $$
declare
    v_job worker._jobs;
    v_result worker.jobs;
begin
    perform worker._check_name('worker_id', worker_id, 'WK008');
    v_job := worker._add_job(identifier, payload, null, null, max_attempts, job_key, null, null,
                             'unsafe_dedupe');
    update worker._jobs j
    set state = 'running', attempts = j.attempts + 1, locked_by = worker_id, locked_at = now(),
        last_worker = worker_id, updated_at = now()
    where j.id = v_job.id and j.state = 'waiting';
    select * into v_result from worker.jobs where id = v_job.id;
    return v_result;
end;
$$;

comment on function worker.add_job_for_worker is
    'Creates a job already claimed by worker_id (a DAG run triggered by hand). '
    'Example: select worker.add_job_for_worker(''send_email'', ''{"to": "a@example.com", "template": "welcome"}'', ''send_email/manual__1'')';

create function worker.fail_job(job_id bigint, worker_id text, error text, retry boolean default true)
returns worker.jobs
language plpgsql as $$
declare
    v_job worker._jobs;
    v_result worker.jobs;
begin
    -- With retry => false (a bad payload: retrying cannot fix it) the job fails for good at once.
    update worker._jobs j
    set state = case when retry and j.attempts < j.max_attempts then 'waiting' else 'failed' end,
        last_error = error,
        run_at = case
            when retry and j.attempts < j.max_attempts
                then greatest(now(), j.run_at) + exp(least(j.attempts, 10)) * interval '1 second'
            else j.run_at
        end,
        locked_by = null, locked_at = null, updated_at = now()
    where j.id = job_id and j.state = 'running' and j.locked_by = worker_id
    returning * into v_job;
    if v_job.id is null then
        -- Not this worker's job (any more): someone force-unlocked or completed it meanwhile.
        return null;
    end if;
    if v_job.state = 'waiting' then
        perform worker._notify(array[v_job.identifier]);
    end if;
    if v_job.queue_name is not null then
        perform worker._notify_queues(array[v_job.queue_name]);
    end if;
    select * into v_result from worker.jobs where id = v_job.id;
    return v_result;
end;
$$;

comment on function worker.fail_job is
    'Records a failed attempt: the job retries after exp(min(attempts, 10)) seconds, or fails for good '
    '(no attempts left, or retry => false). '
    'Example: select worker.fail_job(7, ''worker-1'', ''SMTP server unreachable'')';

insert into worker.migrations (name) values ('0001_initial');
