"""A small HTTP server speaking the OpenAI chat-completions protocol, for tests of the LLM path.

It is a real server on 127.0.0.1 driven through the real ``openai`` client. Its "model" is a
deterministic rule, so tests can assert exact behaviour: it quotes the first sentence of passage
1 with the citation [1], then adds a claim citing a passage that does not exist ([9]). A question
containing "zebra" gets NO_ANSWER. As a groundedness judge it marks supported the sentences that
appear word for word in a passage. Every request body is recorded for inspection.

Tests can also script what the model says next: :meth:`ChatServer.script` queues answer
replies, :meth:`ChatServer.script_rewrite` follow-up rewrites, each used once, in order. The
scripted failure replies below reproduce what small models behind llama.cpp were seen to write.
Streamed replies come in pieces of a few characters, as a real server's tokens do, so a
refusal token can arrive split ("NO_", "ANS", "WER").
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


# Replies that must never be shown as an answer, one per failure class of the reply guard.
FAILURE_REPLIES = {
    "citations then refusal": "[1] [2] [3] NO_ANSWER",
    "refusal with a full stop": "NO_ANSWER.",
    "refusal in lower case with a citation": "no_answer [2]",
    "refusal in Markdown": "**NO\\_ANSWER**",
    "answer then refusal": "You can return an item within 30 days of delivery [1]. NO_ANSWER",
    "citations only": "[1][2]",
    "filler and a citation to no passage": "The passages say: [7]",
    "an echo of the prompt": "Question: How many days do I have to return an item? [1]",
    "answer without citations": "You can return an item within 90 days, no questions asked.",
    "empty reply": "",
}
PIECE_CHARS = 3


def reply_for(messages: list[dict[str, str]], answers: list[str] | None = None, rewrites: list[str] | None = None) -> str:
    user = messages[-1]["content"]
    if messages[0]["content"].startswith("You judge"):
        return judge(user)
    if "Last question:" in user:  # a query rewrite request
        if rewrites:
            return rewrites.pop(0)
        return "rewritten: " + user.rsplit("Last question:", 1)[1].strip()
    if answers:
        return answers.pop(0)
    if "zebra" in user.rsplit("Question:", 1)[-1].lower():
        return "NO_ANSWER"
    match = re.search(r'<passage id="1"[^>]*>\n(.*?)\n</passage>', user, re.S)
    body = match.group(1).split("\n\n", 1)[-1] if match else ""
    first = re.split(r"(?<=[.!?])\s", body.strip(), maxsplit=1)[0]
    return f"{first} [1] The fee is waived on Sundays [9]."


class ChatServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[str] = []
        self.rewrites: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                text = reply_for(body["messages"], server.answers, server.rewrites)
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for piece in (text[i : i + PIECE_CHARS] for i in range(0, len(text), PIECE_CHARS)):
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

    def script(self, *replies: str) -> None:
        """The model's next answer replies, in order (each used once, then the rule again)."""
        self.answers.extend(replies)

    def script_rewrite(self, *replies: str) -> None:
        """The model's next follow-up rewrites, in order."""
        self.rewrites.extend(replies)

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
