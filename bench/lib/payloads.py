#!/usr/bin/env python3
"""Writes the ingest payloads and their signatures into OUT: the real pull_request fixtures
(byte for byte), a ~1 MiB push (the real push fixture with its commit list repeated), and a
signature file per body (sha256=<hex> over the exact bytes).

When the GitHub fixtures' folder has Gitea and GitLab siblings (fixtures/forge-payloads/), it
also writes OUT/gitea/ and OUT/gitlab/: the same four scenarios from those forges' real
payloads, each padded to the byte size of GitHub's body for the same scenario, so the three
forges' receivers are compared on the same number of bytes hashed and parsed (see `pad`)."""
import base64, hashlib, hmac, json, pathlib, sys


def sign(secret, body):
    """GitHub's X-Hub-Signature-256 for body (bytes) under secret (str or bytes)."""
    if isinstance(secret, str):
        secret = secret.encode()
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def sign_gitea(secret, body):
    """Gitea's and Forgejo's X-Gitea-Signature: the bare hex HMAC-SHA256 of the body."""
    if isinstance(secret, str):
        secret = secret.encode()
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def sign_standard(secret, msg_id, timestamp, body):
    """A Standard Webhooks `webhook-signature` (GitLab's signing token): `v1,<base64>` of the
    HMAC-SHA256 of `{id}.{timestamp}.{body}`, keyed with the base64 part of the whsec_ secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def repeat_commits(push, commits_key, size):
    """`push` with its first commit repeated (fresh ids) until the body is about `size` bytes."""
    commit = push[commits_key][0]
    per = len(json.dumps(commit, indent=2).encode()) + 8
    base = len(json.dumps(push, indent=2).encode())
    commits = []
    for i in range(max(size - base, 0) // per):
        c = dict(commit)
        c["id"] = hashlib.sha1(str(i).encode()).hexdigest()
        commits.append(c)
    push = dict(push)
    push[commits_key] = commits
    return push


def pad(payload, size, filler):
    """`payload` (a dict) serialised (indent 2) to exactly `size` bytes, or as it is when it is
    larger already. The padding is what makes GitHub's bodies large: more objects previewd does
    not read, skipped by the JSON parser (GitHub's pull_request payload carries three repository
    objects of ~100 fields each). Here: copies of the payload's own repository (or project)
    object under a key no forge sends and previewd ignores, then a string to the exact size.
    The bytes hashed for the signature are the same as GitHub's; the bytes the parser skips are
    structure like GitHub's, not one long string (which serde_json skips faster per byte)."""
    out = dict(payload)
    copies = []
    while True:
        out["bench_padding"] = copies + [filler]
        if len(json.dumps(out, indent=2).encode()) > size - 64:
            break
        copies.append(filler)
    out["bench_padding"] = copies
    out["bench_pad"] = ""
    short = size - len(json.dumps(out, indent=2).encode())
    if short < 0:
        del out["bench_padding"], out["bench_pad"]
        return json.dumps(out, indent=2).encode()
    out["bench_pad"] = "x" * short
    body = json.dumps(out, indent=2).encode()
    assert len(body) == size, (len(body), size)
    return body


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
    write("push_1mib", json.dumps(repeat_commits(push, "commits", 1024 * 1024), indent=2).encode())

    sizes = {n: (out / f"{n}.json").stat().st_size for n in ["pr_opened", "pr_labeled", "push_1mib"]}
    root = fixtures.parent
    if (root / "gitea").is_dir() and (root / "forgejo").is_dir():
        forge_payloads(root, out / "gitea", sizes, secret, gitea)
    if (root / "gitlab").is_dir():
        forge_payloads(root, out / "gitlab", sizes, secret, gitlab)


def load(path):
    return json.loads(path.read_bytes())


def gitea(root):
    """Gitea's bodies for the scenarios. A label change cannot be the queued one here: it
    carries the PR's whole label set, so once the first has queued a deploy every repeat of it
    is ignored (the preview is on its way: `label_action`), where each of GitHub's `labeled`
    deliveries is queued. The queued one is Gitea's `synchronized` (new commits) on a PR that
    carries the trigger label, each of which is queued: the real fixture with the label object
    of Forgejo's label change (`Kind/Documentation`) put in its `pull_request.labels`."""
    push = load(root / "gitea" / "push.branch.json")
    sync = load(root / "gitea" / "pull_request.synchronized.json")
    label = load(root / "forgejo" / "pull_request.label_updated.json")["pull_request"]["labels"][0]
    sync["pull_request"]["labels"] = [label]
    return {
        "pr_opened": (load(root / "gitea" / "pull_request.opened.json"), "repository", "pr_opened"),
        "pr_sync": (sync, "repository", "pr_labeled"),
        "push_1mib": (repeat_commits(push, "commits", 1000 * 1024), "repository", "push_1mib"),
    }


def gitlab(root):
    """GitLab's bodies. The label change is GitLab's documented merge request example, whose
    `changes.labels` go from `API` to `Platform` (the pr_queued cell's trigger label), with
    `object_attributes.action` set to `update` (what GitLab sends for a label edit; the example
    says `open`)."""
    mr = load(root / "gitlab" / "merge_request.open.json")
    labeled = json.loads(json.dumps(mr))
    labeled["object_attributes"]["action"] = "update"
    push = load(root / "gitlab" / "push.branch.json")
    return {
        "pr_opened": (mr, "project", "pr_opened"),
        "pr_labeled": (labeled, "project", "pr_labeled"),
        "push_1mib": (repeat_commits(push, "commits", 1000 * 1024), "project", "push_1mib"),
    }


def forge_payloads(root, out, sizes, secret, bodies):
    out.mkdir(parents=True, exist_ok=True)
    for name, (payload, filler_key, size_of) in bodies(root).items():
        body = pad(payload, sizes[size_of], payload[filler_key])
        (out / f"{name}.json").write_bytes(body)
        (out / f"{name}.sig").write_text(sign_gitea(secret, body))


if __name__ == "__main__":
    main()
