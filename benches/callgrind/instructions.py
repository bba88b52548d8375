#!/usr/bin/env python3
"""User-space instructions per request of a server, counted by callgrind.

    benches/callgrind/instructions.py SERVER ROUTE [SECONDS]

SERVER is a release `referral-server` or `referral-server-actix` binary (run
on the memory store as `http-wrk` runs it), or `bare-axum:HTTP_WRK` /
`bare-axum-cores:HTTP_WRK` / `bare-actix:HTTP_WRK` for `http-wrk`'s bare
routes. ROUTE is `profile`, `referrals` or `invite` (the routes of
`http-wrk`). The server runs under `valgrind --tool=callgrind`; a user and ten
referees are logged in through the API, `wrk -t1 -c4` warms the route up for
2 s, the counters are zeroed, `wrk` runs for SECONDS (default 6) and the
counters are dumped: the instructions the server's threads executed in that
window divided by the requests wrk completed. Kernel work (TCP, syscalls) is
not counted. Unlike req/s or CPU time, the count does not depend on what else
the machine runs: runs of one binary agree within about 0.5 %.

Needs valgrind, wrk and python3 (Debian packages). Set KEEP=FILE to keep the
callgrind profile of the window (read it with `callgrind_annotate`).
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request

SECRET = "http-wrk-harness-secret-0123456789abcdef"
PATHS = {"profile": "/api/profile", "referrals": "/api/profile/referrals",
         "invite": "/api/profile/invite"}


def main():
    if len(sys.argv) < 3 or sys.argv[2] not in PATHS:
        sys.exit(__doc__)
    server, route = sys.argv[1], sys.argv[2]
    seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    work = tempfile.mkdtemp(prefix="instructions-")
    bare = re.fullmatch(r"(bare-axum|bare-axum-cores|bare-actix):(.+)", server)
    env = dict(os.environ, RUST_LOG="warn")
    if bare:
        # The bare routes answer a fixed body of the real answer's size.
        for name, size in [("profile", 360), ("referrals", 910), ("invite", 214)]:
            with open(os.path.join(work, name + ".json"), "w") as f:
                f.write(json.dumps({"x": "a" * (size - 9)}))
        command = [bare.group(2), "--serve-bare", bare.group(1)[len("bare-"):],
                   "--bodies", work]
    else:
        env.update(REFERRAL_LISTEN="127.0.0.1:0", REFERRAL_JWT_SECRET=SECRET,
                   REFERRAL_SMS_DELAY_MS="0", REFERRAL_DEV_OUTBOX="1",
                   REFERRAL_IP_MAX_SENDS_PER_HOUR="0")
        env.pop("DATABASE_URL", None)
        command = [server]
    out = os.path.join(work, "callgrind.out")
    process = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p"] + command,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        base = None
        for line in process.stdout:
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                base = found.group(1)
                break
        if base is None:
            sys.exit("the server did not announce its address")
        wrk = ["wrk", "-t1", "-c4"]
        if bare:
            headers = ["-H", "Authorization: Bearer " + "x" * 150]
            if route == "invite":
                headers += ["-s", write_post_script(work, "{}", "x" * 150)]
        else:
            owner, referee, invite_body = set_up(base)
            headers = ["-H", "Authorization: Bearer " + owner]
            if route == "invite":
                headers = ["-s", write_post_script(work, invite_body, referee)]
        url = base + PATHS[route]
        subprocess.run(wrk + ["-d2s"] + headers + [url], capture_output=True, check=True)
        subprocess.run(["callgrind_control", "-z", str(process.pid)],
                       capture_output=True, check=True)
        report = subprocess.run(wrk + [f"-d{seconds}s"] + headers + [url],
                                capture_output=True, text=True, check=True).stdout
        subprocess.run(["callgrind_control", "-d", str(process.pid)],
                       capture_output=True, check=True)
        requests = int(re.search(r"(\d+) requests in", report).group(1))
        failed = re.search(r"Non-2xx or 3xx responses: (\d+)", report)
        if failed:
            sys.exit(f"{failed.group(1)} answers were not 2xx")
        dumps = sorted(glob.glob(f"{out}.{process.pid}.*"),
                       key=lambda f: int(f.rsplit(".", 1)[1]))
        instructions = None
        with open(dumps[0]) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    instructions = int(line.split()[1])
        if os.environ.get("KEEP"):
            shutil.copy(dumps[0], os.environ["KEEP"])
        print(f"{server} {route}: {requests} requests, "
              f"{instructions / requests:,.0f} instructions per request")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        shutil.rmtree(work, ignore_errors=True)


def write_post_script(work, body, token):
    """A wrk script sending `body` as JSON with `token`."""
    path = os.path.join(work, "post.lua")
    with open(path, "w") as f:
        f.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
                f'wrk.headers["content-type"] = "application/json"\n'
                f'wrk.headers["authorization"] = "Bearer {token}"\n')
    return path


def set_up(base):
    """An owner and ten referees who activated the owner's code, as http-wrk
    sets them up: the owner's token, the last referee's, the invite body."""
    def call(method, path, body=None, token=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(base + path, method=method, data=data)
        if body is not None:
            request.add_header("content-type", "application/json")
        if token:
            request.add_header("authorization", "Bearer " + token)
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read())

    def login(phone):
        call("POST", "/api/auth/code", {"phone": phone})
        code = call("GET", "/api/dev/sms?phone=" + phone)["code"]
        return call("POST", "/api/auth/verify", {"phone": phone, "code": code})

    owner = login("+79000000000")
    invite_body = json.dumps({"invite_code": owner["profile"]["invite_code"]})
    referee = None
    for n in range(1, 11):
        referee = login(f"+790000000{n:02d}")["access_token"]
        call("POST", "/api/profile/invite", json.loads(invite_body), referee)
    return owner["access_token"], referee, invite_body


if __name__ == "__main__":
    main()
