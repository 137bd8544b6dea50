// The official TypeScript SDK's stdio client against the real server, for
// tests/e2e/test_mcp_e2e.py: node client.mjs SESSION_ID COMMAND ARG...
// Prints one JSON object on stdout: the server's name, the tool names and
// read_session's result. Any failure exits non-zero with the error on stderr.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [sessionId, command, ...args] = process.argv.slice(2);
const transport = new StdioClientTransport({ command, args, stderr: "inherit" });
const client = new Client({ name: "sidecar-tests", version: "1.0.0" });
await client.connect(transport);
const { tools } = await client.listTools();
const read = await client.callTool({ name: "read_session", arguments: { session_id: sessionId } });
const unknown = await client.callTool({ name: "read_session", arguments: { session_id: "no-such-session" } });
process.stdout.write(
  JSON.stringify({
    server: client.getServerVersion(),
    tools: tools.map((tool) => tool.name),
    read,
    unknown,
  }) + "\n",
);
await client.close();
