#!/usr/bin/env python3
"""Writes the ingest payloads and their signatures into OUT: the real pull_request fixtures
(byte for byte), a ~1 MiB push (the real push fixture with its commit list repeated), and a
signature file per body (sha256=<hex> over the exact bytes)."""
import hashlib, hmac, json, pathlib, sys


def sign(secret, body):
    """GitHub's X-Hub-Signature-256 for body (bytes) under secret (str or bytes)."""
    if isinstance(secret, str):
        secret = secret.encode()
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def main():
    fixtures, out, secret = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3].encode()
    out.mkdir(parents=True, exist_ok=True)

    def write(name, body):
        (out / f"{name}.json").write_bytes(body)
        sig = sign(secret, body)
        (out / f"{name}.sig").write_text(sig)

    write("pr_opened", (fixtures / "pull_request.opened.json").read_bytes())
    write("pr_labeled", (fixtures / "pull_request.labeled.json").read_bytes())
    push = json.loads((fixtures / "push.branch.json").read_bytes())
    commit = push["commits"][0]
    per = len(json.dumps(commit, indent=2).encode()) + 8
    base = len(json.dumps(push, indent=2).encode())
    commits = []
    for i in range((1024 * 1024 - base) // per):
        c = dict(commit)
        c["id"] = hashlib.sha1(str(i).encode()).hexdigest()
        commits.append(c)
    push["commits"] = commits
    write("push_1mib", json.dumps(push, indent=2).encode())


if __name__ == "__main__":
    main()
