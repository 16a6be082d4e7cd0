"""A small HTTP server speaking the OpenAI chat-completions protocol, for tests of the LLM path.

It is a real server on 127.0.0.1 driven through the real ``openai`` client. Its "model" is a
deterministic rule, so tests can assert exact behaviour: it quotes the first sentence of passage
1 with the citation [1], then adds a claim citing a passage that does not exist ([9]). A question
containing "zebra" gets NO_ANSWER. As a groundedness judge it marks supported the sentences that
appear word for word in a passage. Every request body is recorded for inspection.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def judge(user: str) -> str:
    """A groundedness verdict: a sentence is supported when it appears word for word in a passage."""
    passages = " ".join(" ".join(p.split()) for p in re.findall(r"<passage[^>]*>(.*?)</passage>", user, re.S))
    said = re.findall(r'<sentence n="(\d+)">(.*?)</sentence>', user, re.S)
    supported = [int(n) for n, text in said if " ".join(text.split()) in passages]
    return json.dumps({"supported": supported})


def reply_for(messages: list[dict[str, str]]) -> str:
    user = messages[-1]["content"]
    if messages[0]["content"].startswith("You judge"):
        return judge(user)
    if "Last question:" in user:  # a query rewrite request
        return "rewritten: " + user.rsplit("Last question:", 1)[1].strip()
    if "zebra" in user.rsplit("Question:", 1)[-1].lower():
        return "NO_ANSWER"
    match = re.search(r'<passage id="1"[^>]*>\n(.*?)\n</passage>', user, re.S)
    body = match.group(1).split("\n\n", 1)[-1] if match else ""
    first = re.split(r"(?<=[.!?])\s", body.strip(), maxsplit=1)[0]
    return f"{first} [1] The fee is waived on Sundays [9]."


class ChatServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                text = reply_for(body["messages"])
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for piece in re.findall(r"\S+\s*", text):
                        chunk = {
                            "id": "c1",
                            "object": "chat.completion.chunk",
                            "created": 0,
                            "model": body["model"],
                            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                        }
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    return
                payload = {
                    "id": "c1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
