// An in-memory `projects` table behind PostgREST's HTTP interface, for the requests supabase-js v2 sends from
// aiService.example.js: upsert (POST, Prefer: resolution=merge-duplicates), update (PATCH ?id=eq.X) and
// select (GET ?select=a,b&id=eq.X), with `.single()` (Accept: application/vnd.pgrst.object+json) and
// `.select()` after a write (Prefer: return=representation). Unknown columns are refused the way PostgREST
// refuses them (400, PGRST204), so a misspelt column fails the test. Everything else goes to the real network
// (Storage requests reach the Storage double over HTTP).

export const PROJECT_COLUMNS = ['id', 'user_id', 'name', 'original_image_url', 'mask_url', 'swatch_data', 'status',
  'generated_image_url', 'generated_image_urls', 'created_at'];

function json(status, body) {
  return new Response(body === undefined ? null : JSON.stringify(body),
    { status, headers: { 'Content-Type': 'application/json' } });
}

/** @returns {{rows: Map<string, object>, requests: string[], fetch: typeof fetch}} */
export function fakeProjects(realFetch = globalThis.fetch) {
  const rows = new Map();
  const requests = [];

  function unknownColumn(row) {
    const bad = Object.keys(row).find((key) => !PROJECT_COLUMNS.includes(key));
    return bad && json(400, { code: 'PGRST204', details: null, hint: null,
      message: `Could not find the '${bad}' column of 'projects' in the schema cache` });
  }

  function answer(selected, headers, { wrote }) {
    const single = (headers.get('accept') || '').includes('vnd.pgrst.object+json');
    const prefer = headers.get('prefer') || '';
    if (wrote && !prefer.includes('return=representation')) return new Response(null, { status: 204 });
    if (single) {
      if (selected.length !== 1) {
        return json(406, { code: 'PGRST116', details: `The result contains ${selected.length} rows`, hint: null,
          message: 'JSON object requested, multiple (or no) rows returned' });
      }
      return json(200, selected[0]);
    }
    return json(200, selected);
  }

  function pick(row, select) {
    if (!select || select === '*') return structuredClone(row);
    return Object.fromEntries(select.split(',').map((c) => [c, structuredClone(row[c] ?? null)]));
  }

  async function handle(url, init) {
    const method = (init.method || 'GET').toUpperCase();
    const headers = new Headers(init.headers);
    requests.push(`${method} ${url.pathname}${url.search}`);
    if (url.pathname !== '/rest/v1/projects') return json(404, { message: `no table at ${url.pathname}` });
    if (!(headers.get('authorization') || '').startsWith('Bearer ')) return json(401, { message: 'no JWT' });
    const filters = [...url.searchParams].filter(([k]) => k !== 'select' && k !== 'columns' && k !== 'on_conflict');
    for (const [key, value] of filters) {
      if (!PROJECT_COLUMNS.includes(key)) {
        return json(400, { code: '42703', message: `column projects.${key} does not exist` });
      }
      if (!value.startsWith('eq.')) return json(400, { message: `this fake knows only eq filters, not ${value}` });
    }
    const matches = (row) => filters.every(([k, v]) => String(row[k]) === v.slice(3));
    const select = url.searchParams.get('select');
    if (select && select !== '*') {
      const bad = select.split(',').find((c) => !PROJECT_COLUMNS.includes(c));
      if (bad) return json(400, { code: '42703', message: `column projects.${bad} does not exist` });
    }
    if (method === 'GET') return answer([...rows.values()].filter(matches).map((r) => pick(r, select)), headers, {});
    const body = init.body ? JSON.parse(init.body) : null;
    if (method === 'POST') {
      const list = Array.isArray(body) ? body : [body];
      for (const row of list) {
        const refused = unknownColumn(row);
        if (refused) return refused;
      }
      const merge = (headers.get('prefer') || '').includes('resolution=merge-duplicates');
      const out = [];
      for (const row of list) {
        if (!row.id) {
          return json(400, { code: '23502', message: 'null value in column "id" violates not-null constraint' });
        }
        const existing = rows.get(row.id);
        if (existing && !merge) {
          return json(409, { code: '23505',
            message: 'duplicate key value violates unique constraint "projects_pkey"' });
        }
        const fresh = { created_at: new Date().toISOString(), generated_image_urls: null };
        const stored = { ...(existing || fresh), ...row };
        rows.set(row.id, stored);
        out.push(pick(stored, select));
      }
      return answer(out, headers, { wrote: true });
    }
    if (method === 'PATCH') {
      const refused = unknownColumn(body);
      if (refused) return refused;
      const out = [];
      for (const row of rows.values()) {
        if (!matches(row)) continue;
        Object.assign(row, structuredClone(body));
        out.push(pick(row, select));
      }
      return answer(out, headers, { wrote: true });
    }
    return json(405, { message: `${method} not supported by the fake` });
  }

  return {
    rows,
    requests,
    fetch: async (input, init = {}) => {
      const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
      if (url.pathname.startsWith('/rest/v1/')) return handle(url, init);
      return realFetch(input, init);
    },
  };
}
