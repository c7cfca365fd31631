-- add_jobs refuses what it used to read loosely: a JSON array, object, number or boolean where a
-- string is meant (queue_name, run_at, job_key, job_key_mode) was taken as its JSON text (job_key
-- '[]'); a flag that is not a string likewise. And one call naming a job_key twice is refused: the
-- second spec replaced the first and both returned the same job (graphile-worker's one INSERT ... ON
-- CONFLICT fails on it too, with "cannot affect row a second time").
-- CREATE OR REPLACE keeps each function's grants but not its SECURITY DEFINER or search_path
-- (0002_roles): both are restated.

create or replace function worker._spec_field(spec jsonb, spec_number integer, field text, cast_to regtype)
returns text
language plpgsql
security definer set search_path = pg_catalog, worker, pg_temp
as $$
declare
    v_value jsonb := spec -> field;
    v_text text;
begin
    if v_value is null or jsonb_typeof(v_value) = 'null' then
        return null;
    end if;
    -- A text or a time is written as a JSON string: any other value's JSON text is not what was meant.
    if cast_to in ('text'::regtype, 'timestamptz'::regtype) and jsonb_typeof(v_value) <> 'string' then
        raise exception 'add_jobs: spec % (counting from 1): field % must be a string, got a JSON %',
            spec_number, field, jsonb_typeof(v_value) using errcode = 'WK006';
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

create or replace function worker.add_jobs(specs jsonb) returns setof worker.jobs
language plpgsql
security definer set search_path = pg_catalog, worker, pg_temp
as $$
declare
    v_known constant text[] := array['identifier', 'payload', 'queue_name', 'run_at', 'max_attempts',
                                     'job_key', 'priority', 'flags', 'job_key_mode'];
    v_spec jsonb;
    v_position integer := 0;
    v_unknown text[];
    v_job worker._jobs;
    v_ids bigint[] := '{}';
    v_identifiers text[] := '{}';
    v_repeated record;
begin
    if specs is null or jsonb_typeof(specs) <> 'array' then
        raise exception 'add_jobs: specs must be a JSON array of objects, got a JSON %',
            coalesce(jsonb_typeof(specs), 'NULL') using errcode = 'WK006';
    end if;
    -- One pass over the specs, before any is applied: the first key named twice.
    select s ->> 'job_key' as job_key, min(n) as first, (array_agg(n order by n))[2] as second
    into v_repeated
    from jsonb_array_elements(specs) with ordinality e(s, n)
    where jsonb_typeof(s -> 'job_key') = 'string'
    group by s ->> 'job_key'
    having count(*) > 1
    order by 3
    limit 1;
    if found then
        raise exception 'add_jobs: specs % and % (counting from 1) have the same job_key %; one call may name a key once',
            v_repeated.first, v_repeated.second, to_jsonb(v_repeated.job_key) using errcode = 'WK007';
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
        if (case coalesce(jsonb_typeof(v_spec -> 'flags'), 'null')
            when 'null' then false
            when 'array' then exists (
                select 1 from jsonb_array_elements(v_spec -> 'flags') f where jsonb_typeof(f) <> 'string')
            else true
        end) then
            raise exception 'add_jobs: spec % (counting from 1): field flags must be an array of strings, got %',
                v_position, v_spec -> 'flags' using errcode = 'WK006';
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

insert into worker.migrations (name) values ('0003_add_jobs_strict');
