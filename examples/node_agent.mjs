// A Node.js agent recording a session through the sidecar, with only child_process and readline.
//
// usage: node examples/node_agent.mjs --db PATH [--session-id ID]
//   SIDECAR_PYTHON  the Python that has microagents-sidecar installed (default: python3)
//
// Spawns `python -m sidecar --db PATH`, sends events as notifications and one as an
// acknowledged request, reads the session back with storage.get_session, matches every
// response to its request by id, then closes stdin and waits for exit code 0.

import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createInterface } from "node:readline";

function option(name, fallback) {
  const at = process.argv.indexOf(name);
  return at > 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback;
}

const db = option("--db");
if (!db) {
  console.error("usage: node examples/node_agent.mjs --db PATH [--session-id ID]");
  process.exit(2);
}
const sessionId = option("--session-id", randomUUID());
const python = process.env.SIDECAR_PYTHON || "python3";

// stdin and stdout are the JSON-RPC pipes; the daemon's log (stderr) goes to ours.
const sidecar = spawn(python, ["-m", "sidecar", "--db", db], { stdio: ["pipe", "pipe", "inherit"] });
const exited = new Promise((resolve, reject) => {
  sidecar.on("error", reject); // could not spawn at all
  sidecar.on("exit", (code, signal) => resolve(code ?? signal));
});

// Answers may come in any order: each request waits on its own id.
const pending = new Map();
let lastId = 0;

createInterface({ input: sidecar.stdout, crlfDelay: Infinity }).on("line", (line) => {
  const message = JSON.parse(line);
  const waiter = pending.get(message.id);
  if (!waiter) {
    console.error(`ignored an answer to no pending request: ${line}`);
    return;
  }
  pending.delete(message.id);
  if (message.error) {
    const { code, message: text, data } = message.error;
    waiter.reject(Object.assign(new Error(`${text} (${code}): ${data?.reason ?? ""}`), { code, data }));
  } else {
    waiter.resolve(message.result);
  }
});
sidecar.stdout.on("close", () => {
  for (const waiter of pending.values()) waiter.reject(new Error("the sidecar closed its stdout"));
  pending.clear();
});

function write(message) {
  sidecar.stdin.write(JSON.stringify(message) + "\n");
}

function notify(method, params) {
  write({ jsonrpc: "2.0", method, params });
}

function request(method, params) {
  const id = ++lastId;
  const answer = new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
  write(params === undefined ? { jsonrpc: "2.0", id, method } : { jsonrpc: "2.0", id, method, params });
  return answer;
}

// RFC 3339 with milliseconds and Z; the sidecar orders events at any precision.
const now = () => new Date().toISOString();

const turn = { session_id: sessionId, turn_id: "turn-1" };
const ack = await request("session.init", {
  session_id: sessionId,
  model: "toy-node",
  provider: "local",
  system: "You read files.",
  init_type: "Start",
  timestamp: now(),
});
console.log(`recorded session.init as seq ${ack.seq} of session ${ack.session_id}`);

notify("user.prompt.submit", { ...turn, prompt: "What is in README.md?", timestamp: now() });
notify("tool.call", {
  ...turn,
  name: "read_file",
  tool_call_id: "call_1",
  input: { path: "README.md" },
  timestamp: now(),
});
notify("tool.result", { ...turn, result: { Ok: "# microagents-sidecar" }, tool_call_id: "call_1", timestamp: now() });
notify("assistant.response", { ...turn, content: [{ text: "It is the sidecar's README." }], timestamp: now() });
notify("session.stop", {
  session_id: sessionId,
  success: true,
  result: [{ text: "It is the sidecar's README." }],
  error: null,
  timestamp: now(),
  incomplete_tasks: null,
  usage: { latency: 12, input_tokens: 9, output_tokens: 7, cache_write_tokens: 0, cache_read_tokens: 0 },
});

// Asked concurrently: each answer still reaches the request it belongs to.
const [events, stats] = await Promise.all([
  request("storage.get_session", { session_id: sessionId }),
  request("storage.stats"),
]);
for (const { method, params } of events) {
  const detail = params.prompt ?? params.name ?? params.result?.Ok ?? params.content?.[0]?.text ?? "";
  console.log(`${method} ${typeof detail === "string" ? detail : JSON.stringify(detail)}`.trimEnd());
}
console.log(`stats: ${stats.persisted} persisted, ${stats.rejected} rejected`);

try {
  await request("storage.get_session", { session: sessionId });
} catch (error) {
  console.log(`a typo is answered with error ${error.code} naming ${error.data.field}`);
}

sidecar.stdin.end(); // end of input: the daemon commits everything and exits
const code = await exited;
console.log(`sidecar exited with code ${code}`);
process.exit(code === 0 ? 0 : 1);
