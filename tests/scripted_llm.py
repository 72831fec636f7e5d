"""An OpenAI-compatible chat server, run as its own process on loopback, that replays a script.

Run ``python tests/scripted_llm.py --script RULES.json --log REQUESTS.jsonl``; it prints
``PORT <n>`` once it listens. Each rule is ``{"when": "...", "reply": "..."}``: the first rule
whose ``when`` occurs in the question (the text inside ``<question>`` tags of the last user
message) gives the reply; ``""`` matches everything. In a reply, ``{key:NEEDLE}`` becomes the
evidence key (``[S3]``) of the first evidence line containing NEEDLE, or ``[S99]`` when none
does; a rule with ``"status": 500`` answers with that HTTP error instead. Streams are cut every
``chunk_chars`` characters (default 3) so keys arrive split across chunks. Every request body
is appended to the log.

``ScriptedLLM`` starts and stops such a process for tests (stopped by its PID).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# An evidence line of the answer prompt: "text [S3]" (or "[S3] text", the earlier format).
_EVIDENCE_LINE = re.compile(r"^(?:\[(S\d+)\] (.*)|(.*) \[(S\d+)\])$", re.MULTILINE)
_QUESTION = re.compile(r"<question>\n?(.*?)\n?</question>", re.DOTALL)
_KEY = re.compile(r"\{key:([^}]*)\}")


def question_of(messages: list[dict]) -> tuple[str, str]:
    """(question, whole last user message) of a chat request."""
    user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    match = _QUESTION.search(user)
    return (match.group(1).strip() if match else user), user


def render_reply(template: str, prompt: str) -> str:
    """The reply with ``{key:NEEDLE}`` replaced by the key of the evidence line holding NEEDLE."""
    lines = [
        (key or key_last, text or text_first)
        for key, text, text_first, key_last in _EVIDENCE_LINE.findall(prompt)
    ]

    def key_for(match: re.Match[str]) -> str:
        needle = match.group(1)
        return next((f"[{key}]" for key, text in lines if needle in text), "[S99]")

    return _KEY.sub(key_for, template)


def serve(rules: list[dict], log_path: Path, chunk_chars: int) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            with log_path.open("a", encoding="utf-8") as log:
                log.write(json.dumps(body, ensure_ascii=False) + "\n")
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._json(404, {"error": {"message": f"no route {self.path}"}})
                return
            question, prompt = question_of(body.get("messages", []))
            rule = next((r for r in rules if r.get("when", "") in question), None)
            if rule is None:
                self._json(500, {"error": {"message": "no scripted reply for this question"}})
                return
            if rule.get("status"):
                self._json(int(rule["status"]), {"error": {"message": "scripted failure"}})
                return
            reply = render_reply(rule["reply"], prompt)
            if body.get("stream"):
                self._stream(reply, body.get("model", "scripted"))
            else:
                self._json(200, completion(reply, body.get("model", "scripted")))

        def _json(self, status: int, payload: dict) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, reply: str, model: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            pieces = [reply[i : i + chunk_chars] for i in range(0, len(reply), chunk_chars)]
            for index, piece in enumerate(pieces):
                delta = {"content": piece} if index else {"role": "assistant", "content": piece}
                self._event(chunk(delta, None, model))
            self._event(chunk({}, "stop", model))
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

        def _event(self, payload: dict) -> None:
            line = f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"
            self.wfile.write(line.encode("utf-8"))
            self.wfile.flush()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


def completion(content: str, model: str) -> dict:
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def chunk(delta: dict, finish_reason: str | None, model: str) -> dict:
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


class ScriptedLLM:
    """The scripted server as a child process; ``base_url`` for clients, ``requests()`` seen."""

    def __init__(self, rules: list[dict], work_dir: Path, *, chunk_chars: int = 3) -> None:
        self.script = work_dir / "llm_script.json"
        self.log = work_dir / "llm_requests.jsonl"
        self.script.write_text(json.dumps(rules, ensure_ascii=False), encoding="utf-8")
        self.log.write_text("", encoding="utf-8")
        self.process = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--script",
                str(self.script),
                "--log",
                str(self.log),
                "--chunk-chars",
                str(chunk_chars),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"the scripted LLM did not start (printed {line!r})")
        self.port = int(line.split()[1])
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def set_rules(self, rules: list[dict]) -> None:
        """Replace the script; the server reads it again for every request."""
        self.script.write_text(json.dumps(rules, ensure_ascii=False), encoding="utf-8")

    def requests(self) -> list[dict]:
        text = self.log.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()


class _LiveRules(list):
    """Rules re-read from the script file on every request, so tests can change them."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def __iter__(self):
        return iter(json.loads(self.path.read_text(encoding="utf-8")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--chunk-chars", type=int, default=3)
    args = parser.parse_args()
    serve(_LiveRules(args.script), args.log, args.chunk_chars)


if __name__ == "__main__":
    main()
