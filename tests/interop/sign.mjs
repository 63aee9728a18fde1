#!/usr/bin/env node
// Webhook signer/verifier backed by the providers' OFFICIAL SDKs (stripe, retell-sdk),
// used by Switchboard's Rust interop tests as an independent oracle.
//
// Protocol: one JSON object on stdin, one JSON line on stdout.
//
//   sign:   {"provider":"stripe"|"retell","secret":"...","body":"<raw body>","timestamp":<opt>}
//        -> {"header":"Stripe-Signature"|"x-retell-signature","value":"..."}
//           timestamp: unix SECONDS for stripe, unix MILLISECONDS for retell; absent/null = now.
//
//   verify: {"provider":"stripe-verify"|"retell-verify","secret":"...","body":"<raw body>",
//            "value":"<header value>","now":<opt>,"tolerance":<opt>}
//        -> {"valid":true|false}   (stripe-verify adds "error":"<message>" when invalid)
//           now: the verifier's clock, same units as timestamp (stripe s, retell ms); absent/null = real clock.
//           tolerance: stripe seconds (SDK default 300) / retell ms (SDK default 300000).
//
// Errors (bad input, unknown provider): message on stderr, exit code 2, nothing on stdout.

import Stripe from 'stripe';
import { symmetric as retellWebhooks, sign as retellSign, verify as retellVerify } from 'retell-sdk/lib/webhook_auth';

const stripe = new Stripe('sk_test_dummy');

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on('data', (c) => chunks.push(c));
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    process.stdin.on('error', reject);
  });
}

const has = (v) => v !== undefined && v !== null;

function requireString(req, key) {
  if (typeof req[key] !== 'string') throw new Error(`"${key}" must be a string`);
  return req[key];
}

function optionalNumber(req, key) {
  if (!has(req[key])) return undefined;
  if (typeof req[key] !== 'number' || !Number.isFinite(req[key])) throw new Error(`"${key}" must be a number`);
  return req[key];
}

export async function handle(req) {
  const secret = requireString(req, 'secret');
  const body = requireString(req, 'body');
  switch (req.provider) {
    case 'stripe': {
      const timestamp = optionalNumber(req, 'timestamp');
      const opts = { payload: body, secret };
      if (timestamp !== undefined) opts.timestamp = timestamp;
      return { header: 'Stripe-Signature', value: stripe.webhooks.generateTestHeaderString(opts) };
    }
    case 'retell': {
      const timestamp = optionalNumber(req, 'timestamp');
      const value = timestamp !== undefined
        ? await retellWebhooks.sign(body, secret, timestamp)
        : await retellSign(body, secret);
      return { header: 'x-retell-signature', value };
    }
    case 'stripe-verify': {
      const value = requireString(req, 'value');
      const now = optionalNumber(req, 'now');
      const tolerance = optionalNumber(req, 'tolerance');
      try {
        stripe.webhooks.constructEvent(body, value, secret, tolerance, undefined,
          now !== undefined ? now * 1000 : undefined);
        return { valid: true };
      } catch (e) {
        return { valid: false, error: String(e && e.message ? e.message : e).split('\n')[0] };
      }
    }
    case 'retell-verify': {
      const value = requireString(req, 'value');
      const now = optionalNumber(req, 'now');
      const tolerance = optionalNumber(req, 'tolerance');
      let valid;
      if (now === undefined && tolerance === undefined) {
        valid = await retellVerify(body, secret, value);
      } else {
        const opts = {};
        if (now !== undefined) opts.timestamp = now;
        if (tolerance !== undefined) opts.timeout = tolerance;
        valid = await retellWebhooks.verify(body, secret, value, opts);
      }
      return { valid: valid === true };
    }
    default:
      throw new Error(`unknown provider ${JSON.stringify(req.provider)}`);
  }
}

async function main() {
  let req;
  try {
    req = JSON.parse(await readStdin());
    if (req === null || typeof req !== 'object' || Array.isArray(req)) throw new Error('request must be a JSON object');
  } catch (e) {
    process.stderr.write(`sign.mjs: bad request: ${e.message}\n`);
    process.exit(2);
  }
  try {
    process.stdout.write(JSON.stringify(await handle(req)) + '\n');
  } catch (e) {
    process.stderr.write(`sign.mjs: ${e.message}\n`);
    process.exit(2);
  }
}

main();
