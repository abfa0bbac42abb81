// Evaluates flags on a running `sextant serve` through the official
// OpenFeature OFREP provider (@openfeature/ofrep-provider) and checks
// values, variants, reasons and error codes.
//
// usage: SEXTANT_URL=http://127.0.0.1:7400 SEXTANT_ADMIN_TOKEN=... node interop.mjs
import assert from 'node:assert/strict';
import { OpenFeature, ErrorCode } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

const base = process.env.SEXTANT_URL;
const admin = process.env.SEXTANT_ADMIN_TOKEN;
if (!base || !admin) {
  console.error('set SEXTANT_URL and SEXTANT_ADMIN_TOKEN');
  process.exit(2);
}

async function api(method, path, body) {
  const res = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path} -> ${res.status}: ${text}`);
  return text ? JSON.parse(text) : null;
}

const ws = `interop${Date.now()}`;
await api('POST', '/api/v1/workspaces', {
  key: ws,
  environments: [{ key: 'production', production: true }],
  reason: 'OFREP interop test',
});

const flag = (key, kind, variations, production) => ({
  flag: {
    key, kind, variations,
    hypothesis: { operational: true, reason: 'interop test flag' },
    environments: { production },
  },
  reason: 'interop',
});
const rule = (attribute, values, variation) => ({
  conditions: [{ attribute, op: 'in', values }],
  serve: { variation },
});
await api('POST', `/api/v1/workspaces/${ws}/flags`, flag('dark-mode', 'boolean',
  [{ key: 'on', value: true }, { key: 'off', value: false }],
  { enabled: true, off_variation: 'off', rules: [rule('plan', ['pro'], 'on')], default_serve: { variation: 'off' } }));
await api('POST', `/api/v1/workspaces/${ws}/flags`, flag('greeting', 'string',
  [{ key: 'hello', value: 'hello' }, { key: 'kia-ora', value: 'kia ora' }],
  { enabled: true, rules: [rule('country', ['NZ'], 'kia-ora')], default_serve: { variation: 'hello' } }));
await api('POST', `/api/v1/workspaces/${ws}/flags`, flag('max-items', 'number',
  [{ key: 'ten', value: 10 }, { key: 'big', value: 250.5 }],
  { enabled: true, default_serve: { variation: 'big' } }));
await api('POST', `/api/v1/workspaces/${ws}/flags`, flag('theme', 'json',
  [{ key: 'blue', value: { primary: '#00f', sizes: [1, 2] } }],
  { enabled: true, default_serve: { variation: 'blue' } }));
await api('POST', `/api/v1/workspaces/${ws}/flags`, flag('killed', 'boolean',
  [{ key: 'on', value: true }, { key: 'off', value: false }],
  { enabled: false, off_variation: 'off', default_serve: { variation: 'on' } }));

const created = await api('POST', '/api/v1/tokens', {
  name: 'interop client', kind: 'client', workspace: ws, environment: 'production',
});

await OpenFeature.setProviderAndWait(new OFREPProvider({
  baseUrl: base,
  headers: { Authorization: `Bearer ${created.token}` },
}));
const client = OpenFeature.getClient();
let checks = 0;
const check = (actual, expected, what) => {
  for (const [k, v] of Object.entries(expected)) {
    assert.deepEqual(actual[k], v, `${what}: ${k} is ${JSON.stringify(actual[k])}, expected ${JSON.stringify(v)}`);
  }
  checks += 1;
};

const pro = { targetingKey: 'user-1', plan: 'pro' };
check(await client.getBooleanDetails('dark-mode', false, pro),
  { value: true, variant: 'on', reason: 'TARGETING_MATCH' }, 'boolean targeting match');
check(await client.getBooleanDetails('dark-mode', true, { targetingKey: 'user-2', plan: 'free' }),
  { value: false, variant: 'off', reason: 'UNKNOWN' }, 'boolean default (OFREP has no DEFAULT reason)');
check(await client.getStringDetails('greeting', 'x', { targetingKey: 'u', country: 'NZ' }),
  { value: 'kia ora', variant: 'kia-ora', reason: 'TARGETING_MATCH' }, 'string targeting match');
check(await client.getStringDetails('greeting', 'x', { targetingKey: 'u', country: 'FR' }),
  { value: 'hello', variant: 'hello', reason: 'UNKNOWN' }, 'string default');
check(await client.getNumberDetails('max-items', 0, { targetingKey: 'u' }),
  { value: 250.5, variant: 'big', reason: 'STATIC' }, 'number static');
check(await client.getObjectDetails('theme', {}, { targetingKey: 'u' }),
  { value: { primary: '#00f', sizes: [1, 2] }, variant: 'blue', reason: 'STATIC' }, 'object static');
check(await client.getBooleanDetails('killed', true, { targetingKey: 'u' }),
  { value: false, variant: 'off', reason: 'DISABLED' }, 'kill switch');
check(await client.getBooleanDetails('no-such-flag', true, { targetingKey: 'u' }),
  { value: true, reason: 'ERROR', errorCode: ErrorCode.FLAG_NOT_FOUND }, 'missing flag');
check(await client.getNumberDetails('greeting', 7, { targetingKey: 'u' }),
  { value: 7, reason: 'ERROR', errorCode: ErrorCode.TYPE_MISMATCH }, 'type mismatch');

await OpenFeature.close();
console.log(`ofrep interop: ${checks} passed, 0 failed`);
