-- Every query the Python package runs, each under a `-- name: NAME` header with a one-line
-- description. Parameters use the DB-API `%(name)s` style, understood by psycopg 2 and 3 alike.

-- name: add_job
-- Enqueues one job.
select * from worker.add_job(
    identifier => %(identifier)s,
    payload => %(payload)s::jsonb,
    queue_name => %(queue_name)s,
    run_at => %(run_at)s::timestamptz,
    max_attempts => %(max_attempts)s::integer,
    job_key => %(job_key)s,
    priority => %(priority)s::integer,
    flags => %(flags)s::text[],
    job_key_mode => %(job_key_mode)s
);

-- name: add_jobs
-- Enqueues many jobs in one statement.
select * from worker.add_jobs(%(specs)s::jsonb);

-- name: remove_job
-- Removes the waiting or failed job with a key.
select * from worker.remove_job(%(job_key)s) where id is not null;

-- name: complete_jobs
-- Marks jobs completed.
select * from worker.complete_jobs(%(job_ids)s::bigint[], %(result)s::jsonb);

-- name: complete_jobs_each
-- Marks jobs completed, each with its own result, in one statement; with forget_steps, drops what
-- their steps handed on. How many were completed now.
select worker.complete_jobs_each(%(results)s::jsonb, %(forget_steps)s);

-- name: permanently_fail_jobs
-- Fails waiting jobs for good.
select * from worker.permanently_fail_jobs(%(job_ids)s::bigint[], %(reason)s);

-- name: reschedule_jobs
-- Changes when and how waiting or failed jobs run.
select * from worker.reschedule_jobs(
    %(job_ids)s::bigint[],
    run_at => %(run_at)s::timestamptz,
    priority => %(priority)s::integer,
    attempts => %(attempts)s::integer,
    max_attempts => %(max_attempts)s::integer
);

-- name: force_unlock_workers
-- Releases the jobs locked by dead workers.
select worker.force_unlock_workers(%(worker_ids)s::text[], %(reason)s);

-- name: claim_jobs
-- Claims up to max_jobs runnable jobs for one worker.
select * from worker.claim_jobs(
    %(identifiers)s::text[], %(worker_id)s, %(max_jobs)s::integer, %(forbidden_flags)s::text[]
);

-- name: fail_job
-- Records a failed attempt of a job this worker holds.
select * from worker.fail_job(%(job_id)s, %(worker_id)s, %(error)s, %(retry)s) where id is not null;

-- name: record_failed_attempt
-- Keeps a failed attempt of a job (its error, traceback and task, and when it started), with the
-- failure it goes with.
insert into worker._job_attempts
    (job_id, attempt, outcome, error, traceback, worker_id, task_id, try_number, started_at)
select %(job_id)s, %(attempt)s, %(outcome)s, %(error)s, %(traceback)s, %(worker_id)s, %(task_id)s,
       %(try_number)s, j.started_at
from worker._jobs j where j.id = %(job_id)s;

-- name: job_attempts
-- A job's attempts, the latest first: those that failed (kept in _job_attempts), and its latest
-- from its row while it runs or once it completed.
select attempt, outcome, error, traceback, worker_id, task_id, try_number, started_at,
       at as ended_at, job_id
from worker._job_attempts where job_id = %(job_id)s
union all
select j.attempts, j.state, null, null, j.last_worker, null, null, j.started_at, j.completed_at, j.id
from worker._jobs j where j.id = %(job_id)s and j.state in ('running', 'completed')
order by started_at desc nulls last, ended_at desc nulls first, attempt desc;

-- name: cancel_requests
-- The requests to cancel jobs a worker holds (through the index of running jobs).
select id, cancel_requested_by from worker._jobs
where state = 'running' and locked_by = %(worker_id)s and cancel_requested_by is not null;

-- name: cancel_request
-- Who asked to cancel a job's running attempt, and when (no row: nobody).
select cancel_requested_by as by, cancel_requested_at as at from worker._jobs
where id = %(job_id)s and state = 'running' and cancel_requested_by is not null;

-- name: run_attempts
-- The attempts a DAG run made of these jobs: the failed ones it kept, and each job's latest when
-- the run made it (running or completed).
select attempt, outcome, error, traceback, worker_id, task_id, try_number, started_at,
       at as ended_at, job_id
from worker._job_attempts where worker_id = %(worker_id)s and job_id = any(%(job_ids)s::bigint[])
union all
select j.attempts, j.state, null, null, j.last_worker, null, null, j.started_at, j.completed_at, j.id
from worker._jobs j
where j.id = any(%(job_ids)s::bigint[]) and j.last_worker = %(worker_id)s
  and j.state in ('running', 'completed')
order by job_id, started_at, attempt;

-- name: get_job
-- One job by id.
select * from worker.jobs where id = %(job_id)s;

-- name: identifiers_of
-- The identifiers of the jobs with these ids (those that exist).
select distinct identifier from worker._jobs where id = any(%(job_ids)s::bigint[]) order by identifier;

-- name: applied_migrations
-- The migrations already applied, if the table exists yet.
select name from worker.migrations order by name;

-- name: migrations_table_exists
-- Whether the first migration has run.
select to_regclass('worker.migrations') is not null;

-- name: lock_migrations
-- Serialises migration runners, whichever process they are in.
select pg_advisory_lock(hashtext('worker.migrations'));

-- name: unlock_migrations
-- Lets the next migration runner in.
select pg_advisory_unlock(hashtext('worker.migrations'));

-- name: lock_sends
-- One sender per worker at a time, for this session's life (see JobManager.lock_sends).
select pg_advisory_lock(hashtextextended('worker.sends:' || %(worker_id)s, 0));

-- name: waiting_summary
-- Per identifier: whether a job of it can be claimed now (not paused, not in a paused queue or one
-- that has a running job, and its rate limit's bucket at least half full: a run then takes a few
-- jobs, not one per token), and when its next scheduled job is due or its bucket will be. A paused
-- identifier has no row. One query for all the identifiers a triggerer watches.
with watched as (
    select i.identifier, r.per_second, worker._tokens_now(r) as tokens,
           least(worker._burst(r.per_second), ceil(worker._burst(r.per_second) / 2)) as enough
    from unnest(%(identifiers)s::text[]) i(identifier)
    left join worker._rate_limits r on r.identifier = i.identifier and r.per_second is not null
    where not exists (select 1 from worker._paused p where p.kind = 'identifier' and p.name = i.identifier)
),
runnable as (
    select w.*
    from watched w
    where exists (
        select 1 from worker._jobs j
        where j.state = 'waiting' and j.identifier = w.identifier and j.run_at <= now()
          and (j.queue_name is null or (
              not exists (select 1 from worker._paused p where p.kind = 'queue' and p.name = j.queue_name)
              and not exists (
                  select 1 from worker._jobs r
                  where r.queue_name = j.queue_name and r.state = 'running')))
    )
)
select
    w.identifier,
    r.identifier is not null and (r.per_second is null or r.tokens >= r.enough) as claimable,
    least(
        (
            select j.run_at from worker._jobs j
            where j.state = 'waiting' and j.identifier = w.identifier and j.run_at > now()
            order by j.run_at
            limit 1
        ),
        case when r.per_second is not null and r.tokens < r.enough
             then now() + make_interval(secs => (r.enough - r.tokens) / r.per_second) end
    ) as next_run_at,
    now() as db_now
from watched w
left join runnable r on r.identifier = w.identifier;

-- name: cap_attempts
-- Caps the attempts of the jobs a worker holds at its job type's max_attempts (never below the attempt
-- each is on), so the row shows the cap that applies and its last attempt is its last.
update worker._jobs j
set max_attempts = greatest(%(cap)s::integer, j.attempts), updated_at = now()
where j.state = 'running' and j.locked_by = %(worker_id)s
  and j.max_attempts > greatest(%(cap)s::integer, j.attempts)
returning j.id, j.max_attempts;

-- name: held_jobs
-- The running jobs a worker holds (a retried task takes back what its first attempt claimed), of one
-- identifier when one is given (a job group's run holds several). Found through the index of running
-- jobs: the view's status is an expression no index has, and every run asks at its end (a scan of
-- 1,000,000 jobs kept: 42 ms).
select * from worker.jobs
where id = any(array(
    select id from worker._jobs
    where state = 'running' and locked_by = %(worker_id)s
      and (%(identifier)s::text is null or identifier = %(identifier)s::text)))
order by id;

-- name: waiting_and_runs
-- For sizing a run's share of a burst: jobs of one identifier a claim could take now, counted up
-- to `most` (over the claim index), and how many other workers hold jobs of it. A hint: queues
-- and flags are the claim's to weigh.
select
    (select count(*) from (
        select 1 from worker._jobs j
        where j.state = 'waiting' and j.identifier = %(identifier)s and j.run_at <= now()
        limit %(most)s
    ) as runnable) as waiting,
    (select count(distinct j.locked_by) from worker._jobs j
     where j.state = 'running' and j.identifier = %(identifier)s and j.locked_by <> %(worker_id)s
    ) as other_runs;

-- name: rate_limited_waiting
-- For a run pacing its claims (claiming.py): the identifier's limit (jobs per second) and its
-- bucket's tokens now, if it has a limit, is not paused and has a job a claim could take now.
select r.per_second, worker._tokens_now(r) as tokens
from worker._rate_limits r
where r.identifier = %(identifier)s and r.per_second is not null
  and not exists (select 1 from worker._paused p where p.kind = 'identifier' and p.name = r.identifier)
  and exists (
      select 1 from worker._jobs j
      where j.state = 'waiting' and j.identifier = r.identifier and j.run_at <= now());

-- name: notify_more_waiting
-- A run that claimed a full batch, or stopped pacing a limited one, tells the trigger more jobs
-- may wait, so it fires again as soon as it may.
select worker._notify(array[%(identifier)s]::text[]);

-- name: lock_holders
-- Every worker holding running jobs, with its oldest lock (through the index of running jobs).
select locked_by, min(locked_at) as oldest_lock, count(*) as jobs
from worker._jobs where state = 'running' group by locked_by order by locked_by;

-- name: purge_batch
-- Deletes up to batch_size jobs of one status finished before the cutoff; returns their results.
delete from worker._jobs
where id in (
    select id from worker._jobs
    where state = %(state)s and coalesce(completed_at, updated_at) < %(cutoff)s
    order by id
    limit %(batch_size)s
)
returning id, identifier, result;

-- name: queue_depth
-- Jobs per identifier and status, finished ones counted over the last day.
select identifier, status, count(*) as jobs
from worker.jobs
where status in ('queued', 'scheduled', 'running', 'failed')
   or (status = 'completed' and completed_at > now() - interval '1 day')
group by identifier, status
order by identifier, status;

-- name: job_key_exists
-- Whether any job, finished or not, carries this key.
select exists (select 1 from worker._jobs where job_key = %(job_key)s);

-- name: add_job_for_worker
-- A job created already claimed by a worker (a DAG run triggered by hand, a cron tick).
select * from worker.add_job_for_worker(
    %(identifier)s, %(payload)s::jsonb, %(worker_id)s, job_key => %(job_key)s,
    max_attempts => %(max_attempts)s::integer
);

-- name: cancel_jobs
select * from worker.cancel_jobs(%(job_ids)s::bigint[], %(actor)s);

-- name: remove_jobs
-- Removes waiting or failed jobs by id.
select * from worker.remove_jobs(%(job_ids)s::bigint[]);

-- name: record_job_action
-- Records an action taken by hand on jobs.
insert into worker._job_actions (job_ids, action, actor, detail)
values (%(job_ids)s::bigint[], %(action)s, %(actor)s, %(detail)s::jsonb);

-- name: job_actions
-- The actions taken by hand on one job, newest first.
select action, actor, detail, at from worker.job_actions where %(job_id)s = any(job_ids) order by at desc, id desc;

-- name: job_counts
-- Jobs per identifier and status, of the identifiers given (null: every one): those waiting,
-- running and failed, each through its partial index; completed ones over the last day, from the
-- charts' counts per minute. Counting every completed job kept read the whole table: 10,000,000
-- completed jobs took seconds a page.
select identifier, status, jobs from (
    select identifier, case when run_at > now() then 'scheduled' else 'queued' end as status,
           count(*) as jobs
    from worker._jobs where state = 'waiting' group by 1, 2
    union all
    select identifier, 'running', count(*) from worker._jobs where state = 'running' group by 1
    union all
    select identifier, 'failed', count(*) from worker._jobs where state = 'failed' group by 1
    union all
    select identifier, 'completed', sum(completed) from worker._job_minutes
    where minute >= now() - interval '1 day' group by 1 having sum(completed) > 0
) counted
where %(identifiers)s::text[] is null or identifier = any(%(identifiers)s::text[])
order by identifier, status;

-- name: search_jobs
-- Jobs matching the filters (any may be null; identifiers: those the caller may read), newest
-- first, one page. The status is asked of the table's state (and run_at), which its partial
-- indexes know, not of the view's status, which no index has: failed jobs among 10,000,000
-- completed ones are then found through the index of failed jobs.
select * from worker.jobs where id = any(array(
select id from worker._jobs
where (%(identifiers)s::text[] is null or identifier = any(%(identifiers)s::text[]))
  and (%(identifier)s::text is null or identifier = %(identifier)s)
  and (%(status)s::text is null
       or (state = %(status)s and %(status)s in ('running', 'completed', 'failed'))
       or (state = 'waiting' and %(status)s = 'queued' and run_at <= now())
       or (state = 'waiting' and %(status)s = 'scheduled' and run_at > now()))
  and (%(queue_name)s::text is null or queue_name = %(queue_name)s)
  and (%(job_key)s::text is null or job_key = %(job_key)s)
  and (%(error)s::text is null or last_error ilike '%%' || %(error)s || '%%')
  and (%(since)s::timestamptz is null or updated_at >= %(since)s)
order by id desc
limit %(limit)s offset %(offset)s))
order by id desc;

-- name: count_jobs
-- How many jobs match the filters of search_jobs (what an action on all of them would touch). The
-- same conditions as search_jobs, written out: a function holding them could not be inlined into
-- the query (every function of the schema runs as its owner), and the list's `order by id desc
-- limit 50` would then read every job kept.
select count(*) from worker._jobs
where (%(identifiers)s::text[] is null or identifier = any(%(identifiers)s::text[]))
  and (%(identifier)s::text is null or identifier = %(identifier)s)
  and (%(status)s::text is null
       or (state = %(status)s and %(status)s in ('running', 'completed', 'failed'))
       or (state = 'waiting' and %(status)s = 'queued' and run_at <= now())
       or (state = 'waiting' and %(status)s = 'scheduled' and run_at > now()))
  and (%(queue_name)s::text is null or queue_name = %(queue_name)s)
  and (%(job_key)s::text is null or job_key = %(job_key)s)
  and (%(error)s::text is null or last_error ilike '%%' || %(error)s || '%%')
  and (%(since)s::timestamptz is null or updated_at >= %(since)s);

-- name: matching_ids
-- The ids of the jobs matching the filters of search_jobs, oldest first, at most `limit`: an action
-- on every job a filter shows.
select id from worker._jobs
where (%(identifiers)s::text[] is null or identifier = any(%(identifiers)s::text[]))
  and (%(identifier)s::text is null or identifier = %(identifier)s)
  and (%(status)s::text is null
       or (state = %(status)s and %(status)s in ('running', 'completed', 'failed'))
       or (state = 'waiting' and %(status)s = 'queued' and run_at <= now())
       or (state = 'waiting' and %(status)s = 'scheduled' and run_at > now()))
  and (%(queue_name)s::text is null or queue_name = %(queue_name)s)
  and (%(job_key)s::text is null or job_key = %(job_key)s)
  and (%(error)s::text is null or last_error ilike '%%' || %(error)s || '%%')
  and (%(since)s::timestamptz is null or updated_at >= %(since)s)
order by id
limit %(limit)s;

-- name: graphile_schema_exists
-- Whether this database has graphile-worker's schema (0.16 or later: private tables).
select to_regclass('graphile_worker._private_jobs') is not null;

-- name: graphile_already_forwarded
-- Whether graphile_worker.add_job already forwards to schema worker.
select exists (
    select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname = 'graphile_worker' and p.proname = 'add_job'
      and p.prorettype = 'worker.jobs'::regtype
);

-- name: graphile_summary
-- graphile-worker's jobs by what the import does with them.
select
    count(*) filter (where locked_at is null and attempts < max_attempts) as waiting,
    count(*) filter (where locked_at is null and attempts >= max_attempts) as failed,
    count(*) filter (where locked_at is not null) as running
from graphile_worker._private_jobs;

-- name: graphile_move_jobs
-- Moves graphile-worker's waiting and failed jobs into worker._jobs (keys, queues, priorities,
-- attempts, run_at, errors kept); running ones stay with the workers that hold them.
with moved as (
    delete from graphile_worker._private_jobs j
    where j.locked_at is null
    returning j.*
)
insert into worker._jobs
    (identifier, payload, queue_name, priority, run_at, attempts, max_attempts, last_error, job_key,
     flags, state, created_at, updated_at)
select t.identifier, m.payload::jsonb, q.queue_name, m.priority, m.run_at, m.attempts, m.max_attempts,
       m.last_error, m.key,
       nullif(array(select f from jsonb_object_keys(m.flags) f order by f), '{}'),
       case when m.attempts >= m.max_attempts then 'failed' else 'waiting' end,
       m.created_at, m.updated_at
from moved m
join graphile_worker._private_tasks t on t.id = m.task_id
left join graphile_worker._private_job_queues q on q.id = m.job_queue_id
order by m.id
returning identifier;

-- name: notify_fired
-- A trigger has fired for these identifiers: the scheduler can create their run (jobqueue.wakeup).
select pg_notify('worker_fired', %(identifiers)s::text);

-- name: notify_identifiers
-- Wakes the consumers of these identifiers.
select worker._notify(%(identifiers)s::text[]);

-- name: save_step_values
-- What one step of a chain hands to the next, for each of these jobs (at its current attempt):
-- step_values is {"<job id>": value, ...}.
-- Each job's attempt is looked up by key (not a join, which could scan every job kept: 0011).
insert into worker._job_steps (job_id, step, attempt, value)
select job_id, %(step)s, attempt, value
from (
    select u.key::bigint as job_id, u.value,
           (select j.attempts from worker._jobs j where j.id = u.key::bigint) as attempt
    from jsonb_each(%(step_values)s::jsonb) as u(key, value)
) as saved
where attempt is not null
on conflict (job_id, step) do update set attempt = excluded.attempt, value = excluded.value;

-- name: step_values
-- What the given step handed on, for each job this worker still holds, from the job's current attempt.
-- Looked up per held job by key: a join let statistics from a quiet hour (no step values, no running
-- job) nest two scans of thousands of rows (migration 0011).
select job_id, value from (
    select j.id as job_id, (
        select s.value from worker._job_steps s
        where s.job_id = j.id and s.step = %(step)s and s.attempt = j.attempts
    ) as value
    from worker._jobs j
    where j.state = 'running' and j.locked_by = %(worker_id)s
) as held
where value is not null
order by job_id;

-- name: forget_step_values
-- Drops what the steps of these jobs handed on (their outcome is recorded).
delete from worker._job_steps where job_id = any(%(job_ids)s::bigint[]);

-- name: consumers_seen
-- A trigger watching these identifiers is alive (its heartbeat).
insert into worker._consumers (identifier, seen_at)
select unnest(%(identifiers)s::text[]), now()
on conflict (identifier) do update set seen_at = excluded.seen_at;

-- name: unconsumed_identifiers
-- Identifiers whose jobs have waited `within` seconds and that no trigger watched in that time:
-- nothing runs them.
select w.identifier, count(*) as jobs, min(j.created_at) as oldest
from worker._waiting_identifiers() w(identifier)
left join worker._consumers c on c.identifier = w.identifier
join worker._jobs j on j.identifier = w.identifier and j.state = 'waiting'
where c.seen_at is null or c.seen_at < now() - make_interval(secs => %(within)s)
group by w.identifier
having min(j.created_at) < now() - make_interval(secs => %(within)s)
order by w.identifier;

-- name: pause
-- Pauses an identifier or a queue (kind); whether it was running before.
select case %(kind)s when 'identifier' then worker.pause_identifier(%(name)s, %(actor)s)
                     else worker.pause_queue(%(name)s, %(actor)s) end;

-- name: resume
-- Resumes an identifier or a queue (kind) and wakes its consumers; whether it was paused.
select case %(kind)s when 'identifier' then worker.resume_identifier(%(name)s)
                     else worker.resume_queue(%(name)s) end;

-- name: paused
-- What is paused, identifiers first.
select kind, name, paused_at, paused_by from worker.paused order by kind, name;

-- name: set_rate_limit
-- An operator's rate limit for an identifier ('none': no limit; null: the job type's).
select worker.set_rate_limit(%(identifier)s, %(rate_limit)s);

-- name: declare_rate_limit
-- The rate limit a job type declares, written by its runs (a no-op when unchanged).
select worker.declare_rate_limit(%(identifier)s, %(rate_limit)s);

-- name: rate_limits
-- Every identifier's rate limit, declared, set and in force, with the jobs its bucket allows now.
select identifier, declared, override, rate_limit, per_second, burst, tokens
from worker.rate_limits order by identifier;

-- name: add_cron_job
-- Enqueues the job of one tick of a crontab line, unless that tick was enqueued already.
select * from worker.add_cron_job(%(cron_id)s, %(tick)s::timestamptz, %(spec)s::jsonb);

-- name: last_cron_tick
-- The latest tick of a crontab line that was enqueued (null: none yet).
select max(tick) from worker._cron_ticks where cron_id = %(cron_id)s;

-- name: run_jobs
-- The jobs a DAG run (worker '<dag_id>/<run_id>') attempted, whatever became of them later (a retry
-- in another run), failed ones first, one page.
select * from worker.jobs
where id in (select id from worker._jobs where last_worker = %(worker_id)s
             union select job_id from worker._job_attempts where worker_id = %(worker_id)s)
order by status = 'failed' desc, id
limit %(limit)s;

-- name: run_attempted_counts
-- How the jobs a DAG run attempted stand now, per status ('cancelled': failed, cancelled by someone).
select case when j.state = 'failed' and j.cancel_requested_by is not null then 'cancelled'
            when j.state = 'waiting' and j.run_at > now() then 'scheduled'
            when j.state = 'waiting' then 'queued' else j.state end as status,
       count(*) as jobs
from worker._jobs j
where j.id in (select id from worker._jobs where last_worker = %(worker_id)s
               union select job_id from worker._job_attempts where worker_id = %(worker_id)s)
group by 1 order by 1;

-- name: run_job_counts
-- How the jobs a DAG run worked on last stand, per status; a job failed because someone cancelled it
-- is 'cancelled' here (the run did not fail it).
select case when state = 'failed' and cancel_requested_by is not null then 'cancelled'
            when state = 'waiting' and run_at > now() then 'scheduled'
            when state = 'waiting' then 'queued' else state end as status,
       count(*) as jobs
from worker._jobs where last_worker = %(worker_id)s
group by 1 order by 1;

-- name: queue_gauges
-- For the metrics, per identifier: jobs queued (due), scheduled, running and failed; seconds the
-- oldest due job has waited; whether it is paused.
select
    i.identifier,
    due.queued,
    (select count(*) from worker._jobs j
     where j.state = 'waiting' and j.identifier = i.identifier and j.run_at > now()) as scheduled,
    (select count(*) from worker._jobs j where j.state = 'running' and j.identifier = i.identifier) as running,
    (select count(*) from worker._jobs j where j.state = 'failed' and j.identifier = i.identifier) as failed,
    coalesce(extract(epoch from now() - due.oldest), 0) as oldest_due_age,
    exists (select 1 from worker._paused p where p.kind = 'identifier' and p.name = i.identifier)::integer
        as paused
from unnest(%(identifiers)s::text[]) i(identifier)
-- The due jobs, read once for their count and the oldest.
cross join lateral (
    select count(*) as queued, min(j.run_at) as oldest from worker._jobs j
    where j.state = 'waiting' and j.identifier = i.identifier and j.run_at <= now()
) due;

-- name: running_jobs
-- The jobs running now, the longest running first, of the identifiers given (null: any): through
-- the index of running jobs.
select j.id, j.identifier, j.queue_name, j.locked_by, j.locked_at, j.attempts, j.max_attempts,
       j.cancel_requested_by, extract(epoch from now() - j.locked_at) as running_seconds
from worker._jobs j
where j.state = 'running' and (%(identifiers)s::text[] is null or j.identifier = any(%(identifiers)s::text[]))
order by j.locked_at, j.id
limit %(limit)s;

-- name: live_identifiers
-- The identifiers worth a line in the live view: those a job type consumes, and any with jobs
-- waiting or running.
select identifier from worker._waiting_identifiers() identifier
union
select identifier from worker._consumers
union
select identifier from worker._jobs where state = 'running'
order by identifier;

-- name: live_gauges
-- queue_gauges for the live view, refreshed every few seconds: each count stops at %(most)s + 1
-- (shown as "10,000+"), so a backlog of a million jobs costs what ten thousand do (an exact count of
-- 1,000,000 due jobs of three identifiers: 93 ms a refresh).
select
    i.identifier,
    (select count(*) from (select 1 from worker._jobs j
     where j.state = 'waiting' and j.identifier = i.identifier and j.run_at <= now()
     limit %(most)s + 1) c) as queued,
    (select count(*) from (select 1 from worker._jobs j
     where j.state = 'waiting' and j.identifier = i.identifier and j.run_at > now()
     limit %(most)s + 1) c) as scheduled,
    (select count(*) from worker._jobs j where j.state = 'running' and j.identifier = i.identifier) as running,
    (select count(*) from (select 1 from worker._jobs j
     where j.state = 'failed' and j.identifier = i.identifier limit %(most)s + 1) c) as failed,
    coalesce(extract(epoch from now() - (
        select min(j.run_at) from worker._jobs j
        where j.state = 'waiting' and j.identifier = i.identifier and j.run_at <= now())), 0)
        as oldest_due_age,
    exists (select 1 from worker._paused p where p.kind = 'identifier' and p.name = i.identifier)::integer
        as paused
from unnest(%(identifiers)s::text[]) i(identifier);

-- name: waiting_queues
-- Named queues with jobs due, the one waiting longest first: how many, since when, and whether one
-- of its jobs runs (a queue runs one job at a time).
select q.queue_name, q.due, extract(epoch from now() - q.oldest) as oldest_due_age,
       exists (select 1 from worker._jobs r where r.state = 'running' and r.queue_name = q.queue_name)
           as running
from (
    select queue_name, count(*) as due, min(run_at) as oldest from worker._jobs
    where state = 'waiting' and queue_name is not null and run_at <= now()
    group by queue_name
) q
order by q.oldest
limit %(limit)s;

-- name: purge_minutes
-- The charts' counts of the minutes before the cutoff (a day's chart needs a day's).
delete from worker._job_minutes where minute < %(cutoff)s;

-- name: compact_minutes
-- Merges the rows of each closed minute of the last day (its writers' slots and the triggers'
-- sample) into one, slot 8: a day's chart then reads 1,440 rows of an identifier, not up to nine
-- times that. A minute is closed two minutes after it ends (a writer counts into the minute its
-- transaction began in); a late row is merged into slot 8 at the next pass.
with closed as (
    delete from worker._job_minutes m
    where m.slot <> 8 and m.minute >= now() - interval '1 day'
      and m.minute < date_trunc('minute', now()) - interval '2 minutes'
    returning m.*
), buckets as (
    select c.identifier, c.minute, u.i, sum(u.n)::integer as n
    from closed c, unnest(c.latency) with ordinality as u(n, i)
    group by 1, 2, 3
), histograms as (
    select identifier, minute, array_agg(n order by i) as latency from buckets group by 1, 2
), merged as (
    select c.identifier, c.minute, sum(c.completed)::integer as completed,
           sum(c.failed)::integer as failed, sum(c.retried)::integer as retried, max(c.waiting) as waiting
    from closed c
    group by c.identifier, c.minute
)
insert into worker._job_minutes as m (identifier, minute, slot, completed, failed, retried, latency, waiting)
select g.identifier, g.minute, 8, g.completed, g.failed, g.retried, h.latency, g.waiting
from merged g left join histograms h using (identifier, minute)
on conflict (identifier, minute, slot) do update set
    completed = m.completed + excluded.completed,
    failed = m.failed + excluded.failed,
    retried = m.retried + excluded.retried,
    latency = worker._add_histograms(m.latency, excluded.latency),
    waiting = greatest(m.waiting, excluded.waiting);

-- name: job_minutes
-- The counts of each minute since `since` of the identifiers given, summed over the writers' slots:
-- completed, failed, retried, the latency histogram's buckets (summed in Python), the most waiting.
select minute, sum(completed)::integer as completed, sum(failed)::integer as failed,
       sum(retried)::integer as retried, array_agg(latency) filter (where latency is not null) as latencies,
       max(waiting) as waiting
from worker._job_minutes
where identifier = any(%(identifiers)s::text[]) and minute >= %(since)s
group by minute
order by minute;

-- name: latency_edges
select worker._latency_edges() as edges;

-- name: sample_waiting
select worker.sample_waiting(%(identifiers)s::text[]);

-- name: chart_identifiers
-- The identifiers with counts since `since` (a loose index scan of the minutes' key).
with recursive found(identifier) as (
    (select identifier from worker._job_minutes where minute >= %(since)s order by identifier limit 1)
    union all
    select (select m.identifier from worker._job_minutes m
            where m.identifier > f.identifier and m.minute >= %(since)s order by m.identifier limit 1)
    from found f where f.identifier is not null
)
select identifier from found where identifier is not null;
