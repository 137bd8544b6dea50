"""A toy agent that records its session through the sidecar client, then prints it back.

usage: python examples/python_agent.py --db PATH [--session-id ID] [--prompt TEXT]

One turn in protocol 0.4 shapes: session.init, user.prompt.submit, a tool call and its
result, the assistant's answer and session.stop. The "model" is a stub that calls a
calculator once; what matters is how the events reach the store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import uuid
from pathlib import Path
from typing import Any

from sidecar.client import AsyncSidecar, timestamp

MODEL, PROVIDER = "toy-1", "local"


def calculator(expression: str) -> str:
    """The agent's one tool: products and sums of integers."""
    if not re.fullmatch(r"[\d\s+*]+", expression):
        raise ValueError(f"cannot evaluate {expression!r}")
    return str(sum(eval_product(term) for term in expression.split("+")))


def eval_product(term: str) -> int:
    result = 1
    for factor in term.split("*"):
        result *= int(factor)
    return result


async def run_turn(sidecar: AsyncSidecar, session_id: str, prompt: str) -> None:
    """One turn of the agent loop; every step is an event, as the microagents runtime emits them."""
    turn_id = f"turn-{uuid.uuid4()}"
    common = {"session_id": session_id, "turn_id": turn_id}
    await sidecar.send_event("user.prompt.submit", {**common, "prompt": prompt, "timestamp": timestamp()})

    # The stub model asks for the calculator with the arithmetic it finds in the prompt.
    expression = " ".join(re.findall(r"[\d+*]+", prompt)) or "0"
    call_id = f"call_{uuid.uuid4().hex[:8]}"
    arguments = {"expression": expression}
    await sidecar.send_event(
        "tool.call",
        {
            **common,
            "name": "calculator",
            "tool_call_id": call_id,
            "input": arguments,
            "timestamp": timestamp(),
        },
    )
    try:
        result: dict[str, str] = {"Ok": calculator(expression)}
    except ValueError as exc:
        result = {"Err": str(exc)}
    await sidecar.send_event(
        "tool.result", {**common, "result": result, "tool_call_id": call_id, "timestamp": timestamp()}
    )

    answer = (
        f"{expression} = {result['Ok']}" if "Ok" in result else f"I could not compute that: {result['Err']}"
    )
    content = [
        {"thinking": "The user wants arithmetic; the calculator has answered.", "signature": None},
        {"text": answer},
        {"id": call_id, "name": "calculator", "arguments": json.dumps(arguments)},
    ]
    await sidecar.send_event("assistant.response", {**common, "content": content, "timestamp": timestamp()})


def transcript(events: list[dict[str, Any]]) -> list[str]:
    """One line per stored event, in the order the store returns them (by timestamp)."""
    lines = []
    for event in events:
        method, params = event["method"], event["params"]
        if method == "session.init":
            lines.append(f"session {params['session_id']} ({params['model']} via {params['provider']})")
        elif method == "user.prompt.submit":
            lines.append(f"user: {params['prompt']}")
        elif method == "tool.call":
            lines.append(f"tool call {params['name']}: {json.dumps(params['input'])}")
        elif method == "tool.result":
            ((outcome, text),) = params["result"].items()
            lines.append(f"tool result {outcome}: {text}")
        elif method == "assistant.response":
            text = " ".join(part["text"] for part in params["content"] if "text" in part)
            lines.append(f"assistant: {text}")
        elif method == "session.stop":
            usage = params["usage"]
            lines.append(
                f"stop: success={params['success']}, "
                f"{usage['input_tokens']} tokens in, {usage['output_tokens']} out"
            )
        else:
            lines.append(method)
    return lines


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="SQLite file to record into")
    parser.add_argument("--session-id", default=str(uuid.uuid4()))
    parser.add_argument("--prompt", default="What is 6 * 7 + 2?")
    args = parser.parse_args()
    session_id: str = args.session_id

    started = asyncio.get_running_loop().time()
    async with AsyncSidecar("--db", str(args.db)) as sidecar:
        # The first event is acknowledged: from here on the store is known to work.
        ack = await sidecar.record_event(
            "session.init",
            {
                "session_id": session_id,
                "model": MODEL,
                "provider": PROVIDER,
                "system": "You are a calculator.",
                "init_type": "Start",
                "timestamp": timestamp(),
            },
        )
        print(f"recording session {ack.session_id} (first event seq {ack.seq})")
        await run_turn(sidecar, session_id, args.prompt)
        usage = {
            "latency": round((asyncio.get_running_loop().time() - started) * 1000),
            "input_tokens": len(args.prompt.split()),
            "output_tokens": 5,
            "cache_write_tokens": 0,
            "cache_read_tokens": 0,
        }
        await sidecar.send_event(
            "session.stop",
            {
                "session_id": session_id,
                "success": True,
                "result": [{"text": "done"}],
                "error": None,
                "timestamp": timestamp(),
                "incomplete_tasks": None,
                "usage": usage,
            },
        )
        # A read sees every event sent before it: no flush needed first.
        events = await sidecar.get_session(session_id)
        print("\n".join(transcript(events)))
    print(f"sidecar exited with code {sidecar.returncode}")
    return 0 if sidecar.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
