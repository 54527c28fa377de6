// Acceptance script for the unmodified npm `etcd3` client (pinned in
// package.json), run by tests/integration/test_accept_node_etcd3.py against a
// fresh etcd 3.4 and a fresh Flotilla member.
//
//   node etcd3_accept.js 127.0.0.1:PORT [--unimplemented]
//
// Prints one JSON document on stdout: {"steps": [[name, result], ...]} where
// every result is normalized (int64 strings kept, Buffers as base64,
// cluster_id/member_id/raft_term dropped) so the two stores compare equal.
// With --unimplemented it also checks, for a server without leases/auth/hash,
// that those calls fail promptly with GRPCNotImplementedError and that the
// client keeps working afterwards ("unimplemented" in the output).
'use strict';

const { Etcd3, GRPCNotImplementedError } = require('etcd3');

const CLUSTER_FIELDS = new Set(['cluster_id', 'member_id', 'raft_term']);

function norm(v) {
  if (Buffer.isBuffer(v)) {
    return 'b64:' + v.toString('base64');
  }
  if (Array.isArray(v)) {
    return v.map(norm);
  }
  if (v !== null && typeof v === 'object') {
    const out = {};
    for (const k of Object.keys(v).sort()) {
      if (!CLUSTER_FIELDS.has(k)) {
        out[k] = norm(v[k]);
      }
    }
    return out;
  }
  return v === undefined ? null : v;
}

async function attempt(fn) {
  try {
    return ['ok', norm(await fn())];
  } catch (err) {
    return ['error', err.constructor.name, String(err.message)];
  }
}

async function withDeadline(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function steps(c) {
  const s = [];
  const add = async (name, fn) => {
    s.push([name, await withDeadline(10000, name, attempt(fn))]);
  };

  await add('put foo', () => c.put('foo').value('bar').exec());
  for (const [k, v] of [['foo1', 'zeta'], ['foo2', 'alpha'], ['foo3', 'mid'], ['zoo', 'val'],
                        ['foo', 'bar2'], ['a/1', 'x'], ['a/2', 'y']]) {
    await add(`put ${k}`, () => c.put(k).value(v));
  }
  await add('put prev', () => c.put('foo2').value('beta').getPrevious());
  await add('put binary', () => c.put(Buffer.from([0, 0xff])).value(Buffer.from([1, 2, 3])).exec());
  await add('get string', () => c.get('foo').string());
  await add('get buffer', () => c.get(Buffer.from([0, 0xff])).buffer());
  await add('get missing', () => c.get('nope').string());
  await add('get exec', () => c.get('foo2').exec());
  await add('get json bad', () => c.get('foo').json());
  await add('put json', () => c.put('j').value(JSON.stringify({ a: [1, 2] })).exec());
  await add('get json', () => c.get('j').json());
  await add('get number', () => c.put('n').value('42').then(() => c.get('n').number()));
  await add('getAll prefix strings', () => c.getAll().prefix('foo').strings());
  await add('getAll prefix keys', () => c.getAll().prefix('foo').keys());
  await add('getAll prefix count', () => c.getAll().prefix('foo').count());
  for (const target of ['Key', 'Version', 'Create', 'Mod', 'Value']) {
    for (const order of ['Ascend', 'Descend']) {
      await add(`getAll sort ${target} ${order}`,
                () => c.getAll().prefix('foo').sort(target, order).limit(3).exec());
    }
  }
  await add('getAll all', () => c.getAll().strings());
  // inRange(key) sends a present but empty range_end: etcd 3.4 reads that as
  // "every key >= key" for ranges (also as a txn op), a single key for deletes.
  await add('getAll inRange', () => c.getAll().inRange('foo1').keys());
  await add('txn getAll inRange', () =>
    c.if('foo', 'Version', '>', 0).then(c.getAll().inRange('foo3')).commit());
  await add('put r1', () => c.put('r1').value('1'));
  await add('put r2', () => c.put('r2').value('2'));
  await add('delete inRange', () => c.delete().inRange('r1').exec());
  await add('getAll r prefix', () => c.getAll().prefix('r').keys());
  await add('getAll range', () => c.getAll().inRange({ start: 'foo1', end: 'foo3' }).keys());
  await add('getAll old revision', () => c.getAll().prefix('foo').revision(3).exec());
  await add('get future revision', () => c.get('foo').revision(100000).exec());
  await add('delete key', () => c.delete().key('foo1').exec());
  await add('delete missing', () => c.delete().key('nope').exec());
  await add('delete prefix prev', () => c.delete().prefix('a/').getPrevious());
  await add('put empty key', () => c.put('').value('x').exec());

  // txn: if/then/else on value, version, create and mod revision
  await add('txn value == then', () =>
    c.if('foo', 'Value', '==', 'bar2').then(c.put('foo').value('bar3'), c.get('foo'))
      .else(c.put('foo').value('failed')).commit());
  await add('txn value != else', () =>
    c.if('foo', 'Value', '==', 'bar2').then(c.put('never').value('1'))
      .else(c.get('foo'), c.getAll().prefix('foo')).commit());
  await add('txn version and create', () =>
    c.if('foo', 'Version', '>', 2).and('foo2', 'Create', '<', 4)
      .then(c.put('both').value('yes'), c.delete().key('foo3'))
      .else(c.put('both').value('no')).commit());
  const fooRev = async () => (await c.get('foo').exec()).kvs[0].mod_revision;
  await add('txn mod revision matches', async () => {
    const rev = await fooRev();
    return c.if('foo', 'Mod', '==', rev).then(c.put('foo').value('cas1')).else(c.get('foo')).commit();
  });
  await add('txn mod revision stale', async () => {
    const rev = Number(await fooRev()) - 1;
    return c.if('foo', 'Mod', '==', rev).then(c.put('foo').value('cas2')).else(c.get('foo')).commit();
  });
  await add('txn mod < on missing key', () =>
    c.if('ghost', 'Mod', '<', 1).then(c.put('ghost').value('boo')).else().commit());
  await add('txn duplicate key', () =>
    c.if('zoo', 'Version', '>', 0).then(c.put('d').value('1'), c.put('d').value('2')).commit());
  await add('compact', async () => {
    const rev = await fooRev();
    await c.kv.compact({ revision: rev });
    return rev;
  });
  await add('read compacted', () => c.get('foo').revision(2).exec());
  await add('compact again', () => c.kv.compact({ revision: 2 }));
  await add('getAll final', () => c.getAll().sort('Mod', 'Descend').exec());
  return s;
}

async function unimplemented(c) {
  const out = [];
  const calls = [
    ['lease grant', () => c.lease(30, { autoKeepAlive: false }).grant()],
    ['maintenance hash', () => c.maintenance.hash({})],
    ['auth roles', () => c.getRoles()],
  ];
  for (const [name, fn] of calls) {
    const start = Date.now();
    let kind;
    try {
      await withDeadline(10000, name, fn());
      kind = 'succeeded';
    } catch (err) {
      kind = err instanceof GRPCNotImplementedError ? 'GRPCNotImplementedError'
                                                   : `${err.constructor.name}: ${err.message}`;
    }
    out.push([name, kind, Date.now() - start]);
  }
  // the client must still work after those errors
  await c.put('after').value('ok');
  out.push(['get after', await c.get('after').string()]);
  const st = await c.maintenance.status({});
  const ml = await c.cluster.memberList({});
  out.push(['status', st.version, st.leader === ml.members[0].ID, Number(st.dbSize) > 0]);
  out.push(['members', ml.members.length, ml.members[0].name, ml.members[0].clientURLs]);
  return out;
}

async function main() {
  const [endpoint, flag] = process.argv.slice(2);
  if (!endpoint) {
    throw new Error('usage: node etcd3_accept.js HOST:PORT [--unimplemented]');
  }
  const c = new Etcd3({ hosts: `http://${endpoint}`, dialTimeout: 5000 });
  try {
    const result = { steps: await steps(c) };
    if (flag === '--unimplemented') {
      result.unimplemented = await unimplemented(c);
    }
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    c.close();
  }
}

main().catch((err) => {
  process.stderr.write(`etcd3_accept.js: ${err && err.stack ? err.stack : err}\n`);
  process.exit(2);
});
