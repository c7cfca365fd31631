-- Pausing identifiers and queues, and rate limits per identifier, held in the job database so that
-- every run, task and host shares them.
--
-- A paused identifier's or queue's jobs keep waiting: claim_jobs passes them over, the pickup
-- trigger does not count them (queries.sql, waiting_summary), and resuming wakes their consumers.
-- A rate limit is a token bucket per identifier: it fills at the rate, holds one second's worth of
-- jobs (at least one), and each job claimed takes a token, so in any T seconds at most
-- burst + rate * T jobs of it are claimed, however many runs claim at once. The bucket's row is
-- locked by each claim of its identifier, which is what makes the budget one across hosts.
--
-- Functions granted to worker_admin (created here), not to worker_app: pausing and rate limits are
-- an operator's decisions. CREATE OR REPLACE keeps grants but not SECURITY DEFINER or search_path
-- (0002_roles): both are restated.

create table worker._paused (
    kind text not null check (kind in ('identifier', 'queue')),
    name text not null,
    paused_at timestamptz not null default now(),
    paused_by text not null,
    primary key (kind, name)
);

revoke all on worker._paused from public;

create view worker.paused as select kind, name, paused_at, paused_by from worker._paused;

comment on view worker.paused is 'What is paused: identifiers and queues whose jobs are not claimed.';

create table worker._rate_limits (
    identifier text primary key,
    -- The job type's rate_limit, written by its runs (declare_rate_limit).
    declared text,
    -- An operator's (set_rate_limit): wins over the declared one; 'none' lifts the limit.
    override text,
    -- The rate in force, in jobs per second; null when there is none.
    per_second double precision check (per_second > 0),
    -- The bucket: tokens as of refilled_at.
    tokens double precision not null default 0,
    refilled_at timestamptz not null default now()
);

revoke all on worker._rate_limits from public;

-- Jobs per second of a rate in Celery's notation: '10/s', '100/m', '1000/h', or a number (per
-- second). Null stays null.
create function worker._rate_per_second(rate_limit text) returns double precision
language plpgsql immutable
security definer set search_path = pg_catalog, worker, pg_temp
as $$
declare
    v_parts text[] := regexp_match(rate_limit, '^\s*([0-9]+(?:\.[0-9]+)?)\s*(?:/\s*([smh]))?\s*$');
    v_count double precision;
begin
    if rate_limit is null then
        return null;
    end if;
    if v_parts is null then
        raise exception 'rate limit % is not a number of jobs per second, minute or hour, such as '
            '10/s, 100/m or 1000/h', quote_literal(rate_limit) using errcode = 'WK009';
    end if;
    v_count := v_parts[1]::double precision;
    if v_count <= 0 then
        raise exception 'rate limit % lets no job run: pause the identifier instead (worker.pause_identifier)',
            quote_literal(rate_limit) using errcode = 'WK009';
    end if;
    return v_count / case coalesce(v_parts[2], 's') when 's' then 1 when 'm' then 60 else 3600 end;
end;
$$;

-- The bucket's size: one second's worth of jobs, at least one.
create function worker._burst(per_second double precision) returns double precision
language sql immutable
security definer set search_path = pg_catalog, worker, pg_temp
as $$ select greatest(1.0, per_second) $$;

-- The tokens a bucket holds now (null: no limit).
create function worker._tokens_now(bucket worker._rate_limits) returns double precision
language sql stable
security definer set search_path = pg_catalog, worker, pg_temp
as $$
    select least(
        worker._burst(bucket.per_second),
        bucket.tokens + extract(epoch from now() - bucket.refilled_at) * bucket.per_second
    )
$$;

-- Puts the rate in force after `declared` or `override` changed: a new bucket starts full, a
-- changed one keeps what it held (up to its new size); its consumers are woken, as a higher rate
-- may let more jobs run now.
create function worker._apply_rate(p_identifier text) returns void
language plpgsql
security definer set search_path = pg_catalog, worker, pg_temp
as $$
declare
    v_bucket worker._rate_limits;
    v_rate double precision;
begin
    select * into v_bucket from worker._rate_limits where identifier = p_identifier for update;
    v_rate := case when v_bucket.override = 'none' then null
                   else worker._rate_per_second(coalesce(v_bucket.override, v_bucket.declared)) end;
    update worker._rate_limits r
    set per_second = v_rate,
        tokens = case
            when v_rate is null then 0
            when v_bucket.per_second is null then worker._burst(v_rate)
            else least(worker._burst(v_rate), worker._tokens_now(v_bucket))
        end,
        refilled_at = now()
    where r.identifier = p_identifier;
    perform worker._notify(array[p_identifier]);
end;
$$;

create function worker.declare_rate_limit(identifier text, rate_limit text) returns void
language plpgsql
security definer set search_path = pg_catalog, worker, pg_temp
as $$
begin
    perform worker._check_name('identifier', identifier, 'WK002');
    perform worker._rate_per_second(rate_limit);
    insert into worker._rate_limits as r (identifier, declared)
    select declare_rate_limit.identifier, rate_limit
    where rate_limit is not null
    on conflict on constraint _rate_limits_pkey do update set declared = excluded.declared
    where r.declared is distinct from excluded.declared;
    if not found and rate_limit is null then
        update worker._rate_limits r set declared = null
        where r.identifier = declare_rate_limit.identifier and r.declared is not null;
    end if;
    if found then
        perform worker._apply_rate(identifier);
    end if;
end;
$$;

comment on function worker.declare_rate_limit is
    'The rate limit a job type declares (its runs call this; null: none). An operator''s '
    'set_rate_limit wins over it. Example: select worker.declare_rate_limit(''send_email'', ''10/s'')';

create function worker.set_rate_limit(identifier text, rate_limit text) returns void
language plpgsql
security definer set search_path = pg_catalog, worker, pg_temp
as $$
begin
    perform worker._check_name('identifier', identifier, 'WK002');
    if rate_limit is distinct from 'none' then
        perform worker._rate_per_second(rate_limit);
    end if;
    insert into worker._rate_limits as r (identifier, override)
    values (set_rate_limit.identifier, rate_limit)
    on conflict on constraint _rate_limits_pkey do update set override = excluded.override;
    perform worker._apply_rate(identifier);
end;
$$;

comment on function worker.set_rate_limit is
    'Sets the rate limit of an identifier at run time, over what its job type declares: ''10/s'', '
    '''100/m'', ''1000/h'', ''none'' for no limit, or null to go back to the job type''s. '
    'Example: select worker.set_rate_limit(''send_email'', ''5/s'')';

create view worker.rate_limits as
select r.identifier, r.declared, r.override,
       case when r.override = 'none' then null else coalesce(r.override, r.declared) end as rate_limit,
       r.per_second, worker._burst(r.per_second) as burst,
       floor(worker._tokens_now(r))::integer as tokens
from worker._rate_limits r;

comment on view worker.rate_limits is
    'Rate limits per identifier: declared by the job type, set by an operator, the one in force, '
    'and the jobs its bucket lets be claimed now.';

create function worker._is_paused(p_identifier text, p_queue_name text) returns boolean
language sql stable
security definer set search_path = pg_catalog, worker, pg_temp
as $$
    select exists (
        select 1 from worker._paused p
        where (p.kind = 'identifier' and p.name = p_identifier)
           or (p.kind = 'queue' and p.name = p_queue_name)
    )
$$;

create function worker._pause(p_kind text, p_name text, p_actor text) returns boolean
language plpgsql
security definer set search_path = pg_catalog, worker, pg_temp
as $$
begin
    insert into worker._paused (kind, name, paused_by)
    values (p_kind, p_name, coalesce(p_actor, session_user))
    on conflict do nothing;
    return found;
end;
$$;

create function worker._resume(p_kind text, p_name text) returns boolean
language plpgsql
security definer set search_path = pg_catalog, worker, pg_temp
as $$
begin
    delete from worker._paused where kind = p_kind and name = p_name;
    if not found then
        return false;
    end if;
    perform worker._notify(case when p_kind = 'identifier' then array[p_name]
                                else worker._waiting_in_queues(array[p_name]) end);
    return true;
end;
$$;

create function worker.pause_identifier(identifier text, actor text default null) returns boolean
language plpgsql
security definer set search_path = pg_catalog, worker, pg_temp
as $$
begin
    perform worker._check_name('identifier', identifier, 'WK002');
    return worker._pause('identifier', identifier, actor);
end;
$$;

comment on function worker.pause_identifier is
    'Stops claiming the jobs of an identifier (they keep waiting; running ones finish). True if it '
    'was not paused. Example: select worker.pause_identifier(''send_email'')';

create function worker.resume_identifier(identifier text) returns boolean
language plpgsql
security definer set search_path = pg_catalog, worker, pg_temp
as $$
begin
    perform worker._check_name('identifier', identifier, 'WK002');
    return worker._resume('identifier', identifier);
end;
$$;

comment on function worker.resume_identifier is
    'Claims the jobs of a paused identifier again, and wakes its consumers. True if it was paused. '
    'Example: select worker.resume_identifier(''send_email'')';

create function worker.pause_queue(queue_name text, actor text default null) returns boolean
language plpgsql
security definer set search_path = pg_catalog, worker, pg_temp
as $$
begin
    perform worker._check_name('queue_name', queue_name, 'WK003');
    return worker._pause('queue', queue_name, actor);
end;
$$;

comment on function worker.pause_queue is
    'Stops claiming the jobs of a named queue, whatever their identifier. True if it was not '
    'paused. Example: select worker.pause_queue(''user:42'')';

create function worker.resume_queue(queue_name text) returns boolean
language plpgsql
security definer set search_path = pg_catalog, worker, pg_temp
as $$
begin
    perform worker._check_name('queue_name', queue_name, 'WK003');
    return worker._resume('queue', queue_name);
end;
$$;

comment on function worker.resume_queue is
    'Claims the jobs of a paused queue again, and wakes their consumers. True if it was paused. '
    'Example: select worker.resume_queue(''user:42'')';

-- As in 0004, passing over paused identifiers and queues, and taking no more jobs of a rate-limited
-- identifier than its bucket holds.
create or replace function worker.claim_jobs(
    identifiers text[],
    worker_id text,
    max_jobs integer default 1,
    forbidden_flags text[] default null
) returns setof worker.jobs
language plpgsql
set jit = off
set cursor_tuple_fraction = 0.001
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
        continue when not exists (
            select 1 from worker._jobs j
            where j.id = v_row.id and j.state = 'waiting'
            for update skip locked);
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

-- As in 0001, except that a paused identifier's job is created waiting, not held: a run triggered
-- by hand or by a cron tick enqueues its job, which waits with the others until resumed.
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
        last_worker = worker_id, updated_at = now()
    where j.id = v_job.id and j.state = 'waiting' and not worker._is_paused(j.identifier, null);
    select * into v_result from worker.jobs where id = v_job.id;
    return v_result;
end;
$$;

-- A function is PUBLIC's to execute when created: 0002's per-schema default cannot take away the
-- global one.
revoke execute on all functions in schema worker from public;

-- worker_admin: an operator's role: read the jobs, pause and resume, set rate limits, and the
-- admin functions of graphile-worker (reschedule, fail, remove, complete, unlock).
do $$
begin
    if not exists (select from pg_roles where rolname = 'worker_admin') then
        begin
            create role worker_admin nologin;
        exception when insufficient_privilege then
            raise notice 'role worker_admin not created (no CREATEROLE): create it and run the grants '
                'of migration 0007_pause_and_rate_limits';
            return;
        end;
    end if;
    grant usage on schema worker to worker_admin;
    grant select on worker.jobs, worker.paused, worker.rate_limits, worker.job_actions to worker_admin;
    grant execute on function
        worker.pause_identifier(text, text),
        worker.resume_identifier(text),
        worker.pause_queue(text, text),
        worker.resume_queue(text),
        worker.set_rate_limit(text, text),
        worker.reschedule_jobs(bigint[], timestamptz, integer, integer, integer),
        worker.permanently_fail_jobs(bigint[], text),
        worker.remove_jobs(bigint[]),
        worker.complete_jobs(bigint[], jsonb),
        worker.force_unlock_workers(text[], text)
        to worker_admin;
end
$$;

insert into worker.migrations (name) values ('0007_pause_and_rate_limits');
