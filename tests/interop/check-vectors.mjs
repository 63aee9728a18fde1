#!/usr/bin/env node
// Checks sign.mjs (official SDKs) against the shared webhook signature fixture vectors.
// Usage: node check-vectors.mjs [path/to/fixtures/webhooks]
// Fixture dir: argv[2], else $SWITCHBOARD_WEBHOOK_FIXTURES, else the repo's tests/fixtures/webhooks,
// else ../../../shared/fixtures/webhooks relative to this file. Exits 1 on any mismatch or if nothing was checked.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const inRepo = join(here, '..', 'fixtures', 'webhooks');
const fixtures = resolve(process.argv[2] || process.env.SWITCHBOARD_WEBHOOK_FIXTURES
  || (existsSync(join(inRepo, 'signature_vectors.json')) ? inRepo : join(here, '..', '..', '..', 'shared', 'fixtures', 'webhooks')));
const signer = join(here, 'sign.mjs');

function run(req) {
  const r = spawnSync(process.execPath, [signer], { input: JSON.stringify(req), encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`sign.mjs exited ${r.status}: ${r.stderr.trim()}`);
  const lines = r.stdout.split('\n').filter((l) => l.length > 0);
  if (lines.length !== 1) throw new Error(`expected one stdout line, got ${JSON.stringify(r.stdout)}`);
  return JSON.parse(lines[0]);
}

const PROVIDERS = { 'Stripe-Signature': 'stripe', 'x-retell-signature': 'retell' };
const vectors = JSON.parse(readFileSync(join(fixtures, 'signature_vectors.json'), 'utf8'));
console.log(`fixtures: ${fixtures}`);
let passed = 0, failed = 0, skipped = 0;

for (const v of vectors) {
  const provider = PROVIDERS[v.header];
  if (!provider) { skipped++; console.log(`SKIP ${v.file} (${v.header}: no official SDK signer)`); continue; }
  const body = readFileSync(join(fixtures, v.file), 'utf8');
  const problems = [];
  try {
    const out = run({ provider, secret: v.secret, body, timestamp: v.timestamp });
    if (out.header !== v.header) problems.push(`header ${JSON.stringify(out.header)} != ${JSON.stringify(v.header)}`);
    if (out.value !== v.value) problems.push(`value ${out.value} != ${v.value}`);
    // Cross-check with the SDK's verifier, clock pinned at the vector's timestamp.
    const ok = run({ provider: `${provider}-verify`, secret: v.secret, body, value: v.value, now: v.timestamp });
    if (ok.valid !== true) problems.push(`SDK verifier rejected the vector: ${JSON.stringify(ok)}`);
    // Negative controls: a one-byte body change and a wrong secret must be rejected.
    const bad1 = run({ provider: `${provider}-verify`, secret: v.secret, body: body.slice(0, -1), value: v.value, now: v.timestamp });
    const bad2 = run({ provider: `${provider}-verify`, secret: v.secret + 'x', body, value: v.value, now: v.timestamp });
    if (bad1.valid !== false) problems.push('verifier accepted body without trailing newline');
    if (bad2.valid !== false) problems.push('verifier accepted wrong secret');
  } catch (e) {
    problems.push(e.message);
  }
  if (problems.length) { failed++; console.log(`FAIL ${v.file}: ${problems.join('; ')}`); }
  else { passed++; console.log(`ok   ${v.file} ${v.value}`); }
}

console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
