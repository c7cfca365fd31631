-- Every attempt of a job, cancelling one that runs, and the queue minute by minute (issue 27).
--
-- A job's row kept when its last attempt started only while it ran (locked_at, cleared at its end,
-- as graphile-worker's): `started_at` keeps it, so a completed job's last attempt has its start and
-- its pickup latency (started_at - run_at). A failed attempt's row keeps its start too, and a DAG
-- run's attempts are found by the run (its Jobs tab lists every job it attempted, not only those it
-- worked on last). Jobs released by force_unlock_workers (maintenance, a dead run) keep that
-- attempt too: before, only the job's last_error said it.
--
-- Cancelling: worker.cancel_jobs removes the waiting and failed jobs given (remove_jobs) and asks
-- the runs holding the running ones to stop them (cancel_requested_by). The run sees the request
-- (jobqueue/cancelling.py), stops the handler and fails the job for good, "cancelled by <who>";
-- a run that died meanwhile leaves it to force_unlock_workers, which fails it the same way. A
-- request belongs to the attempt it was made in: the next claim clears it.
--
-- The queue minute by minute, for the charts of the job queue's page: worker._job_minutes counts,
-- per identifier and minute, the jobs completed (with a histogram of their pickup latency,
-- started_at - run_at), failed for good and failed to be retried, written by the functions that
-- record those outcomes, in their transaction; and the most jobs seen due in the minute, sampled by
-- the job types' triggers. A chart of a day reads 1,440 rows of an identifier, however many jobs
-- are kept (10,000,000 completed in a day would be read for seconds). Concurrent runs of one
-- identifier write to `slot` = their backend's pid mod 8: one row each would make their commits
-- wait for one another; every five minutes the maintenance DAG merges a closed minute's rows into
-- one (slot 8), and deletes the minutes older than two days.

alter table worker._jobs
    add column started_at timestamptz,
    add column cancel_requested_by text,
    add column cancel_requested_at timestamptz;

alter table worker._job_attempts add column started_at timestamptz;
-- A cancelled attempt fails its job for good, but it is no failure of its run (queries.sql:
-- run_job_counts).
alter table worker._job_attempts drop constraint _job_attempts_outcome_check;
alter table worker._job_attempts add constraint _job_attempts_outcome_check
    check (outcome in ('retry', 'failed', 'cancelled'));

create table worker._job_minutes (
    identifier text not null,
    minute timestamptz not null,
    slot smallint not null,  -- 0-7: the writer's backend pid mod 8; -1: the triggers' sample; 8: merged
    completed integer not null default 0,
    failed integer not null default 0,  -- for good
    retried integer not null default 0,  -- failed attempts to be retried
    latency integer[],  -- completed jobs per bucket of pickup latency (worker._latency_edges)
    waiting integer,  -- the most jobs seen due in the minute
    primary key (identifier, minute, slot)
);

revoke all on worker._job_minutes from public;

-- The buckets of pickup latency, in seconds: bucket 1 is under the first edge, the last over the last.
create function worker._latency_edges() returns double precision[]
language sql immutable security definer set search_path = pg_catalog, worker, pg_temp
as $$ select array[0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800]::double precision[] $$;

create function worker._latency_histogram(latencies double precision[]) returns integer[]
language sql immutable security definer set search_path = pg_catalog, worker, pg_temp
as $$
    select array_agg(coalesce(c.n, 0)::integer order by b.bucket)
    from generate_series(1, cardinality(worker._latency_edges()) + 1) b(bucket)
    left join (
        select width_bucket(greatest(x, 0), worker._latency_edges()) + 1 as bucket, count(*) as n
        from unnest(latencies) x where x is not null group by 1
    ) c on c.bucket = b.bucket
$$;

-- Two latency histograms added bucket by bucket (either may be null: no completion).
create function worker._add_histograms(a integer[], b integer[]) returns integer[]
language sql immutable security definer set search_path = pg_catalog, worker, pg_temp
as $$
    select case
        when a is null then b
        when b is null then a
        else (select array_agg(x + y order by i) from unnest(a, b) with ordinality as t(x, y, i))
    end
$$;

-- Adds outcomes to the minute's counts of an identifier (the caller's slot).
create function worker._count_minute(
    p_identifier text, p_completed integer, p_failed integer, p_retried integer, p_latency integer[]
) returns void
language sql security definer set search_path = pg_catalog, worker, pg_temp
as $$
    insert into worker._job_minutes as m (identifier, minute, slot, completed, failed, retried, latency)
    values (p_identifier, date_trunc('minute', now()), pg_backend_pid() % 8, p_completed, p_failed,
            p_retried, p_latency)
    on conflict (identifier, minute, slot) do update set
        completed = m.completed + excluded.completed,
        failed = m.failed + excluded.failed,
        retried = m.retried + excluded.retried,
        latency = worker._add_histograms(m.latency, excluded.latency)
$$;

-- Adds outcomes to their minutes: one per job, its identifier, 'completed', 'failed' or 'retried',
-- and a completed job's pickup latency in seconds.
create function worker._count_outcomes(
    identifiers text[], outcomes text[], latencies double precision[]
) returns void
language plpgsql security definer set search_path = pg_catalog, worker, pg_temp
as $$
begin
    perform worker._count_minute(
        t.identifier,
        (count(*) filter (where t.outcome = 'completed'))::integer,
        (count(*) filter (where t.outcome = 'failed'))::integer,
        (count(*) filter (where t.outcome = 'retried'))::integer,
        case when bool_or(t.outcome = 'completed') then
            worker._latency_histogram(array_agg(t.latency) filter (where t.outcome = 'completed'))
        end)
    from unnest(identifiers, outcomes, latencies) as t(identifier, outcome, latency)
    group by t.identifier;
end;
$$;

create index _job_attempts_worker_idx on worker._job_attempts (worker_id);

-- As in 0011, except that a claim records when the attempt started and clears an earlier attempt's
-- cancel request.
create or replace function worker.claim_jobs(
    identifiers text[],
    worker_id text,
    max_jobs integer default 1,
    forbidden_flags text[] default null
) returns setof worker.jobs
language plpgsql
set jit = off
set cursor_tuple_fraction = 0.001
set enable_seqscan = off
security definer set search_path = pg_catalog, worker, pg_temp
as $$
declare
    v_candidates refcursor;
    v_row record;
    v_ids bigint[] := '{}';
    -- Named queues this call takes no (more) job from: paused, one it took a job from, one found busy.
    v_closed_queues text[];
    -- What each rate-limited identifier's bucket lets this call take: {"identifier": jobs}.
    v_allowed jsonb;
    v_left integer;
    v_state text;
begin
    perform worker._check_name('worker_id', worker_id, 'WK008');
    if max_jobs is null or max_jobs < 1 then
        raise exception 'max_jobs must be at least 1, got %', max_jobs using errcode = 'WK008';
    end if;
    identifiers := array(
        select i from unnest(identifiers) i
        where not exists (select 1 from worker._paused p where p.kind = 'identifier' and p.name = i));
    if cardinality(identifiers) = 0 then
        return;
    end if;
    v_closed_queues := array(select p.name from worker._paused p where p.kind = 'queue');
    -- Claimers of a limited identifier queue here, one at a time, until commit: each sees what the
    -- one before took.
    perform 1 from worker._rate_limits r
    where r.identifier = any(identifiers) and r.per_second is not null
    order by r.identifier
    for update;
    select jsonb_object_agg(r.identifier, floor(worker._tokens_now(r))::integer)
    into v_allowed
    from worker._rate_limits r
    where r.identifier = any(identifiers) and r.per_second is not null;
    if v_allowed is not null then
        identifiers := array(
            select i from unnest(identifiers) i where coalesce((v_allowed ->> i)::integer, 1) > 0);
        if cardinality(identifiers) = 0 then
            return;
        end if;
    end if;
    -- The scan reads without locking: each row is locked only once accepted, so rows passed over
    -- (jobs of busy queues) stay free for other claimers.
    if cardinality(identifiers) = 1 then
        -- Equality on the identifier lets the claim index deliver rows in claim order.
        open v_candidates for
            select j.id, j.identifier, j.queue_name
            from worker._jobs j
            where j.state = 'waiting' and j.identifier = identifiers[1] and j.run_at <= now()
              and (forbidden_flags is null or j.flags is null or not j.flags && forbidden_flags)
            order by j.priority, j.run_at, j.id;
    else
        -- PostgreSQL cannot merge ordered index scans of several identifiers (it would sort every
        -- waiting job), so each identifier contributes its first rows, bounded; a call may then
        -- return fewer jobs than could run, and the next call takes them.
        open v_candidates for
            select c.id, c.identifier, c.queue_name
            from unnest(identifiers) i(identifier)
            cross join lateral (
                select j.id, j.identifier, j.queue_name, j.priority, j.run_at
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
        v_left := (v_allowed ->> v_row.identifier)::integer;
        continue when v_left is not null and v_left <= 0;
        if v_row.queue_name is not null then
            continue when v_row.queue_name = any(v_closed_queues);
            -- Serialises claimers on this queue until commit; a claimer that cannot have the lock
            -- leaves the queue to the one that has it.
            if not pg_try_advisory_xact_lock(hashtext('worker.queue'), hashtext(v_row.queue_name)) then
                v_closed_queues := v_closed_queues || v_row.queue_name;
                continue;
            end if;
            -- A statement of its own, so its snapshot, taken under the lock, sees a claim committed
            -- meanwhile.
            if exists (
                select 1 from worker._jobs r
                where r.queue_name = v_row.queue_name and r.state = 'running'
            ) then
                v_closed_queues := v_closed_queues || v_row.queue_name;
                continue;
            end if;
        end if;
        -- Another transaction may hold the row, or have claimed it since the scan began; then the
        -- queue's next job may still run.
        -- By its key alone: with the state in the condition the planner may walk a partial index
        -- of waiting jobs instead (cheaper, as a quiet hour's statistics tell it), once per row
        -- of the batch. The state is checked on the row as locked, its newest version.
        v_state := null;
        select j.state into v_state from worker._jobs j where j.id = v_row.id for update skip locked;
        continue when v_state is distinct from 'waiting';
        v_ids := v_ids || v_row.id;
        if v_left is not null then
            v_allowed := jsonb_set(v_allowed, array[v_row.identifier], to_jsonb(v_left - 1));
        end if;
        if v_row.queue_name is not null then
            v_closed_queues := v_closed_queues || v_row.queue_name;
        end if;
    end loop;
    close v_candidates;

    update worker._jobs j
    set state = 'running', attempts = j.attempts + 1, locked_by = worker_id, locked_at = now(),
        last_worker = worker_id, updated_at = now(), started_at = now(),
        cancel_requested_by = null, cancel_requested_at = null
    where j.id = any(v_ids);
    if v_allowed is not null then
        update worker._rate_limits r
        set tokens = worker._tokens_now(r) - taken.jobs, refilled_at = now()
        from (select j.identifier, count(*) as jobs
              from worker._jobs j where j.id = any(v_ids) group by j.identifier) taken
        where r.identifier = taken.identifier;
    end if;
    return query select * from worker.jobs where id = any(v_ids) order by priority, run_at, id;
end;
$$;

-- As in 0007, except that the attempt's start is recorded.
create or replace function worker.add_job_for_worker(
    identifier text,
    payload jsonb,
    worker_id text,
    job_key text default null,
    max_attempts integer default null
) returns worker.jobs
language plpgsql
security definer set search_path = pg_catalog, worker, pg_temp
as $$
declare
    v_job worker._jobs;
    v_result worker.jobs;
begin
    perform worker._check_name('worker_id', worker_id, 'WK008');
    v_job := worker._add_job(identifier, payload, null, null, max_attempts, job_key, null, null,
                             'unsafe_dedupe');
    update worker._jobs j
    set state = 'running', attempts = j.attempts + 1, locked_by = worker_id, locked_at = now(),
        last_worker = worker_id, updated_at = now(), started_at = now()
    where j.id = v_job.id and j.state = 'waiting' and not worker._is_paused(j.identifier, null);
    select * into v_result from worker.jobs where id = v_job.id;
    return v_result;
end;
$$;

-- As in 0004, except that each released attempt is kept in worker._job_attempts (its worker, its
-- start, the reason) and a job whose cancellation was asked fails for good, as cancelled.
create or replace function worker.force_unlock_workers(worker_ids text[], reason text default null)
returns void
language plpgsql
set enable_seqscan = off
security definer set search_path = pg_catalog, worker, pg_temp
as $$
declare
    v_identifiers text[];
    v_queues text[];
    v_released text[];
    v_outcomes text[];
begin
    with held as (
        select j.id, j.locked_by, j.started_at, j.attempts, j.max_attempts, j.cancel_requested_by
        from worker._jobs j
        where j.state = 'running' and j.locked_by = any(worker_ids)
        for update
    ), released as (
        update worker._jobs j
        set state = case
                when h.cancel_requested_by is null and j.attempts < j.max_attempts then 'waiting'
                else 'failed'
            end,
            attempts = case when h.cancel_requested_by is null then j.attempts else j.max_attempts end,
            last_error = case
                when h.cancel_requested_by is not null then 'cancelled by ' || h.cancel_requested_by
                when j.attempts < j.max_attempts then coalesce(reason, j.last_error)
                else coalesce(reason || '; that was the last attempt',
                              'Worker ' || j.locked_by || ' was force-unlocked during the last attempt')
            end,
            locked_by = null, locked_at = null, updated_at = now()
        from held h
        where j.id = h.id
        returning j.id, j.identifier, j.queue_name, j.state, j.last_error, h.locked_by, h.started_at,
                  h.attempts, h.cancel_requested_by is not null as cancelled
    ), kept as (
        insert into worker._job_attempts (job_id, attempt, outcome, error, worker_id, started_at)
        select r.id, r.attempts,
               case when r.state = 'waiting' then 'retry' when r.cancelled then 'cancelled' else 'failed' end,
               coalesce(r.last_error, 'released: its worker ' || r.locked_by || ' was force-unlocked'),
               r.locked_by, r.started_at
        from released r
    )
    select array_agg(identifier) filter (where state = 'waiting'),
           array_agg(distinct queue_name) filter (where queue_name is not null),
           array_agg(identifier), array_agg(case when state = 'waiting' then 'retried' else 'failed' end)
    into v_identifiers, v_queues, v_released, v_outcomes
    from released;
    perform worker._count_outcomes(v_released, v_outcomes, null);
    perform worker._notify(v_identifiers || worker._waiting_in_queues(v_queues));
end;
$$;

create function worker.cancel_jobs(job_ids bigint[], actor text default null)
returns setof worker.jobs
language plpgsql
set enable_seqscan = off
security definer set search_path = pg_catalog, worker, pg_temp
as $$
begin
    -- The running ones: their runs are asked to stop them (they see it within a second or two).
    update worker._jobs j
    set cancel_requested_by = coalesce(actor, current_user::text), cancel_requested_at = now()
    where j.id = any(job_ids) and j.state = 'running' and j.cancel_requested_by is null;
    return query select * from worker.jobs where id = any(job_ids) and status = 'running' order by id;
    -- The waiting and failed ones are removed, as remove_jobs does.
    return query
    with removed as (
        delete from worker._jobs j where j.id = any(job_ids) and j.state in ('waiting', 'failed')
        returning j.*
    )
    select r.id, r.identifier, r.payload, r.queue_name, r.priority, r.run_at, r.attempts, r.max_attempts,
           r.last_error, r.job_key, r.flags, 'removed'::text, r.locked_by, r.locked_at, r.created_at,
           now(), r.completed_at, r.last_worker, r.result
    from removed r order by r.id;
end;
$$;

comment on function worker.cancel_jobs is
    'Cancels jobs by id: a running job is stopped by its run and fails for good ("cancelled by '
    '<actor>"), waiting and failed ones are removed; completed ones stay. Example: '
    'select * from worker.cancel_jobs(array[7], ''ana'')';

-- As in 0011, except that the completions are counted in their minute, with their pickup latency.
create or replace function worker.complete_jobs_each(results jsonb, forget_steps boolean)
returns integer
language plpgsql
set enable_seqscan = off
security definer set search_path = pg_catalog, worker, pg_temp
as $$
declare
    v_ids bigint[];
    v_queues text[];
    v_count integer;
    v_identifiers text[];
    v_latencies double precision[];
begin
    if jsonb_typeof(results) is distinct from 'object' then
        raise exception 'complete_jobs_each: results must be an object {"<job id>": result}, got %',
            coalesce(jsonb_typeof(results), 'null') using errcode = 'WK008';
    end if;
    v_ids := array(select key::bigint from jsonb_object_keys(results) as k(key));
    with done as (
        update worker._jobs j
        set state = 'completed', completed_at = now(), updated_at = now(),
            locked_by = null, locked_at = null,
            result = coalesce(nullif(results -> j.id::text, 'null'::jsonb), j.result)
        where j.id = any(v_ids) and j.state <> 'completed'
        returning j.id, j.identifier, j.queue_name,
                  extract(epoch from j.started_at - j.run_at)::double precision as latency
    )
    select count(*), array_agg(distinct queue_name) filter (where queue_name is not null),
           array_agg(identifier), array_agg(latency)
    into v_count, v_queues, v_identifiers, v_latencies
    from done;
    perform worker._count_outcomes(v_identifiers, array_fill('completed'::text, array[v_count]), v_latencies);
    perform worker._notify_queues(v_queues);
    if forget_steps then
        delete from worker._job_steps where job_id = any(v_ids);
    end if;
    return v_count;
end;
$$;

-- As in 0001 (with 0011's setting), except that the completions are counted in their minute.
create or replace function worker.complete_jobs(job_ids bigint[], result jsonb default null)
returns setof worker.jobs
language plpgsql
set enable_seqscan = off
security definer set search_path = pg_catalog, worker, pg_temp
as $$
declare
    v_queues text[];
    v_ids bigint[];
    v_identifiers text[];
    v_latencies double precision[];
begin
    with done as (
        update worker._jobs j
        set state = 'completed', completed_at = now(), updated_at = now(),
            locked_by = null, locked_at = null, result = coalesce(complete_jobs.result, j.result)
        where j.id = any(job_ids) and j.state <> 'completed'
        returning j.id, j.identifier, j.queue_name,
                  extract(epoch from j.started_at - j.run_at)::double precision as latency
    )
    select array_agg(id), array_agg(distinct queue_name) filter (where queue_name is not null),
           array_agg(identifier), array_agg(latency)
    into v_ids, v_queues, v_identifiers, v_latencies
    from done;
    perform worker._count_outcomes(
        v_identifiers, array_fill('completed'::text, array[coalesce(cardinality(v_ids), 0)]), v_latencies);
    perform worker._notify_queues(v_queues);
    return query select * from worker.jobs where id = any(v_ids) order by id;
end;
$$;

-- As in 0004, except that the failure is counted in its minute.
create or replace function worker.fail_job(job_id bigint, worker_id text, error text, retry boolean default true)
returns worker.jobs
language plpgsql
security definer set search_path = pg_catalog, worker, pg_temp
as $$
declare
    v_job worker._jobs;
    v_result worker.jobs;
begin
    -- With retry => false (a bad payload: retrying cannot fix it) the job fails for good at once,
    -- its attempts used up as by permanently_fail_jobs. Every failed attempt moves run_at, the last
    -- one too, so a job given more attempts later waits out its back-off.
    update worker._jobs j
    set state = case when retry and j.attempts < j.max_attempts then 'waiting' else 'failed' end,
        attempts = case when retry then j.attempts else j.max_attempts end,
        last_error = error,
        run_at = greatest(now(), j.run_at) + exp(least(j.attempts, 10)) * interval '1 second',
        locked_by = null, locked_at = null, updated_at = now()
    where j.id = job_id and j.state = 'running' and j.locked_by = worker_id
    returning * into v_job;
    if v_job.id is null then
        -- Not this worker's job (any more): someone force-unlocked or completed it meanwhile.
        return null;
    end if;
    perform worker._count_minute(v_job.identifier, 0, (v_job.state = 'failed')::integer,
                                 (v_job.state = 'waiting')::integer, null);
    -- One notification: the retry's identifier and those waiting in the queue it frees.
    perform worker._notify(
        case when v_job.state = 'waiting' then array[v_job.identifier] end
        || worker._waiting_in_queues(array_remove(array[v_job.queue_name], null)));
    select * into v_result from worker.jobs where id = v_job.id;
    return v_result;
end;
$$;

-- The triggers' sample: the jobs due now of each identifier given, kept as the minute's most.
create function worker.sample_waiting(identifiers text[]) returns void
language sql
security definer set search_path = pg_catalog, worker, pg_temp
as $$
    insert into worker._job_minutes as m (identifier, minute, slot, waiting)
    select i.identifier, date_trunc('minute', now()), -1,
           (select count(*) from worker._jobs j
            where j.state = 'waiting' and j.identifier = i.identifier and j.run_at <= now())
    from unnest(identifiers) i(identifier)
    on conflict (identifier, minute, slot) do update set waiting = greatest(m.waiting, excluded.waiting)
$$;

-- The identifiers with jobs waiting, by a loose index scan: one probe of the index of waiting jobs
-- per identifier, not one row per job (the unconsumed identifiers of maintenance and the page, and
-- the live view, ask for them).
create function worker._waiting_identifiers() returns setof text
language sql stable security definer set search_path = pg_catalog, worker, pg_temp
as $$
    with recursive waiting(identifier) as (
        (select identifier from worker._jobs where state = 'waiting' order by identifier limit 1)
        union all
        select (select j.identifier from worker._jobs j
                where j.state = 'waiting' and j.identifier > w.identifier order by j.identifier limit 1)
        from waiting w where w.identifier is not null
    )
    select identifier from waiting where identifier is not null
$$;

revoke execute on all functions in schema worker from public;
do $$
begin
    if exists (select from pg_roles where rolname = 'worker_admin') then
        grant execute on function worker.cancel_jobs(bigint[], text) to worker_admin;
    end if;
end;
$$;

insert into worker.migrations (name) values ('0013_attempts_cancels_and_minutes');
