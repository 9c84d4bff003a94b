// renderApi.js and aiService.example.js against a real render appliance (test/start_appliance.py): real HTTP,
// real queue and worker, the real embedded pipeline (its geometry stage paused 0.8 s to give the tests a window
// while a job runs), results stored in the Supabase Storage double (tests/supabase_storage_server.py).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { createClient } from '@supabase/supabase-js';

import { generateRender } from '../aiService.example.js';
import {
  RenderApiError, cancelRenderJob, configureRenderApi, getRenderJob, pollRenderJob, submitRenderJob,
  watchRenderJob,
} from '../renderApi.js';
import { REPO_ROOT, startAppliance } from './appliance.js';
import { fakeProjects } from './fakePostgrest.js';

const SHARED = process.env.RENDER_SHARED_DIR || path.resolve(REPO_ROOT, '..', 'shared');
const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47];
const FAST = { intervalMs: 100, maxIntervalMs: 400, timeoutMs: 60000 };

let svc;
/** Every request renderApi sends: {method, url, headers, body}. */
const sent = [];

before(async () => {
  // every stage lasts at least 0.4 s: the event stream reads the store every 0.2 s, and the watch test sees each
  svc = await startAppliance({ queueDepth: 2, geometryDelay: 0.8, stagePause: 0.4, supabase: true });
  configureRenderApi({
    baseUrl: svc.baseUrl,
    fetch: (url, init) => {
      sent.push({ method: init.method, url: String(url), headers: { ...init.headers }, body: init.body });
      return fetch(url, init);
    },
  });
});

after(async () => {
  if (svc) await svc.stop();
});

/** Expect `promise` to reject with a RenderApiError of `code`; returns it. */
async function rejectsWith(promise, code) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof RenderApiError, `not a RenderApiError: ${err && err.stack}`);
    assert.equal(err.errorCode, code, `${err.errorCode}: ${err.errorMessage}`);
    assert.ok(err.errorMessage, 'errorMessage is empty');
    return err;
  }
  assert.fail(`expected a ${code} failure, it succeeded`);
}

const job = (extra = {}) => ({ imageUrl: svc.house, textureUrl: svc.swatch, ...extra });

async function runningOrDone(jobId) {
  for (let i = 0; i < 200; i += 1) {
    const seen = await getRenderJob(jobId);
    if (seen.status !== 'processing' || seen.stage !== 'queued') return seen;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`job ${jobId} never started`);
}

describe('renderApi against the appliance', () => {
  test('success: submit, progress, result PNG; the same key gives the same job', async () => {
    const userId = randomUUID();
    const projectId = randomUUID();
    const input = job({ userId, projectId, options: { real_world_scale: 16 } });
    const submitted = await submitRenderJob(input, { idempotencyKey: `t-${projectId}` });
    assert.match(submitted.jobId, /^[0-9a-f-]{36}$/);
    assert.ok(submitted.pollUrl.endsWith(`/render/jobs/${submitted.jobId}`));
    assert.equal(submitted.replayed, false);
    const progress = [];
    const done = await pollRenderJob(submitted.jobId, { ...FAST, onProgress: (p) => progress.push(p) });
    assert.equal(done.status, 'completed');
    assert.ok(done.resultUrl.startsWith(`${svc.storageUrl}/storage/v1/object/public/${svc.bucket}/renders/`),
      done.resultUrl);
    assert.ok(done.resultUrl.includes(`${userId}/${projectId}-${submitted.jobId}.png`));
    const stages = progress.map((p) => p.stage);
    assert.ok(stages.includes('geometry'), `stages seen: ${stages}`);
    assert.equal(stages.at(-1), 'completed');
    const values = progress.map((p) => p.progress);
    assert.deepEqual(values, [...values].sort((a, b) => a - b), 'progress went backwards');
    assert.ok(values.every((v) => v >= 0 && v <= 1));
    const png = new Uint8Array(await (await fetch(done.resultUrl)).arrayBuffer());
    assert.deepEqual([...png.slice(0, 4)], PNG_MAGIC);

    const again = await submitRenderJob(input, { idempotencyKey: `t-${projectId}` });
    assert.equal(again.jobId, submitted.jobId);
    assert.equal(again.replayed, true);
    await rejectsWith(submitRenderJob(job({ textureUrl: '#123456' }), { idempotencyKey: `t-${projectId}` }),
      'idempotency_conflict');
  });

  test('watch: the event stream brings every stage in order and the result, with no polling', async () => {
    const { jobId } = await submitRenderJob(job({ textureUrl: '#7A8B99' }));
    const from = sent.length;
    const progress = [];
    const done = await watchRenderJob(jobId, { ...FAST, onProgress: (p) => progress.push(p) });
    assert.equal(done.status, 'completed');
    assert.equal(done.job.result_url, done.resultUrl);
    const stages = progress.map((p) => p.stage).filter((s, i, all) => i === 0 || all[i - 1] !== s);
    for (const stage of ['segment', 'geometry', 'project', 'completed']) assert.ok(stages.includes(stage), `${stages}`);
    const values = progress.map((p) => p.progress);
    assert.deepEqual(values, [...values].sort((a, b) => a - b), 'progress went backwards');
    assert.deepEqual(sent.slice(from).map((r) => `${r.method} ${new URL(r.url).pathname}`),
      [`GET /render/jobs/${jobId}/events`]);
    await rejectsWith(watchRenderJob(randomUUID(), FAST), 'job_not_found');
  });

  test('validation_failed: the 400 path, with the fields named', async () => {
    const err = await rejectsWith(submitRenderJob(job({ imageUrl: 'ftp://example.com/a.jpg',
      options: { real_world_scale: 0 } })), 'validation_failed');
    assert.equal(err.httpStatus, 400);
    assert.ok(err.details.image_url && err.details['options.real_world_scale'], JSON.stringify(err.details));
    await rejectsWith(submitRenderJob(job({ projectId: randomUUID() })), 'validation_failed'); // no userId
  });

  test('validation_failed: a photo too small to render', async () => {
    const { jobId } = await submitRenderJob(job({ imageUrl: svc.tiny }));
    const err = await rejectsWith(pollRenderJob(jobId, FAST), 'validation_failed');
    assert.match(err.errorMessage, /too small/);
    assert.equal(err.jobId, jobId);
    assert.equal(err.job.status, 'failed');
  });

  test('download_failed: a photo URL that answers 404', async () => {
    const { jobId } = await submitRenderJob(job({ imageUrl: `${svc.photosUrl}/houses/no_such_house.jpg` }));
    const err = await rejectsWith(pollRenderJob(jobId, FAST), 'download_failed');
    assert.match(err.errorMessage, /404/);
  });

  test('validation_failed at submit: refinement asked of an appliance without a refiner', async () => {
    const err = await rejectsWith(submitRenderJob(job({ options: { enable_refinement: true } })), 'validation_failed');
    assert.equal(err.httpStatus, 400);
    assert.match(err.details['options.enable_refinement'], /refinement model/);
    assert.equal(err.jobId, null);
  });

  test('timeout: a stage time limit the appliance cannot meet', async () => {
    const { jobId } = await submitRenderJob(job({ options: { stage_timeout_seconds: 0.001 } }));
    const err = await rejectsWith(pollRenderJob(jobId, FAST), 'timeout');
    assert.equal(err.clientTimeout, false);
  });

  test('upload_failed: the Storage bucket refuses the result', async () => {
    await svc.command('storage_refuse_png');
    try {
      const { jobId } = await submitRenderJob(job({ textureUrl: '#884422' }));
      const err = await rejectsWith(pollRenderJob(jobId, FAST), 'upload_failed');
      assert.match(err.errorMessage, /mime|image\/png|415/i);
    } finally {
      await svc.command('storage_accept_png');
    }
  });

  test('canceled: a queued job at once, a running one at its next stage', async () => {
    await svc.drain();
    const running = await submitRenderJob(job({ textureUrl: '#224488' }));
    const queued = await submitRenderJob(job({ textureUrl: '#448822' }));
    const canceledAtOnce = await cancelRenderJob(queued.jobId);
    assert.equal(canceledAtOnce.status, 'failed');
    assert.equal(canceledAtOnce.error_code, 'canceled');
    await rejectsWith(pollRenderJob(queued.jobId, FAST), 'canceled');

    const seen = await runningOrDone(running.jobId);
    assert.equal(seen.status, 'processing', JSON.stringify(seen));
    const flagged = await cancelRenderJob(running.jobId);
    assert.equal(flagged.cancel_requested, true);
    await rejectsWith(pollRenderJob(running.jobId, FAST), 'canceled');
    const ended = await cancelRenderJob(running.jobId); // already ended: returned as it is
    assert.equal(ended.error_code, 'canceled');
  });

  test('503 queue_full: waits Retry-After, retries with the same Idempotency-Key, then succeeds', async () => {
    await svc.drain();
    const filling = [await submitRenderJob(job({ textureUrl: '#101010' })),
      await submitRenderJob(job({ textureUrl: '#202020' }))];
    const retries = [];
    const key = `full-${randomUUID()}`;
    const t0 = Date.now();
    const from = sent.length;
    const accepted = await submitRenderJob(job({ textureUrl: '#303030' }), {
      idempotencyKey: key, onRetry: (info) => retries.push(info),
    });
    const waited = Date.now() - t0;
    assert.ok(retries.length >= 1, 'no 503 seen');
    assert.equal(retries[0].reason, 'queue_full');
    assert.equal(retries[0].httpStatus, 503);
    assert.ok(retries[0].delayMs >= 1000, `Retry-After ${retries[0].delayMs} ms`);
    assert.ok(waited >= retries[0].delayMs, `retried after ${waited} ms, asked ${retries[0].delayMs}`);
    const posts = sent.slice(from).filter((r) => r.method === 'POST' && r.url.endsWith('/render/jobs'));
    assert.equal(posts.length, retries.length + 1);
    assert.ok(posts.every((r) => r.headers['Idempotency-Key'] === key), 'the key changed between attempts');
    for (const { jobId } of [...filling, accepted]) {
      assert.equal((await pollRenderJob(jobId, FAST)).status, 'completed');
    }
  });

  test('503 queue_full: gives up with queue_full when the wait would exceed maxQueueWaitMs', async () => {
    await svc.drain();
    const filling = [await submitRenderJob(job({ textureUrl: '#111111' })),
      await submitRenderJob(job({ textureUrl: '#222222' }))];
    const err = await rejectsWith(submitRenderJob(job({ textureUrl: '#333333' }), { maxQueueWaitMs: 200 }),
      'queue_full');
    assert.equal(err.httpStatus, 503);
    assert.ok(err.retryAfterMs >= 1000);
    for (const { jobId } of filling) await cancelRenderJob(jobId);
  });

  test('timeout: the client gives up after timeoutMs (the job is left running)', async () => {
    await svc.drain();
    const { jobId } = await submitRenderJob(job({ textureUrl: '#556677' }));
    const t0 = Date.now();
    const err = await rejectsWith(pollRenderJob(jobId, { intervalMs: 100, timeoutMs: 400 }), 'timeout');
    const took = Date.now() - t0;
    assert.equal(err.clientTimeout, true);
    assert.ok(took >= 350 && took < 1500, `gave up after ${took} ms`);
    assert.equal((await getRenderJob(jobId)).status, 'processing');
    await cancelRenderJob(jobId);
  });

  test('abort: the signal stops polling at once', async () => {
    await svc.drain();
    const { jobId } = await submitRenderJob(job({ textureUrl: '#665544' }));
    const controller = new AbortController();
    let abortedAt = 0;
    const polling = pollRenderJob(jobId, {
      intervalMs: 2000,
      signal: controller.signal,
      onProgress: () => {
        if (!abortedAt) setTimeout(() => { abortedAt = Date.now(); controller.abort(); }, 50);
      },
    });
    const err = await rejectsWith(polling, 'aborted');
    assert.equal(err.name, 'AbortError');
    assert.ok(Date.now() - abortedAt < 1000, `stopped ${Date.now() - abortedAt} ms after the abort`);
    await rejectsWith(submitRenderJob(job(), { signal: AbortSignal.abort() }), 'aborted');
    await cancelRenderJob(jobId);
  });

  test('job_not_found', async () => {
    await rejectsWith(pollRenderJob(randomUUID(), FAST), 'job_not_found');
    await rejectsWith(cancelRenderJob(randomUUID()), 'job_not_found');
  });
});

describe('aiService.example.js with @supabase/supabase-js', () => {
  let supabase;
  let projects;
  let photo;
  let swatch;

  before(async () => {
    await svc.drain();
    projects = fakeProjects();
    supabase = createClient(svc.storageUrl, svc.serviceKey, {
      auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
      realtime: { transport: /** @type {any} */ (class NoWebSocket {}) }, // Node 20 has none; never connected
      global: { fetch: projects.fetch },
    });
    photo = new File([await readFile(path.join(SHARED, 'data/houses/house_126.jpg'))], 'house.jpg',
      { type: 'image/jpeg' });
    swatch = new File([await readFile(path.join(SHARED, 'data/textures/brick_orange_sh3d_smallBricks.jpg'))],
      'brick.jpg', { type: '' }); // a File without a type: stored as image/jpeg all the same
  });

  const lastPostBody = () => JSON.parse(sent.filter((r) => r.method === 'POST' && r.url.endsWith('/render/jobs'))
    .at(-1).body);

  test('upload + save -> render -> generated_image_url, appended to generated_image_urls', async () => {
    const userId = randomUUID();
    const phases = [];
    const first = await generateRender({
      supabase, userId, photo, swatches: [{ id: 'brick', name: 'Orange brick', color: '#C0602A', file: swatch }],
      projectFields: { name: 'Elm Street' }, poll: FAST, onProgress: (p) => phases.push(p.phase),
    });
    const storagePrefix = `${svc.storageUrl}/storage/v1/object/public/${svc.bucket}/${userId}/`;
    const row = projects.rows.get(first.project.id);
    assert.equal(row.status, 'completed');
    assert.equal(row.name, 'Elm Street');
    assert.equal(row.user_id, userId);
    assert.ok(row.original_image_url.startsWith(storagePrefix), row.original_image_url);
    assert.equal(row.swatch_data.length, 1);
    assert.deepEqual(Object.keys(row.swatch_data[0]).sort(), ['color', 'id', 'name', 'url']);
    assert.ok(row.swatch_data[0].url.startsWith(storagePrefix));
    assert.equal(row.generated_image_url, first.resultUrl);
    assert.deepEqual(row.generated_image_urls, [first.resultUrl]);
    assert.deepEqual(lastPostBody(), { image_url: row.original_image_url, texture_url: row.swatch_data[0].url,
      project_id: row.id, user_id: userId });
    const uploaded = await fetch(row.swatch_data[0].url);
    assert.equal(uploaded.headers.get('content-type'), 'image/jpeg');
    assert.ok(phases.includes('uploading') && phases.includes('rendering') && phases.at(-1) === 'completed');

    // A re-render of the same project with a paint colour (no swatch image), copied into the project's folder.
    const second = await generateRender({
      supabase, userId, projectId: row.id, photo: row.original_image_url,
      swatches: [{ id: 'paint', name: 'Slate', color: '#5A6B7C' }], persistResult: 'always', poll: FAST,
    });
    assert.equal(lastPostBody().texture_url, '#5A6B7C');
    assert.ok(second.resultUrl.startsWith(`${storagePrefix}${row.id}/render-${second.jobId}.png`), second.resultUrl);
    const png = new Uint8Array(await (await fetch(second.resultUrl)).arrayBuffer());
    assert.deepEqual([...png.slice(0, 4)], PNG_MAGIC);
    assert.deepEqual(projects.rows.get(row.id).generated_image_urls, [first.resultUrl, second.resultUrl]);
    assert.equal(projects.rows.get(row.id).generated_image_url, second.resultUrl);
  });

  test('swatches with a surface: one render, the wall from the first swatch, trim and door their own', async () => {
    const userId = randomUUID();
    const done = await generateRender({
      supabase, userId, photo, poll: FAST, swatches: [
        { id: 'brick', name: 'Orange brick', file: swatch },
        { id: 'white', name: 'White trim', color: '#F4F1EA', surface: 'trim' },
        { id: 'door', name: 'Red door', color: '#8B1A1A', surface: 'door' }],
    });
    const row = projects.rows.get(done.project.id);
    assert.equal(row.status, 'completed');
    assert.deepEqual(row.swatch_data.map((s) => s.surface ?? null), [null, 'trim', 'door']);
    const body = lastPostBody();
    assert.equal(body.texture_url, row.swatch_data[0].url);
    assert.deepEqual(body.surfaces, [{ surface: 'trim', texture_url: '#F4F1EA' },
      { surface: 'door', texture_url: '#8B1A1A' }]);
    const finished = await getRenderJob(done.jobId);
    assert.ok(finished.painted && finished.painted.wall, JSON.stringify(finished));
    for (const name of ['trim', 'door']) {  // painted, or said why not
      assert.ok(finished.painted[name] || finished.warnings.some((w) => w.startsWith(`surface ${name}:`)),
        JSON.stringify(finished));
    }
  });

  test('a failed render marks the project failed; no swatch renders the photo itself', async () => {
    const userId = randomUUID();
    const err = await rejectsWith(generateRender({
      supabase, userId, photo, swatches: [], options: { stage_timeout_seconds: 0.001 }, poll: FAST,
    }), 'timeout');
    const body = lastPostBody();
    assert.equal(body.texture_url, body.image_url);
    const row = projects.rows.get(body.project_id);
    assert.equal(row.status, 'failed');
    assert.equal(row.generated_image_url ?? null, null);
    assert.ok(err.jobId);
  });

  test('an upload refused by Storage fails before anything is saved', async () => {
    const before = projects.rows.size;
    const text = new File(['not an image'], 'notes.txt', { type: 'text/plain' });
    await rejectsWith(generateRender({ supabase, userId: randomUUID(), photo: text, poll: FAST }), 'upload_failed');
    assert.equal(projects.rows.size, before);
  });
});
