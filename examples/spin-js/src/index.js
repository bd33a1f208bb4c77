// A Spin HTTP component in JavaScript (the Spin JS SDK's build tools, fetch-event style):
// key-value, variables and SQLite through Spin's fermyon:spin@2.0.0 interfaces.
//
// - GET /kv?key=K: the value of K in the `default` store, 404 if absent;
//   PUT or POST /kv?key=K with a body sets it;
// - GET /kv-denied: opens the store `forbidden`, which the manifest does not grant, and
//   answers the error's name (`access-denied` under Spin) with 403;
// - GET /var/NAME: the value of the component variable NAME;
// - GET /sql[?name=N&qty=Q]: creates the table `items` in the SQLite database `default` if
//   needed, inserts a row with parameters, and answers every row as a JSON array of objects;
// - GET /sql-denied: opens the database `forbidden` (not granted) and answers the error.
import { Store } from 'fermyon:spin/key-value@2.0.0';
import { Connection } from 'fermyon:spin/sqlite@2.0.0';
import { get as getVariable } from 'fermyon:spin/variables@2.0.0';

addEventListener('fetch', (event) => {
  event.respondWith(handle(event.request));
});

async function handle(request) {
  const url = new URL(request.url);
  const path = url.pathname;
  const method = request.method;
  try {
    if (path === '/kv' && method === 'GET') {
      return kvGet(url.searchParams);
    }
    if (path === '/kv' && (method === 'PUT' || method === 'POST')) {
      return kvSet(url.searchParams, new Uint8Array(await request.arrayBuffer()));
    }
    if (path === '/kv-denied' && method === 'GET') {
      try {
        Store.open('forbidden');
        return text(200, 'opened');
      } catch (e) {
        return text(403, errorName(e));
      }
    }
    if (path.startsWith('/var/') && method === 'GET') {
      return variable(decodeURIComponent(path.slice('/var/'.length)));
    }
    if (path === '/sql' && method === 'GET') {
      return sql(url.searchParams);
    }
    if (path === '/sql-denied' && method === 'GET') {
      try {
        Connection.open('forbidden');
        return text(200, 'opened');
      } catch (e) {
        return text(403, errorName(e));
      }
    }
    if (['/kv', '/kv-denied', '/sql', '/sql-denied'].includes(path) || path.startsWith('/var/')) {
      return text(405, 'method not allowed');
    }
    return text(404, 'not found');
  } catch (e) {
    return text(500, errorName(e));
  }
}

function kvGet(params) {
  const key = params.get('key');
  if (key === null) {
    return text(400, 'missing ?key=');
  }
  const value = Store.open('default').get(key);
  if (value === undefined || value === null) {
    return text(404, 'not found');
  }
  return new Response(value, {
    status: 200,
    headers: { 'content-type': 'application/octet-stream' },
  });
}

function kvSet(params, body) {
  const key = params.get('key');
  if (key === null) {
    return text(400, 'missing ?key=');
  }
  Store.open('default').set(key, body);
  return text(200, 'stored');
}

function variable(name) {
  try {
    return text(200, getVariable(name));
  } catch (e) {
    const tag = e?.payload?.tag;
    return text(tag === 'invalid-name' || tag === 'undefined' ? 404 : 500, errorName(e));
  }
}

function sql(params) {
  const name = params.get('name') ?? 'widget';
  const qty = Number.parseInt(params.get('qty') ?? '1', 10);
  const db = Connection.open('default');
  db.execute(
    'CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY AUTOINCREMENT, ' +
      'name TEXT NOT NULL, qty INTEGER NOT NULL, price REAL, note TEXT)',
    [],
  );
  db.execute('INSERT INTO items (name, qty, price, note) VALUES (?, ?, ?, ?)', [
    { tag: 'text', val: name },
    { tag: 'integer', val: BigInt(Number.isNaN(qty) ? 1 : qty) },
    { tag: 'real', val: 2.5 },
    { tag: 'null' },
  ]);
  const result = db.execute('SELECT id, name, qty, price, note FROM items ORDER BY id', []);
  const rows = result.rows.map((row) =>
    Object.fromEntries(result.columns.map((column, i) => [column, jsonOf(row.values[i])])),
  );
  return new Response(JSON.stringify(rows), {
    status: 200,
    headers: { 'content-type': 'application/json' },
  });
}

function jsonOf(value) {
  switch (value.tag) {
    case 'integer':
      return Number(value.val);
    case 'blob':
      return new TextDecoder().decode(value.val);
    case 'null':
      return null;
    default:
      return value.val;
  }
}

// The WIT name of a Spin error (`access-denied`, `undefined: NAME`, ...), as the other Spin
// examples answer it; the bindings throw the error variant as `payload`.
function errorName(e) {
  const payload = e?.payload;
  if (payload && typeof payload.tag === 'string') {
    return payload.val === undefined ? payload.tag : `${payload.tag}: ${payload.val}`;
  }
  return String(e);
}

function text(status, body) {
  return new Response(body, {
    status,
    headers: { 'content-type': 'text/plain; charset=utf-8' },
  });
}
