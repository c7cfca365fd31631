// The statements graphile-worker 0.18's own worker runs to claim, complete and fail jobs, built by
// the installed library itself, so the differential test never re-types them.
//
//   node statements.mjs NODE_MODULES DATABASE_URL
//
// Reads one JSON request per line on stdin, answers one JSON line on stdout:
//   {"op": "get_jobs", "worker_id": "w1", "tasks": ["ta"], "flags": ["f1"] | null, "batch_size": 1}
//   {"op": "complete_jobs", "worker_id": "w1", "jobs": [{"id": 3, "job_queue_id": 1 | null}]}
//   {"op": "fail_jobs", "worker_id": "w1", "jobs": [{"id": 3, "job_queue_id": null}], "message": "..."}
// -> {"statements": [{"text": "...", "values": ["...", null]}]} or {"error": "..."}
//
// Each library function gets a client that records what it would send instead of sending it; the
// caller runs the statements in its own transaction, beside the same step on our schema. Values
// are converted by node-postgres exactly as it would send them (text, arrays as array literals).
// Only the task-id lookup that batchGetJobs does first (getTaskDetails) runs for real, on a
// connection of its own: it reads and fills graphile-worker's task table, which the test never
// compares.
import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [nodeModules, databaseUrl] = process.argv.slice(2);
const library = (file) => import(pathToFileURL(join(nodeModules, "graphile-worker", "dist", file)).href);
const { processSharedOptions } = await library("lib.js");
const { batchGetJobs } = await library("sql/getJobs.js");
const { batchCompleteJobs } = await library("sql/completeJobs.js");
const { batchFailJobs } = await library("sql/failJobs.js");
const { getTaskDetails } = await library("taskIdentifiers.js");
const require = createRequire(join(nodeModules, "graphile-worker", "package.json"));
const pg = require("pg");
const { prepareValue } = require("pg/lib/utils.js");

const database = new pg.Client({ connectionString: databaseUrl });
await database.connect();

function withClient(client) {
  const withPgClient = (callback) => callback(client);
  withPgClient.withRetries = withPgClient;
  return withPgClient;
}

function recorder() {
  const statements = [];
  const client = {
    async query(config) {
      statements.push({ text: config.text, values: (config.values ?? []).map(prepareValue) });
      return { rows: [], rowCount: 0 };
    },
  };
  return { statements, withPgClient: withClient(client) };
}

const tasksObject = (names) => Object.fromEntries(names.map((name) => [name, () => {}]));

const handlers = {
  async get_jobs({ worker_id, tasks, flags, batch_size }, options, record) {
    const taskList = tasksObject(tasks);
    // Fills the library's per-options cache, so the recorded call below asks nothing more.
    await getTaskDetails(options, withClient(database), taskList);
    await batchGetJobs(options, record.withPgClient, taskList, worker_id, flags, batch_size);
  },
  async complete_jobs({ worker_id, jobs }, options, record) {
    await batchCompleteJobs(options, record.withPgClient, worker_id, jobs);
  },
  async fail_jobs({ worker_id, jobs, message }, options, record) {
    const specs = jobs.map((job) => ({ job, message, replacementPayload: undefined }));
    await batchFailJobs(options, record.withPgClient, worker_id, specs);
  },
};

async function answer(line) {
  const request = JSON.parse(line);
  const handler = handlers[request.op];
  if (!handler) {
    return { error: `unknown op ${JSON.stringify(request.op)}` };
  }
  // Fresh options each time: the library caches task ids per options object, and the test
  // empties graphile-worker's tables between sequences.
  const options = processSharedOptions({ connectionString: databaseUrl });
  const record = recorder();
  await handler(request, options, record);
  return { statements: record.statements };
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let reply;
  try {
    reply = await answer(line);
  } catch (error) {
    reply = { error: String(error?.stack ?? error) };
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
}
await database.end();
