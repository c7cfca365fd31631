-- Plans that stay linear whatever the statistics say.
--
-- A quiet hour leaves autovacuum's statistics saying the job tables hold a few completed jobs and no
-- step values; a burst then brings thousands, and plans chosen for the few turn quadratic. Measured
-- on a stack after a trickle of 40 e-mails and a pause (2026-12-06): the burst ran at 909 jobs/s
-- against 2,043 on a fresh stack, PostgreSQL busy most of it. For 5,000 jobs under statistics taken
-- at 43 completed rows: completing them 6.1 s (the UPDATE nested-looped a whole-table scan, thought
-- to find one row, over the JSON of results), reading what a step handed on 0.9 s (two index scans
-- thought to find one row each, nested over one another), claiming them 1.0-1.3 s, fresh or stale
-- (each row's lock walked the partial index of waiting jobs to find its id). Each is now driven by
-- the jobs' keys, which no estimate turns into a scan:
--
-- claim_jobs locks a row by its key alone and checks its state on the locked row; complete_jobs_each
-- finds the jobs by `id = any(ids)`. The functions that take a list of job ids do not scan the
-- table: a scan with `id = any(<array parameter>)` compares every row with every id (a plan cached
-- while the table was small does that to a large one), and each of their statements is an index
-- lookup (the claim's candidates come from the claim index).
-- The step values of a run are read per held job by key (queries.sql: step_values).

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
        last_worker = worker_id, updated_at = now()
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
        returning j.id, j.queue_name
    )
    select count(*), array_agg(distinct queue_name) filter (where queue_name is not null)
    into v_count, v_queues
    from done;
    perform worker._notify_queues(v_queues);
    if forget_steps then
        delete from worker._job_steps where job_id = any(v_ids);
    end if;
    return v_count;
end;
$$;

alter function worker.complete_jobs(bigint[], jsonb) set enable_seqscan = off;
alter function worker.permanently_fail_jobs(bigint[], text) set enable_seqscan = off;
alter function worker.reschedule_jobs(bigint[], timestamptz, integer, integer, integer) set enable_seqscan = off;
alter function worker.remove_jobs(bigint[]) set enable_seqscan = off;

insert into worker.migrations (name) values ('0011_plans_whatever_the_statistics');
