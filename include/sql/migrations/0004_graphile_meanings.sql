-- graphile-worker 0.18's meanings where ours differed in which jobs run, found by running both side
-- by side (tests/sql/test_graphile_parity.py):
--
-- 1. A named queue runs one job at a time, but not strictly in order: a claimer takes the first job
--    of a free queue that it may take (its identifiers, no forbidden flag). Ours took only a queue's
--    head, so a head no consumer takes (another identifier, a forbidden flag) stalled its queue for
--    good.
-- 2. A job that has failed for good has no attempts left (attempts = max_attempts), however it got
--    there: failed by hand, by retry => false, or out of attempts. So reschedule_jobs without
--    attempts leaves it failed, as in graphile-worker, and existing failed jobs are brought in line.
-- 3. A new job with the key of a failed (or running) job: that job keeps its state and its error,
--    gives up its key and has no attempts left; the new job gets the key. Ours revived the failed
--    job, merging payloads and dropping its error.
-- 4. preserve_run_at keeps run_at only while the job has not been tried (attempts = 0).
-- 5. Every failed attempt moves run_at, the last one too.
-- 6. A running job that loses its key (add_job or remove_job) keeps max_attempts and has attempts
--    raised to it, as in graphile-worker; ours lowered max_attempts, which changed what a later
--    reschedule_jobs(attempts => n) did.
-- Also: flags are kept as a set (sorted, no repeats, NULL when empty), as graphile-worker's jsonb;
-- and when a job leaves a named queue every identifier waiting in it is woken, not only the head's.
--
-- CREATE OR REPLACE keeps each function's grants but not SECURITY DEFINER or search_path
-- (0002_roles): both are restated.

update worker._jobs set attempts = max_attempts where state = 'failed' and attempts < max_attempts;
alter table worker._jobs
    add constraint _jobs_failed_has_no_attempts_left check (state <> 'failed' or attempts >= max_attempts);

-- Waking a freed queue's consumers reads the distinct identifiers waiting in it; the claim no longer
-- looks for a queue's head.
drop index worker._jobs_queue_waiting_idx;
create index _jobs_queue_identifier_idx on worker._jobs (queue_name, identifier)
    where state = 'waiting' and queue_name is not null;

-- Every identifier with a job waiting in these named queues: when a job leaves them, each may now
-- run one. One index probe per distinct identifier, however many jobs wait.
create function worker._waiting_in_queues(queue_names text[]) returns text[]
language sql stable
security definer set search_path = pg_catalog, worker, pg_temp
as $$
    select array(
        select waiting.identifier
        from unnest(queue_names) q(queue_name)
        cross join lateral (
            with recursive found(identifier) as (
                (select j.identifier from worker._jobs j
                 where j.state = 'waiting' and j.queue_name = q.queue_name
                 order by j.identifier limit 1)
                union all
                select (select j.identifier from worker._jobs j
                        where j.state = 'waiting' and j.queue_name = q.queue_name
                          and j.identifier > found.identifier
                        order by j.identifier limit 1)
                from found where found.identifier is not null
            )
            select found.identifier from found where found.identifier is not null
        ) waiting
    );
$$;

create or replace function worker._notify_queues(queue_names text[]) returns void
language sql
security definer set search_path = pg_catalog, worker, pg_temp
as $$
    select worker._notify(worker._waiting_in_queues(queue_names));
$$;

-- As in 0001, with one notification for the released jobs and their queues together (two different
-- payloads would each be sent).
create or replace function worker.force_unlock_workers(worker_ids text[], reason text default null) returns void
language plpgsql
security definer set search_path = pg_catalog, worker, pg_temp
as $$
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
    perform worker._notify(v_identifiers || worker._waiting_in_queues(v_queues));
end;
$$;

create or replace function worker._add_job(
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
language plpgsql
security definer set search_path = pg_catalog, worker, pg_temp
as $$
declare
    v_job worker._jobs;
    v_payload jsonb := coalesce(p_payload, '{}'::jsonb);
    v_mode text := coalesce(p_job_key_mode, 'replace');
    v_flags text[] := nullif(array(select distinct f from unnest(p_flags) f order by f), '{}');
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
                p_job_key, coalesce(p_priority, 0), v_flags)
        on conflict (job_key) where job_key is not null and state <> 'completed' do nothing
        returning * into v_job;
        if v_job.id is null then
            select * into v_job from worker._jobs j
            where j.job_key = p_job_key and j.state <> 'completed';
        end if;
        return v_job;
    end if;

    if p_job_key is not null then
        loop
            -- A running job with this key works from an out-of-date view of the world, and a failed
            -- one failed for its own reasons: each stays as it is, without its key and with no
            -- attempts left, and the key goes to a job of its own.
            update worker._jobs j
            set job_key = null, attempts = j.max_attempts, updated_at = now()
            where j.job_key = p_job_key and j.state in ('running', 'failed');
            -- Debounce (replace) or throttle (preserve_run_at): the waiting job with this key is
            -- overwritten and runs from its first attempt.
            insert into worker._jobs as j
                (identifier, payload, queue_name, run_at, max_attempts, job_key, priority, flags)
            values (p_identifier, v_payload, p_queue_name, coalesce(p_run_at, now()),
                    coalesce(p_max_attempts, 25), p_job_key, coalesce(p_priority, 0), v_flags)
            on conflict (job_key) where job_key is not null and state <> 'completed' do update set
                identifier = excluded.identifier,
                payload = case
                    when jsonb_typeof(j.payload) = 'array' and jsonb_typeof(excluded.payload) = 'array'
                        then j.payload || excluded.payload
                    else excluded.payload
                end,
                queue_name = excluded.queue_name,
                -- A job already tried waits for a retry: its run_at is a back-off, not a schedule.
                run_at = case
                    when v_mode = 'preserve_run_at' and j.attempts = 0 then j.run_at
                    else excluded.run_at
                end,
                max_attempts = excluded.max_attempts,
                priority = excluded.priority,
                flags = excluded.flags,
                attempts = 0,
                last_error = null,
                updated_at = now()
            where j.state = 'waiting'
            returning * into v_job;
            -- Nothing returned: the waiting job with this key was claimed since the update above.
            exit when v_job.id is not null;
        end loop;
        return v_job;
    end if;

    insert into worker._jobs
        (identifier, payload, queue_name, run_at, max_attempts, job_key, priority, flags)
    values (p_identifier, v_payload, p_queue_name, coalesce(p_run_at, now()), coalesce(p_max_attempts, 25),
            p_job_key, coalesce(p_priority, 0), v_flags)
    returning * into v_job;
    return v_job;
end;
$$;

create or replace function worker.remove_job(job_key text) returns worker.jobs
language plpgsql
security definer set search_path = pg_catalog, worker, pg_temp
as $$
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
    -- A running job cannot be taken back: it loses its key and has no attempts left.
    update worker._jobs j
    set job_key = null, attempts = j.max_attempts, updated_at = now()
    where j.job_key = remove_job.job_key and j.state = 'running'
    returning * into v_job;
    return (select jv from worker.jobs jv where jv.id = v_job.id);
end;
$$;

create or replace function worker.remove_jobs(job_ids bigint[]) returns setof worker.jobs
language plpgsql
security definer set search_path = pg_catalog, worker, pg_temp
as $$
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
    set job_key = null, attempts = j.max_attempts, updated_at = now()
    where j.id = any(job_ids) and j.state = 'running';
end;
$$;

create or replace function worker.permanently_fail_jobs(job_ids bigint[], reason text default null)
returns setof worker.jobs
language plpgsql
security definer set search_path = pg_catalog, worker, pg_temp
as $$
declare
    v_ids bigint[];
begin
    -- A running job is left to its worker, as in graphile-worker.
    with failed as (
        update worker._jobs j
        set state = 'failed', attempts = j.max_attempts,
            last_error = coalesce(reason, 'Manually marked as failed'), updated_at = now()
        where j.id = any(job_ids) and j.state in ('waiting', 'failed')
        returning j.id
    )
    select array_agg(id) into v_ids from failed;
    return query select * from worker.jobs where id = any(v_ids) order by id;
end;
$$;

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
    -- One notification: the retry's identifier and those waiting in the queue it frees.
    perform worker._notify(
        case when v_job.state = 'waiting' then array[v_job.identifier] end
        || worker._waiting_in_queues(array_remove(array[v_job.queue_name], null)));
    select * into v_result from worker.jobs where id = v_job.id;
    return v_result;
end;
$$;

create or replace function worker.claim_jobs(
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
security definer set search_path = pg_catalog, worker, pg_temp
as $$
declare
    v_candidates refcursor;
    v_row record;
    v_ids bigint[] := '{}';
    -- Named queues this call takes no (more) job from: one it took a job from, or one found busy.
    v_closed_queues text[] := '{}';
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
            select j.id, j.queue_name
            from worker._jobs j
            where j.state = 'waiting' and j.identifier = identifiers[1] and j.run_at <= now()
              and (forbidden_flags is null or j.flags is null or not j.flags && forbidden_flags)
            order by j.priority, j.run_at, j.id;
    else
        -- PostgreSQL cannot merge ordered index scans of several identifiers (it would sort every
        -- waiting job), so each identifier contributes its first rows, bounded; a call may then
        -- return fewer jobs than could run, and the next call takes them.
        open v_candidates for
            select c.id, c.queue_name
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
        continue when not exists (
            select 1 from worker._jobs j
            where j.id = v_row.id and j.state = 'waiting'
            for update skip locked);
        v_ids := v_ids || v_row.id;
        if v_row.queue_name is not null then
            v_closed_queues := v_closed_queues || v_row.queue_name;
        end if;
    end loop;
    close v_candidates;

    update worker._jobs j
    set state = 'running', attempts = j.attempts + 1, locked_by = worker_id, locked_at = now(),
        last_worker = worker_id, updated_at = now()
    where j.id = any(v_ids);
    return query select * from worker.jobs where id = any(v_ids) order by priority, run_at, id;
end;
$$;

insert into worker.migrations (name) values ('0004_graphile_meanings');
