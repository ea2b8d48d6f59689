"""A small fake GitHub for driving `previewd serve` end to end (http.server, loopback only).

It answers the calls previewd makes (tests/support/fake_github_ops.rs is the reference): read a
pull request, list open ones, a collaborator's permission, commit statuses, deployments and
their statuses, issue comments (create, edit, list) and reactions. Every request is recorded
with its arrival time (time.monotonic(), the clock the bench scripts use), so "success status
received" can be timed against "delivery sent". Also: a git repository on disk for
`github.git_url = file://...`, the PR payload previewd receives, and signed delivery."""
import http.client, json, pathlib, re, subprocess, threading, time, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BOT = "previewd-bench[bot]"
REPO = "Codertocat/Hello-World"


class FakeGitHub:
    def __init__(self):
        self.lock = threading.Condition()
        self.requests = []          # dicts: t, method, path, op, body
        self.pulls = {}             # number -> PR object
        self.permissions = {}       # login -> permission
        self.comments = []          # dicts: id, issue, body, edits, t
        self.deployments = []
        self.statuses = []          # dicts with sha, state, t
        self.deployment_statuses = []
        self.reactions = []
        self.unknown = []
        self._id = 1000
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _any(self):
                t = time.monotonic()
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw) if raw else None
                path, _, query = self.path.partition("?")
                q = dict(kv.split("=", 1) for kv in query.split("&") if "=" in kv)
                status, out = fake._answer(t, self.command, path, q, body)
                data = json.dumps(out).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def next_id(self):
        self._id += 1
        return self._id

    def set_pull(self, pr):
        with self.lock:
            self.pulls[pr["number"]] = pr

    def set_permission(self, user, p):
        with self.lock:
            self.permissions[user] = p

    def wait(self, pred, timeout, what):
        """Waits until pred() (called under the lock) is truthy; returns its value."""
        end = time.monotonic() + timeout
        with self.lock:
            while True:
                v = pred()
                if v:
                    return v
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fake GitHub: no {what} after {timeout:.0f}s")
                self.lock.wait(min(left, 0.5))

    def status(self, sha, state):
        """The first commit status `state` on `sha` (a dict with its arrival time `t`)."""
        return next((s for s in self.statuses if s["sha"] == sha and s["state"] == state), None)

    def comment(self, issue):
        return next((c for c in self.comments if c["issue"] == issue), None)

    def _answer(self, t, method, path, q, body):
        seg = path.strip("/").split("/")
        op, status, out = "unknown", 404, {"message": "Not Found"}
        with self.lock:
            if len(seg) >= 3 and seg[0] == "repos":
                rest = seg[3:]
                if method == "GET" and rest[:1] == ["pulls"] and len(rest) == 2:
                    op = "pulls/get"
                    pr = self.pulls.get(int(rest[1])) if rest[1].isdigit() else None
                    if pr:
                        status, out = 200, pr
                elif method == "GET" and rest == ["pulls"]:
                    op, status = "pulls/list", 200
                    out = [p for p in self.pulls.values() if p["state"] == "open"]
                elif method == "GET" and len(rest) == 3 and rest[0] == "collaborators" and rest[2] == "permission":
                    op = "collaborator-permission"
                    p = self.permissions.get(rest[1])
                    if p:
                        status, out = 200, {"permission": p, "user": {"login": rest[1]}}
                elif method == "POST" and len(rest) == 2 and rest[0] == "statuses":
                    op, status = "statuses/create", 201
                    out = dict(body or {}, id=self.next_id(), sha=rest[1])
                    self.statuses.append(dict(out, t=t))
                elif method == "POST" and rest == ["deployments"]:
                    op, status = "deployments/create", 201
                    out = dict(body or {}, id=self.next_id(), sha=(body or {}).get("ref"))
                    self.deployments.append(dict(out, t=t))
                elif method == "GET" and rest == ["deployments"]:
                    op, status = "deployments/list", 200
                    env = q.get("environment")
                    env = env and urllib_unquote(env)
                    out = [{k: v for k, v in d.items() if k != "t"} for d in reversed(self.deployments)
                           if env is None or d.get("environment") == env]
                    out = out[: int(q.get("per_page", 30))]
                elif method == "POST" and len(rest) == 3 and rest[0] == "deployments" and rest[2] == "statuses":
                    op = "deployment-statuses/create"
                    did = int(rest[1]) if rest[1].isdigit() else -1
                    if any(d["id"] == did for d in self.deployments):
                        self.deployment_statuses.append(dict(body or {}, deployment=did, t=t))
                        status, out = 201, {"id": did * 10, "state": (body or {}).get("state")}
                elif len(rest) == 3 and rest[0] == "issues" and rest[2] == "comments" and rest[1].isdigit():
                    issue = int(rest[1])
                    if method == "POST":
                        op, status = "comments/create", 201
                        c = dict(id=self.next_id(), issue=issue, body=(body or {}).get("body", ""), edits=0, t=t)
                        self.comments.append(c)
                        out = self._comment_json(c)
                    else:
                        op, status = "comments/list", 200
                        per, page = int(q.get("per_page", 30)), max(int(q.get("page", 1)), 1)
                        mine = [self._comment_json(c) for c in self.comments if c["issue"] == issue]
                        out = mine[per * (page - 1): per * page]
                elif method == "PATCH" and len(rest) == 3 and rest[:2] == ["issues", "comments"]:
                    op = "comments/update"
                    c = next((c for c in self.comments if str(c["id"]) == rest[2]), None)
                    if c:
                        c.update(body=(body or {}).get("body", ""), edits=c["edits"] + 1, t=t)
                        status, out = 200, self._comment_json(c)
                elif method == "POST" and len(rest) == 4 and rest[:2] == ["issues", "comments"] and rest[3] == "reactions":
                    op, status = "reactions/create", 201
                    self.reactions.append((rest[2], (body or {}).get("content"), t))
                    out = {"id": self.next_id(), "content": (body or {}).get("content")}
            if op == "unknown":
                self.unknown.append(f"{method} {path}")
            self.requests.append(dict(t=t, method=method, path=path, op=op, status=status))
            self.lock.notify_all()
        return status, out

    @staticmethod
    def _comment_json(c):
        return {"id": c["id"], "body": c["body"], "user": {"login": BOT, "type": "Bot"}}


def urllib_unquote(s):
    from urllib.parse import unquote
    return unquote(s)


class GitFixture:
    """A git repository at <root>/Codertocat/Hello-World.git (github.git_url = file://<root>),
    holding a fixture; branches are made and committed to with the git CLI."""

    def __init__(self, root, fixture):
        import shutil
        self.root = pathlib.Path(root)
        self.path = self.root / f"{REPO}.git"
        shutil.copytree(fixture, self.path)
        self.git("init", "-q", "-b", "main")
        self.commit("initial")

    @property
    def url(self):
        return f"file://{self.root}"

    def git(self, *args):
        return subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com",
                               "-c", "commit.gpgsign=false", *args], cwd=self.path, check=True,
                              capture_output=True, text=True).stdout.strip()

    def branch(self, name, start="main"):
        self.git("checkout", "-q", "-B", name, start)

    def commit(self, message):
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


_base = None


def pr_event(fake, payloads_dir, action, number, branch, sha, sender="Codertocat", label="preview"):
    """The real `pull_request.labeled` fixture for PR `number` of Codertocat/Hello-World at
    `sha` on `branch`, labelled `label`; the fake is told the same PR and gives the sender
    write permission. Returns the body (bytes)."""
    global _base
    if _base is None:
        _base = (pathlib.Path(payloads_dir) / "pull_request.labeled.json").read_bytes()
    p = json.loads(_base)
    lab = {"id": 1, "node_id": "L1", "url": "", "name": label, "color": "ffffff",
           "default": False, "description": None}
    p["action"] = action
    p["number"] = number
    p["label"] = lab
    pr = p["pull_request"]
    pr["number"] = number
    pr["labels"] = [lab]
    pr["head"]["sha"] = sha
    pr["head"]["ref"] = branch
    pr["state"] = "closed" if action == "closed" else "open"
    p["sender"]["login"] = sender
    fake.set_pull(pr)
    fake.set_permission(sender, "write")
    return json.dumps(p).encode()


def deliver(port, secret, event, body, sign):
    """POSTs a signed delivery to previewd's /webhooks/github; returns (status, seconds)."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", "/webhooks/github", body=body, headers={
        "Content-Type": "application/json", "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": sign(secret, body)})
    r = c.getresponse(); r.read(); c.close()
    return r.status, time.monotonic() - t0


def phases_of(comment_body):
    """previewd's own split from its sticky comment: 'Time to ready: 9.6 s (fetch 0.1 s · ...)'."""
    m = re.search(r"Time to ready: ([\d.]+) s \(([^)]*)\)", comment_body or "")
    if not m:
        return None, {}
    return float(m.group(1)), {k: float(v) for k, v in re.findall(r"(\w+) ([\d.]+) s", m.group(2))}
