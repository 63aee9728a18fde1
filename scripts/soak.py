#!/usr/bin/env python3
"""Soak of `switchboard serve`: signed Retell call_ended deliveries (each a new call) at a
steady rate for a while, with the server's resident memory sampled as it runs.

    scripts/soak.py [--db sqlite|mysql] [--rate 300] [--secs 600] [--sample-secs 30]
                    [--bin target/release/switchboard]

Starts serve on a free port with a private Redis key prefix and a directory of its own (for
--db mysql: a fresh MariaDB database on 127.0.0.1:3306, migrated first), seeds the demo
business through /dev/demo/seed, posts, and prints one JSON line per sample
({"t": seconds, "rss_kb": N, "posted": N, "accepted": N}) and a summary line at the end with
the samples after warm-up (the first third) and their spread. Cleans up its keys and database.
"""

import argparse
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RETELL_KEY = "key_dev_switchboard"  # the published development key (dev.stand_ins)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--db", choices=["sqlite", "mysql"], default="sqlite")
    p.add_argument("--rate", type=int, default=300)
    p.add_argument("--secs", type=int, default=600)
    p.add_argument("--sample-secs", type=int, default=30)
    p.add_argument("--bin", default=os.path.join(ROOT, "target/release/switchboard"))
    a = p.parse_args()

    prefix = f"soak-{uuid.uuid4().hex[:8]}"
    work = tempfile.mkdtemp(prefix="switchboard-soak-")
    env = dict(os.environ, SWITCHBOARD_QUEUE__PREFIX=prefix, SWITCHBOARD_LOG="warn",
               SWITCHBOARD_REDIS__EMBEDDED="false")
    dbname = None
    if a.db == "mysql":
        dbname = f"soak_{uuid.uuid4().hex[:8]}"
        subprocess.run(["mariadb", "-uroot", "-h127.0.0.1", "-e",
                        f"CREATE DATABASE `{dbname}` CHARACTER SET utf8mb4"], check=True)
        env["DATABASE_URL"] = f"mysql://root@127.0.0.1:3306/{dbname}"
        subprocess.run([a.bin, "migrate"], env=env, cwd=work, check=True,
                       stdout=subprocess.DEVNULL)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = subprocess.Popen([a.bin, "serve", "--listen", f"127.0.0.1:{port}"], env=env,
                             cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/readyz", timeout=1)
                break
            except (urllib.error.URLError, ConnectionError):
                if time.time() > deadline:
                    sys.exit("serve did not come up")
                time.sleep(0.1)
        urllib.request.urlopen(urllib.request.Request(base + "/dev/demo/seed", data=b"{}",
                                                      method="POST"), timeout=10)
        template = open(os.path.join(ROOT, "tests/fixtures/webhooks/retell_call_ended.json")).read()
        old_call = json.loads(template)["call"]["call_id"]
        counts = {"posted": 0, "accepted": 0}
        lock = threading.Lock()
        stop_at = time.time() + a.secs

        def post(n):
            body = template.replace(old_call, f"call_soak_{prefix}_{n}")
            ts = str(int(time.time() * 1000))
            d = hmac.new(RETELL_KEY.encode(), body.encode() + ts.encode(), hashlib.sha256).hexdigest()
            req = urllib.request.Request(base + "/webhooks/retell", data=body.encode(),
                                         headers={"content-type": "application/json",
                                                  "x-retell-signature": f"v={ts},d={d}"})
            try:
                code = urllib.request.urlopen(req, timeout=10).status
            except urllib.error.HTTPError as e:
                code = e.code
            except (urllib.error.URLError, ConnectionError):
                code = 0
            with lock:
                counts["posted"] += 1
                counts["accepted"] += code == 202

        def producer(offset, step):
            n, interval = offset, step / a.rate
            next_at = time.time()
            while time.time() < stop_at:
                post(n)
                n += step
                next_at += interval
                delay = next_at - time.time()
                if delay > 0:
                    time.sleep(delay)

        threads = [threading.Thread(target=producer, args=(i, 8), daemon=True) for i in range(8)]
        started = time.time()
        for t in threads:
            t.start()
        samples = []
        while time.time() < stop_at:
            time.sleep(min(a.sample_secs, max(0.0, stop_at - time.time())))
            with lock:
                sample = {"t": round(time.time() - started), "rss_kb": rss_kb(serve.pid), **counts}
            samples.append(sample)
            print(json.dumps(sample), flush=True)
        for t in threads:
            t.join()
        warm = [s["rss_kb"] for s in samples[len(samples) // 3:]] or [0]
        queues = json.load(urllib.request.urlopen(base + "/api/queues", timeout=10))
        hooks = next((q for q in queues if q.get("name") == "webhooks"), {})
        print(json.dumps({
            "soak": a.db, "rate": a.rate, "secs": a.secs, "posted": counts["posted"],
            "accepted": counts["accepted"], "rss_kb_after_warmup": warm,
            "rss_kb_min": min(warm), "rss_kb_max": max(warm),
            "growth_pct": round(100.0 * (max(warm) - min(warm)) / max(1, min(warm)), 1),
            "webhooks_left": {k: hooks.get(k) for k in ("pending", "running", "dead", "processed")},
        }), flush=True)
    finally:
        serve.terminate()
        serve.wait(timeout=60)
        keys = subprocess.run(["redis-cli", "--scan", "--pattern", f"*{prefix}*"],
                              capture_output=True, text=True).stdout.split()
        for i in range(0, len(keys), 500):
            subprocess.run(["redis-cli", "del", *keys[i:i + 500]], stdout=subprocess.DEVNULL)
        if dbname:
            subprocess.run(["mariadb", "-uroot", "-h127.0.0.1", "-e",
                            f"DROP DATABASE IF EXISTS `{dbname}`"])


if __name__ == "__main__":
    main()
