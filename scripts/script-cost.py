#!/usr/bin/env python3
"""Redis instructions per job of the queue's scripts, counted rather than timed.

A drain's jobs/s and CPU per job move by a quarter within minutes on a shared machine; an
instruction count does not. This starts a private redis-server under valgrind's callgrind,
loads the queue's Lua scripts from src/queue/lua composed as src/queue/scripts.rs composes
them, seeds N pending jobs (plain through LPUSH and the index, like the batched producer;
with tenants or priorities through the enqueue script), then drains them as two workers do:
one fetch each, then one ack_fetch call per batch that settles the batch's completions and
leases as many jobs. Only the drain is counted. It prints one JSON line: instructions per
job (`redis_instructions_per_job`), the script calls, and the Redis time per job by command
from INFO commandstats (slowed by valgrind: compare shares, not values).

    scripts/script-cost.py [--jobs 10000] [--tenants N] [--priorities] [--batch 88] [--lua DIR]

`--lua` reads the scripts from another checkout's src/queue/lua, to compare two builds.

Needs redis-server and valgrind (apt-get install valgrind); no Python packages.
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

LUA = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'src', 'queue', 'lua')


class Redis:
    """A minimal RESP client: enough for scripts, pipelines and INFO."""

    def __init__(self, port):
        self.sock = socket.create_connection(('127.0.0.1', port))
        self.file = self.sock.makefile('rb')

    @staticmethod
    def encode(args):
        out = [b'*%d\r\n' % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b'$%d\r\n%s\r\n' % (len(a), a))
        return b''.join(out)

    def read(self):
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b'+':
            return rest.decode()
        if kind == b'-':
            raise RuntimeError(rest.decode())
        if kind == b':':
            return int(rest)
        if kind == b'$':
            n = int(rest)
            return None if n < 0 else self.file.read(n + 2)[:-2].decode()
        if kind == b'*':
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError('unexpected reply %r' % line)

    def call(self, *args):
        self.sock.sendall(self.encode(args))
        return self.read()

    def pipe(self, commands):
        self.sock.sendall(b''.join(self.encode(c) for c in commands))
        return [self.read() for _ in commands]


def source(*files):
    return ''.join(open(os.path.join(LUA, f)).read() for f in files)


def use_scripts(directory):
    global LUA
    LUA = directory


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def callgrind(args, *command):
    return subprocess.run(['callgrind_control', *args, *command], capture_output=True, text=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--jobs', type=int, default=10000)
    p.add_argument('--tenants', type=int, default=0)
    p.add_argument('--priorities', action='store_true')
    p.add_argument('--batch', type=int, default=88, help='jobs settled and leased per call')
    p.add_argument('--lua', default=LUA, help='the directory of the scripts (default: this checkout)')
    a = p.parse_args()
    use_scripts(a.lua)
    for tool in ('redis-server', 'valgrind', 'callgrind_control', 'callgrind_annotate'):
        if not shutil.which(tool):
            sys.exit('script-cost: %s not found; install it (apt-get install valgrind redis-server)' % tool)

    work = tempfile.mkdtemp(prefix='script-cost-')
    port = free_port()
    out = os.path.join(work, 'callgrind.out')
    server = subprocess.Popen(
        ['valgrind', '--tool=callgrind', '--instr-atstart=no', '--callgrind-out-file=' + out,
         'redis-server', '--port', str(port), '--save', '', '--appendonly', 'no', '--dir', work],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                r = Redis(port)
                r.call('PING')
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit('script-cost: redis-server under valgrind did not start')
                time.sleep(0.2)
        print(json.dumps(run(r, a, str(server.pid), out)))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


def run(r, a, pid, out):
    enqueue = r.call('SCRIPT', 'LOAD', source('lanes.lua', 'enqueue.lua'))
    fetch = r.call('SCRIPT', 'LOAD', source('lanes.lua', 'fetch.lua'))
    ack_fetch = r.call('SCRIPT', 'LOAD', source('lanes.lua', 'sequence.lua')
                       + 'local function settle(KEYS, ARGV)\n' + source('ack.lua')
                       + 'end\nlocal function lease(KEYS, ARGV)\n' + source('fetch.lua')
                       + 'end\n' + source('ack_fetch.lua'))
    base = '{sb:cost}:'
    k = {n: base + n for n in ('pending', 'delayed', 'stats', 'completed', 'dead', 'dead_at',
                               'throughput', 'expired', 'expired_at', 'workers', 'paused', 'index')}
    now = int(time.time() * 1000)
    priorities = ['high', 'normal', 'normal', 'low']
    batch = []
    for i in range(a.jobs):
        tenant = 't%d' % (i % a.tenants) if a.tenants else None
        priority = priorities[i % 4] if a.priorities else 'normal'
        head = '{"kind":"noop","v":1'
        if tenant:
            head += ',"tn":"%s"' % tenant
        if priority != 'normal':
            head += ',"pr":"%s"' % priority
        job_id = 'b%d' % i
        item = '%s %s,"args":{},"attempt":0,"enq_us":%d}' % (job_id, head, now * 1000 + i)
        if tenant or priority != 'normal':
            batch.append(['EVALSHA', enqueue, 6, base + 'u', k['pending'], k['delayed'],
                          base + 'seq:', k['stats'], base + 'idem',
                          job_id, '', item, '', '', '', base, now])
        else:
            batch += [['LPUSH', k['pending'], item], ['HSET', k['index'], job_id, item]]
        if len(batch) >= 2000:
            r.pipe(batch)
            batch = []
    if batch:
        r.pipe(batch)

    workers = ['w1', 'w2']
    held = {w: [] for w in workers}
    epoch = {}

    def lease_call(w, n):
        keys = [k['pending'], base + 'inbox:' + w, base + 'leased:' + w, k['stats'],
                k['paused'], k['workers']]
        return keys, [n, w, now + 60000, base, 0, 0, now]

    def hold(w, reply):
        if reply:
            held[w].extend(reply[:-1])
            epoch[w] = reply[-1][1:]

    r.call('CONFIG', 'RESETSTAT')
    callgrind(['--zero'], str(pid))
    callgrind(['-i', 'on'], str(pid))
    for w in workers:
        keys, args = lease_call(w, a.batch)
        hold(w, r.call('EVALSHA', fetch, len(keys), *keys, *args))
    done = calls = 0
    while any(held.values()):
        for w in workers:
            if not held[w]:
                continue
            settle, held[w] = held[w][:a.batch], held[w][a.batch:]
            acks = [now, 10000, 10000, base, epoch[w]]
            for item in settle:
                job_id = item.split(' ', 1)[0]
                m = re.search(r'"tn":"([^"]*)"', item)
                acks += ['C', job_id, '', '%s %d noop %s' % (job_id, now, m.group(1) if m else '')]
            keys, args = lease_call(w, len(settle))
            ack_keys = [base + 'leased:' + w, k['stats'], k['completed'], k['delayed'], k['dead'],
                        k['dead_at'], k['pending'], k['throughput'], k['expired'], k['expired_at']]
            reply = r.call('EVALSHA', ack_fetch, 16, *ack_keys, *keys, *acks, *args)
            if reply[0] != len(settle):
                raise RuntimeError('settled %s of %d' % (reply[0], len(settle)))
            hold(w, reply[2] if reply[2] != -1 else None)
            done += len(settle)
            calls += 1
    callgrind(['-i', 'off'], str(pid))
    callgrind(['--dump=drain'], str(pid))
    if done != a.jobs:
        raise RuntimeError('drained %d of %d' % (done, a.jobs))

    dumps = [f for f in os.listdir(os.path.dirname(out)) if f.startswith('callgrind.out')]
    total = 0
    for f in dumps:
        text = subprocess.run(['callgrind_annotate', os.path.join(os.path.dirname(out), f)],
                              capture_output=True, text=True).stdout
        m = re.search(r'^\s*([\d,]+) .*PROGRAM TOTALS', text, re.M)
        total += int(m.group(1).replace(',', '')) if m else 0
    by_command = {}
    for line in r.call('INFO', 'commandstats').split('\r\n'):
        m = re.match(r'cmdstat_([^:]+):calls=(\d+),usec=(\d+)', line)
        if m and m.group(1) not in ('config|resetstat', 'info'):
            by_command[m.group(1)] = round(int(m.group(3)) / done, 2)
    return {
        'jobs': done, 'tenants': a.tenants, 'priorities': a.priorities, 'batch': a.batch,
        'script_calls': calls, 'redis_instructions_per_job': round(total / done),
        'redis_us_per_job_under_valgrind': dict(sorted(by_command.items(), key=lambda kv: -kv[1])[:8]),
    }


if __name__ == '__main__':
    main()
