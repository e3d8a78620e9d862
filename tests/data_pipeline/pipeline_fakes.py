"""A test double of an OpenAI-compatible chat server (the real path is tested with SmolLM2)."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler


class FakeOpenAIHandler(BaseHTTPRequestHandler):
    """A test double of an OpenAI-compatible server (checks the key; canned or echoed rewrites)."""

    requests: list[dict] = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if self.headers.get("Authorization") != "Bearer sekret":
            self.send_response(401)
            self.end_headers()
            return
        prompt = body["messages"][0]["content"]
        if "JSON" in prompt:
            content = json.dumps({"surgery": "Cataract surgery", "cause": "cataract", "objective": "restore vision",
                                  "key_steps": ["capsulorhexis"], "instruments": ["cystotome"], "medications": [],
                                  "post_op_care": "steroid drops"})
        else:
            narration = prompt.rsplit("Narration:", 1)[-1].strip()
            if "cystotome" in narration:
                content = "The cystotome opens the anterior capsule."
            elif "phaco probe" in narration:
                content = "The forceps grasp the lens."  # drops and invents terms: must be rejected
            else:
                content = f"In this clip: {narration}"
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass
