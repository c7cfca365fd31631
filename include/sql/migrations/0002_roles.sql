-- Who may do what with the job tables.
--
-- worker_app: what an application needs and nothing more: enqueue (add_job, add_jobs), remove a job
-- by its key (remove_job) and read the view worker.jobs. Grant it to an application's login role:
--     grant worker_app to my_app;
-- The workers (Airflow's worker_db connection) use the role that owns the schema, as before.
--
-- Every function of the schema runs with its owner's rights (SECURITY DEFINER) and a fixed
-- search_path (pg_catalog first, pg_temp last), so that a role allowed to call some of them reaches
-- the tables only through them, and nobody can slip an object of their own in ahead of ours.
-- PUBLIC loses its default rights on the schema and its functions (EXECUTE is PUBLIC's by default).

revoke all on schema worker from public;
revoke all on all tables in schema worker from public;
revoke all on all sequences in schema worker from public;
revoke execute on all functions in schema worker from public;
alter default privileges in schema worker revoke execute on functions from public;

do $$
declare
    f regprocedure;
begin
    for f in select p.oid::regprocedure from pg_proc p where p.pronamespace = 'worker'::regnamespace loop
        execute format('alter function %s security definer set search_path = pg_catalog, worker, pg_temp', f);
    end loop;
end
$$;

-- Roles belong to the whole server: created once, kept if it exists. A migrating user without
-- CREATEROLE gets a notice instead, and an administrator creates the role and runs the grants below.
do $$
begin
    if not exists (select from pg_roles where rolname = 'worker_app') then
        begin
            create role worker_app nologin;
        exception when insufficient_privilege then
            raise notice 'role worker_app not created (no CREATEROLE): create it and grant it usage on '
                'schema worker, select on worker.jobs, execute on worker.add_job, worker.add_jobs and '
                'worker.remove_job';
            return;
        end;
    end if;
    grant usage on schema worker to worker_app;
    grant select on worker.jobs to worker_app;
    grant execute on function
        worker.add_job(text, jsonb, text, timestamptz, integer, text, integer, text[], text),
        worker.add_jobs(jsonb),
        worker.remove_job(text)
        to worker_app;
end
$$;

insert into worker.migrations (name) values ('0002_roles');
